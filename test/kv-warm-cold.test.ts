/**
 * The tiered KV cache's warm tier (rows compressed in the arena) and cold stores (engine/kv/cold-store.ts).
 * - Without a warm tier, any cold store gives logits bit-identical to the untiered cache (a temporary file here).
 * - With a warm tier the logits stay within a stated tolerance of the untiered f32 cache over 300 decode steps, on
 *   stories260K (head size 8: blocks of 8) and a synthetic model (head size 16), measured as the relative L2 error
 *   of each step's logits (|a - b| / |b|) and the agreement of their argmax:
 *     q8_0: worst step <= 5%, argmax agreement >= 95% (decode steps quantize the query per block too, as q8_0 caches do);
 *     q4_0: worst step <= 50%, argmax agreement >= 70% (4-bit rows with blocks of 8 or 16 values are coarse);
 *   the errors are nonzero (warm rows are really read) and q4_0's mean error is larger than q8_0's.
 * - f16 and q8_0 caches with warm tiers (rows converted between the cache's type and the warm type) stay within the
 *   same tolerances against the untiered cache of their type.
 * - Doubling the scales of the warm rows (a broken dequantization) breaks the q8_0 tolerance.
 * - The arena stays within the budget; bad options are OptionErrors naming the field.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, OptionError, parseKVColdFlag, parseKVWarmFlag } from '../engine/index.js';
import type { Model, Session } from '../engine/index.js';
import { makeTinyLlama } from '../engine/gguf/synth.js';
import { TraceRecorder } from '../engine/tiers/trace.js';
import { MODELS } from './shared-paths.js';
import { arenaBytes, expectPlainLogits, ids } from './tier-helpers.js';

/**
 * A budget of `pools` bytes for the tables, staging and pools, plus the attention-mass buffers the cache adds for its
 * placement ((n_heads + 1) f32 per context position), so that the pools get what they got before those existed.
 */
const withMass = (m: Model, ctx: number, pools: number) => pools + 4 * (m.info.hparams!.nHeads + 1) * ctx;

/** Relative L2 error of b against a, and whether their argmax agree. */
function compare(a: Float32Array, b: Float32Array): { rel: number; agree: boolean } {
  let num = 0, den = 0, am = 0, bm = 0;
  for (let k = 0; k < a.length; k++) {
    num += (a[k]! - b[k]!) ** 2;
    den += a[k]! ** 2;
    if (a[k]! > a[am]!) am = k;
    if (b[k]! > b[bm]!) bm = k;
  }
  return { rel: Math.sqrt(num / den), agree: am === bm };
}

/** Decodes `steps` fixed tokens through both sessions; the worst and mean relative error and argmax agreement. */
async function run(ref: Session, s: Session, vocab: number, steps: number, from = 0) {
  let worst = 0, sum = 0, agree = 0;
  for (let i = from; i < from + steps; i++) {
    const t = [(i * 31 + 5) % vocab];
    const c = compare(await ref.eval(t), await s.eval(t));
    worst = Math.max(worst, c.rel);
    sum += c.rel;
    if (c.agree) agree++;
  }
  return { worst, mean: sum / steps, agreement: agree / steps };
}

const stories = () => loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 512, batchSize: 16 });
const synthetic = () => loadModel(makeTinyLlama({ dim: 64, heads: 4, kvHeads: 2, layers: 4, ffn: 96, vocab: 260, contextLength: 512 }), { contextLength: 512, batchSize: 16 });

const TOL = { q8_0: { worst: 0.05, agreement: 0.95 }, q4_0: { worst: 0.5, agreement: 0.7 } } as const;

