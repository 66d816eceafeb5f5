/**
 * The link to a cold KV tier: how long reads from it take. Host memory has no limit of its own (a read is the copy,
 * done by the CPU). `kv.coldBandwidth` (bytes/s) instead simulates a slower tier - a disk, a network store, a PCIe
 * link - whose transfers proceed without a CPU thread, as DMA or asynchronous I/O would: each read queues behind the
 * ones before it on the link, completes `bytes / bandwidth` seconds after it starts, and whoever needs the data waits
 * until then. The copy itself still happens (the data is real), in the time the transfer is charged for.
 */
import { now } from '../kv/length.js';

export class ColdLink {
  private busyUntil = 0;
  private cell: Int32Array | undefined;

  /** `bytesPerSec`: Infinity for host memory (no simulated limit). */
  constructor(readonly bytesPerSec = Infinity) {
    this.cell = typeof SharedArrayBuffer === 'function' ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
  }

  /** Transfers run without a CPU thread, so they overlap computation even on one thread. */
  get async(): boolean {
    return Number.isFinite(this.bytesPerSec);
  }

  /** Queues a read of `bytes` and returns when it completes (ms on the now() clock); 0 (done) without a limit. */
  transfer(bytes: number): number {
    if (!this.async) return 0; // the caller's copy is the transfer: no clock read (promotions call this per row)
    const t = now();
    this.busyUntil = Math.max(t, this.busyUntil) + (1000 * bytes) / this.bytesPerSec;
    return this.busyUntil;
  }

  /** Blocks until `t` (ms): sleeps while more than a millisecond is left where the thread may sleep, then spins. */
  waitUntil(t: number): void {
    if (t <= 0) return;
    for (;;) {
      const left = t - now();
      if (left <= 0) return;
      if (left > 1 && this.cell) {
        try {
          Atomics.wait(this.cell, 0, 0, left - 0.5);
          continue;
        } catch {
          this.cell = undefined; // a browser main thread may not block: spin from now on
        }
      }
    }
  }
}
