/**
 * The tiered KV cache (engine/kv/tiered.ts): hot rows in the arena, cold rows in host memory staged for attention.
 * Both tiers hold the cache's element type, so logits must equal the untiered engine's bit for bit while most rows
 * are cold; the arena bytes stay within the budget; and a long run over a tiny synthetic model completes under a
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

const arenaBytes = (s: KVStats) => s.bytes + s.overheadBytes;
const ids = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + 13) % (vocab - 1)));

/** The smallest budget with `hot` slots per layer: fixed bytes + hot rows (see tiered.ts arenaBytes). */
function budgetFor(L: number, ctx: number, rowBytes: number, rowFloats: number, hot: number): number {
  return 2 * L * ctx * 4 + 2 * L * hot * rowBytes + 2 * ctx * rowBytes + 2 * 128 * rowFloats * 4;
}

describe('tiered KV cache', () => {
  it.each(['f32', 'q8_0'] as const)('stories260K, %s rows: logits equal the untiered cache\'s while most rows are cold', async (type) => {
    const ctx = 256;
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: ctx, batchSize: 16 });
    try {
      const hp = m.info.hparams!;
      const rowFloats = hp.nKVHeads * hp.headDim;
      const rowBytes = kvElement(type, hp.nKVHeads, hp.headDim).rowBytes;
      const budget = budgetFor(hp.nLayers, ctx, rowBytes, rowFloats, 48);
      const plain = m.createSession({ kv: { type } });
      const tiered = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget, type } });
      const prompt = ids(150, hp.nVocab);
      expect(await tiered.eval(prompt, { logits: 'all' })).toEqual(await plain.eval(prompt, { logits: 'all' }));
      // Then one token at a time, with a rollback in the middle.
      for (let i = 0; i < 60; i++) {
        const t = [(i * 31 + 5) % hp.nVocab];
        expect(await tiered.eval(t)).toEqual(await plain.eval(t));
        if (i === 30) { tiered.truncate(170); plain.truncate(170); }
      }
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

  it('places tokens by attention mass when the session traces: promotions happen, logits unchanged', async () => {
    const ctx = 256;
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: ctx, batchSize: 16 });
    try {
      const hp = m.info.hparams!;
      const rowFloats = hp.nKVHeads * hp.headDim;
      const budget = budgetFor(hp.nLayers, ctx, rowFloats * 4, rowFloats, 40);
      const plain = m.createSession();
      const tiered = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget }, trace: new TraceRecorder({ nLayers: hp.nLayers, topK: 8 }) });
      const prompt = ids(64, hp.nVocab);
      expect(await tiered.eval(prompt)).toEqual(await plain.eval(prompt));
      for (let i = 0; i < 80; i++) {
        const t = [(i * 17 + 3) % hp.nVocab];
        expect(await tiered.eval(t)).toEqual(await plain.eval(t));
      }
      const st = tiered.kvStats().tiers!;
      expect(st.promotions).toBeGreaterThan(0);
      expect(st.promotedBytes).toBeGreaterThan(0);
      expect(arenaBytes(tiered.kvStats())).toBeLessThanOrEqual(budget);
    } finally {
      m.dispose();
    }
  });

  it('a synthetic model runs 4096 tokens with a budget of 1/8 of the rows (bench:tiers --full runs 16k)', async () => {
    const L = 16;
    const ctx = 4096;
    const bytes = makeTinyLlama({ dim: 64, heads: 2, kvHeads: 2, layers: L, ffn: 32, vocab: 260, contextLength: ctx });
    const m = await loadModel(bytes, { contextLength: ctx });
    try {
      const full = 2 * L * ctx * 64 * 4; // every row of K and V, f32
      const budget = Math.floor(full / 8);
      const s = m.createSession({ kv: { policy: 'tiered', budgetBytes: budget } });
      const step = 512;
      for (let at = 0; at < ctx; at += step) await s.eval(ids(step, 260));
      const st = s.kvStats();
      expect(st.length).toBe(ctx);
      expect(arenaBytes(st)).toBeLessThanOrEqual(budget);
      expect(st.tiers!.coldRows).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  }, 60_000);

  it('rejects a missing or too small budget, naming kv.budgetBytes', async () => {
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { contextLength: 128 });
    try {
      expect(() => m.createSession({ kv: { policy: 'tiered' } })).toThrow(OptionError);
      expect(() => m.createSession({ kv: { policy: 'tiered' } })).toThrow(/kv\.budgetBytes/);
      expect(() => m.createSession({ kv: { policy: 'tiered', budgetBytes: 1000 } })).toThrow(/kv\.budgetBytes/);
    } finally {
      m.dispose();
    }
  });
});
