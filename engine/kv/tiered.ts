/**
 * Tiered KV cache under a memory budget (`kv: { policy: 'tiered', budgetBytes }`, `--kv tiered --kv-budget N`).
 *
 * Two tiers at the cache's element type (full precision: no compressed warm tier yet):
 *   hot  - a fixed pool of row slots per layer in the arena, read by the attention kernel in place;
 *   cold - host memory outside the arena (one growing Uint8Array per layer for K and one for V). Every row is
 *          copied there when written and never changes, so demoting a row costs nothing and promoting one copies it
 *          into a free hot slot.
 * Attention reads rows through per-token block tables (block_rows = 1: entry j is row j's address), so placement is
 * per token. Before a layer's attention the cold rows it needs are staged into one arena buffer shared by all
 * layers, at position-indexed offsets (so a cold row's table entry never changes). The kernel, and so the logits,
 * cannot tell the tiers apart: results are bit-identical to the untiered layouts.
 *
 * Arena bytes are fixed at creation: tables, hot slots, the staging buffer (one layer's rows at the full context),
 * and f32 rows for the projections' output (STAGE_ROWS rows; a chunk of more rows grows them, beyond the budget).
 * The hot slots get what the budget leaves; too small a budget for the sinks and the window is an OptionError.
 *
 * Restore (engine/tiers/restore.ts): a Restorer fills the staging rows before each layer's attention: by reading
 * the stored rows ('read', the default) or, with `restore` 'auto' / 'recompute' / { l }, by recomputing some from the
 * layer inputs it keeps (KVPR); with `coldKeep: 'activations'` the cold tier holds only those inputs, and every cold
 * row is recomputed, for attention and for promotion alike. `coldBandwidth` makes the cold tier a simulated slower
 * one (ColdLink): every read from it (staging, restore, promotion) takes at least bytes / bandwidth. The restore
 * scratch is counted in the budget.
 *
 * Placement: one EmaPlacement per layer (engine/tiers/placement.ts): sinks and the recent window stay hot. The
 * attention mass that drives the EMA comes from the attention kernel itself (attn_mass: the last row's softmax
 * weights summed over the heads, from the block weights and maxima the kernel already has; the output bits do not
 * change), so placement runs at every step with or without a trace. Each layer's mass is applied once the step's
 * rows are committed (advance), within the migration budget (kv.migrationRatio, kv.maxMigrationsPerStep).
 * `placement: 'first-come'` skips the mass: the first rows that fit stay hot and nothing migrates.
 */
import { OptionError, OutOfMemoryError } from '../errors.js';
import type { Kernels } from '../runtime/kernels.js';
import { EmaPlacement } from '../tiers/placement.js';
import type { PlacementDecision } from '../tiers/placement.js';
import type { KVCache, KVShape, KVStats } from './cache.js';
import { KVLength, StagingRows } from './length.js';
import { contextOverflow } from './options.js';
import { attend, attentionMassBytes } from './attend.js';
import type { AttentionWorkspace } from './attend.js';
import { kvElement } from './element.js';
import type { KVElement, KVType } from './element.js';
import { DEFAULT_TIER_PLACEMENT } from './options.js';
import type { ResolvedTierPlacement } from './options.js';
import { ColdLink } from '../tiers/cold-link.js';
import { Restorer, restoreArenaBytes } from '../tiers/restore.js';
import type { ActivationType, ColdTier, KVProjector, RestoreMode, RestoreRates, RestoreStats } from '../tiers/restore.js';
import type { KvprShape } from '../tiers/kvpr.js';

/** New rows the projection staging is sized for within the budget (the default prefill chunk). */
export const STAGE_ROWS = 128;
const SINKS = 4;
/** Hot rows worth copying along to join two runs of cold rows when staging (about one copy call's overhead). */
const STAGE_GAP_BYTES = 8192;
const WINDOW = 32;

