/**
 * KVPR-style restore of cold KV rows (papers.md 2 and 4.6; the cost model is engine/tiers/kvpr.ts).
 *
 * With `kv.restore` other than 'read', the tiered cache keeps, beside every row's K and V, the layer's input to the
 * K/V projections (the rmsnorm'd hidden state; f32, or f16 with `kv.activations: 'f16'`) in the cold tier. Before a
 * layer's attention, its s cold rows are restored into the staging buffer: the K and V of the first l are recomputed
 * from their activations with the layer's own projection kernels, bias and RoPE at their original positions, while
 * the stored rows of the other s - l are read. The kernels compute a row the same way whatever the batch (see
 * test/tiers-restore.test.ts), so with f32 activations a recomputed row is bit-identical to the one first written.
 *
 * l is fixed ('read': 0, 'recompute': s, { l }: min(l, s)) or, for 'auto', KVPR's split with rates measured once per
 * model and configuration (`measureRestoreRates`): the cold tier's read bandwidth, the per-token cost of the
 * recompute at this chunk size (activation conversion, both projections, bias, RoPE, conversion to the KV type,
 * expressed as FLOP/s of the projections), and no dequantization (cold rows are staged in their stored type; the
 * attention kernel reads them like hot rows). A split is kept only if it wins by more than the fixed cost of a
 * recompute (`chooseSplit`). Recompute and reading overlap when the tier's transfers need no CPU thread
 * (ColdLink.async) or when the kernels have worker threads: the main thread copies the read rows while the workers
 * run the projections (Kernels.parallel's `alongside`), then joins them. With neither, the no-overlap form applies.
 */
import { GGMLType } from '../gguf/types.js';
import { OptionError } from '../errors.js';
import type { Kernels } from '../runtime/kernels.js';
import { kvElement } from '../kv/element.js';
import type { KVElement } from '../kv/element.js';
import { now } from '../kv/length.js';
import { ColdLink } from './cold-link.js';
import { kvprSplit, kvprTime } from './kvpr.js';
import type { KvprRates, KvprShape } from './kvpr.js';

export type RestoreMode = 'read' | 'recompute' | 'auto' | { l: number };
export type ActivationType = 'f32' | 'f16';

/**
 * KVPR's rates plus what its model leaves out on a CPU: a fixed cost of any restore that recomputes (waking the
 * worker threads, RoPE tables, a projection call however few its rows), measured as a one-row recompute minus one
 * token's share.
 */
export interface RestoreRates extends KvprRates {
  recomputeFixedS: number;
}

/** The modelled restore time of s cold tokens recomputing l: KVPR's T(l), plus the fixed cost when l > 0. */
export function restoreTime(shape: KvprShape, rates: RestoreRates, l: number): number {
  return kvprTime(shape, rates, l) + (l > 0 ? rates.recomputeFixedS : 0);
}

/** KVPR's split, kept only where it beats reading everything by more than the fixed cost of recomputing. */
export function chooseSplit(shape: KvprShape, rates: RestoreRates): number {
  const sp = kvprSplit(shape, rates);
  return sp.l > 0 && sp.timeS + rates.recomputeFixedS >= sp.readAllS ? 0 : sp.l;
}

/** Rows recomputed per projection call (the batch the rates are measured at). */
export const RESTORE_ROWS = 64;

/** Arena buffers a projection call may use (allocated by the caller for up to `rows` rows). */
export interface ProjectionScratch {
  /** Activations converted to the K and V weights' formats (unused where the format is f32). */
  act: [number, number];
  /** RoPE (cos, sin) table of the rows. */
  rope: number;
}

/** The K/V projections of a model (LlamaGraph implements it): what a restore recomputes with. */
export interface KVProjector {
  readonly nLayers: number;
  /** Width of a layer input (the hidden size) and of one K (or V) row. */
  readonly hidden: number;
  readonly kvDim: number;
  readonly headDim: number;
  /** Arena bytes of each `act` buffer for `rows` rows (0 where the weights take f32 activations as they are). */
  actScratchBytes(rows: number): number;
  /**
   * K and V rows (f32, kvDim apart) of layer `l` for n f32 layer inputs at `x`, with RoPE at `positions`: the same
   * kernels, bias and RoPE as the forward pass. `alongside` runs on this thread while worker threads compute.
   */
  project(l: number, x: number, n: number, positions: ArrayLike<number>, kOut: number, vOut: number, ws: ProjectionScratch, alongside?: () => void): void;
}

