/**
 * KV cache in the wasm arena. Per layer, K and V are token-major tensors `[capacity][nKVHeads * headDim]` (f32):
 * appending a token writes one contiguous row, and attention is bounded by `length`, never by capacity.
 *
 * Policies decide how capacity grows when a step does not fit (papers.md 1.6):
 *  - `static`: the whole context is reserved up front; never grows;
 *  - `concat`: capacity = exactly what is needed, so every step allocates, copies and frees (HF DynamicCache);
 *  - `bmc`: capacity = needed + r spare rows; new rows are written in place for the next r steps.
 * Rollback (speculative decoding) only lowers `length`: nothing is copied.
 */
import { OptionError, OutOfMemoryError } from '../errors.js';
import type { Kernels } from '../runtime/kernels.js';

export type KVPolicyName = 'static' | 'concat' | 'bmc';

export interface KVOptions {
  policy?: KVPolicyName;
  /** Spare rows per growth for `bmc` (default 64). */
  r?: number;
}

export interface KVStats {
  policy: KVPolicyName;
  length: number;
  capacity: number;
  /** Bytes held by K and V over all layers. */
  bytes: number;
  peakBytes: number;
  growths: number;
  bytesCopied: number;
}

export interface KVCache {
  readonly length: number;
  readonly capacity: number;
  /** Floats per row (nKVHeads * headDim). */
  readonly rowFloats: number;
  /** Makes rows [length, length + n) writable (may grow, and so move, the tensors). */
  reserve(n: number): void;
  /** Byte offset of row 0 of layer `l`'s K (valid until the next reserve). */
  keys(l: number): number;
  values(l: number): number;
  /** Marks n reserved rows as written. */
  advance(n: number): void;
  /** Drops rows past `len` (rollback); no copy. */
  truncate(len: number): void;
  stats(): KVStats;
  dispose(): void;
}

export interface KVShape {
  nLayers: number;
  rowFloats: number;
  contextLength: number;
}

export function validateKVOptions(o: KVOptions | undefined): Required<KVOptions> {
  const policy = o?.policy ?? 'bmc';
  if (!['static', 'concat', 'bmc'].includes(policy)) throw new OptionError('kv.policy', `"${String(policy)}" is not one of static, concat, bmc`);
  const r = o?.r ?? 64;
  if (!Number.isInteger(r) || r < 1 || r > 1 << 20) throw new OptionError('kv.r', `${r} is not an integer in [1, 1048576]`);
  return { policy, r };
}

export class ContiguousKVCache implements KVCache {
  private k: number[] = [];
  private v: number[] = [];
  private len = 0;
  private cap = 0;
  private growths = 0;
  private copied = 0;
  private peak = 0;
  private disposed = false;

  constructor(private readonly kern: Kernels, private readonly shape: KVShape, private readonly opts: Required<KVOptions>) {
    if (opts.policy === 'static') this.grow(shape.contextLength);
  }

  get length(): number { return this.len; }
  get capacity(): number { return this.cap; }
  get rowFloats(): number { return this.shape.rowFloats; }

  private get rowBytes(): number { return this.shape.rowFloats * 4; }

  reserve(n: number): void {
    const need = this.len + n;
    if (need > this.shape.contextLength) {
      throw new OptionError('contextLength', `the sequence would reach ${need} tokens, past the context length ${this.shape.contextLength}`);
    }
    if (need <= this.cap) return;
    const { policy, r } = this.opts;
    const target = policy === 'concat' ? need : policy === 'bmc' ? Math.min(need + r, this.shape.contextLength) : this.shape.contextLength;
    this.grow(target);
  }

  /** Moves every layer's K and V to blocks of `cap` rows: allocate, copy the live rows, zero the spare ones, free. */
  private grow(cap: number): void {
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
    const mem = new Uint8Array(this.kern.memory.buffer);
    const old = [...this.k, ...this.v];
    for (let i = 0; i < fresh.length; i++) {
      const dst = fresh[i]!;
      if (live > 0) mem.copyWithin(dst, old[i]!, old[i]! + live);
      mem.fill(0, dst + live, dst + bytes);
    }
    for (const p of old) this.kern.free(p);
    if (old.length > 0) {
      this.growths++;
      this.copied += live * old.length;
    }
    this.k = fresh.slice(0, this.shape.nLayers);
    this.v = fresh.slice(this.shape.nLayers);
    this.cap = cap;
    this.peak = Math.max(this.peak, bytes * fresh.length);
  }

  keys(l: number): number { return this.k[l]!; }
  values(l: number): number { return this.v[l]!; }

  advance(n: number): void {
    if (this.len + n > this.cap) throw new RangeError(`KV advance past capacity (${this.len} + ${n} > ${this.cap})`);
    this.len += n;
  }

  truncate(len: number): void {
    if (!Number.isInteger(len) || len < 0 || len > this.len) throw new RangeError(`KV truncate to ${len} (length ${this.len})`);
    this.len = len;
  }

  stats(): KVStats {
    return {
      policy: this.opts.policy, length: this.len, capacity: this.cap, bytes: this.cap * this.rowBytes * 2 * this.shape.nLayers,
      peakBytes: this.peak, growths: this.growths, bytesCopied: this.copied,
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of [...this.k, ...this.v]) this.kern.free(p);
    this.k = [];
    this.v = [];
    this.cap = 0;
    this.len = 0;
  }
}