export interface TierStats {
  budgetBytes: number;
  /** Hot slots per layer (K, and as many for V). */
  hotRowsPerLayer: number;
  /** Rows hot / cold now, over all layers. */
  hotRows: number;
  coldRows: number;
  /** Placement steps (a layer's mass applied once per decode step or prefill chunk), over all layers. */
  placementSteps: number;
  /** Migrations over all layers: cold -> hot, and hot -> cold (including those new rows force). */
  promotions: number;
  demotions: number;
  /** The most promotions one layer made in one step (bounded by kv.maxMigrationsPerStep). */
  maxPromotionsPerStep: number;
  /**
   * Bytes moved host -> arena by promotions. A demotion moves no bytes: every row is written through to the host
   * tier when committed (hostWrittenBytes), so a demoted row's slot is simply freed.
   */
  promotedBytes: number;
  /** Bytes copied host -> arena to stage cold rows for attention. */
  stagedBytes: number;
  /** Bytes written arena -> host (each new row, K and V, once). */
  hostWrittenBytes: number;
  /** Host bytes held by the cold tier (K/V rows, and saved activations when restore keeps them). */
  hostBytes: number;
  /** The simulated cold-tier bandwidth (bytes/s; absent: host memory, no limit). */
  coldBandwidth?: number;
  /** How cold rows were restored for attention. */
  restore: RestoreStats;
}

/** Restore and cold-tier options of a tiered cache (validated by kv/options.ts). */
export interface TierOptions {
  restore?: RestoreMode;
  /** What the cold tier keeps of a row: its K/V ('kv', default) or only its layer input ('activations'). */
  coldKeep?: 'kv' | 'activations';
  activations?: ActivationType;
  coldBandwidth?: number;
  /** The model's K/V projections (needed unless restore is 'read'). */
  projector?: KVProjector;
}

/** Arena bytes of the attention-mass buffers (none for first-come placement). */
function massBytes(shape: KVShape, mass: boolean): number {
  if (!mass) return 0;
  const m = attentionMassBytes(shape.nHeads ?? 0, shape.contextLength);
  return m.exp + m.out;
}

/** Arena bytes of a tiered cache with `hot` slots per layer (`extra`: the restore scratch). */
function arenaBytes(shape: KVShape, el: KVElement, hot: number, mass: boolean, extra = 0): number {
  const { nLayers: L, contextLength: C } = shape;
  const rowFloats = shape.nKVHeads * shape.headDim;
  return 2 * L * C * 4 + 2 * L * hot * el.rowBytes + 2 * C * el.rowBytes + 2 * STAGE_ROWS * rowFloats * 4 + massBytes(shape, mass) + extra;
}

export class TieredKVCache extends KVLength implements KVCache {
  readonly policy = 'tiered' as const;
  readonly rowFloats: number;
  readonly element: KVElement;
  readonly hotRows: number;
  private readonly rb: number;
  private tables = 0;
  private hot = 0;
  private stageRows = 0;
  private readonly newRows: StagingRows;
  /** Per layer: hot slot of each position (-1: cold), and the free slots. */
  private readonly slotOf: Int32Array[] = [];
  private readonly free: number[][] = [];
  private readonly place: EmaPlacement[] = [];
  private readonly hostK: Uint8Array[] = [];
  private readonly hostV: Uint8Array[] = [];
  private pending: PlacementDecision[] = [];
  private reserved = 0;
  private promoted = 0;
  private staged = 0;
  private written = 0;
  /** Attention-mass buffers in the arena (0: first-come placement), and each layer's mass of the step, to apply. */
  private massExp = 0;
  private massOut = 0;
  private readonly nHeads: number;
  private readonly massOf: Float32Array[] = [];
  private readonly massLen: Int32Array;
  private disposed = false;
  private readonly link: ColdLink;
  private readonly keepKV: boolean;
  private readonly restorer: Restorer;
  private readonly restoreBytes: number;
  private readonly cold: Int32Array;
  private readonly single = new Int32Array(1);
  /** The cold tier as the restorer sees it: staging rows of the layer being restored, and reads of stored rows. */
  private readonly tier: ColdTier;

