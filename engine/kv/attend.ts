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
/** Most bytes of partial results per call; longer prefill chunks are split into calls of fewer query rows. */
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

/** Bytes of one row's partial results over the whole context, and the query rows per kernel call. */
function partPlan(s: AttentionShape): { rowBytes: number; rows: number } {
  const rowBytes = s.nHeads * Math.ceil(s.contextLength / ATTN_SEQ_BLOCK) * (s.headDim + 4) * 4;
  return { rowBytes, rows: Math.max(1, Math.min(s.batch, Math.floor(PART_BUDGET / rowBytes))) };
}

/** Arena bytes of a workspace (for the memory plan). */
export function attentionWorkspaceBytes(s: AttentionShape, threads: number): number {
  const p = partPlan(s);
  return align64(attnScratchBytes(s.headDim)) * threads + align64(p.rows * p.rowBytes) + align64(p.rows * s.nHeads * attnQueryBytes(s.headDim));
}

export class AttentionWorkspace {
  readonly scratch: number;
  readonly scratchStride: number;
  readonly part: number;
  /** The prepared queries of a call (attn_queries). */
  readonly queries: number;
  /** Query rows per kernel call (the partials buffer holds this many rows at the full context). */
  readonly rowsPerCall: number;

  constructor(private readonly kern: Kernels, s: AttentionShape) {
    this.scratchStride = align64(attnScratchBytes(s.headDim));
    const p = partPlan(s);
    this.rowsPerCall = p.rows;
    const ptrs: number[] = [];
    try {
      for (const bytes of [this.scratchStride * kern.threads, p.rows * p.rowBytes, p.rows * s.nHeads * attnQueryBytes(s.headDim)]) {
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
}

/**
 * Causal attention of rows pos0.. over the rows of `view` (see wasm/attention.ts for q/out strides). `run` executes a
 * job (default: across the kernel threads); the calibration passes one that stays on the calling thread.
 */
export function attend(kern: Kernels, ws: AttentionWorkspace, view: KVRowsView, a: AttendArgs,
  run: (calls: PoolCall[]) => void = (c) => kern.parallel(c)): void {
  const { nHeads, nKVHeads, headDim } = a;
  for (let r0 = 0; r0 < a.nQ; r0 += ws.rowsPerCall) {
    const n = Math.min(ws.rowsPerCall, a.nQ - r0);
    const pos0 = a.pos0 + r0;
    const nSb = Math.ceil((pos0 + n) / ATTN_SEQ_BLOCK);
    const q = a.q + r0 * a.qStride * 4;
    if (view.el.type !== 'f32') {
      run([{ fn: 'attn_queries', args: [view.el.id, view.el.qBlock, q, ws.queries, nHeads, headDim, a.qStride, 0, n], lo: 7, hi: 8, granule: 1, work: 8 * n * nHeads * headDim }]);
    }
    run([{
      fn: 'attn_partials',
      args: [q, ws.queries, view.kTable, view.vTable, view.blockRows, view.el.id, view.el.qBlock, ws.part, ws.scratch,
        n, nHeads, nKVHeads, headDim, pos0, view.el.rowBytes, a.qStride, a.scale, 0, nKVHeads * nSb],
      lo: 17, hi: 18, granule: 1, perThread: { arg: 8, stride: ws.scratchStride }, work: 2 * n * nHeads * headDim * (pos0 + n),
    }]);
    run([{
      fn: 'attn_merge',
      args: [ws.part, a.out + r0 * a.outStride * 4, n, nHeads, headDim, pos0, a.outStride, 0, n],
      lo: 7, hi: 8, granule: 1, work: 2 * n * nHeads * nSb * headDim,
    }]);
  }
}

/** Runs each call whole on the calling thread. */
export function runHere(kern: Kernels): (calls: PoolCall[]) => void {
  const k = kern.k as unknown as Record<string, (...a: number[]) => void>;
  return (calls) => {
    for (const c of calls) k[c.fn]!(...c.args);
  };
}
