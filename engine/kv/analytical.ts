/**
 * The analytical cost model of the KV cache policies (DESIGN.md "KV cache and BMC", papers.md 1.6 and 4.4), and the
 * `auto` growth rule that uses it.
 *
 * Per decode step, a contiguous cache that grows by r spare rows at a time costs, amortised,
 *
 *     C(r, L) = (c_alloc + c_copy * B_row * L) / r  +  c_red * (r - 1) / 2
 *
 * where L is the length, B_row the KV bytes of one token over all layers (K and V), c_alloc the fixed cost of one
 * growth (2 * nLayers arena alloc+free pairs), c_copy the cost of copying one byte and c_red the cost of one padded
 * row per step. The optimum is r* = sqrt(2 (c_alloc + c_copy B_row L) / c_red).
 *
 * What a padded row costs in this engine (measured, and said honestly): the attention kernels take the real length
 * and never read a row past it (wasm/attention.ts), so a padded row costs no compute at all: c_red = 0 by
 * construction, not by measurement noise. `calibrate` still measures the per-row attention cost, because it is the
 * cost of a *real* row (decode time grows with L) and it is what c_red would be if a kernel computed whole tiles.
 * What spare rows do cost here is (a) memory: capacity that is held but unused, and that a wasm memory can never give
 * back, and (b) zeroing: every row is zeroed once when its block is allocated (the cache keeps spare rows finite),
 * which is the same per row for every r and so does not move r*. With c_red = 0 the formula degenerates to r = inf
 * (reserve the whole context, i.e. `static`). The model therefore prices memory explicitly: a spare byte held for one
 * decode step costs `memWeight * c_copy` (default memWeight 1: holding a byte for a step is worth as much as copying
 * it once), so
 *
 *     c_red_eff = c_pad + memWeight * c_copy * B_row,   r*(L) = sqrt(2 (c_alloc + c_copy B_row L) / c_red_eff)
 *
 * which, with c_alloc small, is r* ~ sqrt(2 L / memWeight): the sqrt(N) rule PACE ships, now derived from measured
 * constants. An optional byte budget (`budgetBytes`) is a hard cap on the capacity (KV never exceeds it), and
 * r >= kSpec + 1 keeps a speculative verify pass of kSpec drafts inside the spare rows.
 *
 * The counting part of the model (growths, bytes copied, peak capacity) replays the cache's own growth rules over the
 * exact sequence of `reserve` calls a session makes (the prompt in chunks of `batch`, then one token per decode
 * step), so it matches `session.kvStats()` exactly; only the time part is an estimate.
 */
import { OptionError, OutOfMemoryError } from '../errors.js';
import { GGML_TYPES, rowBytes as ggmlRowBytes } from '../gguf/types.js';
import type { Kernels } from '../runtime/kernels.js';
import { actBytes, actFormat, hasMatmulKernel, matmulKernel, prepareActivations } from '../model/matmul.js';
import { bmcRule, concatRule, staticRule } from './cache.js';
import type { KVGrowthRule } from './cache.js';
import { DEFAULT_BLOCK_SIZE, DEFAULT_BMC_R, parseKVFlag, validateKVOptions } from './options.js';
import type { KVOptions } from './options.js';
import { AttentionWorkspace, CONTIGUOUS_BLOCK_ROWS, attend, runHere } from './attend.js';
import { kvElement, kvTokenBytesOf } from './element.js';
import type { KVType } from './element.js';

/** What the model needs to know about a model: the KV shape, and optionally what a decode step reads. */
export interface ModelShape {
  nLayers: number;
  nKVHeads: number;
  headDim: number;
  contextLength: number;
  /** Query heads (default nKVHeads). */
  nHeads?: number;
  /** How K and V values are stored (default 'f32'): sets the bytes per row. */
  kvType?: KVType;
  /** Tokens per prefill chunk (the model's batch size, default 128). */
  batch?: number;
  /** Weight matrices read once per decoded token, by ggml type (for the base time estimate). */
  weights?: ReadonlyArray<{ type: number; bytes: number }>;
  /** Measured base time of one decode step without attention and KV overhead, in ns (overrides the estimate). */
  baseTokenNs?: number;
}

/** Machine constants measured by `calibrate` (ns). */
export interface CostConstants {
  /** memory.copy through the kernels, per byte, on buffers larger than L2 (c_copy / B_row). */
  copyNsPerByte: number;
  /**
   * memory.copy per byte on buffers past the last-level cache (sizes.copyBytesLarge), where copies run at memory
   * bandwidth: what a growth that copies a long cache pays. Absent when not measured (copyNs then uses copyNsPerByte).
   */
  copyNsPerByteLarge?: number;
  /** Zeroing spare rows as the cache does (Uint8Array.fill), per byte. */
  zeroNsPerByte: number;
  /** One arena alloc + free pair of a KV-sized block (c_alloc is 2 * nLayers of these). */
  allocFreeNs: number;
  /** Attention (one query token, all heads) per real KV row and layer, contiguous layout. */
  attnRowNs: number;
  /** Attention per call (per layer and token), independent of the length. */
  attnCallNs: number;
  /** The same for the paged kernel (blocks of 16 rows). */
  pagedAttnRowNs: number;
  pagedAttnCallNs: number;
  /**
   * Attention per KV row and layer when the rows come from memory, not from cache: timed on the kernel instance's
   * threads over sizes.attnBytesLarge of K and V (more than a last-level cache), one layer-sized segment after
   * another. Past the cache the rows stream at memory bandwidth and two threads read little faster than one, so this
   * is not attnRowNs at another size. Absent when not measured (attnRowNsAt then uses attnRowNs at every size).
   */
  attnRowNsLarge?: number;
  /** The same for the paged kernel, its blocks scattered over that memory. */
  pagedAttnRowNsLarge?: number;
  /** Compute of one padded (spare) row per step: 0, the attention loops are bounded by the real length. */
  padRowNs: number;
  /** Decode matmul (one activation row) per weight byte, by ggml type name (the types in the shape's weights). */
  matmulNsPerByte: Record<string, number>;
  /** Wall time the calibration took. */
  calibrationMs: number;
  /** The sizes it used (bytes, rows). */
  sizes: {
    copyBytes: number; allocBytes: number; attnRows: number; matmulBytes: number; copyBytesLarge?: number;
    /** K and V bytes the in-cache attention measurement reads (one layer of attnRows rows, again and again). */
    attnBytes: number;
    /** K and V bytes the large attention measurement cycles through. */
    attnBytesLarge?: number;
  };
}