  constructor(private readonly kern: Kernels, private readonly shape: KVShape, readonly budgetBytes: number, type: KVType = 'f32',
    readonly placement: ResolvedTierPlacement = DEFAULT_TIER_PLACEMENT, opts: TierOptions = {}) {
    super();
    const mass = placement.placement === 'attention';
    if (mass && !(shape.nHeads !== undefined && shape.nHeads >= shape.nKVHeads)) throw new RangeError('tiered KV: the shape needs nHeads for attention-mass placement');
    this.nHeads = shape.nHeads ?? 0;
    this.massLen = new Int32Array(shape.nLayers);
    this.rowFloats = shape.nKVHeads * shape.headDim;
    this.element = kvElement(type, shape.nKVHeads, shape.headDim);
    this.rb = this.element.rowBytes;
    const L = shape.nLayers;
    const C = shape.contextLength;
    const restore = { mode: opts.restore ?? 'read', activations: opts.activations ?? 'f32' } as const;
    this.restoreBytes = restoreArenaBytes(opts.projector, restore);
    const fixed = arenaBytes(shape, this.element, 0, mass, this.restoreBytes);
    const hot = Math.min(C, Math.floor((budgetBytes - fixed) / (2 * L * this.rb)));
    const pinned = Math.min(C, SINKS + WINDOW);
    if (!(hot >= pinned)) {
      throw new OptionError('kv.budgetBytes', `${budgetBytes} bytes cannot hold the tiered cache's ${fixed} fixed bytes (tables, staging${mass ? ', attention mass' : ''}${this.restoreBytes ? ', restore' : ''}) and ${pinned} hot rows per layer (${arenaBytes(shape, this.element, pinned, mass, this.restoreBytes)} bytes in all)`);
    }
    this.link = new ColdLink(opts.coldBandwidth ?? Infinity);
    this.keepKV = opts.coldKeep !== 'activations';
    if (!this.keepKV && restore.mode !== 'recompute') throw new OptionError('kv.restore', `with coldKeep 'activations' every cold row is recomputed: restore must be 'recompute', not ${JSON.stringify(restore.mode)}`);
    this.cold = new Int32Array(C);
    this.tier = {
      kStage: (j) => this.kStage(j),
      vStage: (j) => this.vStage(j),
      readRows: (l, positions, from, to) => this.readRows(l, positions, from, to),
    };
    this.hotRows = hot;
    this.newRows = new StagingRows(kern, this.rowFloats);
    const ptrs: number[] = [];
    try {
      const m = attentionMassBytes(this.nHeads, C);
      for (const b of [2 * L * C * 4, 2 * L * hot * this.rb, 2 * C * this.rb, ...(mass ? [m.exp, m.out] : [])]) ptrs.push(kern.alloc(b, 64));
      this.newRows.ensure(Math.min(C, STAGE_ROWS));
    } catch (e) {
      for (const p of ptrs) kern.free(p);
      this.newRows.dispose();
      if (e instanceof OutOfMemoryError) throw new OutOfMemoryError('tiered KV cache', arenaBytes(shape, this.element, hot, mass, this.restoreBytes), e.limit);
      throw e;
    }
    try {
      this.restorer = new Restorer(kern, { ...restore, link: this.link, element: this.element, contextLength: C }, opts.projector);
    } catch (e) {
      for (const p of ptrs) kern.free(p);
      this.newRows.dispose();
      if (e instanceof OutOfMemoryError) throw new OutOfMemoryError('tiered KV cache', arenaBytes(shape, this.element, hot, mass, this.restoreBytes), e.limit);
      throw e;
    }
    [this.tables, this.hot, this.stageRows] = ptrs as [number, number, number];
    if (mass) [this.massExp, this.massOut] = [ptrs[3]!, ptrs[4]!];
    new Uint8Array(kern.memory.buffer, this.hot, 2 * L * hot * this.rb).fill(0);
    new Uint8Array(kern.memory.buffer, this.stageRows, 2 * C * this.rb).fill(0);
    const window = Math.min(WINDOW, hot - Math.min(SINKS, hot));
    for (let l = 0; l < L; l++) {
      this.slotOf.push(new Int32Array(C).fill(-1));
      this.free.push(Array.from({ length: hot }, (_, i) => hot - 1 - i));
      this.place.push(new EmaPlacement({
        capacity: hot, sinks: Math.min(SINKS, hot - window), window,
        migrationRatio: placement.migrationRatio, maxMigrationsPerStep: placement.maxMigrationsPerStep,
      }));
      if (mass) this.massOf.push(new Float32Array(C));
      this.hostK.push(new Uint8Array(0));
      this.hostV.push(new Uint8Array(0));
    }
    const t = new Uint32Array(kern.memory.buffer);
    for (let l = 0; l < L; l++) {
      for (let j = 0; j < C; j++) {
        t[(this.kTable(l) >>> 2) + j] = this.stageRows + j * this.rb;
        t[(this.vTable(l) >>> 2) + j] = this.stageRows + (C + j) * this.rb;
      }
    }
  }

