/**
 * The code each pool worker runs, as one self-contained function: it is shipped to workers as source text
 * (`kernelWorker.toString()`), so it must not refer to anything outside itself. The protocol (slots of the control
 * block in shared memory) is described in pool.ts; the numbers here are those slots.
 *
 * A worker instantiates the kernel module over the shared memory, then loops: wait for the job sequence number to
 * change (spin briefly, then sleep in Atomics.wait), claim parts of the job's calls until none are left, counting each
 * finished part and waking the main thread if it sleeps. It never returns to its event loop until the pool shuts
 * down.
 */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of the control block. */
  ctrl: number;
  /** This worker's thread index (1..threads-1; the main thread is 0). */
  index: number;
  /** Export names; calls name their function by index into this list. */
  names: string[];
}

export function kernelWorker(init: WorkerInit, ready: () => void): void {
  // Slots (i32 unless noted) -- keep in step with pool.ts.
  const SEQ = 0, FINISHED = 1, ERROR = 3, MAIN_SLEEPS = 4, SHUTDOWN = 5, NTHREADS = 6, SPIN = 7, CLAIM = 8, NPARTS = 9, WORKER_PARTS = 10;
  const CALLS_AT = 16, CALL_I32 = 64, MSG_BYTE = 1088, MSG_BYTES = 256, CTRL_BYTES = 1344;
  const { module, memory, ctrl, index, names } = init;
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const exports = instance.exports as Record<string, unknown>;
  const fns = names.map((n) => exports[n] as (...a: number[]) => void);
  const I = new Int32Array(memory.buffer, ctrl, CTRL_BYTES / 4);
  const F = new Float64Array(memory.buffer, ctrl, CTRL_BYTES / 8);
  const args: number[] = [];
  let seen = Atomics.load(I, SEQ);
  ready();
  for (;;) {
    let spins = Atomics.load(I, SPIN);
    while (Atomics.load(I, SEQ) === seen && spins-- > 0) { /* spin: a job usually follows within microseconds */ }
    if (Atomics.load(I, SEQ) === seen) Atomics.wait(I, SEQ, seen);
    if (Atomics.load(I, SEQ) === seen) continue;
    seen = Atomics.load(I, SEQ);
    if (Atomics.load(I, SHUTDOWN) !== 0) return;
    const threads = I[NTHREADS]!;
    const tag = seen & 0x7fff;
    for (;;) {
      // Claim a part: CLAIM is tag << 16 | parts left (see pool.ts); a stale tag or none left ends this job.
      const w = Atomics.load(I, CLAIM);
      if (w >>> 16 !== tag || (w & 0xffff) === 0) break;
      if (Atomics.compareExchange(I, CLAIM, w, w - 1) !== w) continue;
      const part = I[NPARTS]! - (w & 0xffff);
      try {
        // Call c (256 bytes from i32 slot CALLS_AT + c*CALL_I32): i32 [fn, nArgs, loArg, hiArg, granule, perThreadArg],
        // then f64 perThreadStride at the call's f64 slot 4 and up to 24 f64 args from its f64 slot 8.
        const b = CALLS_AT + Math.floor(part / threads) * CALL_I32;
        const p = part % threads;
        const nArgs = I[b + 1]!, loArg = I[b + 2]!, hiArg = I[b + 3]!, granule = I[b + 4]!, ptArg = I[b + 5]!;
        const fb = b / 2;
        args.length = nArgs;
        for (let a = 0; a < nArgs; a++) args[a] = F[fb + 8 + a]!;
        const lo = args[loArg]!, hi = args[hiArg]!;
        const chunk = Math.ceil((hi - lo) / threads / granule) * granule;
        const from = lo + p * chunk;
        const to = Math.min(hi, from + chunk);
        if (from < to) {
          args[loArg] = from;
          args[hiArg] = to;
          if (ptArg >= 0) args[ptArg] = args[ptArg]! + index * F[fb + 4]!;
          fns[I[b]!]!(...args);
        }
      } catch (e) {
        const text = new TextEncoder().encode(`thread ${index}: ${e instanceof Error ? e.message : String(e)}`).subarray(0, MSG_BYTES);
        if (Atomics.compareExchange(I, ERROR, 0, index) === 0) new Uint8Array(memory.buffer, ctrl + MSG_BYTE, MSG_BYTES).fill(0).set(text);
      }
      Atomics.add(I, WORKER_PARTS, 1);
      Atomics.add(I, FINISHED, 1);
      if (Atomics.load(I, MAIN_SLEEPS) !== 0) Atomics.notify(I, FINISHED);
    }
  }
}

export const KERNEL_WORKER_SOURCE: string = kernelWorker.toString();