export interface CalibrateOptions {
  /** Bytes of each buffer of the copy and zeroing measurements (default 8 MiB: larger than L2). */
  copyBytes?: number;
  /**
   * Bytes of each buffer of a second copy measurement, meant to lie past the last-level cache (default 32 MiB;
   * measured only when at least twice copyBytes; 0 skips it). Copies there run at memory bandwidth, 2-3x slower per
   * byte than in cache here, and growths are priced at this rate whatever the context (copyNs).
   */
  largeCopyBytes?: number;
  /** KV rows of the longer attention measurement (default min(context, 512)). */
  attnRows?: number;
  /** Bytes of the weight matrix of the matmul measurement (default 4 MiB). */
  matmulBytes?: number;
  /** Timed repetitions of each measurement (lower quartile taken; default 5). */
  reps?: number;
  /**
   * Threads the model runs attention on (default 1). Attention in cache is timed on one thread, where it is steady,
   * and its per-row cost divided by this: the model splits the (block, head) items evenly. Timed on the pool instead,
   * each isolated call paid the workers' wake-up and overstated the cost; timed on one thread and not divided, it
   * cost twice what 2-thread decode steps showed (bench:kv, stories15M shape).
   */
  threads?: number;
  /**
   * Bytes of K and V for the attention measurement past the last-level cache (default 64 MiB; 0 skips it). Taken
   * only when at least 4x the in-cache measurement's bytes and when `kern` runs on `threads` threads (the rate it
   * finds is the pool's, not one thread's divided).
   */
  largeAttnBytes?: number;
}

export interface ModelOptions {
  /** Draft tokens of a speculative verify pass that must fit in the spare rows (default 8): R >= kSpec + 1. */
  kSpec?: number;
  /** Most KV bytes (all layers, K and V): the capacity never exceeds it. */
  budgetBytes?: number;
  /** Price of one spare byte held for one decode step, in units of c_copy (default 1). 0: memory is free. */
  memWeight?: number;
}

/** A policy: the CLI form ('concat', 'static', 'bmc:64', 'paged:16', 'auto') or library options. */
export type PolicySpec = string | KVOptions;

export interface Prediction {
  /** Canonical name: 'concat', 'static', 'bmc:R', 'paged:B' or 'auto'. */
  policy: string;
  /** R for bmc, B for paged; for auto the R of its last growth (undefined if it never grew). */
  param: number | undefined;
  prompt: number;
  gen: number;
  /** Steps that allocated, counted like KVStats.growths (contiguous: the first allocation included, not static's up-front one; paged: steps adding blocks). */
  growths: number;
  /** Of those, during the decode steps. */
  decodeGrowths: number;
  /** Bytes copied by growth, like KVStats.bytesCopied. */
  bytesCopied: number;
  /** Most KV capacity bytes held, like KVStats.peakBytes. */
  peakBytes: number;
  /** Most KV bytes alive at once, counting the old and the new block during a growth copy. */
  transientPeakBytes: number;
  /** Other bytes the cache holds (paged: block tables and staging rows), like KVStats.overheadBytes. */
  overheadBytes: number;
  /** Final capacity in rows per layer, like KVStats.capacity. */
  capacity: number;
  /** Estimated decode step time without KV overhead (weights), ns. */
  baseTokenNs: number;
  /** KV-policy overhead (alloc, zero, copy) of the decode steps, ns in all. */
  decodeOverheadNs: number;
  /** Same for the prompt and the initial reservation, ns. */
  prefillOverheadNs: number;
  /** Predicted mean decode time per token (base + attention + KV overhead), ms; 0 when gen = 0. */
  msPerToken: number;
  tokensPerSecond: number;
}

const MiB = 1 << 20;
/** Spare rows are rounded up to a multiple of this (SIMD tile of the attention kernel, papers.md 4.4). */
export const R_TILE = 8;
export const DEFAULT_K_SPEC = 8;

/** KV bytes of one token over all layers, K and V (rows of the shape's element type). */
export function kvTokenBytes(shape: ModelShape): number {
  return kvTokenBytesOf(shape.kvType ?? 'f32', shape.nLayers, shape.nKVHeads, shape.headDim);
}

function checkShape(shape: ModelShape): void {
  for (const k of ['nLayers', 'nKVHeads', 'headDim', 'contextLength'] as const) {
    const v = shape[k];
    if (!Number.isInteger(v) || v < 1) throw new OptionError(`shape.${k}`, `${String(v)} is not a positive integer`);
  }
}

function checkLengths(shape: ModelShape, P: number, G: number): void {
  if (!Number.isInteger(P) || P < 0) throw new OptionError('prompt', `${String(P)} is not a non-negative integer`);
  if (!Number.isInteger(G) || G < 0) throw new OptionError('gen', `${String(G)} is not a non-negative integer`);
  if (P + G > shape.contextLength) throw new OptionError('gen', `prompt ${P} + generation ${G} tokens exceed the context length ${shape.contextLength}`);
}

function resolveModelOptions(o: ModelOptions | undefined): { kSpec: number; budgetBytes: number | undefined; memWeight: number } {
  const kSpec = o?.kSpec ?? DEFAULT_K_SPEC;
  if (!Number.isInteger(kSpec) || kSpec < 0 || kSpec > 4096) throw new OptionError('kSpec', `${String(kSpec)} is not an integer in [0, 4096]`);
  const budgetBytes = o?.budgetBytes;
  if (budgetBytes !== undefined && (!Number.isSafeInteger(budgetBytes) || budgetBytes < 1)) {
    throw new OptionError('budgetBytes', `${String(budgetBytes)} is not a positive integer`);
  }
  const memWeight = o?.memWeight ?? 1;
  if (typeof memWeight !== 'number' || !Number.isFinite(memWeight) || memWeight < 0) throw new OptionError('memWeight', `${String(memWeight)} is not a finite number >= 0`);
  return { kSpec, budgetBytes, memWeight };
}