describe('tiered KV cache: cold stores', () => {
  it.each(['f32', 'q8_0'] as const)('stories260K, %s rows in a temporary file: logits equal the untiered cache\'s; the file is removed on dispose', async (type) => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-kv-test-'));
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 256, batchSize: 16 });
    try {
      const hp = m.info.hparams!;
      const plain = m.createSession({ kv: { type } });
      const budget = withMass(m, 256, type === 'f32' ? 170_000 : 83_000); // about 48 hot rows per layer
      const tiered = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, type, cold: 'file', coldPath: dir } });
      expect(readdirSync(dir)).toHaveLength(1);
      await expectPlainLogits(tiered, plain, hp.nVocab);
      const s = tiered.kvStats();
      expect(arenaBytes(s)).toBeLessThanOrEqual(budget);
      expect(s.tiers!.coldStore).toBe('file');
      expect(s.tiers!.coldRows).toBeGreaterThan(s.length * hp.nLayers / 2);
      expect(s.tiers!.hostBytes).toBeGreaterThanOrEqual(s.length * 2 * hp.nLayers * (s.tiers!.hotBytes / (2 * hp.nLayers * s.tiers!.hotRowsPerLayer)));
      expect(s.tiers!.stagedBytes).toBeGreaterThan(0);
      tiered.dispose();
      expect(readdirSync(dir)).toHaveLength(0);
    } finally {
      m.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tiered KV cache: warm tier', () => {
  const cases = [['stories260K', stories], ['synthetic', synthetic]] as const;
  it.each(cases)('%s: q8_0 and q4_0 warm rows keep the logits within the stated tolerance over 300 steps', async (_name, load) => {
    const m: Model = await load();
    try {
      const hp = m.info.hparams!;
      const prompt = ids(100, hp.nVocab);
      const got: Record<string, { worst: number; mean: number; agreement: number }> = {};
      for (const warm of ['q8_0', 'q4_0'] as const) {
        const plain = m.createSession();
        const budget = withMass(m, 512, 300_000);
        // The kernel's attention mass drives the placements at every step, so rows also move between tiers.
        const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, warm }, trace: new TraceRecorder({ nLayers: hp.nLayers, topK: 4 }) });
        await plain.eval(prompt);
        await s.eval(prompt);
        const r = got[warm] = await run(plain, s, hp.nVocab, 300);
        const st = s.kvStats();
        const t = st.tiers!;
        expect(arenaBytes(st)).toBeLessThanOrEqual(budget);
        expect(t.warmType).toBe(warm);
        expect(t.warmRows).toBeGreaterThan(0);
        expect(t.hotRows + t.warmRows + t.coldRows).toBe(st.length * hp.nLayers);
        expect(t.hotRows).toBeLessThanOrEqual(t.hotRowsPerLayer * hp.nLayers);
        expect(t.expandedBytes).toBeGreaterThan(0); // prefill chunks expand warm rows
        // Decode steps of an f32 cache read q8_0 warm rows in registers (attendSplit); q4_0 rows are expanded.
        if (warm === 'q8_0') expect(t.splitReads).toBeGreaterThan(0);
        else expect(t.splitReads).toBe(0);
        expect(t.warmDemotions + t.demotions).toBeGreaterThan(0);
        expect(r.worst, `${warm} worst relative error`).toBeLessThanOrEqual(TOL[warm].worst);
        expect(r.agreement, `${warm} argmax agreement`).toBeGreaterThanOrEqual(TOL[warm].agreement);
        expect(r.mean, `${warm}: warm rows are read`).toBeGreaterThan(0);
        plain.dispose();
        s.dispose();
      }
      expect(got.q4_0!.mean).toBeGreaterThan(got.q8_0!.mean);
    } finally {
      m.dispose();
    }
  }, 60_000);

  it.each([['f16', 'q8_0'], ['q8_0', 'q4_0']] as const)('stories260K, %s cache with warm %s rows: within the tolerance of the untiered cache of that type', async (type, warm) => {
    const m = await stories();
    try {
      const hp = m.info.hparams!;
      const plain = m.createSession({ kv: { type } });
      const budget = withMass(m, 512, type === 'f16' ? 200_000 : 160_000);
      // Placed by the mass, so cold rows are promoted to warm: compressed from their cold copies at the cache's type.
      const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, type, warm }, trace: new TraceRecorder({ nLayers: hp.nLayers, topK: 4 }) });
      const prompt = ids(100, hp.nVocab);
      await plain.eval(prompt);
      await s.eval(prompt);
      const r = await run(plain, s, hp.nVocab, 150);
      const st = s.kvStats();
      expect(arenaBytes(st)).toBeLessThanOrEqual(budget);
      expect(st.tiers!.warmRows).toBeGreaterThan(0);
      expect(st.tiers!.coldRows).toBeGreaterThan(0);
      expect(st.tiers!.warmPromotions).toBeGreaterThan(0);
      expect(r.mean).toBeGreaterThan(0);
      expect(r.worst).toBeLessThanOrEqual(TOL[warm].worst);
      expect(r.agreement).toBeGreaterThanOrEqual(TOL[warm].agreement);
    } finally {
      m.dispose();
    }
  });

  it('split reads give the placements the kernel\'s attention mass at every step, mapped back to positions', async () => {
    const m = await stories();
    try {
      const hp = m.info.hparams!;
      type Inner = { massOf: Float32Array[]; splitTables: number };
      const open = () => m.createSession({ kv: { policy: 'tiered', budgetBytes: withMass(m, 512, 300_000), warm: 'q8_0' } });
      const split = open();
      const expand = open();
      (expand as unknown as { kv: Inner }).kv.splitTables = 0; // no compact tables: this one expands its warm rows
      const prompt = ids(300, hp.nVocab);
      await split.eval(prompt);
      await expand.eval(prompt);
      // Same state after the prefill (both expanded); one decode step each way, over the same rows.
      const t = [7];
      await split.eval(t);
      await expand.eval(t);
      const a = (split as unknown as { kv: Inner }).kv.massOf;
      const b = (expand as unknown as { kv: Inner }).kv.massOf;
      const st = split.kvStats().tiers!;
      expect(st.splitReads).toBe(hp.nLayers);
      expect(expand.kvStats().tiers!.splitReads).toBe(0);
      expect(st.warmRows).toBeGreaterThan(0);
      for (let l = 0; l < hp.nLayers; l++) {
        let worst = 0, l1 = 0, total = 0;
        for (let j = 0; j <= prompt.length; j++) {
          const d = Math.abs(a[l]![j]! - b[l]![j]!);
          worst = Math.max(worst, d);
          l1 += d;
          total += a[l]![j]!;
        }
        // The two differ only by the q8_0 rounding of the query for the warm rows read in registers (head size 8:
        // a few hundredths at most); a mass mapped to the wrong positions is off by about the whole mass (L1 ~ 7-16).
        expect(worst, `layer ${l}`).toBeLessThan(0.05);
        expect(l1, `layer ${l}`).toBeLessThan(0.025 * hp.nHeads);
        expect(total).toBeCloseTo(hp.nHeads, 3);
      }
      // Every decode step of every layer was applied to the placements, the split ones included.
      const before = st.placementSteps;
      for (let i = 0; i < 10; i++) await split.eval([(i * 31 + 5) % hp.nVocab]);
      const after = split.kvStats().tiers!;
      expect(after.splitReads).toBe(11 * hp.nLayers);
      expect(after.placementSteps).toBe(before + 10 * hp.nLayers);
      expect(after.warmPromotions + after.promotions).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  });

  it('warm q8_0 rows read in registers: the logits do not depend on the thread count', async () => {
    const logits: Float32Array[][] = [];
    for (const threads of [1, 2]) {
      const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 512, batchSize: 16, threads });
      try {
        const hp = m.info.hparams!;
        expect(m.info.threads).toBe(threads);
        const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: withMass(m, 512, 300_000), warm: 'q8_0' } });
        const out: Float32Array[] = [await s.eval(ids(300, hp.nVocab))];
        for (let i = 0; i < 20; i++) out.push(await s.eval([(i * 31 + 5) % hp.nVocab]));
        expect(s.kvStats().tiers!.splitReads).toBeGreaterThan(0);
        logits.push(out);
      } finally {
        m.dispose();
      }
    }
    expect(logits[1]).toEqual(logits[0]);
  });

  it('a broken dequantization (warm scales doubled) falls outside the q8_0 tolerance', async () => {
    const m = await stories();
    try {
      const hp = m.info.hparams!;
      const plain = m.createSession();
      const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: withMass(m, 512, 300_000), warm: 'q8_0' } });
      const prompt = ids(300, hp.nVocab);
      await plain.eval(prompt);
      await s.eval(prompt);
      // Every f16 block scale of the warm pool, exponent + 1 (times 2): what a dequantizer with a wrong scale reads.
      const kv = (s as unknown as { kv: Record<string, unknown> }).kv;
      const kern = (m as unknown as { kern: { memory: WebAssembly.Memory } }).kern;
      const el = kv.warmElement as { rowBytes: number; qBlock: number };
      const pool = kv.warm as number;
      const bytes = 2 * hp.nLayers * (kv.warmRows as number) * el.rowBytes;
      const dv = new DataView(kern.memory.buffer, pool, bytes);
      for (let o = 0; o < bytes; o += el.qBlock + 2) {
        const h = dv.getUint16(o, true);
        if (((h >> 10) & 31) > 0 && ((h >> 10) & 31) < 30) dv.setUint16(o, h + 0x400, true);
      }
      const r = await run(plain, s, hp.nVocab, 20);
      expect(r.worst).toBeGreaterThan(TOL.q8_0.worst);
    } finally {
      m.dispose();
    }
  });

  it('stays within budgets of every size and warm fraction, and refuses one too small for the pinned rows', async () => {
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 256, batchSize: 16 });
    try {
      const hp = m.info.hparams!;
      for (const [pools, warmFraction, warm] of [[200_000, 0.3, 'q8_0'], [250_000, 0.2, 'q8_0'], [250_000, 0.6, 'q4_0'], [400_000, 0.5, 'q4_0']] as const) {
        const budget = withMass(m, 256, pools);
        const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, warm, warmFraction } });
        await s.eval(ids(200, hp.nVocab));
        const st = s.kvStats();
        expect(arenaBytes(st), `${budget} ${warmFraction} ${warm}`).toBeLessThanOrEqual(budget);
        expect(st.tiers!.warmRowsPerLayer).toBeGreaterThanOrEqual(36);
        expect(st.tiers!.hotRowsPerLayer).toBeGreaterThanOrEqual(36);
        s.dispose();
      }
      expect(() => m.createSession({ kv: { policy: 'tiered', budgetBytes: withMass(m, 256, 150_000), warm: 'q8_0', warmFraction: 0.05 } })).toThrow(/kv\.budgetBytes/);
    } finally {
      m.dispose();
    }
  });
});

