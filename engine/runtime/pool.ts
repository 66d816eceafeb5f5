/**
 * A pool of workers running the kernel module over one shared memory. The main thread is thread 0 and does its
 * share of every job; workers 1..n-1 do theirs. A job is up to four calls of kernel exports, each with one argument
 * range [lo, hi) (matmul output rows, attention heads) that is split into equal, granule-aligned parts by thread
 * index, and optionally one argument offset per thread (a private scratch buffer). The split only changes which
 * thread computes a row or head, never how, so results are identical for any thread count.
 *
 * One synchronisation per job: the main thread writes the job into the control block (in the arena), bumps the
 * sequence number and notifies. Each call's range is cut into `threads` parts, and every thread, the main one
 * included, claims parts from one counter until none are left: a worker that the OS has not scheduled yet (a busy
 * machine; a browser main thread, which may not sleep, spinning on the other core) only leaves its part to the main
 * thread instead of stalling the job. Workers spin briefly before sleeping, so back-to-back kernels wake them in
 * microseconds. Completion is a count of finished parts that the main thread spins on (and, where the runtime allows
 * blocking the main thread, sleeps on after a while).
 *
 * Control block (bytes): i32 header slots 0..15 (SEQ, FINISHED, NCALLS, ERROR, MAIN_SLEEPS, SHUTDOWN, NTHREADS, SPIN,
 * CLAIM, NPARTS, WORKER_PARTS); 4 calls of 256 bytes from byte 64; an error message (UTF-8, 256 bytes) at byte 1088.
 * CLAIM holds (SEQ & 0x7fff) << 16 | parts not yet claimed; a thread claims with compareExchange, and only under the
 * tag of the job it woke for. The job's calls and NPARTS are written before CLAIM and stay put until every claimed
 * part is finished, so a thread that claimed a part reads them safely. pool-worker.ts reads the same slots.
 */
import { BmcError } from '../errors.js';
import { KERNEL_WORKER_SOURCE } from './pool-worker.js';
import type { WorkerInit } from './pool-worker.js';

const SEQ = 0, FINISHED = 1, NCALLS = 2, ERROR = 3, MAIN_SLEEPS = 4, SHUTDOWN = 5, NTHREADS = 6, SPIN = 7, CLAIM = 8, NPARTS = 9, WORKER_PARTS = 10;
const CALLS_AT = 16, CALL_I32 = 64, MAX_CALLS = 4, MAX_ARGS = 24, MSG_BYTE = 1088, MSG_BYTES = 256;
export const POOL_CTRL_BYTES = 1344;

/** Worker spin budget (Atomics.load iterations, ~0.1-0.5 ms) before it sleeps, and the main thread's likewise. */
const WORKER_SPIN = 100_000;
const MAIN_SPIN = 20_000;
/** A job that makes no progress for this long means a worker is gone; fail instead of hanging. */
const STALL_MS = 120_000;

/** One call of a job: `fn` (an export name) with `args`; args[lo]..args[hi] is the range split across threads. */
export interface PoolCall {
  fn: string;
  args: number[];
  /** Indices into args of the range bounds. */
  lo: number;
  hi: number;
  /** Parts are multiples of this (e.g. the kernel's row tile), except the last. */
  granule: number;
  /** Optional: args[perThread.arg] += threadIndex * perThread.stride (a private buffer per thread). */
  perThread?: { arg: number; stride: number };
  /** Multiply-adds the call performs (estimate); small jobs run on the calling thread alone (Kernels.parallel). */
  work?: number;
}

/** What a runtime adapter provides: start a worker running `source` (see pool-worker.ts) with `init`. */
export interface WorkerHandle { terminate(): void }
export type SpawnWorker = (source: string, init: WorkerInit) => Promise<WorkerHandle>;

/** A kernel worker failed or disappeared; the message says which and why. */
export class PoolError extends BmcError {
  constructor(message: string) {
    super('POOL', message);
  }
}

