/**
 * Tiered KV cache under a memory budget (`kv: { policy: 'tiered', budgetBytes, warm, cold }`,
 * `--kv-budget N --kv-warm q8_0|q4_0 --kv-cold memory|file`).
 *
 * Three tiers, placed per token and per layer:
 *   hot  - a fixed pool of row slots in the arena at the cache's element type, read by the attention kernel in place;
 *   warm - (optional) a fixed pool of slots in the arena holding rows compressed per block (q8_0 or q4_0,
 *          engine/kv/element.ts). A decode step of an f32 cache reads q8_0 warm rows in registers (attendSplit: the
 *          kernel over the warm rows at q8_0 and over the others at f32, merged in a fixed order); otherwise (prefill
 *          chunks, q4_0, f16/q8_0 caches) they are expanded (wasm/kv_convert.ts) into staging rows first;
 *   cold - every row at the cache's type outside the arena (engine/kv/cold-store.ts: host memory, a file, OPFS),
 *          written through once when the token is cached; rows neither hot nor warm are restored from it into staging
 *          rows before attention.
 * Attention reads rows through per-token block tables (block_rows = 1: entry j is row j's address): a hot row's entry
 * is its slot, any other row's is its staging row, at a position-indexed offset in one buffer shared by all layers
 * (so only hot moves rewrite the table). The kernel cannot tell hot rows from staged ones: with no warm tier the
 * logits are bit-identical to the untiered layouts; warm rows carry their quantization error (and, read in
 * registers, that of the query quantized per block, as for q8_0 caches).
 *
 * Arena bytes are fixed at creation and never exceed the budget: tables, the hot and warm pools, the staging rows
 * (one layer at the full context), the warm expansion list and scratch, the split-read tables, the attention-mass
 * buffers, the restore scratch, and f32 rows for the projections' output (STAGE_ROWS rows; a chunk of more rows grows
 * them, beyond the budget). The pools get what the budget leaves, warm taking `warmFraction` of it; too small a
 * budget for the sinks and the window in each pool is an OptionError.
 *
 * Restore (engine/tiers/restore.ts): a Restorer fills the staging rows of the cold rows (neither hot nor warm) before
 * each layer's attention: by reading the stored rows from the cold store ('read', the default) or, with `restore`
 * 'auto' / 'recompute' / { l }, by recomputing some from the layer inputs it keeps (KVPR); with
 * `coldKeep: 'activations'` the cold tier holds only those inputs (no warm tier then: warm rows are compressed from
 * stored K/V), and every cold row is recomputed, for attention and for promotion alike. `coldBandwidth` makes the
 * cold tier a simulated slower one (ColdLink): every read from it (staging, restore, promotion) takes at least
 * bytes / bandwidth.
 *
 * Placement: per layer an EmaPlacement for the hot pool and, with a warm tier, a second one over the same attention
 * mass for the arena as a whole (its capacity: the warm pool). A token is hot if the first keeps it, else warm if the
 * second does, else cold: a token leaving the hot set falls to warm while its EMA stays in the arena's top, and to
 * cold after. Warm slots are independent of hot ones (a hot token usually also has its warm copy, so demoting it
 * costs nothing); sinks and the recent window are pinned in both. New rows are compressed from their f32 projections;
 * rows promoted cold -> warm are compressed from their cold copy, cold -> hot copied exactly.
 * The mass comes from the attention kernel itself (attn_mass: the last row's softmax weights summed over the heads,
 * from the block weights and maxima the kernel already has; the output bits do not change; for a split read,
 * attn_mass_split over both sets' partials, mapped back to positions), so placement runs at every step with or
 * without a trace. Each layer's mass is applied once the step's rows are committed (advance), within the migration
 * budget (kv.migrationRatio, kv.maxMigrationsPerStep). `placement: 'first-come'` skips the mass: the first rows that
 * fit stay in each pool and nothing migrates.
 */