/** Where restored rows go, and how stored rows are read: the cold tier as the restore sees it (tiered.ts). */
export interface ColdTier {
  /** Arena addresses of position j's staging rows (K and V) of the layer being restored. */
  kStage(j: number): number;
  vStage(j: number): number;
  /** Copies the stored K and V of positions[from..to) of layer l into their staging rows; returns bytes copied. */
  readRows(l: number, positions: Int32Array, from: number, to: number): number;
}

export interface RestoreStats {
  mode: string;
  /** Cold rows restored by recompute and by reading, over all layers and steps. */
  recomputedRows: number;
  readRows: number;
  /** Milliseconds spent restoring (recompute, reads and waits for the tier). */
  restoreMs: number;
  /** Host bytes of saved activations. */
  activationBytes: number;
  /** The last restore's split: s cold rows, l recomputed. */
  lastSplit: { s: number; l: number };
  /** The rates 'auto' splits with (undefined for a fixed split). */
  rates?: RestoreRates;
}

export interface RestoreConfig {
  mode: RestoreMode;
  activations: ActivationType;
  link: ColdLink;
  element: KVElement;
  contextLength: number;
}

/** Arena bytes a Restorer holds. */
export function restoreArenaBytes(p: KVProjector | undefined, cfg: Pick<RestoreConfig, 'mode' | 'activations'>): number {
  if (cfg.mode === 'read' || !p) return 0;
  const n = RESTORE_ROWS;
  return n * p.hidden * 4 + (cfg.activations === 'f16' ? n * p.hidden * 2 : 0) + 2 * p.actScratchBytes(n) + 2 * n * p.kvDim * 4 + n * p.headDim * 4;
}

/** The f16 row conversion of the KV kernels, reused for layer inputs. */
const F16_ROWS = kvElement('f16', 1, 8);

/** Rates per projector and configuration: measured once per model (a start-up cost of tens of milliseconds). */
const RATES = new WeakMap<KVProjector, Map<string, RestoreRates>>();

export class Restorer {
  private readonly act: Uint8Array[] = [];
  private readonly actRow: number;
  private readonly ptrs: number[] = [];
  private x = 0;
  private xh = 0;
  private kOut = 0;
  private vOut = 0;
  private ws: ProjectionScratch = { act: [0, 0], rope: 0 };
  private readonly pos = new Int32Array(RESTORE_ROWS);
  private rates: RestoreRates | undefined;
  private recomputed = 0;
  private read = 0;
  private ms = 0;
  private last = { s: 0, l: 0 };
  private mode: RestoreMode;
  /** Milliseconds the last restore spent recomputing, from the arrival of the activations (for the rates). */
  private computeMs = 0;

  constructor(private readonly kern: Kernels, private readonly cfg: RestoreConfig, private readonly proj: KVProjector | undefined) {
    this.mode = cfg.mode;
    if (cfg.mode !== 'read' && !proj) throw new OptionError('kv.restore', 'this model has no K/V projections to recompute with');
    this.actRow = proj ? proj.hidden * (cfg.activations === 'f16' ? 2 : 4) : 0;
    if (!this.keeps || !proj) return;
    const n = RESTORE_ROWS;
    const a = (bytes: number) => {
      const p = bytes > 0 ? kern.alloc(bytes, 64) : 0;
      if (p) this.ptrs.push(p);
      return p;
    };
    try {
      this.x = a(n * proj.hidden * 4);
      if (cfg.activations === 'f16') this.xh = a(n * proj.hidden * 2);
      this.ws = { act: [a(proj.actScratchBytes(n)), a(proj.actScratchBytes(n))], rope: a(n * proj.headDim * 4) };
      this.kOut = a(n * proj.kvDim * 4);
      this.vOut = a(n * proj.kvDim * 4);
    } catch (e) {
      this.dispose();
      throw e;
    }
    for (let l = 0; l < proj.nLayers; l++) this.act.push(new Uint8Array(0));
  }

  /** Activations are kept (every mode but 'read' at creation). */
  get keeps(): boolean {
    return this.cfg.mode !== 'read';
  }

