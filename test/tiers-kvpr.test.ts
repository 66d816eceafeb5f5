/** The KVPR recompute/read split (engine/tiers/kvpr.ts): the GQA and MHA cases, and the closed form against brute force. */
import { describe, expect, it } from 'vitest';
import { OptionError } from '../engine/errors.js';
import { Rng } from '../engine/gguf/synth.js';
import { kvprSplit, kvprTime } from '../engine/tiers/kvpr.js';
import type { KvprRates, KvprShape } from '../engine/tiers/kvpr.js';

function bruteForce(shape: KvprShape, rates: KvprRates): { l: number; t: number } {
  let best = { l: 0, t: kvprTime(shape, rates, 0) };
  for (let l = 1; l <= shape.tokens; l++) {
    const t = kvprTime(shape, rates, l);
    if (t < best.t) best = { l, t };
  }
  return best;
}

// A slow cold tier (1 GB/s, e.g. a file or OPFS) and a CPU that does 50 GFLOP/s in a batched projection.
const slowTier: KvprRates = { readBytesPerSec: 1e9, matmulFlopsPerSec: 50e9 };

describe('KVPR split', () => {
  it('GQA (Llama-3.2-1B: h 2048, 2 h_kv 1024): the activation row is larger than the KV row, so l = 0', () => {
    const shape = { hidden: 2048, kvWidth: 1024, actBytes: 4, kvBytes: 4, tokens: 4096 };
    for (const rates of [slowTier, { ...slowTier, readBytesPerSec: 1e8 }, { ...slowTier, matmulFlopsPerSec: 1e15 }]) {
      const s = kvprSplit(shape, rates);
      expect(s.l).toBe(0);
      expect(s.timeS).toBe(s.readAllS);
      expect(bruteForce(shape, rates).l).toBe(0);
    }
  });

  it('MHA (Llama-2-7B: h 4096, 2 h_kv 8192) on a slow tier: some tokens are recomputed, and that is faster', () => {
    const shape = { hidden: 4096, kvWidth: 8192, actBytes: 2, kvBytes: 2, tokens: 4096 };
    const s = kvprSplit(shape, slowTier);
    expect(s.l).toBeGreaterThan(0);
    expect(s.l).toBeLessThan(shape.tokens);
    expect(s.timeS).toBeLessThan(s.readAllS);
    expect(s.timeS).toBeLessThan(s.recomputeAllS);
    // At the balance point the recompute arm and the read arm take as long, within one token of either.
    expect(Math.abs(s.l * s.perToken.recomputeS - (shape.tokens - s.l) * s.perToken.kvS)).toBeLessThanOrEqual(s.perToken.recomputeS + s.perToken.kvS);
    // A faster matmul moves the split towards recompute; the paper's GPU example (312 TFLOP/s, 32 GB/s, fp16,
    // s = 1024, h = 4096) gives l* ~ 721.
    expect(kvprSplit(shape, { ...slowTier, matmulFlopsPerSec: 500e9 }).l).toBeGreaterThan(s.l);
    expect(kvprSplit({ ...shape, tokens: 1024 }, { readBytesPerSec: 32e9, matmulFlopsPerSec: 312e12 }).l).toBe(721);
  });

  it('KV stored compressed: dequantization counts on the read arm, and can make recompute pay even for GQA', () => {
    const q8 = { hidden: 2048, kvWidth: 1024, actBytes: 1.0625, kvBytes: 1.0625, tokens: 2048 };
    expect(kvprSplit(q8, { ...slowTier, dequantBytesPerSec: 1e12 }).l).toBe(0);
    // Activations kept at q8 while the KV row pays for a very slow dequantizer: a < k, so l > 0.
    const s = kvprSplit(q8, { ...slowTier, matmulFlopsPerSec: 1e13, dequantBytesPerSec: 1e8 });
    expect(s.l).toBeGreaterThan(0);
    expect(s.l).toBe(bruteForce(q8, { ...slowTier, matmulFlopsPerSec: 1e13, dequantBytesPerSec: 1e8 }).l);
  });

  it('without overlap the choice is all or nothing', () => {
    const shape = { hidden: 4096, kvWidth: 8192, actBytes: 2, kvBytes: 2, tokens: 300 };
    expect(kvprSplit(shape, { ...slowTier, overlap: false }).l).toBe(0); // a + f > k on this CPU
    expect(kvprSplit(shape, { readBytesPerSec: 1e9, matmulFlopsPerSec: 1e14, overlap: false }).l).toBe(300);
  });

  it('the closed form agrees with a brute-force minimum on random shapes and rates', () => {
    const rng = new Rng(2024);
    for (let c = 0; c < 300; c++) {
      const shape: KvprShape = {
        hidden: 64 * (1 + rng.int(128)),
        kvWidth: 64 * (1 + rng.int(256)),
        actBytes: [4, 2, 1.0625][rng.int(3)]!,
        kvBytes: [4, 2, 1.0625, 0.5625][rng.int(4)]!,
        tokens: rng.int(600),
      };
      const rates: KvprRates = {
        readBytesPerSec: 10 ** (7 + 4 * rng.next()),
        matmulFlopsPerSec: 10 ** (9 + 5 * rng.next()),
        dequantBytesPerSec: rng.next() < 0.5 ? undefined : 10 ** (8 + 3 * rng.next()),
        overlap: rng.next() < 0.8,
      };
      const s = kvprSplit(shape, rates);
      const b = bruteForce(shape, rates);
      expect(s.timeS).toBeLessThanOrEqual(b.t * (1 + 1e-12));
      expect(Math.abs(s.timeS - b.t)).toBeLessThanOrEqual(b.t * 1e-12);
    }
  });

  it('bad inputs are OptionErrors naming the field', () => {
    const shape = { hidden: 4096, kvWidth: 8192, actBytes: 2, kvBytes: 2, tokens: 10 };
    expect(() => kvprSplit({ ...shape, hidden: 0 }, slowTier)).toThrow(/hidden/);
    expect(() => kvprSplit({ ...shape, tokens: 1.5 }, slowTier)).toThrow(/tokens/);
    expect(() => kvprSplit(shape, { ...slowTier, readBytesPerSec: NaN })).toThrow(OptionError);
    expect(() => kvprTime(shape, slowTier, 11)).toThrow(/option l/);
  });
});