import { OptionError, OutOfMemoryError } from '../errors.js';
import type { Kernels } from '../runtime/kernels.js';
import { EmaPlacement } from '../tiers/placement.js';
import type { PlacementDecision } from '../tiers/placement.js';
import type { KVCache, KVShape, KVStats } from './cache.js';
import { KVLength, StagingRows, now } from './length.js';
import { contextOverflow, DEFAULT_TIER_PLACEMENT, DEFAULT_WARM_FRACTION } from './options.js';
import type { ResolvedTierPlacement } from './options.js';
import { attend, attendSplit, attentionMassBytes, splitFits } from './attend.js';
import type { AttentionWorkspace } from './attend.js';
import { kvElement, warmElement } from './element.js';
import type { KVElement, KVStorageType, KVType, WarmType } from './element.js';
import { createColdStore } from './cold-store.js';
import type { ColdOption, ColdStore } from './cold-store.js';
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
  /** Warm slots per layer, and the warm rows' type ('none': no warm tier). */
  warmRowsPerLayer: number;
  warmType: WarmType;
  /** Tokens hot / warm (not hot) / cold (neither) now, over all layers. */
  hotRows: number;
  warmRows: number;
  coldRows: number;
  /** Arena bytes of the hot and warm pools. */
  hotBytes: number;
  warmBytes: number;
  /** Placement steps (a layer's mass applied once per decode step or prefill chunk), over all layers. */
  placementSteps: number;
  /** Hot-set migrations over all layers: cold or warm -> hot, and hot -> not hot (including those new rows force). */
  promotions: number;
  demotions: number;
  /** The most hot promotions one layer made in one step (bounded by kv.maxMigrationsPerStep). */
  maxPromotionsPerStep: number;
  /** Warm-set moves (into and out of the warm pool). */
  warmPromotions: number;
  warmDemotions: number;
  /**
   * Bytes moved cold -> arena by promotions (hot and warm). A demotion moves no bytes: every row is written through
   * to the cold tier when committed (hostWrittenBytes), so a demoted row's slot is simply freed.
   */
  promotedBytes: number;
  /** Bytes copied cold -> arena to stage cold rows for attention. */
  stagedBytes: number;
  /** Warm bytes expanded into staging rows for attention. */
  expandedBytes: number;
  /** Layer attention calls that read warm rows in registers (split reads) instead of expanding them. */
  splitReads: number;
  /** Milliseconds spent restoring cold rows and expanding warm rows for attention. */
  stageMs: number;
  expandMs: number;
  /** The cold store ('memory', 'file', 'opfs'). */
  coldStore: string;
  /** Bytes written arena -> cold tier (each new row, K and V, once). */
  hostWrittenBytes: number;
  /** Bytes held by the cold tier (K/V rows in its store, and saved activations when restore keeps them). */
  hostBytes: number;
  /** The simulated cold-tier bandwidth (bytes/s; absent: no limit). */
  coldBandwidth?: number;
  /** How cold rows were restored for attention. */
  restore: RestoreStats;
}

/** Restore, warm and cold-tier options of a tiered cache (validated by kv/options.ts). */
export interface TierOptions {
  restore?: RestoreMode;
  /** What the cold tier keeps of a row: its K/V ('kv', default) or only its layer input ('activations'). */
  coldKeep?: 'kv' | 'activations';
  activations?: ActivationType;
  coldBandwidth?: number;
  /** The model's K/V projections (needed unless restore is 'read'). */
  projector?: KVProjector;
  /** The warm tier's type ('none', default: no warm tier) and its share of the pools' bytes. */
  warm?: WarmType;
  warmFraction?: number;
  /** Where cold rows live ('memory', default; 'file'; a SyncFile handle) and a temporary file's directory. */
  cold?: ColdOption;
  coldPath?: string;
}

interface Pools { hot: number; warm: number }

/**
 * Whether decode steps read warm rows in registers (attendSplit: the attention kernel over the warm rows at q8_0 and
 * over the others at f32, merged in a fixed order) rather than expanding them: q8_0 warm rows of an f32 cache. The
 * bench (npm run bench:tiers, warm read path) measured expansion + f32 attention at 1.6-1.9x the in-register time.
 */
function splitReads(el: KVElement, wel: KVElement<'q8_0' | 'q4_0'> | undefined): boolean {
  return el.type === 'f32' && wel?.type === 'q8_0';
}

/** Arena bytes of the attention-mass buffers (none for first-come placement); a split read's fit in the same. */
function massBytes(shape: KVShape, mass: boolean): number {
  if (!mass) return 0;
  const m = attentionMassBytes(shape.nHeads ?? 0, shape.contextLength);
  return m.exp + m.out;
}

/** The arena's parts besides the pools: the attention-mass buffers (or not) and the restore scratch bytes. */
interface Fixed { mass: boolean; restore: number }