  /** Changes how later restores split (benches sweep l on one filled cache); needs the activations kept. */
  setMode(mode: RestoreMode): void {
    if (!this.keeps && mode !== 'read') throw new OptionError('kv.restore', 'this cache was created with restore \'read\' and keeps no layer inputs');
    this.mode = mode;
  }

  /** Saves the layer inputs (n f32 rows at x) of positions pos0.. of layer l. */
  saveInputs(l: number, pos0: number, x: number, n: number): void {
    if (!this.keeps) return;
    const p = this.proj!;
    const want = (pos0 + n) * this.actRow;
    if (this.act[l]!.length < want) {
      const g = new Uint8Array(Math.min(this.cfg.contextLength * this.actRow, Math.max(want, 2 * this.act[l]!.length, 64 * this.actRow)));
      g.set(this.act[l]!);
      this.act[l] = g;
    }
    const host = this.act[l]!;
    if (this.cfg.activations === 'f32') {
      host.set(this.kern.u8(x, n * this.actRow), pos0 * this.actRow);
      return;
    }
    for (let i = 0; i < n; i += RESTORE_ROWS) {
      const m = Math.min(RESTORE_ROWS, n - i);
      // The f16 KV element's conversion: f32 -> IEEE half, rounded to nearest even.
      this.kern.k.kv_store_rows(F16_ROWS.id, 0, x + i * p.hidden * 4, this.xh, m, p.hidden, p.hidden * 2);
      host.set(this.kern.u8(this.xh, m * this.actRow), (pos0 + i) * this.actRow);
    }
  }

  /** Tokens to recompute out of s cold ones. */
  split(s: number): number {
    const m = this.mode;
    if (m === 'read' || s === 0) return 0;
    if (m === 'recompute') return s;
    if (typeof m === 'object') return Math.min(m.l, s);
    this.rates ??= measureRestoreRates(this.kern, this.proj!, this.cfg);
    return chooseSplit(this.shape(s), this.rates);
  }

  /** The cost model's shape for s cold tokens. */
  shape(s: number): KvprShape {
    const p = this.proj!;
    return { hidden: p.hidden, kvWidth: 2 * p.kvDim, actBytes: this.actRow / p.hidden, kvBytes: this.cfg.element.rowBytes / p.kvDim, tokens: s };
  }

  /** The rates 'auto' uses (measured on first use). */
  restoreRates(): RestoreRates {
    if (!this.proj) throw new OptionError('kv.restore', 'no projector to measure');
    this.rates ??= measureRestoreRates(this.kern, this.proj, this.cfg);
    return this.rates;
  }

  /**
   * Restores the s cold rows `cold[0..s)` (ascending positions) of layer l into their staging rows. `promotion`:
   * recompute them all, into the places `tier` gives, without counting as the step's restore (lastSplit).
   */
  restore(l: number, cold: Int32Array, s: number, tier: ColdTier, promotion = false): void {
    if (s === 0) return;
    const lr = promotion ? s : this.split(s); // before the clock: the first 'auto' split measures the rates
    const t0 = now();
    const { link, element: el } = this.cfg;
    // One link: the activations of the first lr rows arrive first, then the stored rows of the rest.
    const actDone = link.transfer(lr * this.actRow);
    const kvDone = link.transfer(2 * (s - lr) * el.rowBytes);
    const readRest = () => { tier.readRows(l, cold, lr, s); };
    if (lr > 0) {
      link.waitUntil(actDone);
      const tc = now();
      const p = this.proj!;
      for (let c = 0; c < lr; c += RESTORE_ROWS) {
        const n = Math.min(RESTORE_ROWS, lr - c);
        this.loadInputs(l, cold, c, n);
        for (let i = 0; i < n; i++) this.pos[i] = cold[c + i]!;
        p.project(l, this.x, n, this.pos.subarray(0, n), this.kOut, this.vOut, this.ws, c === 0 ? readRest : undefined);
        this.storeRows(cold, c, n, tier);
      }
      this.computeMs = now() - tc;
    } else {
      readRest();
    }
    link.waitUntil(kvDone);
    this.recomputed += lr;
    this.read += s - lr;
    if (!promotion) this.last = { s, l: lr };
    this.ms += now() - t0;
  }

