/**
 * The tiered KV cache (engine/kv/tiered.ts): hot rows in the arena, cold rows in host memory staged for attention.
 * Both tiers hold the cache's element type, so logits must equal the untiered engine's bit for bit while most rows
 * are cold; the arena bytes stay within the budget; placement runs from the kernel's attention mass at every step
 * (migrations counted, bounded by the migration options); and a long run over a tiny synthetic model completes under a
 * budget holding 1/8 of the rows.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, OptionError } from '../engine/index.js';
import type { KVStats } from '../engine/kv/cache.js';
import { kvElement } from '../engine/kv/element.js';
import { makeTinyLlama } from '../engine/gguf/synth.js';
import { TraceRecorder } from '../engine/tiers/trace.js';
import { MODELS } from './shared-paths.js';
import { arenaBytes, expectPlainLogits, ids } from './tier-helpers.js';

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/**
 * The smallest budget with `hot` slots per layer: fixed bytes + hot rows (see tiered.ts arenaBytes), with the
 * attention-mass buffers (nHeads weights and one mass per position) unless nHeads is 0 (first-come placement).
 */
function budgetFor(L: number, ctx: number, rowBytes: number, rowFloats: number, hot: number, nHeads: number): number {
  return 2 * L * ctx * 4 + 2 * L * hot * rowBytes + 2 * ctx * rowBytes + 2 * 128 * rowFloats * 4 + (nHeads > 0 ? 4 * (nHeads + 1) * ctx : 0);
}

