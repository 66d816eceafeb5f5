/** What every KV layout shares, kept apart from cache.ts and paged.ts (which import each other). */

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
