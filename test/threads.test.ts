// The kernel pool: identical logits for any thread count (prefill chunks and decode, every weight type family and
// KV layout), errors from a worker surface as PoolError and leave the pool usable, the shared/unshared module
// patch, and the fallbacks to one thread.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { Kernels, POOL_MIN_WORK, setPoolMinWork } from '../engine/runtime/kernels.js';
import { PoolError } from '../engine/runtime/pool.js';
import { memoryImportFlagOffset, withSharedMemoryFlag } from '../engine/runtime/wasm-binary.js';
import { sharedMemoryAvailable } from '../engine/adapters/workers.js';
import { MODELS, ROOT } from './shared-paths.js';

/** All logits of a teacher-forced run: prefill in chunks of `batch`, then token-by-token decode. */
async function logits(file: string, threads: number, kv: 'bmc' | 'paged' | 'concat', batch = 7): Promise<Float32Array> {
  const model = await loadModel(file, { threads, batchSize: batch, contextLength: 256, kv: kv === 'paged' ? { policy: 'paged', blockSize: 16 } : { policy: kv } });
  try {
    expect(model.info.threads).toBe(threads);
    const s = model.createSession();
    const ids = model.tokenize('Once upon a time, there was a little dog who wanted to play with the ball in the garden.');
    const pre = await s.eval(ids.slice(0, 20), { logits: 'all' });
    const parts = [pre];
    for (const t of ids.slice(20)) parts.push(await s.eval([t], { logits: 'all' }));
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  } finally {
    model.dispose();
  }
}

function expectBitIdentical(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let diff = 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) diff++;
  expect(diff, `${what}: ${diff} of ${a.length} logits differ`).toBe(0);
}

describe.skipIf(!sharedMemoryAvailable())('kernel pool', () => {
  const cases: Array<[string, 'bmc' | 'paged' | 'concat']> = [
    ['stories260K.gguf', 'bmc'],
    ['stories260K.gguf', 'paged'],
    ['synth-d256-q4_0.gguf', 'concat'],
    ['synth-d256-q5_1.gguf', 'bmc'],
    ['synth-d256-f16.gguf', 'bmc'],
    ['synth-d256-q4_k_m-mixed.gguf', 'paged'],
    ['llama2xs-tok512.gguf', 'bmc'],
  ];
  it.each(cases)('%s (kv %s): logits are bit-identical for 1, 2 and 3 threads', async (name, kv) => {
    const file = join(MODELS, name);
    const one = await logits(file, 1, kv);
    // Every job on every thread (these models are small enough that the default would keep most jobs on one).
    const old = setPoolMinWork(0);
    try {
      expectBitIdentical(await logits(file, 2, kv), one, `${name} 2 threads`);
      expectBitIdentical(await logits(file, 3, kv, 5), one, `${name} 3 threads`);
    } finally {
      setPoolMinWork(old);
    }
    // And with the default threshold, where small jobs stay on the calling thread.
    expect(POOL_MIN_WORK).toBeGreaterThan(0);
    expectBitIdentical(await logits(file, 2, kv), one, `${name} 2 threads, default threshold`);
  });

  it('a worker failure is a PoolError naming the thread; the pool keeps working', async () => {
    const K = await Kernels.create({ threads: 2 });
    try {
      expect(K.threads).toBe(2);
      const rows = 4096;
      const cols = 256;
      const x = K.alloc(cols * 4);
      const y = K.alloc(rows * 4);
      K.f32(x, cols).fill(1);
      const w = K.alloc(rows * cols * 4);
      K.f32(w, rows * cols).fill(0.5);
      const call = (wp: number) => ({ fn: 'matmul_f32', args: [wp, x, y, rows, cols, 1, rows, 0, rows], lo: 7, hi: 8, granule: 16 });
      K.parallel([call(w)]);
      expect(K.f32(y, rows).every((v) => v === 128)).toBe(true);
      // A matrix whose second half lies past the end of memory: part 0 (rows 0..2047) succeeds, part 1 traps. Threads
      // claim parts as they come, so the trap is the worker's (a PoolError naming it) or, when the main thread got
      // there first, the main thread's own; the worker, spinning after the last job, soon claims part 1.
      const bad = K.memory.buffer.byteLength - (rows / 2) * cols * 4;
      let poolError: unknown;
      for (let i = 0; i < 500 && !poolError; i++) {
        try {
          K.parallel([call(bad)]);
          throw new Error('the job did not fail');
        } catch (e) {
          expect((e as Error).message).toMatch(/out of bounds/);
          if (e instanceof PoolError) poolError = e;
        }
      }
      expect(poolError).toBeInstanceOf(PoolError);
      expect((poolError as Error).message).toMatch(/thread 1: .*out of bounds/);
      expect(K.poolStats()!.workerParts).toBeGreaterThan(0);
      K.f32(y, rows).fill(0);
      K.parallel([call(w)]);
      expect(K.f32(y, rows).every((v) => v === 128)).toBe(true);
    } finally {
      K.dispose();
    }
  });

  it('falls back to one thread when workers cannot start', async () => {
    const K = await Kernels.create({ threads: 4, spawn: () => Promise.reject(new Error('no workers here')) });
    try {
      expect(K.threads).toBe(1);
      expect(K.fallbackReason).toMatch(/no workers here/);
    } finally {
      K.dispose();
    }
  });
});

describe('kernel module binary', () => {
  it('imports a shared memory, and the patch switches only the limits flag', () => {
    const bytes = new Uint8Array(readFileSync(join(ROOT, 'build/kernels.wasm')));
    const at = memoryImportFlagOffset(bytes);
    expect(at).toBeGreaterThan(8);
    expect(bytes[at]).toBe(3); // has maximum | shared
    const unshared = withSharedMemoryFlag(bytes, false);
    expect(unshared[at]).toBe(1);
    let diff = 0;
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== unshared[i]) diff++;
    expect(diff).toBe(1);
    expect(WebAssembly.validate(unshared)).toBe(true);
    expect(withSharedMemoryFlag(unshared, true)).toEqual(bytes);
  });

  it('one thread runs on an unshared memory', async () => {
    const K = await Kernels.create({ threads: 1 });
    expect(K.threads).toBe(1);
    expect(K.memory.buffer instanceof SharedArrayBuffer).toBe(false);
    K.dispose();
  });
});