// ---------------------------------------------------------------------------------------------------------------
// Calibration

/**
 * Warm-up before timing a wasm kernel. V8 first runs a wasm function from its baseline compiler (Liftoff) and
 * switches to optimised code after some use; measured here, attention was ~2x slower for the first ~7 ms of calls.
 */
const TIER_UP_MS = 8;

/**
 * Wall time of `fn` in ns, divided by `per`: the lower quartile of `reps` timed runs (noise from other processes only
 * adds time, so a low quantile is the stable estimate). Untimed warm-up runs first, at least once and for `warmMs`.
 */
function medianNs(reps: number, per: number, fn: () => void, warmMs = 1): number {
  const w0 = performance.now();
  do fn(); while (performance.now() - w0 < warmMs);
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const a = performance.now();
    fn();
    t.push((performance.now() - a) * 1e6);
  }
  return lowerQuartile(t) / per;
}

/** The lower quartile of timings (sorts them in place). */
function lowerQuartile(x: number[]): number {
  return x.sort((p, q) => p - q)[x.length >> 2]!;
}

/** Pseudo-random finite f32 values in [-1, 1) (attention inputs must not be denormal or NaN). */
function fillRandom(kern: Kernels, ptr: number, n: number, seed: number): void {
  const a = kern.f32(ptr, n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
}

/** Allocations made by a calibration step, all freed at the end whatever happens. */
class Allocs {
  private readonly ptrs: number[] = [];
  private readonly others: Array<() => void> = [];
  constructor(private readonly kern: Kernels) {}
  alloc(bytes: number): number {
    const p = this.kern.alloc(bytes, 64);
    this.ptrs.push(p);
    return p;
  }
  /** Something else to release with the allocations (first). */
  onFree(f: () => void): void {
    this.others.push(f);
  }
  freeAll(): void {
    for (const f of this.others.splice(0)) f();
    for (const p of this.ptrs.splice(0).reverse()) this.kern.free(p);
  }
}

function measureCopyAndZero(kern: Kernels, bytes: number, reps: number): { copy: number; zero: number } {
  const m = new Allocs(kern);
  try {
    const a = m.alloc(bytes);
    const b = m.alloc(bytes);
    // Touch both buffers first (fresh wasm pages are committed lazily), then time the kernel's memory.copy.
    new Uint8Array(kern.memory.buffer, a, bytes).fill(1);
    new Uint8Array(kern.memory.buffer, b, bytes).fill(2);
    const copy = medianNs(reps, bytes, () => kern.k.copy(b, a, bytes));
    const zero = medianNs(reps, bytes, () => new Uint8Array(kern.memory.buffer).fill(0, a, a + bytes));
    return { copy, zero };
  } finally {
    m.freeAll();
  }
}

/** memory.copy per byte between two fresh buffers of `bytes` (the first, untimed copy commits their pages). */
function measureCopy(kern: Kernels, bytes: number, reps: number): number {
  const m = new Allocs(kern);
  try {
    const a = m.alloc(bytes);
    const b = m.alloc(bytes);
    return medianNs(reps, bytes, () => kern.k.copy(b, a, bytes), 0);
  } finally {
    m.freeAll();
  }
}

/** One alloc+free pair of a KV-sized block, done the way a growth does them: 2 * nLayers allocs, then the frees. */
function measureAllocFree(kern: Kernels, blockBytes: number, blocks: number, reps: number): number {
  const ptrs = new Array<number>(blocks);
  return medianNs(reps, blocks * 8, () => {
    for (let it = 0; it < 8; it++) {
      for (let i = 0; i < blocks; i++) ptrs[i] = kern.alloc(blockBytes, 64);
      for (let i = 0; i < blocks; i++) kern.free(ptrs[i]!);
    }
  });
}

/** Attention of one query token over `rows` KV rows (one layer): contiguous and paged (blocks of 16) kernels. */
function measureAttention(kern: Kernels, shape: ModelShape, rowsHi: number, reps: number) {
  const { nKVHeads, headDim } = shape;
  const nHeads = shape.nHeads ?? nKVHeads;
  const rowFloats = nKVHeads * headDim;
  const qFloats = nHeads * headDim;
  const block = 16;
  const m = new Allocs(kern);
  try {
    const el = kvElement(shape.kvType ?? 'f32', nKVHeads, headDim);
    const k = m.alloc(rowsHi * el.rowBytes);
    const v = m.alloc(rowsHi * el.rowBytes);
    const q = m.alloc(qFloats * 4);
    const out = m.alloc(qFloats * 4);
    const nBlocks = Math.ceil(rowsHi / block);
    const kt = m.alloc(nBlocks * 4);
    const vt = m.alloc(nBlocks * 4);
    const ct = m.alloc(8);
    // Random f32 rows stored in the element type, as the cache does.
    const src = m.alloc(rowsHi * rowFloats * 4);
    fillRandom(kern, src, rowsHi * rowFloats, 1);
    kern.k.kv_store_rows(el.id, el.qBlock, src, k, rowsHi, rowFloats, el.rowBytes);
    fillRandom(kern, src, rowsHi * rowFloats, 2);
    kern.k.kv_store_rows(el.id, el.qBlock, src, v, rowsHi, rowFloats, el.rowBytes);
    fillRandom(kern, q, qFloats, 3);
    const kTab = new Uint32Array(kern.memory.buffer, kt, nBlocks);
    const vTab = new Uint32Array(kern.memory.buffer, vt, nBlocks);
    for (let b = 0; b < nBlocks; b++) {
      kTab[b] = k + b * block * el.rowBytes;
      vTab[b] = v + b * block * el.rowBytes;
    }
    new Uint32Array(kern.memory.buffer, ct, 2).set([k, v]);
    const ws = new AttentionWorkspace(kern, { nHeads, headDim, contextLength: rowsHi, batch: 1 });
    m.onFree(() => ws.dispose());
    const scale = 1 / Math.sqrt(headDim);
    const here = runHere(kern);
    const views = [
      { kTable: ct, vTable: ct + 4, blockRows: CONTIGUOUS_BLOCK_ROWS, el },
      { kTable: kt, vTable: vt, blockRows: block, el },
    ];
    const call = (rows: number, paged: boolean) => {
      attend(kern, ws, views[paged ? 1 : 0]!, { q, out, nQ: 1, pos0: rows - 1, nHeads, nKVHeads, headDim, qStride: qFloats, outStride: qFloats, scale }, here);
    };
    // Warm both kernels up, then pick the calls per timed run: about 0.25 ms of work at the longest length.
    const w0 = performance.now();
    let n = 0;
    do { call(rowsHi, (n++ & 1) === 1); } while (performance.now() - w0 < 2 * TIER_UP_MS);
    const calls = Math.max(1, Math.min(32, Math.round((0.25 * n) / (performance.now() - w0))));
    // Rounds over all lengths and both kernels interleaved, so that drift (tier-up finishing, other load) hits every
    // length and both layouts alike (timed one after the other, a slow spell once made paged look 15% cheaper).
    const lengths = [1, 2, 3, 4].map((i) => Math.max(1, Math.round((rowsHi * i) / 4)));
    const t: number[][] = Array.from({ length: 2 * lengths.length }, () => []);
    for (let r = 0; r < reps + 2; r++) {
      for (const paged of [false, true]) {
        lengths.forEach((rows, i) => {
          const a = performance.now();
          for (let j = 0; j < calls; j++) call(rows, paged);
          t[(paged ? lengths.length : 0) + i]!.push(((performance.now() - a) * 1e6) / calls);
        });
      }
    }
    // Least-squares line through the four lengths: slope = cost per row, intercept = cost per call.
    const fit = (paged: boolean) => {
      const ys = lengths.map((_, i) => lowerQuartile(t[(paged ? lengths.length : 0) + i]!));
      const mx = lengths.reduce((a, x) => a + x, 0) / 4;
      const my = ys.reduce((a, y) => a + y, 0) / 4;
      let sxy = 0;
      let sxx = 0;
      for (let i = 0; i < 4; i++) {
        sxy += (lengths[i]! - mx) * (ys[i]! - my);
        sxx += (lengths[i]! - mx) ** 2;
      }
      const perRow = sxx > 0 ? Math.max(0, sxy / sxx) : my / mx;
      return { perRow, perCall: Math.max(0, my - perRow * mx) };
    };
    const c = fit(false);
    const p = fit(true);
    return { attnRowNs: c.perRow, attnCallNs: c.perCall, pagedAttnRowNs: p.perRow, pagedAttnCallNs: p.perCall };
  } finally {
    m.freeAll();
  }
}

/**
 * Attention of one query token over `rows` rows, on the kernel instance's threads, cycling through layer-sized
 * segments of K and V that add up to about `bytes` (more than the last-level cache), so every call reads its rows
 * from memory as a long cache's decode step does: contiguous, and paged through blocks of 16 rows that come from
 * different segments in turn (a paged cache's blocks of one layer lie between the other layers' blocks). ns per row:
 * the lower quartile of `reps` passes over all segments, less the cost of a one-row call on the same threads.
 */
function measureLargeAttention(kern: Kernels, shape: ModelShape, bytes: number, reps: number): { contiguous: number; paged: number } {
  const { nKVHeads, headDim } = shape;
  const nHeads = shape.nHeads ?? nKVHeads;
  const rowFloats = nKVHeads * headDim;
  const qFloats = nHeads * headDim;
  const el = kvElement(shape.kvType ?? 'f32', nKVHeads, headDim);
  const block = 16;
  const rows = 1024; // per call, whatever the context: shorter segments leave the pool's per-call cost in the rate
  const nBlocks = rows / block;
  const nSeg = Math.max(2, Math.ceil(bytes / (2 * rows * el.rowBytes)));
  const m = new Allocs(kern);
  try {
    const q = m.alloc(qFloats * 4);
    const out = m.alloc(qFloats * 4);
    const src = m.alloc(rows * rowFloats * 4);
    fillRandom(kern, src, rows * rowFloats, 1);
    fillRandom(kern, q, qFloats, 3);
    // Contiguous tables: (K, V) base pointers per segment. Paged tables: nBlocks K pointers then nBlocks V pointers per
    // segment, block b of segment i taken from segment (i + b) mod nSeg.
    const ctab = m.alloc(8 * nSeg);
    const ptab = m.alloc(8 * nSeg * nBlocks);
    const kv: number[] = [];
    for (let i = 0; i < 2 * nSeg; i++) {
      const p = m.alloc(rows * el.rowBytes);
      kern.k.kv_store_rows(el.id, el.qBlock, src, p, rows, rowFloats, el.rowBytes);
      kv.push(p);
    }
    new Uint32Array(kern.memory.buffer, ctab, 2 * nSeg).set(kv);
    const pt = new Uint32Array(kern.memory.buffer, ptab, 2 * nSeg * nBlocks);
    for (let i = 0; i < nSeg; i++) {
      for (let b = 0; b < nBlocks; b++) {
        const from = (i + b) % nSeg;
        pt[2 * i * nBlocks + b] = kv[2 * from]! + b * block * el.rowBytes;
        pt[(2 * i + 1) * nBlocks + b] = kv[2 * from + 1]! + b * block * el.rowBytes;
      }
    }
    const ws = new AttentionWorkspace(kern, { nHeads, headDim, contextLength: rows, batch: 1 });
    m.onFree(() => ws.dispose());
    const scale = 1 / Math.sqrt(headDim);
    const view = (seg: number, paged: boolean) => (paged
      ? { kTable: ptab + 8 * seg * nBlocks, vTable: ptab + 4 * (2 * seg + 1) * nBlocks, blockRows: block, el }
      : { kTable: ctab + 8 * seg, vTable: ctab + 8 * seg + 4, blockRows: CONTIGUOUS_BLOCK_ROWS, el });
    const call = (seg: number, n: number, paged: boolean) => attend(kern, ws, view(seg, paged),
      { q, out, nQ: 1, pos0: n - 1, nHeads, nKVHeads, headDim, qStride: qFloats, outStride: qFloats, scale });
    const pass = (paged: boolean) => { for (let i = 0; i < nSeg; i++) call(i, rows, paged); };
    const w0 = performance.now();
    do { pass(false); pass(true); } while (performance.now() - w0 < TIER_UP_MS);
    const one: number[] = [];
    for (let i = 0; i < 16; i++) {
      const a = performance.now();
      call(i % nSeg, 1, false);
      one.push((performance.now() - a) * 1e6);
    }
    const t: number[][] = [[], []];
    for (let r = 0; r < reps; r++) {
      for (const paged of [false, true]) {
        const a = performance.now();
        pass(paged);
        t[paged ? 1 : 0]!.push(((performance.now() - a) * 1e6) / nSeg);
      }
    }
    const perRow = (x: number[]) => Math.max(0, lowerQuartile(x) - lowerQuartile(one)) / rows;
    return { contiguous: perRow(t[0]!), paged: perRow(t[1]!) };
  } finally {
    m.freeAll();
  }
}

/** Decode matmul (n = 1) of a zero matrix of about `bytes` bytes of `type`: ns per weight byte. */
function measureMatmul(kern: Kernels, type: number, bytes: number, reps: number): number {
  const cols = 1024;
  const rowB = ggmlRowBytes(type, cols);
  const rows = Math.max(16, Math.floor(bytes / rowB / 16) * 16);
  const m = new Allocs(kern);
  try {
    const w = m.alloc(rows * rowB);
    new Uint8Array(kern.memory.buffer, w, rows * rowB).fill(0); // zero blocks: finite scales, no denormals
    const fmt = actFormat(type);
    const xf = m.alloc(cols * 4);
    new Uint8Array(kern.memory.buffer, xf, cols * 4).fill(0);
    let x = xf;
    if (fmt !== 'f32') {
      x = m.alloc(actBytes(fmt, cols) + 64);
      prepareActivations(kern, fmt, xf, x, cols);
    }
    const y = m.alloc(rows * 4);
    const fn = matmulKernel(kern, type)!;
    return medianNs(reps, rows * rowB, () => fn(w, x, y, rows, cols, 1, rows, 0, rows), TIER_UP_MS);
  } finally {
    m.freeAll();
  }
}

/**
 * Measures the machine constants of the model on `kern`'s arena (everything it allocates is freed again; the arena
 * may keep the memory it grew by for later blocks). Takes a few tens of milliseconds with the default sizes.
 */
export function calibrate(kern: Kernels, shape: ModelShape, opts: CalibrateOptions = {}): CostConstants {
  checkShape(shape);
  const t0 = performance.now();
  const reps = opts.reps ?? 5;
  if (!Number.isInteger(reps) || reps < 1 || reps > 1000) throw new OptionError('reps', `${String(reps)} is not an integer in [1, 1000]`);
  const copyBytes = Math.max(4096, Math.floor(opts.copyBytes ?? 8 * MiB));
  const attnRows = Math.max(2, Math.min(shape.contextLength, Math.floor(opts.attnRows ?? 512)));
  const matmulBytes = Math.max(4096, Math.floor(opts.matmulBytes ?? 4 * MiB));
  const rowBytes = kvElement(shape.kvType ?? 'f32', shape.nKVHeads, shape.headDim).rowBytes;
  // A typical growth block: one layer's K (or V) for min(context, 256) rows.
  const allocBytes = rowBytes * Math.min(shape.contextLength, 256);

  const { copy, zero } = measureCopyAndZero(kern, copyBytes, reps);
  const largeBytes = Math.floor(opts.largeCopyBytes ?? 32 * MiB);
  let large: number | undefined;
  if (largeBytes >= 2 * copyBytes) {
    try {
      large = measureCopy(kern, largeBytes, Math.min(reps, 3));
    } catch (e) {
      if (!(e instanceof OutOfMemoryError)) throw e; // no room for two such buffers: in-cache copies only
    }
  }
  const allocFreeNs = measureAllocFree(kern, allocBytes, 2 * shape.nLayers, reps);
  const attnThreads = Math.max(1, Math.floor(opts.threads ?? 1));
  const measured = measureAttention(kern, shape, attnRows, reps);
  const attn = { ...measured, attnRowNs: measured.attnRowNs / attnThreads, pagedAttnRowNs: measured.pagedAttnRowNs / attnThreads };
  const attnBytes = 2 * attnRows * rowBytes;
  const largeAttnBytes = Math.floor(opts.largeAttnBytes ?? 64 * MiB);
  let attnLarge: { contiguous: number; paged: number } | undefined;
  if (largeAttnBytes >= 4 * attnBytes && kern.threads === attnThreads) {
    try {
      attnLarge = measureLargeAttention(kern, shape, largeAttnBytes, Math.max(reps, 5));
    } catch (e) {
      if (!(e instanceof OutOfMemoryError)) throw e; // no room: the in-cache rate at every size
    }
  }
  const matmulNsPerByte: Record<string, number> = {};
  const types = new Set((shape.weights ?? []).map((w) => w.type).filter((t) => hasMatmulKernel(t)));
  for (const t of types) matmulNsPerByte[GGML_TYPES.get(t)!.name] = measureMatmul(kern, t, matmulBytes, reps);
  return {
    copyNsPerByte: copy, ...(large !== undefined ? { copyNsPerByteLarge: large } : {}), zeroNsPerByte: zero, allocFreeNs, ...attn,
    ...(attnLarge !== undefined ? { attnRowNsLarge: attnLarge.contiguous, pagedAttnRowNsLarge: attnLarge.paged } : {}),
    padRowNs: 0, matmulNsPerByte, calibrationMs: performance.now() - t0,
    sizes: {
      copyBytes, allocBytes, attnRows, matmulBytes, attnBytes, ...(large !== undefined ? { copyBytesLarge: largeBytes } : {}),
      ...(attnLarge !== undefined ? { attnBytesLarge: largeAttnBytes } : {}),
    },
  };
}

/**
 * Base time of one decode step without attention and KV overhead: the measured value if the shape has one, else the
 * weight bytes read per token times the measured matmul cost of their type (types without a measurement count at
 * the mean of the measured ones). A lower bound: norms, RoPE, the sampler and JS overhead are not in it.
 */
export function baseTokenNs(c: CostConstants, shape: ModelShape): number {
  if (shape.baseTokenNs !== undefined) return shape.baseTokenNs;
  const measured = Object.values(c.matmulNsPerByte);
  const mean = measured.length ? measured.reduce((a, b) => a + b, 0) / measured.length : c.copyNsPerByte / 2;
  let ns = 0;
  for (const w of shape.weights ?? []) ns += w.bytes * (c.matmulNsPerByte[GGML_TYPES.get(w.type)?.name ?? ''] ?? mean);
  return ns;
}

// ---------------------------------------------------------------------------------------------------------------
// Choosing R

/** c_alloc: the fixed cost of one growth of a contiguous cache (2 * nLayers alloc+free pairs). */
export function growthFixedNs(c: CostConstants, shape: ModelShape): number {
  return 2 * shape.nLayers * c.allocFreeNs;
}

/**
 * Time to copy `bytes` in one growth: at the large-copy rate (memory bandwidth) whatever the size, when it was
 * measured. Between two growths the decode steps stream the weights and every layer's rows through the caches, so a
 * growth's source and fresh destination are rarely cached: in bench:kv concat's growths copied at 8.4-8.8 GB/s at
 * lengths of 33-288 tokens (0.5-4 MiB) as at 4096 (the large-copy rate read 8.7), while the in-cache measurement read
 * 20 GB/s. Without a large measurement, the in-cache rate.
 */
export function copyNs(c: CostConstants, bytes: number): number {
  return (c.copyNsPerByteLarge ?? c.copyNsPerByte) * bytes;
}

/**
 * Attention cost per KV row and layer in a decode step over a cache of `kvBytes` (K and V of all layers): the
 * in-cache rate up to sizes.attnBytes, the rate past the cache (attnRowNsLarge) from sizes.attnBytesLarge on, and
 * between them interpolated in log bytes (measured on one thread, the cost per row rose about evenly per doubling
 * of the cache, from 140 ns at 4.5 MiB to 215 ns at 72 MiB).
 */
export function attnRowNsAt(c: CostConstants, kvBytes: number, paged = false): number {
  const near = paged ? c.pagedAttnRowNs : c.attnRowNs;
  const lo = c.sizes.attnBytes;
  const hi = c.sizes.attnBytesLarge;
  if (c.attnRowNsLarge === undefined || hi === undefined || !(lo > 0) || hi <= lo || kvBytes <= lo) return near;
  const far = paged ? (c.pagedAttnRowNsLarge ?? c.attnRowNsLarge) : c.attnRowNsLarge;
  if (kvBytes >= hi) return far;
  return near + (far - near) * (Math.log(kvBytes / lo) / Math.log(hi / lo));
}

/** Attention time of the decode steps at lengths from + 1 .. to (each attends over its own row too), ns. */
export function decodeAttentionNs(c: CostConstants, shape: Pick<ModelShape, 'nLayers' | 'nKVHeads' | 'headDim' | 'kvType'>,
  from: number, to: number, paged = false): number {
  const B = kvTokenBytesOf(shape.kvType ?? 'f32', shape.nLayers, shape.nKVHeads, shape.headDim);
  const callNs = paged ? c.pagedAttnCallNs : c.attnCallNs;
  let ns = 0;
  for (let len = from + 1; len <= to; len++) ns += callNs + len * attnRowNsAt(c, len * B, paged);
  return shape.nLayers * ns;
}

/**
 * The unclamped optimum r*(L) = sqrt(2 (c_alloc + c_copy B_row L) / c_red_eff), with c_red_eff = c_pad +
 * memWeight * c_copy * B_row (see the file comment). Infinity when both terms of c_red_eff are 0.
 */
export function optimalR(c: CostConstants, shape: ModelShape, L: number, opts?: ModelOptions): number {
  const { memWeight } = resolveModelOptions(opts);
  const B = kvTokenBytes(shape);
  const num = 2 * (growthFixedNs(c, shape) + c.copyNsPerByte * B * L);
  const den = c.padRowNs + memWeight * c.copyNsPerByte * B;
  return den > 0 ? Math.sqrt(num / den) : Infinity;
}

/** Most rows per layer the budget allows (Infinity without a budget). */
function budgetRows(shape: ModelShape, budgetBytes: number | undefined): number {
  return budgetBytes === undefined ? Infinity : Math.floor(budgetBytes / kvTokenBytes(shape));
}

/**
 * Clamps spare rows for a growth at `need` rows: rounded up to the tile, at least kSpec + 1, and at most what the
 * context length and the budget leave (the upper bounds win: capacity never passes them).
 */
function clampR(r: number, need: number, shape: ModelShape, o: ReturnType<typeof resolveModelOptions>): number {
  let R = Number.isFinite(r) ? Math.ceil(Math.max(r, 1) / R_TILE) * R_TILE : Infinity;
  R = Math.max(R, o.kSpec + 1);
  const hi = Math.min(shape.contextLength, budgetRows(shape, o.budgetBytes)) - need;
  return Math.max(0, Math.min(R, hi));
}

/**
 * R for a whole generation of G tokens after a P-token prompt: r* at the mean length P + G/2, no more than G (more
 * spare rows than steps save no copy), then clamped to [kSpec + 1, min(context, budget rows) - P]. Throws
 * OutOfMemoryError when the budget cannot hold the prompt.
 */
export function chooseR(c: CostConstants, shape: ModelShape, P: number, G: number, opts?: ModelOptions): number {
  checkShape(shape);
  checkLengths(shape, P, G);
  const o = resolveModelOptions(opts);
  const rows = budgetRows(shape, o.budgetBytes);
  if (P > rows) throw new OutOfMemoryError(`KV cache for a ${P}-token prompt (kv.budgetBytes)`, P * kvTokenBytes(shape), o.budgetBytes!);
  const r = Math.min(optimalR(c, shape, P + G / 2, opts), Math.max(G, o.kSpec + 1));
  return clampR(r, P, shape, o);
}

/**
 * The `auto` growth rule: at each growth, r*(len) with the current length (papers.md 4.4), clamped like chooseR;
 * nothing reserved up front. Stateless. A step that would pass the budget throws OutOfMemoryError.
 */
export function autoRule(c: CostConstants, shape: ModelShape, opts?: ModelOptions): KVGrowthRule {
  checkShape(shape);
  const o = resolveModelOptions(opts);
  const rows = budgetRows(shape, o.budgetBytes);
  return {
    name: 'auto',
    initialCapacity: () => 0,
    nextCapacity(len, need, _capacity, contextLength) {
      if (need > rows) throw new OutOfMemoryError(`KV cache for ${need} tokens (kv.budgetBytes)`, need * kvTokenBytes(shape), o.budgetBytes!);
      return need + clampR(optimalR(c, shape, len, o), need, { ...shape, contextLength }, o);
    },
  };
}

/**
 * What `growthRule` returns for `auto` before kernels exist (the model plans memory before it instantiates them):
 * reserves nothing up front, and createKVCache swaps it for `autoRuleFor(kern, ...)` before any growth.
 */
export const deferredAutoRule: KVGrowthRule = {
  name: 'auto',
  initialCapacity: () => 0,
  nextCapacity: () => {
    throw new RangeError("the 'auto' KV rule needs a calibration: create the cache with createKVCache (or autoRule)");
  },
};

/** Calibrations on demand, one per kernel instance (i.e. per model) and KV shape. */
const calibrations = new WeakMap<Kernels, Map<string, CostConstants>>();

/**
 * Constants for `auto` on `kern`, measured on first use (a reduced calibration of a few milliseconds: no matmul,
 * smaller buffers) and cached for the kernel instance. Falls back to smaller buffers if the arena is nearly full.
 */
export function calibrationFor(kern: Kernels, shape: ModelShape): CostConstants {
  let byShape = calibrations.get(kern);
  if (!byShape) calibrations.set(kern, (byShape = new Map()));
  const key = `${shape.nLayers}/${shape.nKVHeads}/${shape.headDim}/${shape.contextLength}/${shape.kvType ?? 'f32'}`;
  let c = byShape.get(key);
  if (!c) {
    const kvShape: ModelShape = {
      nLayers: shape.nLayers, nKVHeads: shape.nKVHeads, headDim: shape.headDim, contextLength: shape.contextLength, nHeads: shape.nHeads, kvType: shape.kvType,
    };
    try {
      // No large copy or attention: R* hardly depends on the copy rate (it enters both sides of the ratio), not at all on
      // attention, and loads stay fast.
      c = calibrate(kern, kvShape, { copyBytes: 4 * MiB, largeCopyBytes: 0, largeAttnBytes: 0, attnRows: 512, reps: 3 });
    } catch (e) {
      if (!(e instanceof OutOfMemoryError)) throw e;
      c = calibrate(kern, kvShape, { copyBytes: 256 * 1024, largeCopyBytes: 0, largeAttnBytes: 0, attnRows: 64, reps: 3 });
    }
    byShape.set(key, c);
  }
  return c;
}

/**
 * The `auto` rule of a cache on `kern` (calibrating on first use), with the budget and element type of the KV options
 * and the most draft tokens of a speculative verify pass (`kSpec`, default DEFAULT_K_SPEC): R >= kSpec + 1.
 */
export function autoRuleFor(kern: Kernels, shape: ModelShape, o: { budgetBytes?: number | undefined; type?: KVType; kSpec?: number | undefined }): KVGrowthRule {
  const s = { ...shape, kvType: o.type ?? shape.kvType };
  return autoRule(calibrationFor(kern, s), s, { budgetBytes: o.budgetBytes, kSpec: o.kSpec });
}

// ---------------------------------------------------------------------------------------------------------------
// Predictions

interface Replay {
  growths: number; decodeGrowths: number; bytesCopied: number; peakBytes: number; transientPeakBytes: number;
  overheadBytes: number; capacity: number; decodeOverheadNs: number; prefillOverheadNs: number;
}

/** The reserve calls of a session: the prompt in chunks of `batch`, then G steps of one token. */
function* steps(P: number, G: number, batch: number): Generator<{ n: number; decode: boolean }> {
  for (let at = 0; at < P; at += batch) yield { n: Math.min(batch, P - at), decode: false };
  for (let i = 0; i < G; i++) yield { n: 1, decode: true };
}

/** Replays ContiguousKVCache with `rule` (same clamping, same counting). */
function replayContiguous(c: CostConstants, shape: ModelShape, rule: KVGrowthRule, P: number, G: number): Replay {
  const B = kvTokenBytes(shape);
  const ctx = shape.contextLength;
  const clamp = (x: number, need: number) => Math.min(Math.max(Math.ceil(x), need), ctx);
  const fixed = growthFixedNs(c, shape);
  const r: Replay = { growths: 0, decodeGrowths: 0, bytesCopied: 0, peakBytes: 0, transientPeakBytes: 0, overheadBytes: 0, capacity: 0, decodeOverheadNs: 0, prefillOverheadNs: 0 };
  let cap = 0;
  let held = false;
  let len = 0;
  const grow = (to: number, decode: boolean) => {
    const cost = fixed + copyNs(c, len * B) + c.zeroNsPerByte * (to - len) * B;
    r.bytesCopied += len * B;
    r.transientPeakBytes = Math.max(r.transientPeakBytes, (held ? cap * B : 0) + to * B);
    if (decode) r.decodeOverheadNs += cost;
    else r.prefillOverheadNs += cost;
    cap = to;
    held = true;
    r.peakBytes = Math.max(r.peakBytes, cap * B);
  };
  const initial = clamp(rule.initialCapacity(ctx), 0);
  if (initial > 0) grow(initial, false);
  for (const { n, decode } of steps(P, G, shape.batch ?? 128)) {
    const need = len + n;
    if (need > cap) {
      // Counted like the cache: every step that (re)allocates, the first allocation included; not the up-front one.
      grow(clamp(rule.nextCapacity(len, need, cap, ctx), need), decode);
      r.growths++;
      if (decode) r.decodeGrowths++;
    }
    len = need;
  }
  r.capacity = cap;
  // The one-entry block tables of every layer, and f32 staging rows for the largest step unless rows are f32.
  let maxStep = 0;
  for (const { n } of steps(P, G, shape.batch ?? 128)) maxStep = Math.max(maxStep, n);
  const staged = (shape.kvType ?? 'f32') === 'f32' ? 0 : 2 * maxStep * shape.nKVHeads * shape.headDim * 4;
  r.overheadBytes = 8 * shape.nLayers + staged;
  return r;
}

/** Replays PagedKVCache (blocks added per step, staging rows for steps that cross a block boundary). */
function replayPaged(c: CostConstants, shape: ModelShape, blockSize: number, P: number, G: number): Replay {
  const B = kvTokenBytes(shape);
  const rowBytes = shape.nKVHeads * shape.headDim * 4; // f32 staging rows
  const maxBlocks = Math.ceil(shape.contextLength / blockSize);
  const r: Replay = { growths: 0, decodeGrowths: 0, bytesCopied: 0, peakBytes: 0, transientPeakBytes: 0, overheadBytes: 0, capacity: 0, decodeOverheadNs: 0, prefillOverheadNs: 0 };
  let blocks = 0;
  let len = 0;
  let stageRows = 0;
  for (const { n, decode } of steps(P, G, shape.batch ?? 128)) {
    const need = len + n;
    const want = Math.ceil(need / blockSize);
    if (want > blocks) {
      const count = want - blocks;
      const cost = 2 * shape.nLayers * count * c.allocFreeNs + c.zeroNsPerByte * count * blockSize * B;
      r.growths++;
      if (decode) {
        r.decodeGrowths++;
        r.decodeOverheadNs += cost;
      } else r.prefillOverheadNs += cost;
      blocks = want;
      r.peakBytes = Math.max(r.peakBytes, blocks * blockSize * B);
    }
    const crosses = Math.floor(len / blockSize) !== Math.floor((need - 1) / blockSize);
    if (n > 0 && ((shape.kvType ?? 'f32') !== 'f32' || crosses)) stageRows = Math.max(stageRows, n);
    len = need;
  }
  r.transientPeakBytes = r.peakBytes;
  r.capacity = blocks * blockSize;
  r.overheadBytes = 2 * shape.nLayers * maxBlocks * 4 + 2 * stageRows * rowBytes;
  return r;
}

function resolvePolicy(policy: PolicySpec): KVOptions {
  if (typeof policy === 'string') return parseKVFlag(policy);
  validateKVOptions(policy);
  return policy;
}

/**
 * Predicts, for a P-token prompt (fed in chunks of `shape.batch`) followed by G decode steps of one token each
 * (the sequence ends at P + G tokens), what `policy` costs: exact counts (growths, bytes copied, capacities, as
 * session.kvStats() reports them) and estimated times. `opts` (kSpec, budget, memWeight) is used by `auto`.
 */
export function predict(c: CostConstants, shape: ModelShape, P: number, G: number, policy: PolicySpec, opts?: ModelOptions): Prediction {
  checkShape(shape);
  checkLengths(shape, P, G);
  const o = resolvePolicy(policy);
  const name = o.policy ?? 'bmc';
  let rep: Replay;
  let label: string;
  let param: number | undefined;
  const paged = name === 'paged';
  if (paged) {
    param = o.blockSize ?? DEFAULT_BLOCK_SIZE;
    label = `paged:${param}`;
    rep = replayPaged(c, shape, param, P, G);
  } else {
    let rule: KVGrowthRule;
    if (name === 'static') rule = staticRule;
    else if (name === 'concat') rule = concatRule;
    else if (name === 'bmc') {
      param = o.r ?? DEFAULT_BMC_R;
      rule = bmcRule(param);
    } else {
      // auto: record the spare rows of its last growth.
      const auto = autoRule(c, shape, { ...opts, budgetBytes: o.budgetBytes ?? opts?.budgetBytes });
      rule = {
        name: 'auto', initialCapacity: auto.initialCapacity,
        nextCapacity: (len, need, cap, ctx) => {
          const next = auto.nextCapacity(len, need, cap, ctx);
          param = next - need;
          return next;
        },
      };
    }
    label = name === 'bmc' ? `bmc:${param}` : name;
    rep = replayContiguous(c, shape, rule, P, G);
  }
  const base = baseTokenNs(c, shape);
  const decodeNs = G * base + decodeAttentionNs(c, shape, P, P + G, paged) + rep.decodeOverheadNs;
  const msPerToken = G > 0 ? decodeNs / G / 1e6 : 0;
  const { decodeOverheadNs, prefillOverheadNs, ...counts } = rep;
  return {
    policy: label, param, prompt: P, gen: G, ...counts,
    baseTokenNs: base, decodeOverheadNs, prefillOverheadNs,
    msPerToken, tokensPerSecond: msPerToken > 0 ? 1000 / msPerToken : 0,
  };
}

/** The policies `bmc-llm plan` compares. */
export const PLAN_POLICIES: readonly string[] = ['concat', 'static', 'bmc:16', 'bmc:64', 'bmc:256', 'paged:16', 'auto'];