  /** Layer inputs of cold[c..c+n) into this.x as f32 rows. */
  private loadInputs(l: number, cold: Int32Array, c: number, n: number): void {
    const host = this.act[l]!;
    const ar = this.actRow;
    const dst = this.cfg.activations === 'f32' ? this.x : this.xh;
    const mem = new Uint8Array(this.kern.memory.buffer);
    for (let i = 0; i < n; ) {
      let e = i + 1; // a run of consecutive positions is one copy
      while (e < n && cold[c + e] === cold[c + e - 1]! + 1) e++;
      const j = cold[c + i]!;
      mem.set(host.subarray(j * ar, (j + e - i) * ar), dst + i * ar);
      i = e;
    }
    if (this.cfg.activations === 'f16') this.kern.k.dequantize_row(GGMLType.F16, this.xh, this.x, n * this.proj!.hidden);
  }

  /** Recomputed f32 rows i of kOut/vOut into the staging rows of cold[c+i], in the cache's element type. */
  private storeRows(cold: Int32Array, c: number, n: number, tier: ColdTier): void {
    const el = this.cfg.element;
    const rf = this.proj!.kvDim;
    for (let i = 0; i < n; ) {
      let e = i + 1;
      while (e < n && cold[c + e] === cold[c + e - 1]! + 1) e++;
      const j = cold[c + i]!;
      this.kern.k.kv_store_rows(el.id, el.qBlock, this.kOut + i * rf * 4, tier.kStage(j), e - i, rf, el.rowBytes);
      this.kern.k.kv_store_rows(el.id, el.qBlock, this.vOut + i * rf * 4, tier.vStage(j), e - i, rf, el.rowBytes);
      i = e;
    }
  }

  stats(): RestoreStats {
    const m = this.mode;
    return {
      mode: typeof m === 'object' ? `l=${m.l}` : m, recomputedRows: this.recomputed, readRows: this.read, restoreMs: this.ms,
      activationBytes: this.act.reduce((a, h) => a + h.length, 0), lastSplit: { ...this.last }, rates: this.rates,
    };
  }

  /** Milliseconds the last restore spent recomputing once its activations had arrived. */
  get lastComputeMs(): number {
    return this.computeMs;
  }

  /** Measurement buffers for measureRestoreRates (the restorer's own). */
  buffers(): { x: number; kOut: number; vOut: number; ws: ProjectionScratch } {
    return { x: this.x, kOut: this.kOut, vOut: this.vOut, ws: this.ws };
  }

  dispose(): void {
    for (const p of this.ptrs.splice(0)) this.kern.free(p);
    this.x = this.xh = this.kOut = this.vOut = 0;
  }
}

/** Runs `fn` until at least `minMs` and `minReps` have passed; returns the median ms per call. */
function timePerCall(fn: () => void, minMs: number, minReps: number, median: true): number {
  const times: number[] = [];
  fn();
  const t0 = now();
  while (times.length < minReps || now() - t0 < minMs) {
    const t = now();
    fn();
    times.push(now() - t);
  }
  times.sort((a, b) => a - b);
  return median ? times[times.length >> 1]! : times.reduce((a, b) => a + b, 0) / times.length;
}

/**
 * The mean of the times `fn` reports, over at least `minMs` and `minReps` calls after a warm-up. The mean, not the
 * median: on a busy machine a restore of many rows is descheduled in proportion to its length, and a median of
 * short calls would miss that.
 */
function timeOf(fn: () => number, minMs: number, minReps: number): number {
  fn();
  let sum = 0;
  let reps = 0;
  const t0 = now();
  while (reps < minReps || now() - t0 < minMs) {
    sum += fn();
    reps++;
  }
  return sum / reps;
}

/**
 * The rates of KVPR's cost model for this projector, cold tier and thread count, measured on the kernels (cached per
 * projector and configuration, a few tens of milliseconds once): the tier's read bandwidth (layer-sized reads from a
 * host buffer larger than the CPU caches, through the link), and the recompute's per-token and fixed time (restores
 * of RESTORE_ROWS rows and of one row through every layer in turn, random layer inputs, caches flushed between). It
 * uses a scratch restorer of its own: a few arena buffers of RESTORE_ROWS rows, freed before it returns.
 */