  get capacity(): number { return this.shape.contextLength; }

  private kTable(l: number): number { return this.tables + 8 * l * this.shape.contextLength; }
  private vTable(l: number): number { return this.kTable(l) + 4 * this.shape.contextLength; }
  private kSlot(l: number, s: number): number { return this.hot + (2 * l * this.hotRows + s) * this.rb; }
  private vSlot(l: number, s: number): number { return this.hot + ((2 * l + 1) * this.hotRows + s) * this.rb; }
  private kStage(j: number): number { return this.stageRows + j * this.rb; }
  private vStage(j: number): number { return this.stageRows + (this.shape.contextLength + j) * this.rb; }

  reserve(n: number): void {
    const need = this.len + n;
    if (need > this.shape.contextLength) throw contextOverflow(need, this.shape.contextLength);
    this.newRows.ensure(n);
    this.pending = this.place.map((p) => p.append(n));
    this.reserved = n;
  }

  newKeys(): number { return this.newRows.k; }
  newValues(): number { return this.newRows.v; }

  /** Points position j of layer l at a hot slot (or, s < 0, at its staging row). */
  private point(l: number, j: number, s: number): void {
    const t = new Uint32Array(this.kern.memory.buffer);
    t[(this.kTable(l) >>> 2) + j] = s < 0 ? this.kStage(j) : this.kSlot(l, s);
    t[(this.vTable(l) >>> 2) + j] = s < 0 ? this.vStage(j) : this.vSlot(l, s);
    this.slotOf[l]![j] = s;
  }

  private demote(l: number, j: number): void {
    const s = this.slotOf[l]![j]!;
    if (s < 0) return;
    this.free[l]!.push(s);
    this.point(l, j, -1);
  }

  /** Moves a cold row (already in the host tier) into a free hot slot. */
  private promote(l: number, j: number): void {
    if (this.slotOf[l]![j]! >= 0) return;
    const s = this.free[l]!.pop();
    if (s === undefined) throw new RangeError(`tiered KV: no free hot slot in layer ${l}`);
    if (this.keepKV) {
      const done = this.link.transfer(2 * this.rb);
      const mem = new Uint8Array(this.kern.memory.buffer);
      mem.set(this.hostK[l]!.subarray(j * this.rb, (j + 1) * this.rb), this.kSlot(l, s));
      mem.set(this.hostV[l]!.subarray(j * this.rb, (j + 1) * this.rb), this.vSlot(l, s));
      this.link.waitUntil(done);
    } else {
      // Only the layer input is kept: recompute the row straight into its slot.
      this.single[0] = j;
      this.restorer.restore(l, this.single, 1, { kStage: () => this.kSlot(l, s), vStage: () => this.vSlot(l, s), readRows: () => 0 }, true);
    }
    this.promoted += 2 * this.rb;
    this.point(l, j, s);
  }

  private apply(l: number, d: PlacementDecision): void {
    for (const j of d.demote) this.demote(l, j);
    for (const j of d.promote) if (j < this.len) this.promote(l, j);
  }

  private ensureHost(l: number, rows: number): void {
    const want = rows * this.rb;
    if (this.hostK[l]!.length >= want) return;
    const size = Math.min(this.shape.contextLength * this.rb, Math.max(want, 2 * this.hostK[l]!.length, 64 * this.rb));
    for (const host of [this.hostK, this.hostV]) {
      const g = new Uint8Array(size);
      g.set(host[l]!);
      host[l] = g;
    }
  }