/** How the pool's jobs were shared: jobs run, parts in them, and parts computed by workers (not the calling thread). */
export interface PoolStats { jobs: number; parts: number; workerParts: number }

export class KernelPool {
  private jobs = 0;
  private parts = 0;
  private readonly I: Int32Array;
  private readonly F: Float64Array;
  private readonly fnIndex: Map<string, number>;
  private readonly mainFns: Record<string, (...a: number[]) => void>;
  private canBlock = true;
  private disposed = false;

  private constructor(
    readonly threads: number,
    private readonly memory: WebAssembly.Memory,
    private readonly ctrl: number,
    names: string[],
    exports: Record<string, unknown>,
    private readonly workers: WorkerHandle[],
  ) {
    this.I = new Int32Array(memory.buffer, ctrl, POOL_CTRL_BYTES / 4);
    this.F = new Float64Array(memory.buffer, ctrl, POOL_CTRL_BYTES / 8);
    this.fnIndex = new Map(names.map((n, i) => [n, i]));
    this.mainFns = exports as Record<string, (...a: number[]) => void>;
  }

  /**
   * Starts threads-1 workers over `memory` (which must be shared) with the control block at `ctrl` (POOL_CTRL_BYTES,
   * zeroed, 8-byte aligned). Resolves once every worker has instantiated the module.
   */
  static async start(threads: number, module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: number,
    exports: Record<string, unknown>, spawn: SpawnWorker): Promise<KernelPool> {
    const names = WebAssembly.Module.exports(module).filter((e) => e.kind === 'function').map((e) => e.name);
    const I = new Int32Array(memory.buffer, ctrl, POOL_CTRL_BYTES / 4);
    I.fill(0);
    I[NTHREADS] = threads;
    I[SPIN] = WORKER_SPIN;
    const workers: WorkerHandle[] = [];
    try {
      for (let index = 1; index < threads; index++) {
        workers.push(await spawn(KERNEL_WORKER_SOURCE, { module, memory, ctrl, index, names }));
      }
    } catch (e) {
      shutdown(I, workers);
      throw e;
    }
    return new KernelPool(threads, memory, ctrl, names, exports, workers);
  }

  /**
   * Runs the calls on all threads and returns when every thread has finished its share. `alongside`, if given, runs
   * on this thread right after the job is posted, while the workers start on it; this thread then claims whatever
   * parts are left (a restore overlaps reading cold rows with recomputing others this way).
   */
  run(calls: PoolCall[], alongside?: () => void): void {
    if (this.disposed) throw new PoolError('the kernel pool was disposed');
    const { I, F } = this;
    if (calls.length > MAX_CALLS) throw new RangeError(`a pool job holds at most ${MAX_CALLS} calls`);
    for (let c = 0; c < calls.length; c++) {
      const call = calls[c]!;
      const fn = this.fnIndex.get(call.fn);
      if (fn === undefined) throw new RangeError(`no kernel export named ${call.fn}`);
      if (call.args.length > MAX_ARGS) throw new RangeError(`${call.fn}: a pool call takes at most ${MAX_ARGS} arguments`);
      const b = CALLS_AT + c * CALL_I32;
      I[b] = fn;
      I[b + 1] = call.args.length;
      I[b + 2] = call.lo;
      I[b + 3] = call.hi;
      I[b + 4] = Math.max(1, call.granule);
      I[b + 5] = call.perThread ? call.perThread.arg : -1;
      F[b / 2 + 4] = call.perThread ? call.perThread.stride : 0;
      for (let a = 0; a < call.args.length; a++) F[b / 2 + 8 + a] = call.args[a]!;
    }
    I[NCALLS] = calls.length;
    const parts = calls.length * this.threads;
    I[NPARTS] = parts;
    this.jobs++;
    this.parts += parts;
    Atomics.store(I, FINISHED, 0);
    const seq = (I[SEQ]! + 1) | 0; // only this thread writes SEQ
    const tag = seq & 0x7fff;
    Atomics.store(I, CLAIM, (tag << 16) | parts);
    Atomics.store(I, SEQ, seq);
    Atomics.notify(I, SEQ);

    let mainError: unknown;
    if (alongside) {
      try {
        alongside();
      } catch (e) {
        mainError = e;
      }
    }
    for (let part = claimPart(I, tag); part >= 0; part = claimPart(I, tag)) {
      try {
        this.runPart(calls, part);
      } catch (e) {
        mainError ??= e;
      }
      Atomics.add(I, FINISHED, 1);
    }
    this.waitParts(parts);
    const failed = Atomics.exchange(I, ERROR, 0);
    if (mainError !== undefined) throw mainError;
    if (failed !== 0) {
      const bytes = new Uint8Array(this.memory.buffer, this.ctrl + MSG_BYTE, MSG_BYTES).slice();
      const end = bytes.indexOf(0);
      throw new PoolError(`kernel worker failed: ${new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end))}`);
    }
  }

