/**
 * Running the attention kernel (wasm/attention.ts) over a KV layout. A call is up to three jobs: the queries prepared
 * for f16/q8 rows (prescaled or quantized once), the partial results of every work item (a KV head with its query
 * heads, over one sequence block of ATTN_SEQ_BLOCK positions) split across the threads, then their merge, split by
 * query rows. The sequence blocks are fixed by position, never by the thread
 * count, and the merge folds them in order, so results are identical for any thread count, any layout, and any
 * number of query rows in a call (rows are independent: prefill gives the same bits as one token at a time).
 *
 * The workspace (per-thread scratch and the partials) belongs to the model's graph and is shared by its sessions.
 */
import type { Kernels } from '../runtime/kernels.js';
import type { PoolCall } from '../runtime/pool.js';
import type { KVElement } from './element.js';

/** Positions per sequence block: wasm/attention.ts SEQ_BLOCK (a test checks they agree). */
export const ATTN_SEQ_BLOCK = 128;
/** Table block size that makes a one-entry table address a contiguous cache: wasm/attention.ts TABLE_CONTIGUOUS. */
export const CONTIGUOUS_BLOCK_ROWS = 1 << 30;
/** Bytes for partial results (at least one row at the full context); a call takes as many query rows as fit. */
const PART_BUDGET = 4 << 20;

/** Per-thread scratch bytes of the kernel for a head size: wasm/attention.ts attn_scratch_bytes. */
export function attnScratchBytes(headDim: number): number {
  const hd4 = (headDim + 3) & ~3;
  return (3 * ATTN_SEQ_BLOCK + 2 * ATTN_SEQ_BLOCK * hd4) * 4 + 64;
}

/** Bytes of one prepared query head: wasm/attention.ts attn_query_bytes. */
export function attnQueryBytes(headDim: number): number {
  return (((headDim + 3) & ~3) + 4) * 4;
}

const align64 = (n: number) => Math.ceil(n / 64) * 64;

export interface AttentionShape { nHeads: number; headDim: number; contextLength: number; batch: number }

/** Bytes of one query row's partial results over `positions` positions. */
function partRowBytes(nHeads: number, headDim: number, positions: number): number {
  return nHeads * Math.ceil(positions / ATTN_SEQ_BLOCK) * (headDim + 4) * 4;
}

/**
 * The buffer sizes: partials (a batch of rows at the full context, but within the budget unless one row needs more),
 * prepared queries (a batch of rows).
 */
function sizes(s: AttentionShape): { part: number; queries: number } {
  const row = partRowBytes(s.nHeads, s.headDim, s.contextLength);
  return {
    part: Math.max(row, Math.min(PART_BUDGET, s.batch * row)),
    queries: s.batch * s.nHeads * attnQueryBytes(s.headDim),
  };
}

/** Arena bytes of a workspace (for the memory plan). */
export function attentionWorkspaceBytes(s: AttentionShape, threads: number): number {
  const z = sizes(s);
  return align64(attnScratchBytes(s.headDim)) * threads + align64(z.part) + align64(z.queries);
}

export class AttentionWorkspace {
  readonly scratch: number;
  readonly scratchStride: number;
  readonly part: number;
  readonly partBytes: number;
  /** The prepared queries of a call (attn_queries), for up to `batch` rows. */
  readonly queries: number;
  readonly batch: number;

  constructor(private readonly kern: Kernels, s: AttentionShape) {
    this.scratchStride = align64(attnScratchBytes(s.headDim));
    const z = sizes(s);
    this.partBytes = z.part;
    this.batch = s.batch;
    const ptrs: number[] = [];
    try {
      for (const bytes of [this.scratchStride * kern.threads, z.part, z.queries]) {
        ptrs.push(kern.alloc(bytes, 64));
      }
    } catch (e) {
      for (const x of ptrs) kern.free(x);
      throw e;
    }
    [this.scratch, this.part, this.queries] = ptrs as [number, number, number];
  }

  dispose(): void {
    for (const x of [this.scratch, this.part, this.queries]) this.kern.free(x);
  }
}

/** Where a layer's rows are: block tables (u32 base pointers) of `blockRows` positions each, and their element type. */
export interface KVRowsView {
  kTable: number;
  vTable: number;
  blockRows: number;
  el: KVElement;
}

export interface AttendArgs {
  q: number; out: number; nQ: number; pos0: number; nHeads: number; nKVHeads: number; headDim: number;
  qStride: number; outStride: number; scale: number;
  /**
   * Optional: the attention mass of the last row (per position 0..pos0+nQ-1, its probability summed over the heads)
   * into `mass.out` (f32 each), through `mass.exp` (nHeads * (pos0 + nQ) f32 of arena scratch). The output is the
   * same bits with or without it.
   */
  mass?: { exp: number; out: number };
}

/** Arena bytes attend() needs for the mass of rows up to `positions` long: the per-head weights and the output. */
export function attentionMassBytes(nHeads: number, positions: number): { exp: number; out: number } {
  return { exp: 4 * nHeads * positions, out: 4 * positions };
}

/**
 * Causal attention of rows pos0.. over the rows of `view` (see wasm/attention.ts for q/out strides). `run` executes a
 * job (default: across the kernel threads); the calibration passes one that stays on the calling thread.
 */
