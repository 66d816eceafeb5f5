/**
 * Attention mass for traces: per layer and query row, the softmax(scale * q·K) weight each cached token receives,
 * summed over the query heads (so a row's masses sum to nHeads). This is a separate, simple path that runs only when
 * a session traces: it keeps its own f32 copy of every layer's K rows (taken as the projections wrote them, after
 * RoPE, before the cache converts them to its element type) and computes in f64 in JS, so the fast kernel is
 * untouched (a tiered cache's placement takes its mass from the kernel instead: wasm/attention.ts attn_mass). For f16/q8_0 caches the mass is therefore that of the unrounded keys (a trace, not the logits).
 */
import { OptionError } from '../errors.js';
import type { TraceRecorder } from './trace.js';

export interface AttentionMassShape { nLayers: number; nHeads: number; nKVHeads: number; headDim: number }

/** Softmax-weighted mass of tokens 0..len-1 for one query row `q` (nHeads heads) over K rows `keys` (kvDim apart). */
export function attentionMass(q: ArrayLike<number>, keys: ArrayLike<number>, len: number, s: AttentionMassShape, scale: number): Float64Array {
  const { nHeads, nKVHeads, headDim } = s;
  const kvDim = nKVHeads * headDim;
  const group = nHeads / nKVHeads;
  const mass = new Float64Array(len);
  const score = new Float64Array(len);
  for (let h = 0; h < nHeads; h++) {
    const qo = h * headDim;
    const ko = Math.floor(h / group) * headDim;
    let max = -Infinity;
    for (let j = 0; j < len; j++) {
      let d = 0;
      const kb = j * kvDim + ko;
      for (let c = 0; c < headDim; c++) d += q[qo + c]! * keys[kb + c]!;
      score[j] = d * scale;
      if (score[j]! > max) max = score[j]!;
    }
    let sum = 0;
    for (let j = 0; j < len; j++) sum += score[j] = Math.exp(score[j]! - max);
    for (let j = 0; j < len; j++) mass[j]! += score[j]! / sum;
  }
  return mass;
}

/**
 * Feeds a TraceRecorder from the forward pass: every query row is one step (prefill rows included, so a chunked
 * prompt and one token at a time give the same trace). The graph calls `layer()` after RoPE for each layer of a
 * chunk and `chunkDone()` after the last layer; the records go out step by step, layers in order.
 */
export class AttentionTracer {
  private keys: Float32Array[];
  private len = 0;
  private pending: Float64Array[][] = [];
  private readonly kvDim: number;

  constructor(readonly recorder: TraceRecorder, readonly shape: AttentionMassShape, private readonly contextLength: number) {
    if (recorder.nLayers !== shape.nLayers) throw new OptionError('trace', `the recorder has ${recorder.nLayers} layers, the model ${shape.nLayers}`);
    this.kvDim = shape.nKVHeads * shape.headDim;
    // Grown as tokens come (a trace of a short run of a long-context model stays small).
    const initial = Math.min(contextLength, 256);
    this.keys = Array.from({ length: shape.nLayers }, () => new Float32Array(initial * this.kvDim));
  }

  /** Tokens whose keys are kept. */
  get length(): number {
    return this.len;
  }

  /** Layer `l` of a chunk of n rows at positions pos0..: q (n x nHeads*headDim) and the chunk's K rows (n x kvDim). */
  layer(l: number, pos0: number, n: number, q: Float32Array, k: Float32Array, scale: number): void {
    if (pos0 !== this.len) throw new OptionError('trace', `a chunk at position ${pos0}, but the trace holds ${this.len} tokens`);
    let buf = this.keys[l]!;
    const need = (pos0 + n) * this.kvDim;
    if (buf.length < need) {
      const grown = new Float32Array(Math.min(this.contextLength * this.kvDim, Math.max(need, buf.length * 2)));
      grown.set(buf);
      this.keys[l] = buf = grown;
    }
    buf.set(k.subarray(0, n * this.kvDim), pos0 * this.kvDim);
    const qDim = this.shape.nHeads * this.shape.headDim;
    for (let i = 0; i < n; i++) {
      (this.pending[i] ??= [])[l] = attentionMass(q.subarray(i * qDim, (i + 1) * qDim), buf, pos0 + i + 1, this.shape, scale);
    }
  }

  chunkDone(n: number): void {
    for (let i = 0; i < n; i++) {
      const step = this.recorder.steps;
      for (let l = 0; l < this.shape.nLayers; l++) this.recorder.record(l, step, this.pending[i]![l]!);
    }
    this.pending = [];
    this.len += n;
  }

  /** Rollback: forgets keys past `len`. The recorder refuses shorter steps afterwards (a trace is one sequence). */
  truncate(len: number): void {
    this.len = Math.min(this.len, len);
  }
}
