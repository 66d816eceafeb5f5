/**
 * The code each pool worker runs, as one self-contained function: it is shipped to workers as source text
 * (`kernelWorker.toString()`), so it must not refer to anything outside itself. The protocol (slots of the control
 * block in shared memory) is described in pool.ts; the numbers here are those slots.
 *
 * A worker instantiates the kernel module over the shared memory, then loops: wait for the job sequence number to
 * change (spin briefly, then sleep in Atomics.wait), run its share of every call of the job, count itself done, and
 * wake the main thread if it sleeps. It never returns to its event loop until the pool shuts down.
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
  const SEQ = 0, DONE = 1, NCALLS = 2, ERROR = 3, MAIN_SLEEPS = 4, SHUTDOWN = 5, NTHREADS = 6, SPIN = 7;
  const CALLS_AT = 16, CALL_I32 = 64, MAX_CALLS = 4, MSG_BYTE = 1088, MSG_BYTES = 256, CTRL_BYTES = 1344;
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
    try {
      // Call c (256 bytes from i32 slot CALLS_AT + c*CALL_I32): i32 [fn, nArgs, loArg, hiArg, granule, perThreadArg],
      // then f64 perThreadStride at the call's f64 slot 4 and up to 24 f64 args from its f64 slot 8.
      for (let c = 0; c < Math.min(I[NCALLS]!, MAX_CALLS); c++) {
        const b = CALLS_AT + c * CALL_I32;
        const nArgs = I[b + 1]!, loArg = I[b + 2]!, hiArg = I[b + 3]!, granule = I[b + 4]!, ptArg = I[b + 5]!;
        const fb = b / 2;
        args.length = nArgs;
        for (let a = 0; a < nArgs; a++) args[a] = F[fb + 8 + a]!;
        const lo = args[loArg]!, hi = args[hiArg]!;
        const chunk = Math.ceil((hi - lo) / threads / granule) * granule;
        const from = lo + index * chunk;
        const to = Math.min(hi, from + chunk);
        if (from >= to) continue;
        args[loArg] = from;
        args[hiArg] = to;
        if (ptArg >= 0) args[ptArg] = args[ptArg]! + index * F[fb + 4]!;
        fns[I[b]!]!(...args);
      }
    } catch (e) {
      const text = new TextEncoder().encode(`thread ${index}: ${e instanceof Error ? e.message : String(e)}`).subarray(0, MSG_BYTES);
      if (Atomics.compareExchange(I, ERROR, 0, index) === 0) new Uint8Array(memory.buffer, ctrl + MSG_BYTE, MSG_BYTES).fill(0).set(text);
    }
    Atomics.add(I, DONE, 1);
    if (Atomics.load(I, MAIN_SLEEPS) !== 0) Atomics.notify(I, DONE);
  }
}

export const KERNEL_WORKER_SOURCE: string = kernelWorker.toString();