  commitRows(l: number, pos0: number, n: number): void {
    if (pos0 !== this.len || n > this.reserved) throw new RangeError(`KV commit of rows ${pos0}..${pos0 + n} (length ${this.len}, reserved ${this.reserved})`);
    const d = this.pending[l]!;
    for (const j of d.demote) this.demote(l, j);
    const cold = new Set(d.cold);
    if (this.keepKV) this.ensureHost(l, pos0 + n);
    for (let i = 0; i < n; i++) {
      const j = pos0 + i;
      let s = -1;
      if (!cold.has(j)) {
        s = this.free[l]!.pop() ?? -1;
        if (s < 0) throw new RangeError(`tiered KV: no free hot slot in layer ${l} for row ${j}`);
      }
      this.point(l, j, s);
      const kDst = s < 0 ? this.kStage(j) : this.kSlot(l, s);
      const vDst = s < 0 ? this.vStage(j) : this.vSlot(l, s);
      this.newRows.store(this.element, i, kDst, vDst, 1);
      if (!this.keepKV) continue;
      const mem = new Uint8Array(this.kern.memory.buffer);
      this.hostK[l]!.set(mem.subarray(kDst, kDst + this.rb), j * this.rb);
      this.hostV[l]!.set(mem.subarray(vDst, vDst + this.rb), j * this.rb);
    }
    this.written += 2 * n * this.rb;
    for (const j of d.promote) if (j < pos0) this.promote(l, j);
  }

  saveInputs(l: number, x: number, n: number): void {
    this.restorer.saveInputs(l, this.len, x, n);
  }

  /**
   * Copies the stored rows of positions[from..to) of layer l into their staging rows. Runs are joined across gaps of
   * at most `gap` hot rows: placement by attention mass scatters the cold rows, and one copy per row costs more in
   * call overhead than copying a few hot rows' host copies along (the tables point hot positions at their slots, so
   * what staging holds for them is never read; the positions between two listed ones are hot, as the list holds every
   * cold row in order).
   */
  private readRows(l: number, positions: Int32Array, from: number, to: number): number {
    if (!this.keepKV && to > from) throw new RangeError('tiered KV: the cold tier keeps no K/V rows to read (coldKeep activations)');
    const mem = new Uint8Array(this.kern.memory.buffer);
    const rb = this.rb;
    const gap = Math.max(1, Math.floor(STAGE_GAP_BYTES / rb));
    for (let i = from; i < to; ) {
      let e = i + 1;
      while (e < to && positions[e]! - positions[e - 1]! - 1 <= gap) e++;
      const j = positions[i]!;
      const k = positions[e - 1]! + 1;
      mem.set(this.hostK[l]!.subarray(j * rb, k * rb), this.kStage(j));
      mem.set(this.hostV[l]!.subarray(j * rb, k * rb), this.vStage(j));
      i = e;
    }
    this.staged += 2 * (to - from) * rb;
    return 2 * (to - from) * rb;
  }

  /**
   * Feeds layer l's attention mass of the last step (length = rows in the cache) to its placement. The cache calls
   * it itself with the kernel's mass; it is public for tests and for placement driven from outside.
   */
  observe(l: number, mass: ArrayLike<number>): void {
    const d = this.place[l]!.observe(mass);
    this.maxPromoted = Math.max(this.maxPromoted, d.promote.length);
    this.apply(l, d);
  }

  private maxPromoted = 0;

