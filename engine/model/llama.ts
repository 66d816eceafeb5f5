/**
 * The Llama forward pass. Reads like the math: for each layer,
 *   h = x + Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
 *   x = h + Wdown · (silu(Wgate·norm(h)) * Wup·norm(h))
 * then logits = Wout · norm(x). Every step is one call into the wasm kernels on byte offsets into the arena.
 * A chunk of n tokens goes through each weight matrix as one n-row matrix multiply (batched prefill); new K/V rows
 * are written by the projections where the KV cache says (its own rows for contiguous layouts), then committed, and
 * attention runs through the cache, which picks the kernel for its layout: the graph never sees the layout.
 */
import type { KVCache } from '../kv/cache.js';
import { AttentionWorkspace, attentionWorkspaceBytes } from '../kv/attend.js';
import type { Kernels } from '../runtime/kernels.js';
import type { LlamaHParams } from './hparams.js';
import { RopeTable } from './rope.js';
import type { LlamaWeights, Matrix } from './weights.js';
import { actFormat, matmulKernelName, prepareActivations } from './matmul.js';
import type { ActFormat } from './matmul.js';
import type { AttentionTracer } from '../tiers/attention-mass.js';
import type { KVProjector, ProjectionScratch } from '../tiers/restore.js';

/** Scratch buffers for one chunk of up to `batch` tokens; shared by all sessions of a model (eval is not reentrant). */
interface Scratch {
  x: number; xb: number; q: number; att: number; xb2: number; hb: number; hb2: number;
  /** Activations in the formats the weight types take (a group of up to 3 matrices needs at most 3 formats). */
  act: number[];
  rope: number; logits: number;
}

/** Output rows per thread share are multiples of this (the matmul kernels' row tile). */
const ROW_GRANULE = 16;

export const LOGITS_ROWS = 16;

export function scratchBytes(hp: LlamaHParams, batch: number, contextLength: number, threads = 1): number {
  const qDim = hp.nHeads * hp.headDim;
  const maxCols = Math.max(hp.dim, hp.ffnDim, qDim);
  const f = (n: number) => Math.ceil((n * 4) / 64) * 64;
  const act = f(batch * maxCols) + 64;
  return f(batch * hp.dim) * 3 + f(batch * qDim) * 2 + f(batch * hp.ffnDim) * 2 + act * 3 +
    attentionWorkspaceBytes({ nHeads: hp.nHeads, headDim: hp.headDim, contextLength, batch }, threads) +
    f(batch * hp.headDim) + f(LOGITS_ROWS * hp.nVocab);
}

/** One matrix multiply of a group: y (n rows, ldy apart) = m · x. */
type MatmulOp = [m: Matrix, x: number, y: number, ldy?: number];

export class LlamaGraph {
  private readonly s: Scratch;
  private readonly ptrs: number[] = [];
  private readonly rope: RopeTable;
  private readonly ropeRow: Float32Array;
  private attn: AttentionWorkspace | undefined;

  constructor(
    private readonly kern: Kernels,
    readonly hp: LlamaHParams,
    private readonly w: LlamaWeights,
    readonly batch: number,
    readonly contextLength: number,
  ) {
    const qDim = hp.nHeads * hp.headDim;
    const maxCols = Math.max(hp.dim, hp.ffnDim, qDim);
    const a = (floats: number) => {
      const p = kern.alloc(floats * 4, 64);
      this.ptrs.push(p);
      return p;
    };
    // Room for the largest activation format: f32-sized rounded copies (q8 blocks need at most 36 bytes per 32 values,
    // q8_k 292 per 256).
    const actBytes = batch * maxCols * 4 + 64;
    try {
      this.s = {
        x: a(batch * hp.dim), xb: a(batch * hp.dim), xb2: a(batch * hp.dim),
        q: a(batch * qDim), att: a(batch * qDim), hb: a(batch * hp.ffnDim), hb2: a(batch * hp.ffnDim),
        act: [a(actBytes / 4), a(actBytes / 4), a(actBytes / 4)],
        rope: a(batch * hp.headDim), logits: a(LOGITS_ROWS * hp.nVocab),
      };
      this.attn = new AttentionWorkspace(kern, { nHeads: hp.nHeads, headDim: hp.headDim, contextLength, batch });
    } catch (e) {
      this.dispose();
      throw e;
    }
    this.rope = new RopeTable(hp, w.ropeFreqs);
    this.ropeRow = new Float32Array(batch * hp.headDim);
    const usesF32 = w.layers.every((L) => actFormat(L.wk.type) === 'f32' && actFormat(L.wv.type) === 'f32');
    this.projector = {
      nLayers: hp.nLayers,
      hidden: hp.dim,
      kvDim: hp.nKVHeads * hp.headDim,
      headDim: hp.headDim,
      actScratchBytes: (rows) => (usesF32 ? 0 : rows * hp.dim * 4 + 64),
      project: (l, x, n, positions, kOut, vOut, ws, alongside) => this.projectKV(l, x, n, positions, kOut, vOut, ws, alongside),
    };
  }