/** Arena bytes of a tiered cache with the given pools (rows per layer). */
function arenaBytes(shape: KVShape, el: KVElement, wel: KVElement<'q8_0' | 'q4_0'> | undefined, p: Pools, f: Fixed): number {
  const { nLayers: L, contextLength: C } = shape;
  const rowFloats = shape.nKVHeads * shape.headDim;
  const warm = wel ? 2 * L * p.warm * wel.rowBytes + 2 * C * 8 + rowFloats * 4 + (splitReads(el, wel) ? 4 * C * 4 : 0) : 0;
  return 2 * L * C * 4 + 2 * L * p.hot * el.rowBytes + 2 * C * el.rowBytes + 2 * STAGE_ROWS * rowFloats * 4 + warm + massBytes(shape, f.mass) + f.restore;
}

export class TieredKVCache extends KVLength implements KVCache {
  readonly policy = 'tiered' as const;
  readonly rowFloats: number;
  readonly element: KVElement;
  readonly warmElement: KVElement<'q8_0' | 'q4_0'> | undefined;
  readonly hotRows: number;
  readonly warmRows: number;
  private readonly rb: number;
  private readonly wrb: number;
  private tables = 0;
  private hot = 0;
  private warm = 0;
  private stageRows = 0;
  private u32View: Uint32Array | undefined;
  /** attendSplit's marks of the rows read from warm slots (reused across layers and steps). */
  private splitMark = new Uint8Array(0);
  /** Warm expansion: {source, destination} u32 pairs (2 per row, K and V) and one f32 row of scratch. */
  private pairs = 0;
  private tmp = 0;
  /** Split reads: compact K and V tables of the non-warm rows (A) and of the warm rows (B) of a decode step. */
  private splitTables = 0;
  private readonly newRows: StagingRows;
  private readonly store: ColdStore;
  /** Per layer: hot and warm slot of each position (-1: none), and the free slots. */
  private readonly slotOf: Int32Array[] = [];
  private readonly warmOf: Int32Array[] = [];
  private readonly free: number[][] = [];
  private readonly freeWarm: number[][] = [];
  private readonly place: EmaPlacement[] = [];
  private readonly placeWarm: EmaPlacement[] = [];
  private pending: PlacementDecision[] = [];
  private pendingWarm: PlacementDecision[] = [];
  private reserved = 0;
  private promoted = 0;
  private staged = 0;
  private written = 0;
  private expanded = 0;
  private stageMs = 0;
  private splitSteps = 0;
  private expandMs = 0;
  private maxPromoted = 0;
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
  /** Positions of the cold rows of the layer being restored (ascending). */
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
    const warmType = opts.warm ?? 'none';
    this.warmElement = warmType === 'none' ? undefined : warmElement(warmType, shape.nKVHeads, shape.headDim);
    this.rb = this.element.rowBytes;
    this.wrb = this.warmElement?.rowBytes ?? 0;
    const L = shape.nLayers;
    const C = shape.contextLength;
    this.keepKV = opts.coldKeep !== 'activations';
    // kv/options.ts refuses these combinations with the field's name; a cache built directly gets the same errors.
    if (!this.keepKV && this.warmElement) throw new OptionError('kv.coldKeep', "'activations' keeps no K/V rows to compress into the warm tier: use coldKeep 'kv' with kv.warm");
    if (!this.keepKV && (opts.cold ?? 'memory') !== 'memory') throw new OptionError('kv.cold', "coldKeep 'activations' keeps layer inputs in host memory: a cold store other than 'memory' would hold nothing");
    const restore = { mode: opts.restore ?? (this.keepKV ? 'read' : 'recompute'), activations: opts.activations ?? 'f32' } as const;
    if (!this.keepKV && restore.mode !== 'recompute') throw new OptionError('kv.restore', `with coldKeep 'activations' every cold row is recomputed: restore must be 'recompute', not ${JSON.stringify(restore.mode)}`);
    this.restoreBytes = restoreArenaBytes(opts.projector, restore);
    const fx: Fixed = { mass, restore: this.restoreBytes };
    const fixed = arenaBytes(shape, this.element, this.warmElement, { hot: 0, warm: 0 }, fx);
    const left = Math.max(0, budgetBytes - fixed);
    const f = this.warmElement ? (opts.warmFraction ?? DEFAULT_WARM_FRACTION) : 0;
    const hot = Math.min(C, Math.floor(((1 - f) * left) / (2 * L * this.rb)));
    const warm = this.warmElement ? Math.min(C, Math.floor((left - 2 * L * hot * this.rb) / (2 * L * this.wrb))) : 0;
    const pinned = Math.min(C, SINKS + WINDOW);
    if (!(hot >= pinned) || (this.warmElement && !(warm >= pinned))) {
      const need = arenaBytes(shape, this.element, this.warmElement, { hot: pinned, warm: this.warmElement ? pinned : 0 }, fx);
      const parts = `tables, staging${mass ? ', attention mass' : ''}${this.restoreBytes ? ', restore' : ''}`;
      throw new OptionError('kv.budgetBytes', `${budgetBytes} bytes cannot hold the tiered cache's ${fixed} fixed bytes (${parts}) and ${pinned} ${this.warmElement ? `hot and ${pinned} warm` : 'hot'} rows per layer (${need} bytes in all${this.warmElement ? `, with kv.warmFraction ${f}` : ''})`);
    }
    this.hotRows = hot;
    this.warmRows = warm;
    this.link = new ColdLink(opts.coldBandwidth ?? Infinity);
    this.cold = new Int32Array(C);
    this.tier = {
      kStage: (j) => this.kStage(j),
      vStage: (j) => this.vStage(j),
      readRows: (l, positions, from, to) => this.readRows(l, positions, from, to),
    };
    this.newRows = new StagingRows(kern, this.rowFloats);
    const m = attentionMassBytes(this.nHeads, C);
    const sizes = [2 * L * C * 4, 2 * L * hot * this.rb, 2 * C * this.rb];
    if (this.warmElement) sizes.push(2 * L * warm * this.wrb, 2 * C * 8, this.rowFloats * 4);
    if (splitReads(this.element, this.warmElement)) sizes.push(4 * C * 4);
    if (mass) sizes.push(m.exp, m.out);
    const ptrs: number[] = [];
    const release = () => {
      for (const p of ptrs) kern.free(p);
      this.newRows.dispose();
    };
    const oom = (e: unknown) => e instanceof OutOfMemoryError ? new OutOfMemoryError('tiered KV cache', arenaBytes(shape, this.element, this.warmElement, { hot, warm }, fx), e.limit) : e;
    try {
      for (const b of sizes) ptrs.push(kern.alloc(b, 64));
      this.newRows.ensure(Math.min(C, STAGE_ROWS));
    } catch (e) {
      release();
      throw oom(e);
    }
    let k = 3;
    [this.tables, this.hot, this.stageRows] = ptrs as [number, number, number];
    if (this.warmElement) { [this.warm, this.pairs, this.tmp] = ptrs.slice(3, 6) as [number, number, number]; k = 6; }
    if (splitReads(this.element, this.warmElement)) this.splitTables = ptrs[k++]!;
    if (mass) [this.massExp, this.massOut] = [ptrs[k]!, ptrs[k + 1]!];
    try {
      this.restorer = new Restorer(kern, { ...restore, link: this.link, element: this.element, contextLength: C }, opts.projector);
    } catch (e) {
      release();
      throw oom(e);
    }
    try {
      // With only layer inputs kept, the store stays empty (a memory store allocates nothing until written).
      this.store = createColdStore(opts.cold ?? 'memory', opts.coldPath, 2 * L, this.rb, C);
    } catch (e) {
      release();
      this.restorer.dispose();
      throw e;
    }
    new Uint8Array(kern.memory.buffer, this.hot, 2 * L * hot * this.rb).fill(0);
    new Uint8Array(kern.memory.buffer, this.stageRows, 2 * C * this.rb).fill(0);
    const migration = { migrationRatio: placement.migrationRatio, maxMigrationsPerStep: placement.maxMigrationsPerStep };
    const window = Math.min(WINDOW, hot - Math.min(SINKS, hot));
    for (let l = 0; l < L; l++) {
      this.slotOf.push(new Int32Array(C).fill(-1));
      this.free.push(Array.from({ length: hot }, (_, i) => hot - 1 - i));
      this.place.push(new EmaPlacement({ capacity: hot, sinks: Math.min(SINKS, hot - window), window, ...migration }));
      if (this.warmElement) {
        const ww = Math.min(WINDOW, warm - Math.min(SINKS, warm));
        this.warmOf.push(new Int32Array(C).fill(-1));
        this.freeWarm.push(Array.from({ length: warm }, (_, i) => warm - 1 - i));
        this.placeWarm.push(new EmaPlacement({ capacity: warm, sinks: Math.min(SINKS, warm - ww), window: ww, ...migration }));
      }
      if (mass) this.massOf.push(new Float32Array(C));
    }
    const t = new Uint32Array(kern.memory.buffer);
    for (let l = 0; l < L; l++) {
      for (let j = 0; j < C; j++) {
        t[(this.kTable(l) >>> 2) + j] = this.kStage(j);
        t[(this.vTable(l) >>> 2) + j] = this.vStage(j);
      }
    }
  }

  get capacity(): number { return this.shape.contextLength; }

  private kTable(l: number): number { return this.tables + 8 * l * this.shape.contextLength; }
  private vTable(l: number): number { return this.kTable(l) + 4 * this.shape.contextLength; }
  private kSlot(l: number, s: number): number { return this.hot + (2 * l * this.hotRows + s) * this.rb; }
  private vSlot(l: number, s: number): number { return this.hot + ((2 * l + 1) * this.hotRows + s) * this.rb; }
  private kWarm(l: number, s: number): number { return this.warm + (2 * l * this.warmRows + s) * this.wrb; }
  private vWarm(l: number, s: number): number { return this.warm + ((2 * l + 1) * this.warmRows + s) * this.wrb; }
  private kStage(j: number): number { return this.stageRows + j * this.rb; }
  private vStage(j: number): number { return this.stageRows + (this.shape.contextLength + j) * this.rb; }

  reserve(n: number): void {
    const need = this.len + n;
    if (need > this.shape.contextLength) throw contextOverflow(need, this.shape.contextLength);
    this.newRows.ensure(n);
    this.pending = this.place.map((p) => p.append(n));
    this.pendingWarm = this.placeWarm.map((p) => p.append(n));
    this.reserved = n;
  }

  newKeys(): number { return this.newRows.k; }
  newValues(): number { return this.newRows.v; }

  /** A u32 view of the whole arena, kept until the memory grows (point() runs for every row that moves). */
  private u32(): Uint32Array {
    const buf = this.kern.memory.buffer;
    if (this.u32View?.buffer !== buf) this.u32View = new Uint32Array(buf);
    return this.u32View;
  }

  private mem(at: number, n: number): Uint8Array {
    return new Uint8Array(this.kern.memory.buffer, at, n);
  }

  /** Points position j of layer l at a hot slot (or, s < 0, at its staging row). */
  private point(l: number, j: number, s: number): void {
    const t = this.u32();
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

  private demoteWarm(l: number, j: number): void {
    const s = this.warmOf[l]![j]!;
    if (s < 0) return;
    this.freeWarm[l]!.push(s);
    this.warmOf[l]![j] = -1;
  }

  /** Moves a row into a free hot slot: an exact copy from the cold tier (or, keeping only inputs, recomputed). */
  private promote(l: number, j: number): void {
    if (this.slotOf[l]![j]! >= 0) return;
    const s = this.free[l]!.pop();
    if (s === undefined) throw new RangeError(`tiered KV: no free hot slot in layer ${l}`);
    if (this.keepKV) {
      const done = this.link.transfer(2 * this.rb);
      this.store.read(2 * l, j, this.mem(this.kSlot(l, s), this.rb));
      this.store.read(2 * l + 1, j, this.mem(this.vSlot(l, s), this.rb));
      this.link.waitUntil(done);
    } else {
      // Only the layer input is kept: recompute the row straight into its slot.
      this.single[0] = j;
      this.restorer.restore(l, this.single, 1, { kStage: () => this.kSlot(l, s), vStage: () => this.vSlot(l, s), readRows: () => 0 }, true);
    }
    this.promoted += 2 * this.rb;
    this.point(l, j, s);
  }

  /** Gives rows j (not yet warm) warm slots and compresses their cold copies into them (through their staging rows). */
  private promoteWarm(l: number, js: number[]): void {
    const wel = this.warmElement!;
    const p = new Uint32Array(this.kern.memory.buffer, this.pairs, 4 * js.length);
    let n = 0;
    for (const j of js) {
      if (this.warmOf[l]![j]! >= 0) continue;
      const s = this.freeWarm[l]!.pop();
      if (s === undefined) throw new RangeError(`tiered KV: no free warm slot in layer ${l}`);
      this.warmOf[l]![j] = s;
      const done = this.link.transfer(2 * this.rb);
      this.store.read(2 * l, j, this.mem(this.kStage(j), this.rb));
      this.store.read(2 * l + 1, j, this.mem(this.vStage(j), this.rb));
      this.link.waitUntil(done);
      this.promoted += 2 * this.rb;
      p[4 * n] = this.kStage(j); p[4 * n + 1] = this.kWarm(l, s);
      p[4 * n + 2] = this.vStage(j); p[4 * n + 3] = this.vWarm(l, s);
      n++;
    }
    if (n > 0) this.kern.k.kv_convert_rows(this.element.id, this.element.qBlock, wel.id, wel.qBlock, this.pairs, 2 * n, this.rowFloats, this.tmp);
  }

  private apply(l: number, d: PlacementDecision, w: PlacementDecision | undefined): void {
    for (const j of d.demote) this.demote(l, j);
    if (w) {
      for (const j of w.demote) this.demoteWarm(l, j);
      this.promoteWarm(l, w.promote.filter((j) => j < this.len));
    }
    for (const j of d.promote) if (j < this.len) this.promote(l, j);
  }

  commitRows(l: number, pos0: number, n: number): void {
    if (pos0 !== this.len || n > this.reserved) throw new RangeError(`KV commit of rows ${pos0}..${pos0 + n} (length ${this.len}, reserved ${this.reserved})`);
    const d = this.pending[l]!;
    const w = this.pendingWarm[l];
    for (const j of d.demote) this.demote(l, j);
    if (w) for (const j of w.demote) this.demoteWarm(l, j);
    const cold = new Set(d.cold);
    const notWarm = new Set(w?.cold);
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
      if (this.keepKV) {
        this.store.write(2 * l, j, this.mem(kDst, this.rb));
        this.store.write(2 * l + 1, j, this.mem(vDst, this.rb));
      }
      if (w && !notWarm.has(j)) {
        const ws = this.freeWarm[l]!.pop();
        if (ws === undefined) throw new RangeError(`tiered KV: no free warm slot in layer ${l} for row ${j}`);
        this.warmOf[l]![j] = ws;
        this.newRows.store(this.warmElement!, i, this.kWarm(l, ws), this.vWarm(l, ws), 1);
      }
    }
    if (this.keepKV) this.written += 2 * n * this.rb;
    if (w) this.promoteWarm(l, w.promote.filter((j) => j < pos0));
    for (const j of d.promote) if (j < pos0) this.promote(l, j);
  }

  saveInputs(l: number, x: number, n: number): void {
    this.restorer.saveInputs(l, this.len, x, n);
  }

  /**
   * Copies the stored rows of positions[from..to) of layer l from the cold store into their staging rows. Runs are
   * joined across gaps of at most `gap` rows: placement by attention mass scatters the cold rows, and one read per row
   * costs more in call overhead than reading a few other rows' stored copies along. The positions between two listed
   * ones are hot or warm (the list holds every cold row in order): a hot one's table entry points at its slot, so what
   * staging holds for it is never read, and a warm one's staging row is expanded after this (or not read, in a split
   * read). Every row before the chunk was written through, so a joined run is all stored.
   */
  private readRows(l: number, positions: Int32Array, from: number, to: number): number {
    if (!this.keepKV && to > from) throw new RangeError('tiered KV: the cold tier keeps no K/V rows to read (coldKeep activations)');
    const rb = this.rb;
    const gap = Math.max(1, Math.floor(STAGE_GAP_BYTES / rb));
    for (let i = from; i < to; ) {
      let e = i + 1;
      while (e < to && positions[e]! - positions[e - 1]! - 1 <= gap) e++;
      const j = positions[i]!;
      const bytes = (positions[e - 1]! + 1 - j) * rb;
      this.store.read(2 * l, j, this.mem(this.kStage(j), bytes));
      this.store.read(2 * l + 1, j, this.mem(this.vStage(j), bytes));
      i = e;
    }
    this.staged += 2 * (to - from) * rb;
    return 2 * (to - from) * rb;
  }

  /**
   * Feeds layer l's attention mass of the last step (length = rows in the cache) to its placements (hot, and warm
   * with a warm tier). The cache calls it itself with the kernel's mass; it is public for tests and for placement
   * driven from outside.
   */
  observe(l: number, mass: ArrayLike<number>): void {
    const d = this.place[l]!.observe(mass);
    this.maxPromoted = Math.max(this.maxPromoted, d.promote.length);
    this.apply(l, d, this.placeWarm[l]?.observe(mass));
  }

  /** Expands the warm rows of layer l before position `end` into their staging rows (one kernel call). */
  private stageWarm(l: number, end: number): void {
    const wel = this.warmElement!;
    const slot = this.slotOf[l]!;
    const warm = this.warmOf[l]!;
    const p = new Uint32Array(this.kern.memory.buffer, this.pairs, 4 * end);
    let n = 0;
    for (let j = 0; j < end; j++) {
      const s = warm[j]!;
      if (slot[j]! >= 0 || s < 0) continue;
      p[4 * n] = this.kWarm(l, s); p[4 * n + 1] = this.kStage(j);
      p[4 * n + 2] = this.vWarm(l, s); p[4 * n + 3] = this.vStage(j);
      n++;
    }
    if (n === 0) return;
    this.kern.k.kv_convert_rows(wel.id, wel.qBlock, this.element.id, this.element.qBlock, this.pairs, 2 * n, this.rowFloats, this.tmp);
    this.expanded += 2 * n * this.wrb;
  }

  attend(l: number, q: number, out: number, ws: AttentionWorkspace, nQ: number, pos0: number, nHeads: number, qStride: number, outStride: number, scale: number): void {
    const { nKVHeads, headDim } = this.shape;
    const end = pos0 + nQ;
    if (end > this.len + this.reserved) throw new RangeError(`KV attention over ${end} rows (length ${this.len})`);
    // Restore the cold rows (neither hot nor warm) before this chunk (the chunk's own rows were written to staging or
    // their slots by commitRows); then warm rows are read in registers or expanded over their staging rows.
    const slot = this.slotOf[l]!;
    const warm = this.warmElement ? this.warmOf[l]! : undefined;
    let s = 0;
    for (let j = 0; j < pos0; j++) if (slot[j]! < 0 && (warm === undefined || warm[j]! < 0)) this.cold[s++] = j;
    const t0 = now();
    this.restorer.restore(l, this.cold, s, this.tier);
    const t1 = now();
    this.stageMs += t1 - t0;
    let mass: { exp: number; out: number } | undefined;
    if (this.massExp !== 0 && nQ > 0) {
      if (nHeads !== this.nHeads) throw new RangeError(`tiered KV: attention with ${nHeads} heads, the cache was sized for ${this.nHeads}`);
      mass = { exp: this.massExp, out: this.massOut };
    }
    if (warm && nQ === 1 && this.splitTables && this.attendSplit(l, q, out, ws, pos0, nHeads, qStride, scale, mass)) return;
    if (warm) {
      this.stageWarm(l, pos0);
      this.expandMs += now() - t1;
    }
    const view = { kTable: this.kTable(l), vTable: this.vTable(l), blockRows: 1, el: this.element };
    attend(this.kern, ws, view, { q, out, nQ, pos0, nHeads, nKVHeads, headDim, qStride, outStride, scale, mass });
    if (mass) {
      this.massOf[l]!.set(new Float32Array(this.kern.memory.buffer, this.massOut, end));
      this.massLen[l] = end;
    }
  }

  /**
   * A decode step reading warm rows in registers: compact tables of the other rows (hot, staged cold, the new row) and
   * of the warm rows, then attendSplit. False (nothing done) when there are no warm rows or the partials do not fit.
   * With `mass`, the kernel's mass comes back per set in table order (ascending positions within each set) and is
   * mapped back to positions here.
   */
  private attendSplit(l: number, q: number, out: number, ws: AttentionWorkspace, pos0: number, nHeads: number, qStride: number, scale: number,
    mass: { exp: number; out: number } | undefined): boolean {
    const { nKVHeads, headDim, contextLength: C } = this.shape;
    const slot = this.slotOf[l]!;
    const warm = this.warmOf[l]!;
    // One pass builds both row sets' tables (B: rows read at q8_0 from their warm slots, those neither hot nor the
    // new row; A: every other row, through the cache's table) and marks B's positions for the mass below.
    const t = this.u32();
    const [ka, va, kb, vb] = [0, 1, 2, 3].map((i) => (this.splitTables >>> 2) + i * C) as [number, number, number, number];
    const kt = this.kTable(l) >>> 2;
    const vt = this.vTable(l) >>> 2;
    const kw = this.kWarm(l, 0);
    const vw = this.vWarm(l, 0);
    const wrb = this.wrb;
    if (this.splitMark.length < pos0 + 1) this.splitMark = new Uint8Array(C);
    const isB = this.splitMark;
    let a = 0;
    let b = 0;
    for (let j = 0; j <= pos0; j++) {
      const w = warm[j]!;
      if (j < pos0 && slot[j]! < 0 && w >= 0) {
        t[kb + b] = kw + w * wrb;
        t[vb + b] = vw + w * wrb;
        b++;
        isB[j] = 1;
      } else {
        t[ka + a] = t[kt + j]!;
        t[va + a] = t[vt + j]!;
        a++;
        isB[j] = 0;
      }
    }
    const nA = a;
    const nB = b;
    if (nB === 0 || !splitFits(ws, nHeads, headDim, nA, nB)) return false;
    const view = (k: number, v: number, el: KVElement<KVStorageType>) => ({ kTable: 4 * k, vTable: 4 * v, blockRows: 1, el: el as KVElement });
    attendSplit(this.kern, ws, view(ka, va, this.element), nA, view(kb, vb, this.warmElement!), nB,
      { q, out, nHeads, nKVHeads, headDim, qStride, scale, mass });
    if (mass) {
      // out: A's rows then B's, each in ascending positions (the order the tables were built in above).
      const m = new Float32Array(this.kern.memory.buffer, mass.out, nA + nB);
      const dst = this.massOf[l]!;
      a = 0;
      b = nA;
      for (let j = 0; j <= pos0; j++) dst[j] = isB[j] === 1 ? m[b++]! : m[a++]!;
      this.massLen[l] = pos0 + 1;
    }
    this.splitSteps++;
    return true;
  }

  override advance(n: number): void {
    super.advance(n);
    this.reserved = 0;
    // The step's rows are committed: each layer's placements take the mass of the step's last row.
    for (let l = 0; l < this.massLen.length; l++) {
      if (this.massLen[l] === this.len) this.observe(l, this.massOf[l]!.subarray(0, this.len));
      this.massLen[l] = 0;
    }
  }

  override truncate(len: number): void {
    super.truncate(len);
    this.massLen.fill(0);
    for (let l = 0; l < this.shape.nLayers; l++) {
      // Rows past the new length give their slots back; the placements then restore their invariants.
      for (let j = len; j < this.place[l]!.length; j++) this.demote(l, j);
      if (this.warmElement) for (let j = len; j < this.placeWarm[l]!.length; j++) this.demoteWarm(l, j);
      this.apply(l, this.place[l]!.truncate(len), this.placeWarm[l]?.truncate(len));
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
    const L = this.shape.nLayers;
    const restore = this.restorer.stats();
    let hot = 0;
    let warm = 0;
    for (let l = 0; l < L; l++) {
      const slot = this.slotOf[l]!;
      const w = this.warmOf[l];
      for (let j = 0; j < this.len; j++) {
        if (slot[j]! >= 0) hot++;
        else if (w && w[j]! >= 0) warm++;
      }
    }
    const sum = (ps: EmaPlacement[], k: 'promotions' | 'demotions' | 'steps') => ps.reduce((a, p) => a + p.stats[k], 0);
    return {
      budgetBytes: this.budgetBytes, hotRowsPerLayer: this.hotRows, warmRowsPerLayer: this.warmRows,
      warmType: this.warmElement?.type ?? 'none',
      hotRows: hot, warmRows: warm, coldRows: this.len * L - hot - warm,
      hotBytes: 2 * L * this.hotRows * this.rb, warmBytes: 2 * L * this.warmRows * this.wrb,
      placementSteps: sum(this.place, 'steps'), promotions: sum(this.place, 'promotions'), demotions: sum(this.place, 'demotions'),
      maxPromotionsPerStep: this.maxPromoted,
      warmPromotions: sum(this.placeWarm, 'promotions'), warmDemotions: sum(this.placeWarm, 'demotions'),
      promotedBytes: this.promoted, stagedBytes: this.staged, expandedBytes: this.expanded, stageMs: this.stageMs, expandMs: this.expandMs, splitReads: this.splitSteps,
      coldStore: this.store.kind, hostWrittenBytes: this.written, hostBytes: this.store.bytes + restore.activationBytes,
      ...(this.link.async ? { coldBandwidth: this.link.bytesPerSec } : {}),
      restore,
    };
  }

  stats(): KVStats {
    const L = this.shape.nLayers;
    const bytes = 2 * L * this.hotRows * this.rb + 2 * L * this.warmRows * this.wrb;
    const arena = arenaBytes(this.shape, this.element, this.warmElement, { hot: this.hotRows, warm: this.warmRows }, { mass: this.massExp !== 0, restore: this.restoreBytes });
    return {
      policy: 'tiered', type: this.element.type,
      layout: this.warmElement ? `tiered:${this.hotRows}+${this.warmRows}${this.warmElement.type}` : `tiered:${this.hotRows}`,
      length: this.len, capacity: this.capacity,
      bytes, peakBytes: bytes, overheadBytes: arena - bytes + this.newRows.bytes - 2 * STAGE_ROWS * this.rowFloats * 4,
      growths: 0, bytesCopied: 0, growthMs: 0, tiers: this.tierStats(),
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of [this.tables, this.hot, this.stageRows, this.warm, this.pairs, this.tmp, this.splitTables, this.massExp, this.massOut]) if (p) this.kern.free(p);
    this.newRows.dispose();
    this.restorer.dispose();
    this.store.dispose();
    this.tables = this.hot = this.stageRows = this.warm = this.pairs = this.tmp = this.splitTables = this.massExp = this.massOut = 0;
    this.len = 0;
  }
}