describe('tiered KV cache options', () => {
  it('resolved options validate again unchanged (a draft model reuses them), for every policy and all tier fields', async () => {
    const { validateKVOptions } = await import('../engine/kv/options.js');
    const all = [
      { policy: 'tiered', budgetBytes: 1e6, warm: 'q8_0', warmFraction: 0.3, cold: 'file', coldPath: tmpdir(), placement: 'attention',
        migrationRatio: 0.5, maxMigrationsPerStep: 3, restore: { l: 4 }, activations: 'f16', coldBandwidth: 1e8 },
      { policy: 'tiered', budgetBytes: 1e6, coldKeep: 'activations', placement: 'first-come' },
      { policy: 'tiered', budgetBytes: 1e6, warm: 'q4_0', restore: 'auto' },
      {}, { policy: 'bmc', r: 8 }, { policy: 'paged' }, { policy: 'concat', type: 'f16' },
    ] as const;
    for (const o of all) {
      const r = validateKVOptions(o as never);
      expect(validateKVOptions(r), JSON.stringify(o)).toEqual(r);
    }
  });

  it('names the field of every bad warm/cold option', async () => {
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 128 });
    try {
      const bad: [object, RegExp][] = [
        [{ policy: 'tiered', budgetBytes: 1e6, warm: 'q5' }, /kv\.warm/],
        [{ policy: 'bmc', warm: 'q8_0' }, /kv\.warm/],
        [{ policy: 'tiered', budgetBytes: 1e6, type: 'q8_0', warm: 'q8_0' }, /kv\.warm.*q4_0/],
        [{ policy: 'tiered', budgetBytes: 1e6, warm: 'q8_0', warmFraction: 1 }, /kv\.warmFraction/],
        [{ policy: 'tiered', budgetBytes: 1e6, cold: 'disk' }, /kv\.cold/],
        [{ policy: 'tiered', budgetBytes: 1e6, cold: 'opfs' }, /kv\.cold.*openOpfsColdFile/],
        [{ policy: 'bmc', cold: 'file' }, /kv\.cold/],
        [{ policy: 'tiered', budgetBytes: 1e6, coldPath: '/tmp' }, /kv\.coldPath/],
        [{ policy: 'tiered', budgetBytes: 1e6, cold: 'file', coldPath: '/nonexistent/dir' }, /kv\.coldPath/],
      ];
      for (const [kv, re] of bad) {
        expect(() => m.createSession({ kv } as never), JSON.stringify(kv)).toThrow(OptionError);
        expect(() => m.createSession({ kv } as never), JSON.stringify(kv)).toThrow(re);
      }
      expect(parseKVWarmFlag('q4_0')).toBe('q4_0');
      expect(() => parseKVWarmFlag('q2')).toThrow(/--kv-warm/);
      expect(parseKVColdFlag('file')).toBe('file');
      expect(() => parseKVColdFlag('opfs')).toThrow(/--kv-cold/);
    } finally {
      m.dispose();
    }
    const handle = { kind: 'file', read: () => 0, write: () => {}, close: () => {} };
    await expect(loadModel(join(MODELS, 'stories260K.gguf'), { kv: { policy: 'tiered', budgetBytes: 1e6, cold: handle } })).rejects.toThrow(/kv\.cold/);
  });
});
