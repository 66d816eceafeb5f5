// Half (IEEE binary16) and bfloat16 conversions.

/** Exact f16 -> f32 (normals, subnormals, inf, NaN). */
@inline export function f16_to_f32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp == 0x1f) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13)); // inf / NaN keep their payload
  // Normals and subnormals in one go: move exponent+mantissa into f32 position, then rebias by 2^112.
  // For subnormals (exp == 0) the shifted bits form an f32 subnormal; the product is exact either way.
  return reinterpret<f32>(sign | reinterpret<u32>(reinterpret<f32>((h & 0x7fff) << 13) * 5.192296858534828e33));
}

/** f32 -> f16, round to nearest even, exactly like x86 F16C (_cvtss_sh): subnormals kept, overflow to inf,
 *  NaN -> quiet NaN with the top mantissa bits. */
@inline export function f32_to_f16(f: f32): u32 {
  const u = reinterpret<u32>(f);
  const sign = (u >> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >> 13) & 0x3ff); // NaN
  if (a >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds to inf (and inf itself)
  if (a >= 0x38800000) { // normal half: rebias exponent, round the 13 dropped bits to nearest even
    const r = a + 0xfff + ((a >> 13) & 1);
    return sign | ((r >> 13) - (112 << 10));
  }
  if (a <= 0x33000000) return sign; // <= 2^-25: rounds to zero (2^-25 is a tie, goes to even 0)
  // Subnormal half: value * 2^24 rounded to an integer, from the 24-bit f32 significand.
  const e = a >> 23;
  const m = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e; // 14..24
  const q = m >> shift;
  const rem = m & ((1 << shift) - 1);
  const half: u32 = 1 << (shift - 1);
  return sign | (q + (rem > half || (rem == half && (q & 1) != 0) ? 1 : 0));
}

@inline export function bf16_to_f32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
@inline export function f32_to_bf16(f: f32): u32 {
  const u = reinterpret<u32>(f);
  if ((u & 0x7fffffff) > 0x7f800000) return (u >> 16) | 0x40;
  return (u + 0x7fff + ((u >> 16) & 1)) >> 16;
}

// SIMD decoders of 4 weights into f32x4. Weights carry no inf/NaN, so the f16 one needs no special case.

const F16_REBIAS: f32 = 5.192296858534828e33; // 2^112

/** i32x4 lanes holding halves (low 16 bits) -> f32x4: (h & 0x7fff) << 13 reinterpreted, times 2^112, | sign. */
@inline export function f16x4_decode(h: v128): v128 {
  const mag = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(F16_REBIAS));
  return v128.or(mag, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** 4 consecutive halves at p (unaligned) -> f32x4. Cheaper form of f16x4_decode: sign-extending the halves
 *  and shifting by 13 puts the sign at bit 31 and exponent+mantissa at bits 27..13; mask the rest, rescale. */
@inline export function f16x4_load(p: usize): v128 {
  const bits = v128.and(i32x4.shl(v128.load16x4_s(p), 13), i32x4.splat(0x8fffe000));
  return f32x4.mul(bits, f32x4.splat(F16_REBIAS));
}

/** 4 halves from 4 scattered addresses -> f32x4 (block scales of 4 different blocks). */
@inline export function f16x4_gather(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = i32x4.splat(load<u16>(p0));
  h = i32x4.replace_lane(h, 1, load<u16>(p1));
  h = i32x4.replace_lane(h, 2, load<u16>(p2));
  h = i32x4.replace_lane(h, 3, load<u16>(p3));
  return f16x4_decode(h);
}

/** 4 bfloat16 at p (unaligned) -> f32x4. */
@inline export function bf16x4_load(p: usize): v128 {
  return i32x4.shl(v128.load16x4_u(p), 16);
}

/** Bulk f32 -> f16 (round to nearest even); n elements. */
export function convert_f32_to_f16(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32_to_f16(load<f32>(src + (<usize>i << 2))));
}

/**
 * f32 values rounded to half precision and widened back (round to nearest even): the activations llama.cpp feeds
 * F16 weights (it converts them to f16 before the dot product), so that products come out bit-for-bit the same.
 */
export function round_to_f16(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(dst + o, f16_to_f32(f32_to_f16(load<f32>(src + o))));
  }
}

/** Same for bfloat16 (llama.cpp's activation type for BF16 weights). */
export function round_to_bf16(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(dst + o, bf16_to_f32(f32_to_bf16(load<f32>(src + o))));
  }
}

/** Bulk f32 -> bf16 (round to nearest even); n elements. */
export function convert_f32_to_bf16(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32_to_bf16(load<f32>(src + (<usize>i << 2))));
}