  dispose(): void {
    for (const p of this.ptrs.splice(0)) this.kern.free(p);
    this.attn?.dispose();
    this.attn = undefined;
  }

  /** Matrix multiplies of n activation rows as one job: each matrix's output rows are split across the threads. */
  private matmuls(n: number, ops: MatmulOp[], alongside?: () => void): void {
    this.kern.parallel(ops.map(([m, x, y, ldy]) => ({
      fn: matmulKernelName(m.type)!, args: [m.ptr, x, y, m.rows, m.cols, n, ldy ?? m.rows, 0, m.rows], lo: 7, hi: 8, granule: ROW_GRANULE,
      work: m.rows * m.cols * n,
    })), alongside);
  }

  /**
   * The K/V projections on their own, for a tiered cache that recomputes cold rows from saved layer inputs
   * (engine/tiers/restore.ts): the same activation formats, kernels, bias and RoPE as forward, so a row comes out
   * bit-identical to the one forward wrote from the same input.
   */
  readonly projector: KVProjector;

  private projectKV(l: number, x: number, n: number, positions: ArrayLike<number>, kOut: number, vOut: number, ws: ProjectionScratch, alongside?: () => void): void {
    const { hp, kern } = this;
    const L = this.w.layers[l]!;
    const kvDim = hp.nKVHeads * hp.headDim;
    const fk = actFormat(L.wk.type);
    const fv = actFormat(L.wv.type);
    let xk = x;
    if (fk !== 'f32') prepareActivations(kern, fk, x, (xk = ws.act[0]), n * hp.dim);
    let xv = fv === fk ? xk : x;
    if (fv !== 'f32' && fv !== fk) prepareActivations(kern, fv, x, (xv = ws.act[1]), n * hp.dim);
    const table = new Float32Array(n * hp.headDim);
    for (let i = 0; i < n; i++) this.rope.fill(positions[i]!, table, i * hp.headDim);
    kern.write(ws.rope, table);
    this.matmuls(n, [[L.wk, xk, kOut, kvDim], [L.wv, xv, vOut, kvDim]], alongside);
    this.addBias(kOut, L.bk, n, kvDim);
    this.addBias(vOut, L.bv, n, kvDim);
    kern.k.rope(kOut, ws.rope, n, hp.nKVHeads, hp.headDim, kvDim, 0);
  }

  /**
   * Returns a function giving, for a weight type, the activations `x` (n rows of `cols`) in the format that type's
   * kernel takes; each format is produced at most once per call.
   */
  private inputs(x: number, n: number, cols: number): (m: Matrix) => number {
    const done = new Map<ActFormat, number>();
    return (m) => {
      const fmt = actFormat(m.type);
      if (fmt === 'f32') return x;
      let p = done.get(fmt);
      if (p === undefined) {
        p = this.s.act[done.size]!;
        prepareActivations(this.kern, fmt, x, p, n * cols);
        done.set(fmt, p);
      }
      return p;
    };
  }

  private addBias(y: number, b: number | undefined, n: number, dim: number): void {
    if (b === undefined) return;
    for (let i = 0; i < n; i++) this.kern.k.add(y + i * dim * 4, b, y + i * dim * 4, dim);
  }

