/**
 * KV cache in the wasm arena, behind one interface that hides the layout from the forward pass.
 *
 * Per layer, K and V rows are token-major (`nKVHeads * headDim` values per token), stored as the element type of the
 * options (engine/kv/element.ts: f32, f16 or q8_0). The forward pass asks the cache where to write the n new rows of
 * a layer as f32 (`newKeys` / `newValues`), applies biases and RoPE there, calls `commitRows`, then `attend`, which
 * runs the attention kernel over the layout (engine/kv/attend.ts). Attention is always bounded by the real length,
 * never by capacity. f32 rows are written in place where the layout allows; f16 and q8_0 rows go through f32 staging
 * rows that `commitRows` converts into the cache.
 *
 * Layouts:
 *  - contiguous (`ContiguousKVCache`): one block of `capacity` rows per layer for K and one for V. A growth rule
 *    decides the capacity when a step does not fit (papers.md 1.6): `static` reserves the whole context up front,
 *    `concat` takes exactly what is needed (allocate, copy, free on every step: HF DynamicCache), `bmc:R` takes what
 *    is needed plus R spare rows (copy once, then write in place for the next R steps), `auto` (engine/kv/analytical.ts)
 *    picks the spare rows with the analytical model. Growth copies go through `arena_copy`, so the arena counts them.
 *  - paged (`PagedKVCache`, engine/kv/paged.ts): fixed blocks of B tokens and a block table; nothing is ever copied
 *    by growth.
 * Rollback (speculative decoding) only lowers `length`: nothing is copied.
 */
import { OutOfMemoryError } from '../errors.js';
import type { Kernels } from '../runtime/kernels.js';
import { PagedKVCache } from './paged.js';
import { TieredKVCache } from './tiered.js';
import type { TierStats } from './tiered.js';
import type { KVProjector } from '../tiers/restore.js';
import { autoRuleFor, deferredAutoRule } from './analytical.js';
import { contextOverflow } from './options.js';
import type { KVPolicyName, ResolvedKVOptions } from './options.js';
import { KVLength, StagingRows, now } from './length.js';
import { CONTIGUOUS_BLOCK_ROWS, attend } from './attend.js';
import type { AttentionWorkspace } from './attend.js';
import { kvElement } from './element.js';
import type { KVElement, KVType } from './element.js';
export { now } from './length.js';

export type { KVOptions, KVPolicyName, ResolvedKVOptions } from './options.js';
export { validateKVOptions, parseKVFlag, parseKVTypeFlag, parseKVRestoreFlag } from './options.js';
export type { KVType } from './element.js';

export interface KVStats {
  policy: KVPolicyName;
  /** Element type of the rows. */
  type: KVType;
  /** The contiguous growth rule (e.g. 'bmc:64'), or 'paged:B'. */
  layout: string;
  length: number;
  /** Rows writable per layer without allocating. */
  capacity: number;
  /** Bytes held by K and V rows over all layers (capacity rows of the element type). */
  bytes: number;
  peakBytes: number;
  /** Other arena bytes the cache holds (block tables, f32 staging rows). */
  overheadBytes: number;
  /** Steps that allocated because they did not fit (contiguous: (re)allocated the tensors, the first allocation
   *  included but not the up-front reservation of `static`; paged: added blocks). */
  growths: number;
  /** Bytes copied by growth (contiguous only; paged never copies). Writing new rows is not counted. */
  bytesCopied: number;
  /** Milliseconds spent growing: allocating, copying live rows, zeroing spare rows, freeing (paged: adding blocks). */
  growthMs: number;
  /** Paged only: tokens per block and blocks held per layer (for K, and as many for V). */
  blockSize?: number;
  blocks?: number;
  /** Tiered only: the budget, rows per tier, migrations and bytes moved. */
  tiers?: TierStats;
}

export interface KVCache {
  readonly policy: KVPolicyName;
  readonly length: number;
  readonly capacity: number;
  /** Values per row (nKVHeads * headDim). */
  readonly rowFloats: number;
  /** How rows are stored (bytes per row included). */
  readonly element: KVElement;
  /** Makes rows [length, length + n) writable (may allocate, and for contiguous layouts move the tensors). */
  reserve(n: number): void;
  /**
   * Where the projections write the K (V) rows [length, length + n) of layer `l` reserved by the last `reserve(n)`:
   * n contiguous rows of `rowFloats` f32 (the cache's own rows for f32 where the layout allows, else staging rows).
   * Valid until the next reserve. Rows written there (biases and RoPE included) are final once `commitRows` returns.
   */
  newKeys(l: number): number;
  newValues(l: number): number;
  /** Puts the n rows written at newKeys(l)/newValues(l) at positions pos0.. (pos0 = length), converting them to the
   *  element type: a no-op where f32 rows were written in place. */
  commitRows(l: number, pos0: number, n: number): void;
  /**
   * Causal attention of nQ query rows at positions pos0.. over layer `l`'s rows 0..pos0+nQ-1 (see wasm/attention.ts
   * for q/out strides) with the kernel workspace `ws`, split across the kernel threads by KV head and sequence block.
   * Every layout, thread count and number of rows per call gives bit-identical results.
   */
  attend(l: number, q: number, out: number, ws: AttentionWorkspace, nQ: number, pos0: number, nHeads: number, qStride: number, outStride: number, scale: number): void;
  /** Optional: the layer's input to the K/V projections (n f32 rows at x) for the rows at length.. (before
   *  commitRows), for a cache that keeps them to recompute K and V later (engine/tiers/restore.ts). */
  saveInputs?(l: number, x: number, n: number): void;
  /** Marks n reserved rows as written. */
  advance(n: number): void;
  /** Drops rows past `len` (rollback); no copy. */
  truncate(len: number): void;
  stats(): KVStats;
  dispose(): void;
}

