/** What every KV layout shares, kept apart from cache.ts and paged.ts (which import each other). */
import type { Kernels } from '../runtime/kernels.js';
import type { KVElement, KVStorageType } from './element.js';

/** A monotonic clock in milliseconds (performance.now where it exists). */
export const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Length bookkeeping shared by every layout: rows are marked written by advance; rollback only lowers the length. */
export abstract class KVLength {
  protected len = 0;
  abstract get capacity(): number;

  get length(): number { return this.len; }

  advance(n: number): void {
    if (this.len + n > this.capacity) throw new RangeError(`KV advance past capacity (${this.len} + ${n} > ${this.capacity})`);
    this.len += n;
  }

  /** Lowers the length: no copy; rows past it stay allocated as spare rows. */
  truncate(len: number): void {
    if (!Number.isInteger(len) || len < 0 || len > this.len) throw new RangeError(`KV truncate to ${len} (length ${this.len})`);
    this.len = len;
  }
}

/**
 * f32 rows the projections write when they cannot write into the cache itself (another element type, or a step
 * that crosses a paged block boundary); `store` converts them into cache rows. Grows to the largest step seen.
 */
export class StagingRows {
  k = 0;
  v = 0;
  private rows = 0;

  constructor(private readonly kern: Kernels, private readonly rowFloats: number) {}

  /** Arena bytes held (K and V). */
  get bytes(): number { return 2 * this.rows * this.rowFloats * 4; }

  /** Makes room for n rows (reallocating, all or nothing, when it has fewer). */
  ensure(n: number): void {
    if (n <= this.rows) return;
    const bytes = n * this.rowFloats * 4;
    const k = this.kern.alloc(bytes, 64);
    let v: number;
    try {
      v = this.kern.alloc(bytes, 64);
    } catch (e) {
      this.kern.free(k);
      throw e;
    }
    this.free();
    this.k = k;
    this.v = v;
    this.rows = n;
  }

  /** Stores staged rows i0..i0+n-1 as n consecutive cache rows of `el` at kDst and vDst. */
  store(el: KVElement<KVStorageType>, i0: number, kDst: number, vDst: number, n: number): void {
    const at = i0 * this.rowFloats * 4;
    this.kern.k.kv_store_rows(el.id, el.qBlock, this.k + at, kDst, n, this.rowFloats, el.rowBytes);
    this.kern.k.kv_store_rows(el.id, el.qBlock, this.v + at, vDst, n, this.rowFloats, el.rowBytes);
  }

  private free(): void {
    if (this.k) this.kern.free(this.k);
    if (this.v) this.kern.free(this.v);
    this.k = this.v = this.rows = 0;
  }

  dispose(): void {
    this.free();
  }
}