  /** Part `part` of the job on this thread (thread 0), by the same split as pool-worker.ts. */
  private runPart(calls: PoolCall[], part: number): void {
    const call = calls[Math.floor(part / this.threads)]!;
    const p = part % this.threads;
    const lo = call.args[call.lo]!;
    const hi = call.args[call.hi]!;
    const chunk = Math.ceil((hi - lo) / this.threads / Math.max(1, call.granule)) * Math.max(1, call.granule);
    const from = lo + p * chunk;
    const to = Math.min(hi, from + chunk);
    if (from >= to) return;
    const args = call.args.slice();
    args[call.lo] = from;
    args[call.hi] = to;
    this.mainFns[call.fn]!(...args);
  }

  stats(): PoolStats {
    return { jobs: this.jobs, parts: this.parts, workerParts: this.disposed ? 0 : Atomics.load(this.I, WORKER_PARTS) };
  }

  /** Waits until all `parts` are finished (the ones the workers claimed). */
  private waitParts(parts: number): void {
    const { I } = this;
    let spins = MAIN_SPIN;
    let last = -1;
    let since = Date.now();
    for (;;) {
      const done = Atomics.load(I, FINISHED);
      if (done >= parts) return;
      if (done !== last) {
        last = done;
        since = Date.now();
      }
      if (spins > 0) {
        spins--;
        continue;
      }
      if (Date.now() - since > STALL_MS) {
        throw new PoolError(`kernel workers made no progress for ${STALL_MS / 1000} s (${done} of ${parts} parts finished); a worker has died`);
      }
      if (this.canBlock) {
        Atomics.store(I, MAIN_SLEEPS, 1);
        try {
          if (Atomics.load(I, FINISHED) === done) Atomics.wait(I, FINISHED, done, 50);
        } catch {
          this.canBlock = false; // a browser main thread may not block: keep spinning
        } finally {
          Atomics.store(I, MAIN_SLEEPS, 0);
        }
      }
    }
  }

  /** Stops the workers. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    shutdown(this.I, this.workers);
  }
}

/**
 * Claims the next unclaimed part of the job tagged `tag`: its index (0, 1, ...), or -1 when none is left or the
 * counter already belongs to another job.
 */
function claimPart(I: Int32Array, tag: number): number {
  for (;;) {
    const w = Atomics.load(I, CLAIM);
    if (w >>> 16 !== tag || (w & 0xffff) === 0) return -1;
    if (Atomics.compareExchange(I, CLAIM, w, w - 1) === w) return I[NPARTS]! - (w & 0xffff);
  }
}

function shutdown(I: Int32Array, workers: WorkerHandle[]): void {
  Atomics.store(I, SHUTDOWN, 1);
  Atomics.add(I, SEQ, 1);
  Atomics.notify(I, SEQ);
  for (const w of workers) w.terminate();
}
