/**
 * Synthetic benchmark models with real architectures' shapes and random weights, written once with the project's
 * GGUF writer into bench-results/models/ (speed does not depend on weight values).
 */
import { createWriteStream, existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { tinyLlamaWriter } from '../../engine/gguf/synth.js';
import type { TinyLlamaOptions } from '../../engine/gguf/synth.js';

export const SHAPES: Record<string, TinyLlamaOptions & { note: string }> = {
  // stories15M (llama2.c): dim 288, 6 layers, 6 heads, ffn 768, vocab 32000.
  'stories15m-f32': { dim: 288, layers: 6, heads: 6, kvHeads: 6, ffn: 768, vocab: 32000, type: 'F32', contextLength: 4096, note: 'stories15M shape' },
  // TinyLlama-1.1B: dim 2048, 32 heads / 4 KV heads, ffn 5632, vocab 32000; 4 of its 22 layers so that it runs in minutes.
  'tinyllama-4l-q8_0': { dim: 2048, layers: 4, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000, type: 'Q8_0', contextLength: 4096, note: 'TinyLlama-1.1B shape, 4 layers' },
};

export async function ensureModel(dir: string, name: string, log: (s: string) => void): Promise<string> {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape ${name} (known: ${Object.keys(SHAPES).join(', ')})`);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.gguf`);
  if (existsSync(path)) return path;
  log(`writing synthetic model ${path} (${shape.note})\n`);
  const w = tinyLlamaWriter({ ...shape, seed: 7, name });
  const tmp = `${path}.part`;
  const out = createWriteStream(tmp);
  await w.writeTo((chunk) => new Promise<void>((res, rej) => out.write(chunk, (e) => (e ? rej(e) : res()))));
  await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
  renameSync(tmp, path);
  return path;
}
