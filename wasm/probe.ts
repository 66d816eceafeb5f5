// Machine probes: the physical limits the benchmarks compare the kernels against (scripts/bench/bench-speed.ts).
// Each probe does a known amount of work on one thread and returns a value that depends on all of it (so that no
// compiler can drop the work); the caller times the call. JS side: engine/runtime/probe.ts.
//
//   probe_read     SIMD sum over a buffer: read bandwidth (a buffer far larger than L3: memory; smaller: caches).
//   probe_copy     memory.copy of a buffer: copy bandwidth (the instruction the KV cache's growth copies use).
//   probe_f32      f32x4 mul+add chains: peak f32 SIMD throughput (wasm SIMD has no fused multiply-add).
//   probe_dot_i16  i32x4.dot_i16x8_s + i32x4.add chains: peak throughput of the quantized kernels' inner operation.
//
// The compute probes run 12 independent chains so that the pipes, not the latency of one chain, set the rate: 12 chains
// and the two constants take 14 vector registers, within the 15 V8 allocates on x64. Measured on a Zen 3 core: 8 and 10
// chains are latency-bound (13% and 6% slower), 14 and 16 spill to the stack (30% slower).

/** Sums the i32 lanes of `n_bytes` at `p` (a multiple of 128) `passes` times; 8 accumulators, 128 bytes per step. */
export function probe_read(p: usize, n_bytes: usize, passes: i32): i32 {
  let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
  let a4 = i32x4.splat(0), a5 = i32x4.splat(0), a6 = i32x4.splat(0), a7 = i32x4.splat(0);
  const end = p + (n_bytes & ~(<usize>127));
  for (let r = 0; r < passes; r++) {
    for (let q = p; q < end; q += 128) {
      a0 = i32x4.add(a0, v128.load(q));
      a1 = i32x4.add(a1, v128.load(q, 16));
      a2 = i32x4.add(a2, v128.load(q, 32));
      a3 = i32x4.add(a3, v128.load(q, 48));
      a4 = i32x4.add(a4, v128.load(q, 64));
      a5 = i32x4.add(a5, v128.load(q, 80));
      a6 = i32x4.add(a6, v128.load(q, 96));
      a7 = i32x4.add(a7, v128.load(q, 112));
    }
  }
  const s = i32x4.add(i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)), i32x4.add(i32x4.add(a4, a5), i32x4.add(a6, a7)));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
}

/** Copies `n_bytes` from `src` to `dst` (memory.copy) `passes` times. */
export function probe_copy(dst: usize, src: usize, n_bytes: usize, passes: i32): void {
  for (let r = 0; r < passes; r++) memory.copy(dst, src, n_bytes);
}

/**
 * `iters` iterations of 12 independent chains acc = acc * m + c (f32x4): 96 f32 operations per iteration (12 chains
 * x 4 lanes x a mul and an add). m slightly below 1 and c small keep every value normal and bounded (no denormal slow
 * paths). Returns the sum of the lanes.
 */
export function probe_f32(iters: i32, seed: f32): f32 {
  const m = f32x4.splat(0.999);
  const c = f32x4.splat(0.001);
  let a0 = f32x4.splat(seed), a1 = f32x4.splat(seed + 1), a2 = f32x4.splat(seed + 2), a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4), a5 = f32x4.splat(seed + 5), a6 = f32x4.splat(seed + 6), a7 = f32x4.splat(seed + 7);
  let a8 = f32x4.splat(seed + 8), a9 = f32x4.splat(seed + 9), a10 = f32x4.splat(seed + 10), a11 = f32x4.splat(seed + 11);
  for (let i = 0; i < iters; i++) {
    a0 = f32x4.add(f32x4.mul(a0, m), c);
    a1 = f32x4.add(f32x4.mul(a1, m), c);
    a2 = f32x4.add(f32x4.mul(a2, m), c);
    a3 = f32x4.add(f32x4.mul(a3, m), c);
    a4 = f32x4.add(f32x4.mul(a4, m), c);
    a5 = f32x4.add(f32x4.mul(a5, m), c);
    a6 = f32x4.add(f32x4.mul(a6, m), c);
    a7 = f32x4.add(f32x4.mul(a7, m), c);
    a8 = f32x4.add(f32x4.mul(a8, m), c);
    a9 = f32x4.add(f32x4.mul(a9, m), c);
    a10 = f32x4.add(f32x4.mul(a10, m), c);
    a11 = f32x4.add(f32x4.mul(a11, m), c);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7))),
    f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11)));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

/**
 * `iters` iterations of 12 independent chains v = v + dot_i16x8_s(v, b), the quantized matmuls' inner operation:
 * each step is 8 i16 multiply-adds per chain (the dot's 8 products summed in pairs, plus the accumulate), so 192
 * integer operations per iteration (12 chains x 8 products x 2). Integer lanes wrap, so any values will do. Returns
 * the sum of the lanes.
 */
export function probe_dot_i16(iters: i32, seed: i32): i32 {
  const b = i16x8(3, -5, 7, -11, 13, -17, 19, -23);
  let a0 = i32x4.splat(seed), a1 = i32x4.splat(seed + 1), a2 = i32x4.splat(seed + 2), a3 = i32x4.splat(seed + 3);
  let a4 = i32x4.splat(seed + 4), a5 = i32x4.splat(seed + 5), a6 = i32x4.splat(seed + 6), a7 = i32x4.splat(seed + 7);
  let a8 = i32x4.splat(seed + 8), a9 = i32x4.splat(seed + 9), a10 = i32x4.splat(seed + 10), a11 = i32x4.splat(seed + 11);
  for (let i = 0; i < iters; i++) {
    a0 = i32x4.add(a0, i32x4.dot_i16x8_s(a0, b));
    a1 = i32x4.add(a1, i32x4.dot_i16x8_s(a1, b));
    a2 = i32x4.add(a2, i32x4.dot_i16x8_s(a2, b));
    a3 = i32x4.add(a3, i32x4.dot_i16x8_s(a3, b));
    a4 = i32x4.add(a4, i32x4.dot_i16x8_s(a4, b));
    a5 = i32x4.add(a5, i32x4.dot_i16x8_s(a5, b));
    a6 = i32x4.add(a6, i32x4.dot_i16x8_s(a6, b));
    a7 = i32x4.add(a7, i32x4.dot_i16x8_s(a7, b));
    a8 = i32x4.add(a8, i32x4.dot_i16x8_s(a8, b));
    a9 = i32x4.add(a9, i32x4.dot_i16x8_s(a9, b));
    a10 = i32x4.add(a10, i32x4.dot_i16x8_s(a10, b));
    a11 = i32x4.add(a11, i32x4.dot_i16x8_s(a11, b));
  }
  const s = i32x4.add(i32x4.add(i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)), i32x4.add(i32x4.add(a4, a5), i32x4.add(a6, a7))),
    i32x4.add(i32x4.add(a8, a9), i32x4.add(a10, a11)));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
}
