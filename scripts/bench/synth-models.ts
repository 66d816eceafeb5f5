/**
 * Synthetic benchmark models with real architectures' shapes and random weights, written once with the project's
 * GGUF writer into bench-results/models/ (speed does not depend on weight values).
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tinyLlamaWriter } from '../../engine/gguf/synth.js';
import type { TinyLlamaOptions } from '../../engine/gguf/synth.js';

const STORIES = { dim: 288, layers: 6, heads: 6, kvHeads: 6, ffn: 768, vocab: 32000, contextLength: 4096 };
const TINYLLAMA = { dim: 2048, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000, contextLength: 4096 };

/**
 * llama.cpp's Q4_K_M on a shape whose rows are not all multiples of 256 (stories15M: dim 288): Q4_K where the row
 * length allows (ffn_down, 768 columns), its fallback Q5_0 elsewhere, and the output in Q8_0 (the fallback of its
 * Q6_K). llama.cpp also gives attn_v and ffn_down of a few layers Q6_K; this mix keeps them at the base type.
 */
export function q4kMix(name: string, cols: number): string | undefined {
  if (cols % 256 === 0) return 'Q4_K';
  return name === 'output.weight' ? 'Q8_0' : undefined;
}

export const SHAPES: Record<string, TinyLlamaOptions & { note: string }> = {
  // stories15M (llama2.c): dim 288, 6 layers, 6 heads, ffn 768, vocab 32000.
  'stories15m-f32': { ...STORIES, type: 'F32', note: 'stories15M shape' },
  'stories15m-f16': { ...STORIES, type: 'F16', note: 'stories15M shape' },
  'stories15m-q8_0': { ...STORIES, type: 'Q8_0', note: 'stories15M shape' },
  // The same with a 512-token vocabulary (the long-context bench: attention dominates sooner).
  'stories15m-v512-q8_0': { ...STORIES, vocab: 512, type: 'Q8_0', note: 'stories15M shape, vocab 512' },
  'stories15m-q4_0': { ...STORIES, type: 'Q4_0', note: 'stories15M shape' },
  'stories15m-q4_k': { ...STORIES, type: 'Q5_0', matrixType: q4kMix, note: 'stories15M shape, Q4_K_M-like mix: Q4_K ffn_down, Q5_0 elsewhere, Q8_0 output' },
  // TinyLlama-1.1B: dim 2048, 32 heads / 4 KV heads, ffn 5632, vocab 32000; 4 of its 22 layers so that it runs in minutes.
  'tinyllama-4l-q8_0': { ...TINYLLAMA, layers: 4, type: 'Q8_0', note: 'TinyLlama-1.1B shape, 4 layers' },
  'tinyllama-4l-q4_0': { ...TINYLLAMA, layers: 4, type: 'Q4_0', note: 'TinyLlama-1.1B shape, 4 layers' },
  // Every TinyLlama row length is a multiple of 256, so this one is Q4_K throughout.
  'tinyllama-4l-q4_k': { ...TINYLLAMA, layers: 4, type: 'Q4_K', note: 'TinyLlama-1.1B shape, 4 layers' },
  'tinyllama-q4_0': { ...TINYLLAMA, layers: 22, type: 'Q4_0', note: 'TinyLlama-1.1B shape, all 22 layers' },
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
  try {
    await w.writeTo((chunk) => new Promise<void>((res, rej) => out.write(chunk, (e) => (e ? rej(e) : res()))));
    await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
  } catch (e) {
    out.destroy();
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, path);
  return path;
}