export interface KVShape {
  nLayers: number;
  nKVHeads: number;
  headDim: number;
  contextLength: number;
  /** Query heads (the tiered cache sizes its attention-mass buffers by it). */
  nHeads?: number;
}

/**
 * A contiguous growth rule: the capacity (rows per layer) to reserve at the start, and the capacity to move to when
 * a step needs `need` rows but only `capacity` exist (len = rows in use). The cache clamps the answer to
 * [need, contextLength]. Rules are stateless and may be shared by every session of a model.
 */
export interface KVGrowthRule {
  readonly name: string;
  initialCapacity(contextLength: number): number;
  nextCapacity(len: number, need: number, capacity: number, contextLength: number): number;
}

export const staticRule: KVGrowthRule = {
  name: 'static',
  initialCapacity: (contextLength) => contextLength,
  nextCapacity: (_len, _need, _capacity, contextLength) => contextLength,
};

export const concatRule: KVGrowthRule = {
  name: 'concat',
  initialCapacity: () => 0,
  nextCapacity: (_len, need) => need,
};

export function bmcRule(r: number): KVGrowthRule {
  return {
    name: `bmc:${r}`,
    initialCapacity: () => 0,
    nextCapacity: (_len, need, _capacity, contextLength) => Math.min(need + r, contextLength),
  };
}

/** The contiguous growth rule of a (validated) policy. */
export function growthRule(o: ResolvedKVOptions, shape: KVShape): KVGrowthRule {
  void shape;
  switch (o.policy) {
    case 'static': return staticRule;
    case 'concat': return concatRule;
    case 'bmc': return bmcRule(o.r);
    // Reserves nothing up front; createKVCache binds it to a calibration on the kernels before the first growth.
    case 'auto': return deferredAutoRule;
    case 'paged': case 'tiered': throw new RangeError(`${o.policy} is not a contiguous growth rule`);
  }
}

/**
 * The cache for one sequence. `rule` overrides the contiguous growth rule of `o.policy` (computed once per model).
 * `kSpec`: the most draft tokens a speculative verify pass will add (auto keeps R >= kSpec + 1 so that such a pass
 * lands in spare rows; default analytical.DEFAULT_K_SPEC).
 */
export function createKVCache(kern: Kernels, shape: KVShape, o: ResolvedKVOptions, rule?: KVGrowthRule, kSpec?: number, projector?: KVProjector): KVCache {
  if (o.policy === 'paged') return new PagedKVCache(kern, shape, o.blockSize, o.type);
  if (o.policy === 'tiered') {
    return new TieredKVCache(kern, shape, o.budgetBytes!, o.type, o, {
      restore: o.restore, coldKeep: o.coldKeep, activations: o.activations, coldBandwidth: o.coldBandwidth, projector,
      warm: o.warm, warmFraction: o.warmFraction, cold: o.cold, coldPath: o.coldPath,
    });
  }
  // auto: the analytical model's rule, calibrated on these kernels on first use (engine/kv/analytical.ts).
  if (o.policy === 'auto' && (rule === undefined || rule === deferredAutoRule || kSpec !== undefined)) rule = autoRuleFor(kern, shape, { budgetBytes: o.budgetBytes, type: o.type, kSpec });
  return new ContiguousKVCache(kern, shape, rule ?? growthRule(o, shape), o.policy, o.type);
}

export class ContiguousKVCache extends KVLength implements KVCache {
  private k: number[] = [];
  private v: number[] = [];
  private cap = 0;
  private growths = 0;
  private copied = 0;
  private growMs = 0;
  private peak = 0;
  private disposed = false;
  /** Per layer one K and one V table entry (u32): the attention kernel addresses a contiguous layer as one block. */
  private tables = 0;
  private readonly stage: StagingRows;
  readonly rowFloats: number;
  readonly element: KVElement;

  constructor(
    private readonly kern: Kernels,
    private readonly shape: KVShape,
    readonly rule: KVGrowthRule,
    readonly policy: KVPolicyName = rule.name.replace(/:.*/, '') as KVPolicyName,
    type: KVType = 'f32',
  ) {
    super();
    this.rowFloats = shape.nKVHeads * shape.headDim;
    this.element = kvElement(type, shape.nKVHeads, shape.headDim);
    this.stage = new StagingRows(kern, this.rowFloats);
    this.tables = kern.alloc(8 * shape.nLayers, 64);
    try {
      const initial = this.clampCapacity(rule.initialCapacity(shape.contextLength), 0);
      if (initial > 0) this.grow(initial);
    } catch (e) {
      kern.free(this.tables);
      throw e;
    }
  }

