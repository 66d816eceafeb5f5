/**
 * KVPR's split between recomputing and reading cold KV rows (arXiv 2411.17089; papers.md 2.4 and 4.6), as pure
 * arithmetic for one layer.
 *
 * To restore s cold tokens, read the saved layer inputs (activations) of the first l tokens and recompute their K
 * and V with the layer's projections (RoPE again at their original positions), while the stored K/V of the other
 * s - l tokens is read (and dequantized when stored compressed). With per-token times
 *   a = h * actBytes / readBw                          (read one activation row)
 *   f = 2 * h * kvWidth / matmulFlops                  (K and V projections: h x kvWidth multiply-adds)
 *   k = kvWidth * kvBytes * (1 / readBw + 1 / dequantBw)  (read one KV row, then dequantize it)
 * the restore takes T(l) = l*a + max(l*f, (s - l)*k) when recompute and reading overlap (workers, async reads),
 * and T(l) = l*a + l*f + (s - l)*k when they do not.
 *
 * With overlap, T falls with slope a - k until the two arms balance at l_b = s*k / (f + k), and rises after, so the
 * best l is l_b rounded (to the better neighbour) when a < k and 0 otherwise. a < k needs the activation row to be
 * smaller than the KV row: with equal element sizes and no dequantization, h < kvWidth = 2*h_kv, which MHA models
 * meet (kvWidth = 2h) and GQA models do not (Llama-3.2-1B: h = 2048, 2*h_kv = 1024), so GQA gets l = 0.
 * Without overlap T is linear in l: all tokens are recomputed when a + f < k, none otherwise.
 */
import { OptionError } from '../errors.js';

export interface KvprShape {
  /** Width h of the layer input (the hidden size). */
  hidden: number;
  /** K plus V values per token, 2 * n_kv_heads * head_dim. */
  kvWidth: number;
  /** Bytes per stored activation element (4 for f32, 2 for f16). */
  actBytes: number;
  /** Bytes per stored KV element (4, 2, 34/32 for q8_0, 18/32 for q4_0). */
  kvBytes: number;
  /** Cold tokens to restore (s). */
  tokens: number;
}

export interface KvprRates {
  /** Read bandwidth of the cold tier, bytes/s. */
  readBytesPerSec: number;
  /** Throughput of the batch-l projection matmul, FLOP/s. */
  matmulFlopsPerSec: number;
  /** Compressed KV bytes dequantized per second; omitted or Infinity when the KV is stored unquantized. */
  dequantBytesPerSec?: number;
  /** Recompute overlaps the KV read (default true). */
  overlap?: boolean;
}

export interface KvprSplit {
  /** Tokens to recompute (the first l of the cold segment). */
  l: number;
  /** Restore time at l, seconds. */
  timeS: number;
  /** Restore time reading every row (l = 0) and recomputing every row (l = s). */
  readAllS: number;
  recomputeAllS: number;
  /** Per-token times a, f, k of the file comment. */
  perToken: { activationS: number; recomputeS: number; kvS: number };
}

function perToken(shape: KvprShape, rates: KvprRates) {
  const pos = (name: string, v: number) => {
    if (!(v > 0) || !Number.isFinite(v)) throw new OptionError(name, `${v} is not a positive finite number`);
  };
  pos('hidden', shape.hidden);
  pos('kvWidth', shape.kvWidth);
  pos('actBytes', shape.actBytes);
  pos('kvBytes', shape.kvBytes);
  pos('readBytesPerSec', rates.readBytesPerSec);
  pos('matmulFlopsPerSec', rates.matmulFlopsPerSec);
  const deq = rates.dequantBytesPerSec ?? Infinity;
  if (!(deq > 0)) throw new OptionError('dequantBytesPerSec', `${deq} is not a positive number`);
  if (!Number.isInteger(shape.tokens) || shape.tokens < 0) throw new OptionError('tokens', `${shape.tokens} is not an integer >= 0`);
  const kvRow = shape.kvWidth * shape.kvBytes;
  return {
    activationS: (shape.hidden * shape.actBytes) / rates.readBytesPerSec,
    recomputeS: (2 * shape.hidden * shape.kvWidth) / rates.matmulFlopsPerSec,
    kvS: kvRow / rates.readBytesPerSec + kvRow / deq,
  };
}

/** T(l): the modelled time to restore the segment recomputing its first l tokens. */
export function kvprTime(shape: KvprShape, rates: KvprRates, l: number): number {
  const { activationS: a, recomputeS: f, kvS: k } = perToken(shape, rates);
  if (!Number.isInteger(l) || l < 0 || l > shape.tokens) throw new OptionError('l', `${l} is not an integer in [0, ${shape.tokens}]`);
  const rest = (shape.tokens - l) * k;
  return l * a + (rates.overlap === false ? l * f + rest : Math.max(l * f, rest));
}

/** The l that minimises T(l) (the smaller one on a tie), from the closed form. */
export function kvprSplit(shape: KvprShape, rates: KvprRates): KvprSplit {
  const t = perToken(shape, rates);
  const s = shape.tokens;
  let l = 0;
  if (rates.overlap === false) {
    if (t.activationS + t.recomputeS < t.kvS) l = s;
  } else if (t.activationS < t.kvS && s > 0) {
    const lb = (s * t.kvS) / (t.recomputeS + t.kvS);
    const lo = Math.min(s, Math.floor(lb));
    const hi = Math.min(s, lo + 1);
    l = kvprTime(shape, rates, hi) < kvprTime(shape, rates, lo) ? hi : lo;
  }
  return { l, timeS: kvprTime(shape, rates, l), readAllS: kvprTime(shape, rates, 0), recomputeAllS: kvprTime(shape, rates, s), perToken: t };
}