describe('tiered KV cache', () => {
  it.each(['f32', 'q8_0'] as const)('stories260K, %s rows: logits equal the untiered cache\'s while most rows are cold', async (type) => {
    const ctx = 256;
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: ctx, batchSize: 16 });
    try {
      const hp = m.info.hparams!;
      const rowFloats = hp.nKVHeads * hp.headDim;
      const rowBytes = kvElement(type, hp.nKVHeads, hp.headDim).rowBytes;
      const budget = budgetFor(hp.nLayers, ctx, rowBytes, rowFloats, 48, hp.nHeads);
      const plain = m.createSession({ kv: { type } });
      const tiered = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, type } });
      // The prompt, then one token at a time, with a rollback in the middle.
      await expectPlainLogits(tiered, plain, hp.nVocab);
      const s = tiered.kvStats();
      expect(s.policy).toBe('tiered');
      expect(arenaBytes(s)).toBeLessThanOrEqual(budget);
      expect(s.tiers!.hotRowsPerLayer).toBe(48);
      expect(s.tiers!.hotRows).toBeLessThanOrEqual(48 * hp.nLayers);
      expect(s.tiers!.coldRows).toBeGreaterThan(s.length * hp.nLayers / 2);
      expect(s.tiers!.demotions).toBeGreaterThan(0);
      expect(s.tiers!.stagedBytes).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  });

  it('places tokens by the kernel\'s attention mass at every step, without a trace: migrations counted, logits unchanged', async () => {
    const ctx = 256;
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: ctx, batchSize: 16 });
    try {
      const hp = m.info.hparams!;
      const rowFloats = hp.nKVHeads * hp.headDim;
      const budget = budgetFor(hp.nLayers, ctx, rowFloats * 4, rowFloats, 40, hp.nHeads);
      const plain = m.createSession();
      const tiered = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget } });
      const capped = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, maxMigrationsPerStep: 1 } });
      const still = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, migrationRatio: 0 } });
      const firstCome = m.createSession({ kv: { policy: 'tiered', budgetBytes: budgetFor(hp.nLayers, ctx, rowFloats * 4, rowFloats, 40, 0), placement: 'first-come' } });
      const all = [tiered, capped, still, firstCome];
      const prompt = ids(64, hp.nVocab);
      const want = await plain.eval(prompt);
      for (const s of all) expect(await s.eval(prompt)).toEqual(want);
      const steps = 80;
      for (let i = 0; i < steps; i++) {
        const t = [(i * 17 + 3) % hp.nVocab];
        const w = await plain.eval(t);
        for (const s of all) expect(await s.eval(t)).toEqual(w);
      }
      const st = tiered.kvStats().tiers!;
      // One placement step per layer for each chunk of the prompt (16 rows) and each decode step.
      expect(st.placementSteps).toBe(hp.nLayers * (64 / 16 + steps));
      expect(st.promotions).toBeGreaterThan(0);
      expect(st.promotedBytes).toBe(st.promotions * 2 * rowFloats * 4);
      expect(st.hostWrittenBytes).toBe(hp.nLayers * (64 + steps) * 2 * rowFloats * 4);
      expect(st.maxPromotionsPerStep).toBeGreaterThan(1);
      const cs = capped.kvStats().tiers!;
      expect(cs.promotions).toBeGreaterThan(0);
      expect(cs.maxPromotionsPerStep).toBe(1);
      expect(still.kvStats().tiers!.promotions).toBe(0);
      const fs = firstCome.kvStats().tiers!;
      expect(fs.promotions).toBe(0);
      expect(fs.placementSteps).toBe(0);
      for (const s of all) expect(arenaBytes(s.kvStats())).toBeLessThanOrEqual(s === firstCome ? budgetFor(hp.nLayers, ctx, rowFloats * 4, rowFloats, 40, 0) : budget);
      // With a trace recorded too (the f64 path), placement is the same: it comes from the kernel either way.
      const traced = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget }, trace: new TraceRecorder({ nLayers: hp.nLayers, topK: 8 }) });
      await traced.eval(prompt);
      for (let i = 0; i < steps; i++) await traced.eval([(i * 17 + 3) % hp.nVocab]);
      // Times are not counts: the restore's and the staging/expansion clocks.
      const counts = (t: NonNullable<KVStats['tiers']>) => ({ ...t, stageMs: 0, expandMs: 0, restore: { ...t.restore, restoreMs: 0 } });
      expect(counts(traced.kvStats().tiers!)).toEqual(counts(st));
    } finally {
      m.dispose();
    }
  });

  it('a synthetic model runs 16k tokens with a budget of 1/8 of the rows, and generates the untiered logits', async () => {
    // 16 layers and rows of 128 bytes: the fixed part (one layer's staging rows at the full context, 4-byte table
    // entries per position and layer) must leave room for hot rows within 1/8 of all rows.
    const L = 16;
    const ctx = 16384;
    const rowFloats = 32; // 2 KV heads of 16
    const bytes = makeTinyLlama({ dim: 32, heads: 2, kvHeads: 2, layers: L, ffn: 32, vocab: 260, contextLength: ctx });
    const m = await loadModel(bytes, { contextLength: ctx, threads: 1 });
    try {
      const full = 2 * L * ctx * rowFloats * 4; // every row of K and V, f32
      const budget = Math.floor(full / 8);
      const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget } });
      const ref = m.createSession({ kv: { policy: 'static' } });
      const step = 1024;
      const gen = 4;
      for (let at = 0; at < ctx - gen; at += step) {
        const chunk = ids(Math.min(step, ctx - gen - at), 260, at);
        await s.eval(chunk);
        await ref.eval(chunk);
        expect(arenaBytes(s.kvStats())).toBeLessThanOrEqual(budget);
        // Let the event loop turn: a minute of kernels without it makes vitest's worker RPC time out.
        await new Promise((r) => setTimeout(r, 0));
      }
      // Decode to the end of the context: greedy tokens from the tiered session, the same fed to the reference.
      let a = await s.eval([7]);
      let b = await ref.eval([7]);
      for (let i = 1; i < gen; i++) {
        expect(bits(a)).toEqual(bits(b));
        let next = 0;
        for (let j = 1; j < a.length; j++) if (a[j]! > a[next]!) next = j;
        a = await s.eval([next]);
        b = await ref.eval([next]);
      }
      expect(bits(a)).toEqual(bits(b));
      const st = s.kvStats();
      expect(st.length).toBe(ctx);
      expect(arenaBytes(st)).toBeLessThanOrEqual(budget);
      expect(st.tiers!.coldRows).toBeGreaterThan((L * ctx * 3) / 4);
    } finally {
      m.dispose();
    }
  }, 300_000);

  it('rejects a missing or too small budget, naming kv.budgetBytes', async () => {
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 128 });
    try {
      expect(() => m.createSession({ kv: { policy: 'tiered' } })).toThrow(OptionError);
      expect(() => m.createSession({ kv: { policy: 'tiered' } })).toThrow(/kv\.budgetBytes/);
      expect(() => m.createSession({ kv: { policy: 'tiered', budgetBytes: 1000 } })).toThrow(/kv\.budgetBytes/);
      const tiered = { policy: 'tiered' as const, budgetBytes: 1 << 20 };
      for (const [kv, field] of [
        [{ ...tiered, migrationRatio: 1.5 }, 'migrationRatio'], [{ ...tiered, migrationRatio: NaN }, 'migrationRatio'],
        [{ ...tiered, maxMigrationsPerStep: -1 }, 'maxMigrationsPerStep'], [{ ...tiered, maxMigrationsPerStep: 0.5 }, 'maxMigrationsPerStep'],
        [{ ...tiered, placement: 'lru' }, 'placement'], [{ policy: 'bmc', migrationRatio: 0.5 }, 'migrationRatio'],
      ] as const) {
        expect(() => m.createSession({ kv: kv as never })).toThrow(OptionError);
        expect(() => m.createSession({ kv: kv as never })).toThrow(new RegExp(`kv\\.${field}`));
      }
    } finally {
      m.dispose();
    }
  });
});
