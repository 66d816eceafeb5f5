/**
 * Machine probes (wasm/probe.ts): measured memory bandwidth and SIMD peaks, the physical limits the speed benchmark
 * puts beside its figures. The kernel exports are declared here (a cast of `kernels.k`), and timed here: every figure
 * is the best of several timed runs (other processes only ever add time) after an untimed warm-up.
 *
 * Single thread. The result is keyed by `threads` so that a worker pool can add its figures (each thread probing its
 * own part of the buffer at the same time); until then `measureMachine` only takes threads: 1.
 */
import type { Kernels } from './kernels.js';

/** The probe exports of the kernel module (wasm/README.md, "Probes"). */
export interface ProbeExports {
  probe_read(p: number, nBytes: number, passes: number): number;
  probe_copy(dst: number, src: number, nBytes: number, passes: number): void;
  probe_f32(iters: number, seed: number): number;
  probe_dot_i16(iters: number, seed: number): number;
}

/** f32 operations per iteration of probe_f32 (12 chains x 4 lanes x mul + add). */
export const PROBE_F32_OPS_PER_ITER = 96;
/** Integer operations per iteration of probe_dot_i16 (12 chains x 8 i16 products x multiply + add). */
export const PROBE_DOT_OPS_PER_ITER = 192;

export function probeExports(kern: Kernels): ProbeExports {
  return kern.k as unknown as ProbeExports;
}

export interface MachineOptions {
  /** Threads probing at once (only 1 until the worker pool exists). */
  threads?: number;
  /** Bytes of the memory bandwidth buffer (default 256 MiB: far larger than any L3). */
  bandwidthBytes?: number;
  /** Also measure read bandwidth over buffers of these sizes (bytes), e.g. the L2 and L3 sizes or a model's working set. */
  readSizes?: number[];
  /** Timed runs of each probe (default 5); the best is kept. */
  reps?: number;
  /** Wall time of one timed run of the compute probes (default 20 ms). */
  computeMs?: number;
  /** Called before each probe (progress). */
  onProgress?: (what: string) => void;
}

export interface ReadPoint {
  bytes: number;
  /** GB/s (1e9 bytes per second). */
  gbPerS: number;
}

export interface MachineProbe {
  threads: number;
  /** SIMD sum over `bandwidthBytes`: the read bandwidth of memory, GB/s. */
  readGBs: number;
  /** memory.copy of `bandwidthBytes / 2`, counted as bytes read + bytes written (the STREAM convention), GB/s. */
  copyGBs: number;
  /** f32x4 mul + add, GFLOP/s. */
  f32Gflops: number;
  /** i32x4.dot_i16x8_s + i32x4.add, GOP/s (a multiply-add counts 2). */
  dotGops: number;
  /** Read bandwidth over smaller buffers (cache levels), ascending by size. */
  readCurve: ReadPoint[];
  bandwidthBytes: number;
  ms: number;
}

const MiB = 1 << 20;

/** Best (smallest) wall time of `reps` runs of fn, in seconds, after an untimed warm-up run. */
export function bestSeconds(reps: number, fn: () => void): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return Math.max(best, 1e-6) / 1000;
}

/** Touches every page of [p, p + n) with a non-zero pattern (fresh pages would otherwise read as the shared zero page). */
function fillPages(kern: Kernels, p: number, n: number): void {
  kern.u8(p, n).fill(1);
}

/** Read bandwidth (GB/s) over `bytes` (a multiple of 128) at `p`, with enough passes per call to take ~`minMs`. */
export function readBandwidth(kern: Kernels, p: number, bytes: number, reps = 5, minMs = 5): number {
  const x = probeExports(kern);
  const n = bytes & ~127;
  const t1 = bestSeconds(1, () => x.probe_read(p, n, 1));
  const passes = Math.max(1, Math.ceil(minMs / 1000 / t1));
  const s = bestSeconds(reps, () => x.probe_read(p, n, passes));
  return (n * passes) / s / 1e9;
}

/** Iterations of a compute probe that take about `ms` (from a short trial run). */
function itersFor(ms: number, run: (iters: number) => void): number {
  let iters = 1 << 16;
  for (;;) {
    const t0 = performance.now();
    run(iters);
    const dt = performance.now() - t0;
    if (dt > ms / 8 || iters >= 1 << 30) return Math.max(1, Math.min(2 ** 31 - 1, Math.round((iters * ms) / Math.max(dt, 1e-3))));
    iters *= 4;
  }
}

/**
 * Measures the machine on one kernel instance: read and copy bandwidth on a buffer allocated in its arena (freed
 * again, although the wasm memory keeps its size), and the f32 and i16-dot SIMD peaks.
 */
export function measureMachine(kern: Kernels, opts: MachineOptions = {}): MachineProbe {
  const threads = opts.threads ?? 1;
  if (threads !== 1) throw new RangeError(`measureMachine: threads ${threads}: only single-thread probes exist until the worker pool does`);
  const bytes = Math.max(1 << 16, Math.floor((opts.bandwidthBytes ?? 256 * MiB) / 256) * 256);
  const reps = opts.reps ?? 5;
  const computeMs = opts.computeMs ?? 20;
  const log = opts.onProgress ?? (() => {});
  const x = probeExports(kern);
  const t0 = performance.now();

  log(`read bandwidth (${(bytes / MiB).toFixed(0)} MiB)`);
  const buf = kern.alloc(bytes, 4096);
  let readGBs: number, copyGBs: number;
  const readCurve: ReadPoint[] = [];
  try {
    fillPages(kern, buf, bytes);
    readGBs = (bytes / bestSeconds(reps, () => x.probe_read(buf, bytes, 1))) / 1e9;
    log('copy bandwidth');
    const half = bytes / 2;
    copyGBs = (2 * half) / bestSeconds(reps, () => x.probe_copy(buf + half, buf, half, 1)) / 1e9;
    for (const size of [...(opts.readSizes ?? [])].sort((a, b) => a - b)) {
      const n = Math.min(bytes, Math.max(128, Math.floor(size / 128) * 128));
      log(`read bandwidth (${(n / MiB).toFixed(2)} MiB)`);
      readCurve.push({ bytes: n, gbPerS: readBandwidth(kern, buf, n, reps) });
    }
  } finally {
    kern.free(buf);
  }

  log('f32 SIMD peak');
  const fi = itersFor(computeMs, (n) => x.probe_f32(n, 1));
  const f32Gflops = (fi * PROBE_F32_OPS_PER_ITER) / bestSeconds(reps, () => x.probe_f32(fi, 1)) / 1e9;
  log('i16 dot SIMD peak');
  const di = itersFor(computeMs, (n) => x.probe_dot_i16(n, 1));
  const dotGops = (di * PROBE_DOT_OPS_PER_ITER) / bestSeconds(reps, () => x.probe_dot_i16(di, 1)) / 1e9;

  return { threads, readGBs, copyGBs, f32Gflops, dotGops, readCurve, bandwidthBytes: bytes, ms: performance.now() - t0 };
}
