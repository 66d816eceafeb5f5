// The precompiled kernel files (dist/wasm/kernels-*.wasm, for runtimes that import wasm as modules) through
// loadModel's wasmModule option, and File/Blob sources (a browser's file picker).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, OptionError } from '../engine/index.js';
import type { LoadOptions, Model } from '../engine/index.js';
import { KERNEL_BUILD_SECTION, kernelBuildInfo } from '../engine/runtime/kernels.js';
import { memoryImportFlagOffset, withCustomSection } from '../engine/runtime/wasm-binary.js';
import { MODELS, readReference, ROOT } from './shared-paths.js';

const STORIES = join(MODELS, 'stories260K.gguf');
const wasmFile = (simd: string) => readFileSync(join(ROOT, `dist/wasm/kernels-${simd}.wasm`));

async function greedy(model: Model, prompt: string, n: number): Promise<string> {
  let text = '';
  for await (const p of model.generate(prompt, { maxTokens: n, temperature: 0 })) text += p.text;
  model.dispose();
  return text;
}

describe('precompiled kernel modules (wasmModule)', () => {
  it('the emitted files import an unshared memory and say which build they are', () => {
    for (const simd of ['plain', 'relaxed'] as const) {
      const bytes = wasmFile(simd);
      expect(bytes[memoryImportFlagOffset(bytes)]! & 2).toBe(0);
      const info = kernelBuildInfo(new WebAssembly.Module(bytes));
      expect(info).toMatchObject({ simd, sharedMemory: false });
    }
  });

  it('both builds generate llama.cpp\'s greedy text, on one thread even when more are asked for', async () => {
    const ref = readReference('stories260K.p1.json');
    const want = Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8');
    for (const simd of ['plain', 'relaxed'] as const) {
      const model = await loadModel(STORIES, { wasmModule: new WebAssembly.Module(wasmFile(simd)), threads: 2 });
      expect(model.info.simd).toBe(simd);
      expect(model.info.threads).toBe(1);
      expect(model.info.threadsFallback).toMatch(/unshared memory/);
      expect(await greedy(model, ref.prompt, ref.greedy_ids.length)).toBe(want);
    }
  });

  it('rejects what is not a kernel module of this build, and a simd option that contradicts the module', async () => {
    const load = (o: LoadOptions) => loadModel(STORIES, o);
    const bytes = wasmFile('plain');
    const bare = stripBuildSection(bytes);
    expect(bare.length).toBeLessThan(bytes.length);
    await expect(load({ wasmModule: new WebAssembly.Module(bare) })).rejects.toThrow(/wasmModule.*not a bmc-llm kernel module/);
    await expect(load({ wasmModule: new Uint8Array(8) as unknown as WebAssembly.Module })).rejects.toBeInstanceOf(OptionError);
    // The same code with the build section of another version.
    const other = new TextEncoder().encode(JSON.stringify({ build: '0000000000000000', simd: 'plain', sharedMemory: false }));
    const foreign = new WebAssembly.Module(withCustomSection(bare, KERNEL_BUILD_SECTION, other));
    await expect(load({ wasmModule: foreign })).rejects.toThrow(/another build/);
    await expect(load({ wasmModule: new WebAssembly.Module(bytes), simd: 'relaxed' })).rejects.toThrow(/simd.*plain build/);
  });
});

describe('Blob and File sources', () => {
  it('a File loads like the path it was read from', async () => {
    const ref = readReference('stories260K.p2.json');
    const file = new File([readFileSync(STORIES)], 'stories260K.gguf');
    const a = await loadModel(file);
    expect(a.info.file).toBe('stories260K.gguf');
    const b = await loadModel(STORIES);
    expect(await greedy(a, ref.prompt, 16)).toBe(await greedy(b, ref.prompt, 16));
  });
});

/** The module bytes without their bmc-llm build section (custom sections are id 0; ours is the last). */
function stripBuildSection(bytes: Uint8Array): Uint8Array {
  let at = 8;
  const keep: Uint8Array[] = [bytes.subarray(0, 8)];
  while (at < bytes.length) {
    const start = at;
    const id = bytes[at++]!;
    let size = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[at++]!;
      size += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) break;
    }
    const end = at + size;
    const nameLen = id === 0 ? bytes[at]! : 0;
    const name = id === 0 ? new TextDecoder().decode(bytes.subarray(at + 1, at + 1 + nameLen)) : '';
    if (name !== KERNEL_BUILD_SECTION) keep.push(bytes.subarray(start, end));
    at = end;
  }
  const out = new Uint8Array(keep.reduce((n, k) => n + k.length, 0));
  let o = 0;
  for (const k of keep) {
    out.set(k, o);
    o += k.length;
  }
  return out;
}
