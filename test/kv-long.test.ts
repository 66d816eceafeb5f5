/**
 * Invariants of the attention path over several sequence blocks (positions past 128, 256), for every KV element
 * type: a batched forward of n tokens gives the logits of feeding them one at a time (what speculative decoding's
 * greedy equivalence rests on), for a long prefill and for a short verification batch after a prefix; and any thread
 * count gives the same bits.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import type { KVOptions } from '../engine/index.js';
import { setPoolMinWork } from '../engine/runtime/kernels.js';
import { sharedMemoryAvailable } from '../engine/adapters/workers.js';
import { MODELS } from './shared-paths.js';

const LEN = 300;

function tokens(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => 1 + ((i * 37 + (i >> 3) * 11) % (vocab - 1)));
}

function expectBitIdentical(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let diff = 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) diff++;
  expect(diff, `${what}: ${diff} of ${a.length} logits differ`).toBe(0);
}

/** [model, KV options, whether to run the thread-count check too (it takes a few seconds per case)]. */
const CASES: Array<[string, KVOptions, boolean]> = [
  ['stories260K.gguf', { type: 'f32' }, true],
  ['stories260K.gguf', { type: 'f16', policy: 'paged', blockSize: 16 }, true],
  ['stories260K.gguf', { type: 'q8_0' }, false],
  ['synth-d256-q8_0.gguf', { type: 'f16' }, false], // GQA: 8 heads over 2 KV heads
  ['synth-d256-q8_0.gguf', { type: 'q8_0', policy: 'paged', blockSize: 7 }, true],
  ['synth-d256-f32.gguf', { type: 'f32', policy: 'concat' }, false],
];

describe.each(CASES)('%s, kv %o', (file, kv, threadCheck) => {
  it(`a batched forward of ${LEN} tokens, and a verification batch after a prefix, equal feeding tokens one at a time`, async () => {
    const m = await loadModel(join(MODELS, file), { contextLength: 512, batchSize: 128, kv, threads: 1 });
    try {
      const V = m.info.hparams!.nVocab;
      const ids = tokens(LEN, V);
      const batched = await m.createSession().eval(ids, { logits: 'all' });
      const s = m.createSession();
      const single = new Float32Array(LEN * V);
      for (let i = 0; i < LEN; i++) single.set(await s.eval([ids[i]!]), i * V);
      expectBitIdentical(batched, single, 'prefill');
      // A verification batch of 6 drafts after 250 tokens (and a rollback of a rejected draft before it).
      const v = m.createSession();
      await v.eval(ids.slice(0, 250));
      await v.eval([5, 6, 7]);
      v.truncate(250);
      const verify = await v.eval(ids.slice(250, 256), { logits: 'all' });
      expectBitIdentical(verify, single.subarray(250 * V, 256 * V), 'verification batch');
    } finally {
      m.dispose();
    }
  });

  if (threadCheck) it.skipIf(!sharedMemoryAvailable())('gives the same bits on 1, 2 and 3 threads', async () => {
    const run = async (threads: number) => {
      const m = await loadModel(join(MODELS, file), { contextLength: 512, batchSize: 100, kv, threads });
      try {
        expect(m.info.threads).toBe(threads);
        const V = m.info.hparams!.nVocab;
        const ids = tokens(LEN, V);
        const s = m.createSession();
        const pre = await s.eval(ids.slice(0, 270), { logits: 'all' });
        const out = new Float32Array((LEN) * V);
        out.set(pre);
        for (let i = 270; i < LEN; i++) out.set(await s.eval([ids[i]!]), i * V);
        return out;
      } finally {
        m.dispose();
      }
    };
    const one = await run(1);
    const old = setPoolMinWork(0); // every job on every thread
    try {
      expectBitIdentical(await run(2), one, '2 threads');
      expectBitIdentical(await run(3), one, '3 threads');
    } finally {
      setPoolMinWork(old);
    }
  });
});