  get capacity(): number { return this.cap; }

  private get rowBytes(): number { return this.element.rowBytes; }

  private clampCapacity(c: number, need: number): number {
    if (!Number.isFinite(c)) throw new RangeError(`KV growth rule ${this.rule.name} returned ${c}`);
    return Math.min(Math.max(Math.ceil(c), need), this.shape.contextLength);
  }

  reserve(n: number): void {
    const need = this.len + n;
    if (need > this.shape.contextLength) throw contextOverflow(need, this.shape.contextLength);
    if (this.element.type !== 'f32') this.stage.ensure(n);
    if (need <= this.cap) return;
    this.grow(this.clampCapacity(this.rule.nextCapacity(this.len, need, this.cap, this.shape.contextLength), need));
    this.growths++;
  }

  /** Moves every layer's K and V to blocks of `cap` rows: allocate, copy the live rows (counted), zero the spare ones, free. */
  private grow(cap: number): void {
    const t0 = now();
    const bytes = cap * this.rowBytes;
    const live = this.len * this.rowBytes;
    const fresh: number[] = [];
    try {
      for (let i = 0; i < 2 * this.shape.nLayers; i++) fresh.push(this.kern.alloc(bytes, 64));
    } catch (e) {
      for (const p of fresh) this.kern.free(p);
      if (e instanceof OutOfMemoryError) throw new OutOfMemoryError(`KV cache for ${cap} tokens`, bytes * 2 * this.shape.nLayers, e.limit);
      throw e;
    }
    const old = [...this.k, ...this.v];
    for (let i = 0; i < fresh.length; i++) {
      if (live > 0) this.kern.copyCounted(fresh[i]!, old[i]!, live);
    }
    const mem = new Uint8Array(this.kern.memory.buffer); // after every alloc: a grow detaches older views
    for (const dst of fresh) mem.fill(0, dst + live, dst + bytes);
    for (const p of old) this.kern.free(p);
    this.copied += live * old.length;
    this.k = fresh.slice(0, this.shape.nLayers);
    this.v = fresh.slice(this.shape.nLayers);
    const table = new Uint32Array(this.kern.memory.buffer, this.tables, 2 * this.shape.nLayers);
    for (let l = 0; l < this.shape.nLayers; l++) {
      table[2 * l] = this.k[l]!;
      table[2 * l + 1] = this.v[l]!;
    }
    this.cap = cap;
    this.peak = Math.max(this.peak, bytes * fresh.length);
    this.growMs += now() - t0;
  }

  /** Byte offset of row 0 of layer `l`'s K (valid until the next reserve). */
  keys(l: number): number { return this.k[l]!; }
  values(l: number): number { return this.v[l]!; }

  newKeys(l: number): number { return this.element.type === 'f32' ? this.k[l]! + this.len * this.rowBytes : this.stage.k; }
  newValues(l: number): number { return this.element.type === 'f32' ? this.v[l]! + this.len * this.rowBytes : this.stage.v; }

  commitRows(l: number, pos0: number, n: number): void {
    if (pos0 !== this.len || pos0 + n > this.cap) throw new RangeError(`KV commit of rows ${pos0}..${pos0 + n} (length ${this.len}, capacity ${this.cap})`);
    if (this.element.type === 'f32') return;
    this.stage.store(this.element, 0, this.k[l]! + pos0 * this.rowBytes, this.v[l]! + pos0 * this.rowBytes, n);
  }

  attend(l: number, q: number, out: number, ws: AttentionWorkspace, nQ: number, pos0: number, nHeads: number, qStride: number, outStride: number, scale: number): void {
    const { nKVHeads, headDim } = this.shape;
    if (pos0 + nQ > this.cap) throw new RangeError(`KV attention over ${pos0 + nQ} rows (capacity ${this.cap})`);
    const view = { kTable: this.tables + 8 * l, vTable: this.tables + 8 * l + 4, blockRows: CONTIGUOUS_BLOCK_ROWS, el: this.element };
    attend(this.kern, ws, view, { q, out, nQ, pos0, nHeads, nKVHeads, headDim, qStride, outStride, scale });
  }

  stats(): KVStats {
    return {
      policy: this.policy, type: this.element.type, layout: this.rule.name, length: this.len, capacity: this.cap,
      bytes: this.cap * this.rowBytes * 2 * this.shape.nLayers, peakBytes: this.peak,
      overheadBytes: (this.tables ? 8 * this.shape.nLayers : 0) + this.stage.bytes,
      growths: this.growths, bytesCopied: this.copied, growthMs: this.growMs,
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of [...this.k, ...this.v]) this.kern.free(p);
    this.kern.free(this.tables);
    this.stage.dispose();
    this.tables = 0;
    this.k = [];
    this.v = [];
    this.cap = 0;
    this.len = 0;
  }
}