export function attend(kern: Kernels, ws: AttentionWorkspace, view: KVRowsView, a: AttendArgs,
  run: (calls: PoolCall[]) => void = (c) => kern.parallel(c)): void {
  const { nHeads, nKVHeads, headDim } = a;
  if (a.nQ > ws.batch) throw new RangeError(`attention of ${a.nQ} query rows, more than the workspace's ${ws.batch}`);
  // Rows per call: as many as the partials buffer holds at the longest row of this call (rows are independent).
  const perCall = Math.max(1, Math.floor(ws.partBytes / partRowBytes(nHeads, headDim, a.pos0 + a.nQ)));
  for (let r0 = 0; r0 < a.nQ; r0 += perCall) {
    const n = Math.min(perCall, a.nQ - r0);
    const pos0 = a.pos0 + r0;
    const nSb = Math.ceil((pos0 + n) / ATTN_SEQ_BLOCK);
    const q = a.q + r0 * a.qStride * 4;
    if (view.el.type !== 'f32') {
      run([{ fn: 'attn_queries', args: [view.el.id, view.el.qBlock, q, ws.queries, nHeads, headDim, a.qStride, 0, n], lo: 7, hi: 8, granule: 1, work: 8 * n * nHeads * headDim }]);
    }
    const mass = r0 + n === a.nQ ? a.mass : undefined; // the last row is in the last call
    run([{
      fn: 'attn_partials',
      args: [q, ws.queries, view.kTable, view.vTable, view.blockRows, view.el.id, view.el.qBlock, ws.part, ws.scratch,
        n, nHeads, nKVHeads, headDim, pos0, view.el.rowBytes, a.qStride, a.scale, 0, nKVHeads * nSb, mass?.exp ?? 0],
      lo: 17, hi: 18, granule: 1, perThread: { arg: 8, stride: ws.scratchStride }, work: 2 * n * nHeads * headDim * (pos0 + n),
    }]);
    run([{
      fn: 'attn_merge',
      args: [ws.part, a.out + r0 * a.outStride * 4, n, nHeads, headDim, pos0, a.outStride, 0, n],
      lo: 7, hi: 8, granule: 1, work: 2 * n * nHeads * nSb * headDim,
    }]);
    if (mass) {
      run([{
        fn: 'attn_mass', args: [ws.part, mass.exp, mass.out, n, nHeads, headDim, pos0, 0, pos0 + n],
        lo: 7, hi: 8, granule: 4, work: 2 * nHeads * (pos0 + n),
      }]);
    }
  }
}

/** Runs each call whole on the calling thread. */
export function runHere(kern: Kernels): (calls: PoolCall[]) => void {
  const k = kern.k as unknown as Record<string, (...a: number[]) => void>;
  return (calls) => {
    for (const c of calls) k[c.fn]!(...c.args);
  };
}

/** Whether the workspace's partials hold one query row over two row sets of nA and nB rows (attendSplit). */
export function splitFits(ws: AttentionWorkspace, nHeads: number, headDim: number, nA: number, nB: number): boolean {
  return partRowBytes(nHeads, headDim, nA) + partRowBytes(nHeads, headDim, nB) <= ws.partBytes;
}

/**
 * One query row (a decode step at position nA - 1) over two disjoint row sets: `a` (nA rows, the last one the row's
 * own) and `b` (nB rows, all before it), each through its own compact tables and element type, so that the kernel reads
 * each set at its type in registers. Partials per set, then attn_merge_split folds A's blocks and B's in order: the
 * result does not depend on the thread count. Needs splitFits; a's type must be f32 (b's prepared queries take the
 * workspace's query buffer).
 */
export function attendSplit(kern: Kernels, ws: AttentionWorkspace, a: KVRowsView, nA: number, b: KVRowsView, nB: number,
  x: Pick<AttendArgs, 'q' | 'out' | 'nHeads' | 'nKVHeads' | 'headDim' | 'qStride' | 'scale'> & { mass?: SplitMass },
  run: (calls: PoolCall[]) => void = (c) => kern.parallel(c)): void {
  const { nHeads, nKVHeads, headDim } = x;
  if (a.el.type !== 'f32' || nA < 1 || nB < 1 || !splitFits(ws, nHeads, headDim, nA, nB)) throw new RangeError('attendSplit: unsupported split');
  const sbA = Math.ceil(nA / ATTN_SEQ_BLOCK);
  const sbB = Math.ceil(nB / ATTN_SEQ_BLOCK);
  const partB = ws.part + partRowBytes(nHeads, headDim, nA);
  run([{ fn: 'attn_queries', args: [b.el.id, b.el.qBlock, x.q, ws.queries, nHeads, headDim, x.qStride, 0, 1], lo: 7, hi: 8, granule: 1, work: 8 * nHeads * headDim }]);
  const m = x.mass;
  const expB = m ? m.exp + 4 * nHeads * nA : 0;
  const partials = (v: KVRowsView, n: number, part: number, sb: number, exp: number): PoolCall => ({
    fn: 'attn_partials',
    args: [x.q, ws.queries, v.kTable, v.vTable, v.blockRows, v.el.id, v.el.qBlock, part, ws.scratch,
      1, nHeads, nKVHeads, headDim, n - 1, v.el.rowBytes, x.qStride, x.scale, 0, nKVHeads * sb, exp],
    lo: 17, hi: 18, granule: 1, perThread: { arg: 8, stride: ws.scratchStride }, work: 2 * nHeads * headDim * n,
  });
  run([partials(a, nA, ws.part, sbA, m ? m.exp : 0)]);
  run([partials(b, nB, partB, sbB, expB)]);
  kern.k.attn_merge_split(ws.part, sbA, partB, sbB, x.out, nHeads, headDim);
  if (m) kern.k.attn_mass_split(ws.part, sbA, m.exp, nA, partB, sbB, expB, nB, m.out, m.out + 4 * nA, nHeads, headDim);
}

/**
 * The attention mass of an attendSplit row: `exp` holds nHeads * (nA + nB) f32 of scratch (each set's block weights),
 * `out` gets nA + nB f32: the mass of A's rows in A's table order, then B's in B's order (the caller maps them back to
 * positions).
 */
export interface SplitMass { exp: number; out: number }
