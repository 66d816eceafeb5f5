// Converting KV rows between element types: the warm tier of the tiered KV cache (engine/kv/tiered.ts) keeps rows
// compressed (q8 or q4) in the arena and expands them into the staging rows the attention kernel reads; rows enter
// the warm tier from a hot slot or the cold tier at the cache's type. Every conversion goes through f32:
//   value(src) -> f32 (exact for f32/f16/q8/q4 as defined below) -> kv_store_rows' encoding of the destination type.
//
// Types (ids shared with wasm/attention.ts):
//   KV_F32, KV_F16, KV_Q8 as in wasm/attention.ts.
//   KV_Q4: blocks of qb (8, 16 or 32) values {f16 d; u8 nib[qb/2]}: value e of a block is (n_e - 8) * d, with n_e the
//          low nibble of nib[e] for e < qb/2 and the high nibble of nib[e - qb/2] otherwise (ggml's q4_0 block for
//          qb = 32). Encoding (kv_store_rows): m = the value of largest magnitude (the first one), d = m / -8 (f32),
//          n = min(15, trunc(x * (1/d) + 8.5)), d stored as f16 (as ggml's reference quantizer).
// The SIMD twin computes each value as the same single f32 product, so both twins give identical bytes.

import { KV_F16, KV_F32, KV_Q8, kv_store_rows } from './attention';

const REBIAS: f32 = 5.192296858534828e33; // 2^112

@inline function f16val(p: usize): f32 {
  return reinterpret<f32>((<i32>load<i16>(p) << 13) & 0x8fffe000) * REBIAS;
}

/** Bytes of one block of a quantized type. */
@inline function blockBytes(kt: i32, qb: i32): usize {
  return kt == KV_Q8 ? <usize>(qb + 2) : <usize>((qb >> 1) + 2);
}

/** The n values of the row at src (type kt, block qb) as f32 at dst: the scalar definition. */
function dequantScalar(kt: i32, qb: i32, src: usize, dst: usize, n: i32): void {
  if (kt == KV_F32) {
    memory.copy(dst, src, <usize>n << 2);
    return;
  }
  if (kt == KV_F16) {
    for (let d = 0; d < n; d++) store<f32>(dst + (<usize>d << 2), f16val(src + (<usize>d << 1)));
    return;
  }
  const bb = blockBytes(kt, qb);
  const half = qb >> 1;
  let blk = src;
  for (let b = 0; b < n; b += qb) {
    const d = f16val(blk);
    for (let e = 0; e < qb; e++) {
      let q: i32;
      if (kt == KV_Q8) q = <i32>load<i8>(blk + 2 + <usize>e);
      else if (e < half) q = (<i32>load<u8>(blk + 2 + <usize>e) & 15) - 8;
      else q = (<i32>load<u8>(blk + 2 + <usize>(e - half)) >> 4) - 8;
      store<f32>(dst + (<usize>(b + e) << 2), <f32>q * d);
    }
    blk += bb;
  }
}

/** Stores the 4 low i8 lanes of x times d as f32 at dst (i8 -> f32 is exact, then one product). */
@inline function store4(x: v128, d: v128, dst: usize): void {
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(x))), d));
}

/** Stores the 8 low i8 lanes of x times d as f32 at dst. */
@inline function store8(x: v128, d: v128, dst: usize): void {
  const w = i16x8.extend_low_i8x16_s(x);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(w)), d));
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(w)), d), 16);
}

/** Stores the 16 i8 lanes of x times d as f32 at dst. */
@inline function store16(x: v128, d: v128, dst: usize): void {
  store8(x, d, dst);
  store8(i8x16.shuffle(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 0, 0, 0, 0, 0, 0, 0), d, dst + 32);
}

/** dequantScalar with SIMD (n a multiple of 4; qb in {8, 16, 32} for the quantized types). */
function dequantSimd(kt: i32, qb: i32, src: usize, dst: usize, n: i32): void {
  if (kt == KV_F32) {
    memory.copy(dst, src, <usize>n << 2);
    return;
  }
  if (kt == KV_F16) {
    const rb = f32x4.splat(REBIAS);
    for (let d = 0; d < n; d += 4) {
      const h = v128.and(i32x4.shl(v128.load16x4_s(src + (<usize>d << 1)), 13), i32x4.splat(0x8fffe000));
      v128.store(dst + (<usize>d << 2), f32x4.mul(h, rb));
    }
    return;
  }
  const bb = blockBytes(kt, qb);
  let blk = src;
  const eight = i8x16.splat(8);
  const low = i8x16.splat(15);
  for (let b = 0; b < n; b += qb) {
    const d = f32x4.splat(f16val(blk));
    const o = dst + (<usize>b << 2);
    const p = blk + 2;
    if (kt == KV_Q8) {
      for (let e = 0; e < qb; e += 8) store8(v128.load64_zero(p + <usize>e), d, o + (<usize>e << 2));
    } else if (qb == 32) {
      const v = v128.load(p);
      store16(i8x16.sub(v128.and(v, low), eight), d, o);
      store16(i8x16.sub(i8x16.shr_u(v, 4), eight), d, o + 64);
    } else if (qb == 16) {
      const v = v128.load64_zero(p);
      store8(i8x16.sub(v128.and(v, low), eight), d, o);
      store8(i8x16.sub(i8x16.shr_u(v, 4), eight), d, o + 32);
    } else {
      const v = v128.load32_zero(p);
      store4(i8x16.sub(v128.and(v, low), eight), d, o);
      store4(i8x16.sub(i8x16.shr_u(v, 4), eight), d, o + 16);
    }
    blk += bb;
  }
}

@inline function convert(simd: bool, src_type: i32, sqb: i32, dst_type: i32, dqb: i32, pairs: usize, n: i32, row_floats: i32, tmp: usize): void {
  for (let t = 0; t < n; t++) {
    const src = <usize>load<u32>(pairs + (<usize>t << 3));
    const dst = <usize>load<u32>(pairs + (<usize>t << 3) + 4);
    const f = dst_type == KV_F32 ? dst : tmp;
    if (simd) dequantSimd(src_type, sqb, src, f, row_floats);
    else dequantScalar(src_type, sqb, src, f, row_floats);
    if (dst_type != KV_F32) kv_store_rows(dst_type, dqb, tmp, dst, 1, row_floats, 0);
  }
}

/**
 * Converts n rows of row_floats values: pair t is two u32 at pairs + 8t, {source row, destination row}; source rows
 * of src_type (block sqb), destination rows of dst_type (block dqb). `tmp`: row_floats f32 of scratch (unused when
 * dst_type is KV_F32). Quantized blocks must divide row_floats; sqb and dqb are 8, 16 or 32 for quantized types.
 */
export function kv_convert_rows(src_type: i32, sqb: i32, dst_type: i32, dqb: i32, pairs: usize, n: i32, row_floats: i32, tmp: usize): void {
  const simd = (row_floats & 3) == 0;
  if (simd) convert(true, src_type, sqb, dst_type, dqb, pairs, n, row_floats, tmp);
  else convert(false, src_type, sqb, dst_type, dqb, pairs, n, row_floats, tmp);
}

export function kv_convert_rows_scalar(src_type: i32, sqb: i32, dst_type: i32, dqb: i32, pairs: usize, n: i32, row_floats: i32, tmp: usize): void {
  convert(false, src_type, sqb, dst_type, dqb, pairs, n, row_floats, tmp);
}