export function measureRestoreRates(kern: Kernels, proj: KVProjector, cfg: Pick<RestoreConfig, 'link' | 'activations' | 'element' | 'contextLength'>): RestoreRates {
  const key = `${cfg.link.bytesPerSec}|${cfg.activations}|${cfg.element.type}|${kern.threads}`;
  let byProj = RATES.get(proj);
  if (!byProj) RATES.set(proj, (byProj = new Map()));
  const hit = byProj.get(key);
  if (hit) return hit;
  // The recompute is timed as restores run it, after waiting for the activations on the link (so worker threads
  // that slept meanwhile are woken as in use), from their arrival: reading them is the model's separate term a.
  const r = new Restorer(kern, { mode: 'recompute', activations: cfg.activations, link: cfg.link, element: cfg.element, contextLength: RESTORE_ROWS }, proj);
  try {
    const n = RESTORE_ROWS;
    const b = r.buffers();
    const el = cfg.element;
    // Read: a host buffer of 8 MiB (past the CPU caches), copied RESTORE_ROWS rows of K and V at a time.
    // Each read is as long as a layer's restore: 4 ms of a limited link, or 16 such chunks of host memory, so the
    // link's wake-up is amortised as in use; the median, as the wait runs on the wall clock.
    const chunk = 2 * n * el.rowBytes;
    const host = new Uint8Array(Math.max(chunk, 8 << 20));
    for (let i = 0; i < host.length; i += 4096) host[i] = i & 255;
    const pieces = Math.max(1, Math.min(256, Math.ceil(cfg.link.async ? (cfg.link.bytesPerSec * 0.004) / chunk : 16)));
    let off = 0;
    const readMs = timePerCall(() => {
      const done = cfg.link.transfer(pieces * chunk);
      const mem = new Uint8Array(kern.memory.buffer);
      for (let i = 0; i < pieces; i++) {
        if (off + chunk > host.length) off = 0;
        mem.set(host.subarray(off, off + chunk / 2), b.kOut);
        mem.set(host.subarray(off + chunk / 2, off + chunk), b.vOut);
        off += chunk;
      }
      cfg.link.waitUntil(done);
    }, 20, 5, true);
    // Recompute: layer inputs like the real ones (unit-scale values), through a full restore of n rows per layer.
    const xs = new Float32Array(n * proj.hidden);
    for (let i = 0; i < xs.length; i++) xs[i] = Math.sin(i * 0.7311) * 1.3;
    for (let l = 0; l < proj.nLayers; l++) r.saveInputs(l, 0, writeRows(kern, b.x, xs), n);
    const kRows = kern.alloc(2 * n * el.rowBytes, 64);
    try {
      const tier: ColdTier = { kStage: (j) => kRows + j * el.rowBytes, vStage: (j) => kRows + (n + j) * el.rowBytes, readRows: () => 0 };
      const cold = Int32Array.from({ length: n }, (_, i) => i);
      let l = 0;
      // Between two restores of a layer the rest of the forward pass runs: stream a buffer larger than the CPU
      // caches first, so the projection weights are no warmer than in use.
      let sink = 0;
      const recompute = (rows: number) => timeOf(() => {
        for (let i = 0; i < host.length; i += 64) sink += host[i]!;
        r.restore(l, cold, rows, tier);
        l = (l + 1) % proj.nLayers;
        return r.lastComputeMs;
      }, 30, Math.max(7, proj.nLayers));
      const manyMs = recompute(n);
      const oneMs = recompute(1);
      if (sink < 0) throw new RangeError('unreachable');
      const perTokenS = Math.max(manyMs - oneMs, manyMs / (2 * n)) / 1000 / (n - 1);
      const rates: RestoreRates = {
        readBytesPerSec: (pieces * chunk * 1000) / readMs,
        matmulFlopsPerSec: (2 * proj.hidden * 2 * proj.kvDim) / perTokenS,
        // Transfers of a bandwidth-limited tier need no thread; on host memory the main thread copies while the
        // workers recompute (Kernels.parallel's alongside), then joins them.
        overlap: cfg.link.async || kern.threads > 1,
        recomputeFixedS: Math.max(0, oneMs / 1000 - perTokenS),
      };
      byProj.set(key, rates);
      return rates;
    } finally {
      kern.free(kRows);
    }
  } finally {
    r.dispose();
  }
}

function writeRows(kern: Kernels, at: number, xs: Float32Array): number {
  kern.write(at, xs);
  return at;
}