  /**
   * Runs `tokens` (at most `batch`) at positions kv.length.. and advances the cache. If `logitRows` is given, writes
   * the logits of those chunk rows (ascending) into out[outAt..]. A `tracer` gets each layer's queries and new keys
   * (copies; it computes attention mass on its own path).
   */
  forward(kv: KVCache, tokens: ArrayLike<number>, logitRows: number[], out: Float32Array, outAt: number, tracer?: AttentionTracer): void {
    const { hp, kern, s, w } = this;
    const k = kern.k;
    const n = tokens.length;
    const qDim = hp.nHeads * hp.headDim;
    const kvDim = hp.nKVHeads * hp.headDim;
    const pos0 = kv.length;
    kv.reserve(n);

    // Token embeddings (dequantized rows) and this chunk's rope angles.
    const e = w.tokEmbd;
    for (let i = 0; i < n; i++) {
      const t = tokens[i]!;
      if (!Number.isInteger(t) || t < 0 || t >= hp.nVocab) throw new RangeError(`token id ${t} is outside the vocabulary [0, ${hp.nVocab})`);
      k.dequantize_row(e.type, e.ptr + t * e.rowBytes, s.x + i * hp.dim * 4, hp.dim);
      this.rope.fill(pos0 + i, this.ropeRow, i * hp.headDim);
    }
    kern.write(s.rope, this.ropeRow.subarray(0, n * hp.headDim));

    const scale = Math.fround(1 / Math.sqrt(hp.headDim));
    for (let l = 0; l < hp.nLayers; l++) {
      const L = w.layers[l]!;
      // Where this chunk's K/V rows go: the cache decides (its own rows, or staging rows for a paged layout).
      const kRows = kv.newKeys(l);
      const vRows = kv.newValues(l);

      // Attention block.
      k.rmsnorm(s.x, L.attnNorm, s.xb, hp.dim, n, hp.rmsEps);
      kv.saveInputs?.(l, s.xb, n);
      const xin = this.inputs(s.xb, n, hp.dim);
      this.matmuls(n, [[L.wq, xin(L.wq), s.q], [L.wk, xin(L.wk), kRows, kvDim], [L.wv, xin(L.wv), vRows, kvDim]]);
      this.addBias(s.q, L.bq, n, qDim);
      this.addBias(kRows, L.bk, n, kvDim);
      this.addBias(vRows, L.bv, n, kvDim);
      k.rope(s.q, s.rope, n, hp.nHeads, hp.headDim, qDim, 0);
      k.rope(kRows, s.rope, n, hp.nKVHeads, hp.headDim, kvDim, 0);
      if (tracer) tracer.layer(l, pos0, n, kern.f32(s.q, n * qDim).slice(), kern.f32(kRows, n * kvDim).slice(), scale);
      kv.commitRows(l, pos0, n);
      kv.attend(l, s.q, s.att, this.attn!, n, pos0, hp.nHeads, qDim, qDim, scale);
      const ain = this.inputs(s.att, n, qDim);
      this.matmuls(n, [[L.wo, ain(L.wo), s.xb2]]);
      this.addBias(s.xb2, L.bo, n, hp.dim);
      k.add(s.x, s.xb2, s.x, n * hp.dim);

      // Feed-forward block (SwiGLU).
      k.rmsnorm(s.x, L.ffnNorm, s.xb, hp.dim, n, hp.rmsEps);
      const fin = this.inputs(s.xb, n, hp.dim);
      this.matmuls(n, [[L.gate, fin(L.gate), s.hb], [L.up, fin(L.up), s.hb2]]);
      k.silu_mul(s.hb, s.hb2, s.hb, n * hp.ffnDim);
      const din = this.inputs(s.hb, n, hp.ffnDim);
      this.matmuls(n, [[L.down, din(L.down), s.xb2]]);
      k.add(s.x, s.xb2, s.x, n * hp.dim);
    }
    kv.advance(n);
    tracer?.chunkDone(n);

    // Output head, LOGITS_ROWS rows at a time, only for the rows asked for.
    for (let g = 0; g < logitRows.length; g += LOGITS_ROWS) {
      const rows = logitRows.slice(g, g + LOGITS_ROWS);
      for (let j = 0; j < rows.length; j++) {
        k.rmsnorm(s.x + rows[j]! * hp.dim * 4, w.outputNorm, s.xb + j * hp.dim * 4, hp.dim, 1, hp.rmsEps);
      }
      const oin = this.inputs(s.xb, rows.length, hp.dim);
      this.matmuls(rows.length, [[w.output, oin(w.output), s.logits]]);
      out.set(kern.f32(s.logits, rows.length * hp.nVocab), outAt + g * hp.nVocab);
    }
  }
}