  attend(l: number, q: number, out: number, ws: AttentionWorkspace, nQ: number, pos0: number, nHeads: number, qStride: number, outStride: number, scale: number): void {
    const { nKVHeads, headDim } = this.shape;
    const end = pos0 + nQ;
    if (end > this.len + this.reserved) throw new RangeError(`KV attention over ${end} rows (length ${this.len})`);
    // Restore the cold rows before this chunk (the chunk's own cold rows were written to staging by commitRows).
    const slot = this.slotOf[l]!;
    let s = 0;
    for (let j = 0; j < pos0; j++) if (slot[j]! < 0) this.cold[s++] = j;
    this.restorer.restore(l, this.cold, s, this.tier);
    const view = { kTable: this.kTable(l), vTable: this.vTable(l), blockRows: 1, el: this.element };
    let mass: { exp: number; out: number } | undefined;
    if (this.massExp !== 0 && nQ > 0) {
      if (nHeads !== this.nHeads) throw new RangeError(`tiered KV: attention with ${nHeads} heads, the cache was sized for ${this.nHeads}`);
      mass = { exp: this.massExp, out: this.massOut };
    }
    attend(this.kern, ws, view, { q, out, nQ, pos0, nHeads, nKVHeads, headDim, qStride, outStride, scale, mass });
    if (mass) {
      this.massOf[l]!.set(new Float32Array(this.kern.memory.buffer, this.massOut, end));
      this.massLen[l] = end;
    }
  }

  override advance(n: number): void {
    super.advance(n);
    this.reserved = 0;
    // The step's rows are committed: each layer's placement takes the mass of the step's last row.
    for (let l = 0; l < this.massLen.length; l++) {
      if (this.massLen[l] === this.len) this.observe(l, this.massOf[l]!.subarray(0, this.len));
      this.massLen[l] = 0;
    }
  }

  override truncate(len: number): void {
    super.truncate(len);
    this.massLen.fill(0);
    for (let l = 0; l < this.shape.nLayers; l++) {
      // Rows past the new length give their slots back; the placement then restores its invariants.
      for (let j = len; j < this.place[l]!.length; j++) this.demote(l, j);
      this.apply(l, this.place[l]!.truncate(len));
    }
  }

  /** The restore's cost model inputs: its shape for s cold tokens and the measured rates (measuring them on first
   *  use), for benches and tests that compare its predictions with timings. */
  restoreModel(): { shape: (s: number) => KvprShape; rates: RestoreRates } {
    return { shape: (s) => this.restorer.shape(s), rates: this.restorer.restoreRates() };
  }

  /** Changes the restore split of later steps (a cache created with restore other than 'read'). */
  setRestore(mode: RestoreMode): void {
    if (!this.keepKV && mode !== 'recompute') throw new OptionError('kv.restore', 'the cold tier keeps only layer inputs: every cold row is recomputed');
    this.restorer.setMode(mode);
  }

  tierStats(): TierStats {
    const restore = this.restorer.stats();
    let hot = 0;
    for (const p of this.place) hot += p.hotCount;
    let promotions = 0;
    let demotions = 0;
    let steps = 0;
    for (const p of this.place) {
      promotions += p.stats.promotions;
      demotions += p.stats.demotions;
      steps += p.stats.steps;
    }
    return {
      budgetBytes: this.budgetBytes, hotRowsPerLayer: this.hotRows, hotRows: hot, coldRows: this.len * this.shape.nLayers - hot,
      placementSteps: steps, promotions, demotions, maxPromotionsPerStep: this.maxPromoted,
      promotedBytes: this.promoted, stagedBytes: this.staged, hostWrittenBytes: this.written,
      hostBytes: this.hostK.reduce((a, h) => a + 2 * h.length, 0) + restore.activationBytes,
      ...(this.link.async ? { coldBandwidth: this.link.bytesPerSec } : {}),
      restore,
    };
  }

  stats(): KVStats {
    const L = this.shape.nLayers;
    const bytes = 2 * L * this.hotRows * this.rb;
    return {
      policy: 'tiered', type: this.element.type, layout: `tiered:${this.hotRows}`, length: this.len, capacity: this.capacity,
      bytes, peakBytes: bytes, overheadBytes: arenaBytes(this.shape, this.element, this.hotRows, this.massExp !== 0, this.restoreBytes) - bytes + this.newRows.bytes - 2 * STAGE_ROWS * this.rowFloats * 4,
      growths: 0, bytesCopied: 0, growthMs: 0, tiers: this.tierStats(),
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of [this.tables, this.hot, this.stageRows, this.massExp, this.massOut]) if (p) this.kern.free(p);
    this.newRows.dispose();
    this.restorer.dispose();
    this.tables = this.hot = this.stageRows = this.massExp = this.massOut = 0;
    this.len = 0;
  }
}
