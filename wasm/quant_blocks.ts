// GGML block formats (32 elements per block, blocks packed without padding, so unaligned):
//   q4_0 {f16 d; u8 qs[16]}            18 B   q = nibble - 8,             v = q*d
//   q4_1 {f16 d; f16 m; u8 qs[16]}     20 B   q = nibble,                 v = q*d + m
//   q5_0 {f16 d; u32 qh; u8 qs[16]}    22 B   q = (nibble | bit<<4) - 16, v = q*d
//   q5_1 {f16 d; f16 m; u32 qh; qs}    24 B   q = nibble | bit<<4,        v = q*d + m
//   q8_0 {f16 d; i8 qs[32]}            34 B   v = q*d
//   q8_1 {f16 d; f16 s; i8 qs[32]}     36 B   s = d * sum(q)   (activation format for q4_1 / q5_1)
// Element j < 16 uses the low nibble of qs[j], element j + 16 the high nibble; element k takes bit k of qh.
// This file holds the activation quantizers (q8_0 / q8_1, SIMD + scalar twins) and the dequantizers.

import { f16_to_f32, f32_to_f16, bf16_to_f32 } from './f16';
import {
  T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
} from './kquant_blocks';

// ggml type ids.
export const T_F32: i32 = 0;
export const T_F16: i32 = 1;
export const T_Q4_0: i32 = 2;
export const T_Q4_1: i32 = 3;
export const T_Q5_0: i32 = 6;
export const T_Q5_1: i32 = 7;
export const T_Q8_0: i32 = 8;
export const T_Q8_1: i32 = 9;
export const T_BF16: i32 = 30;

/** Bytes of one 32-element block of a block type. */
@inline export function blockBytes(t: i32): usize {
  if (t == T_Q4_0) return 18;
  if (t == T_Q4_1) return 20;
  if (t == T_Q5_0) return 22;
  if (t == T_Q5_1) return 24;
  if (t == T_Q8_0) return 34;
  return 36; // q8_1
}

/** Whether the type has a min term (and so pairs with q8_1 activations). */
@inline export function hasMin(t: i32): bool { return t == T_Q4_1 || t == T_Q5_1; }

/** Integer quant of element k (0..31) of the block at p, by the scalar definition of the format. */
@inline export function blockQ(t: i32, p: usize, k: i32): i32 {
  if (t == T_Q8_0) return load<i8>(p + 2 + k);
  if (t == T_Q8_1) return load<i8>(p + 4 + k);
  const qsOff: usize = t == T_Q4_0 ? 2 : t == T_Q4_1 ? 4 : t == T_Q5_0 ? 6 : 8;
  const byte = <i32>load<u8>(p + qsOff + (k & 15));
  let q = k < 16 ? byte & 0xf : byte >> 4;
  if (t == T_Q5_0 || t == T_Q5_1) q |= ((load<u32>(p + (t == T_Q5_0 ? 2 : 4)) >> k) & 1) << 4;
  if (t == T_Q4_0) q -= 8;
  if (t == T_Q5_0) q -= 16;
  return q;
}

// ---- activation quantizers --------------------------------------------------------------------------------
// Bit-for-bit like llama.cpp's x86 path: amax = max|x|; d = amax/127 stored as f16; id = 127/amax (0 if amax=0);
// q = round-half-even(x*id); q8_1 also stores s = f16(d * sum(q)) with d before its f16 rounding.

@inline function quantizeQ8Simd(x: usize, dst: usize, nElems: i32, withSum: bool): void {
  const nb = nElems >> 5;
  const bs: usize = withSum ? 36 : 34;
  const qo: usize = withSum ? 4 : 2;
  for (let b = 0; b < nb; b++) {
    const xp = x + (<usize>b << 7);
    const dp = dst + <usize>b * bs;
    const v0 = v128.load(xp), v1 = v128.load(xp, 16), v2 = v128.load(xp, 32), v3 = v128.load(xp, 48);
    const v4 = v128.load(xp, 64), v5 = v128.load(xp, 80), v6 = v128.load(xp, 96), v7 = v128.load(xp, 112);
    let m = f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3)));
    m = f32x4.max(m, f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))));
    m = f32x4.max(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
    m = f32x4.max(m, i32x4.shuffle(m, m, 1, 0, 3, 2));
    const amax = f32x4.extract_lane(m, 0);
    const d: f32 = amax / 127;
    const id: f32 = amax != 0 ? <f32>127 / amax : 0;
    store<u16>(dp, <u16>f32_to_f16(d));
    const s = f32x4.splat(id);
    const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, s)));
    const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, s)));
    const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, s)));
    const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, s)));
    const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, s)));
    const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, s)));
    const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, s)));
    const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, s)));
    v128.store(dp + qo, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
    v128.store(dp + qo + 16, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7)));
    if (withSum) {
      let t = i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)), i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7)));
      t = i32x4.add(t, i32x4.shuffle(t, t, 2, 3, 0, 1));
      t = i32x4.add(t, i32x4.shuffle(t, t, 1, 0, 3, 2));
      store<u16>(dp, <u16>f32_to_f16(d * <f32>i32x4.extract_lane(t, 0)), 2);
    }
  }
}

@inline function quantizeQ8Scalar(x: usize, dst: usize, nElems: i32, withSum: bool): void {
  const nb = nElems >> 5;
  const bs: usize = withSum ? 36 : 34;
  const qo: usize = withSum ? 4 : 2;
  for (let b = 0; b < nb; b++) {
    const xp = x + (<usize>b << 7);
    const dp = dst + <usize>b * bs;
    let amax: f32 = 0;
    for (let k = 0; k < 32; k++) amax = max(amax, Mathf.abs(load<f32>(xp + (<usize>k << 2))));
    const d: f32 = amax / 127;
    const id: f32 = amax != 0 ? <f32>127 / amax : 0;
    store<u16>(dp, <u16>f32_to_f16(d));
    let sum = 0;
    for (let k = 0; k < 32; k++) {
      const q = <i32>nearest<f32>(load<f32>(xp + (<usize>k << 2)) * id);
      store<i8>(dp + qo + k, <i8>q);
      sum += q;
    }
    if (withSum) store<u16>(dp, <u16>f32_to_f16(d * <f32>sum), 2);
  }
}

/** x: n_elems f32 (multiple of 32) -> dst: n_elems/32 q8_0 blocks. */
export function quantize_q8_0(x: usize, dst: usize, n_elems: i32): void { quantizeQ8Simd(x, dst, n_elems, false); }
export function quantize_q8_0_scalar(x: usize, dst: usize, n_elems: i32): void { quantizeQ8Scalar(x, dst, n_elems, false); }
/** x: n_elems f32 (multiple of 32) -> dst: n_elems/32 q8_1 blocks. */
export function quantize_q8_1(x: usize, dst: usize, n_elems: i32): void { quantizeQ8Simd(x, dst, n_elems, true); }
export function quantize_q8_1_scalar(x: usize, dst: usize, n_elems: i32): void { quantizeQ8Scalar(x, dst, n_elems, true); }

// ---- dequantizers (scalar: used for embedding rows and tests) ---------------------------------------------

@inline function dequantBlocks(t: i32, src: usize, dst: usize, nElems: i32): void {
  const bs = blockBytes(t);
  const nb = nElems >> 5;
  for (let b = 0; b < nb; b++) {
    const p = src + <usize>b * bs;
    const yp = dst + (<usize>b << 7);
    const d = f16_to_f32(load<u16>(p));
    const m: f32 = hasMin(t) ? f16_to_f32(load<u16>(p, 2)) : 0;
    for (let k = 0; k < 32; k++) {
      const v = <f32>blockQ(t, p, k) * d;
      store<f32>(yp + (<usize>k << 2), hasMin(t) ? v + m : v);
    }
  }
}

export function dequantize_q4_0(src: usize, dst: usize, n_elems: i32): void { dequantBlocks(T_Q4_0, src, dst, n_elems); }
export function dequantize_q4_1(src: usize, dst: usize, n_elems: i32): void { dequantBlocks(T_Q4_1, src, dst, n_elems); }
export function dequantize_q5_0(src: usize, dst: usize, n_elems: i32): void { dequantBlocks(T_Q5_0, src, dst, n_elems); }
export function dequantize_q5_1(src: usize, dst: usize, n_elems: i32): void { dequantBlocks(T_Q5_1, src, dst, n_elems); }
export function dequantize_q8_0(src: usize, dst: usize, n_elems: i32): void { dequantBlocks(T_Q8_0, src, dst, n_elems); }

export function dequantize_f16(src: usize, dst: usize, n_elems: i32): void {
  for (let i = 0; i < n_elems; i++) store<f32>(dst + (<usize>i << 2), f16_to_f32(load<u16>(src + (<usize>i << 1))));
}
export function dequantize_bf16(src: usize, dst: usize, n_elems: i32): void {
  for (let i = 0; i < n_elems; i++) store<f32>(dst + (<usize>i << 2), bf16_to_f32(load<u16>(src + (<usize>i << 1))));
}

/** Decodes n_elems of ggml type `type` at src into f32 at dst (a multiple of the type's block size: 32, or 256 for
 *  the K-quants). Returns 0, or -1 for an unsupported type. */
export function dequantize_row(type: i32, src: usize, dst: usize, n_elems: i32): i32 {
  switch (type) {
    case T_F32: memory.copy(dst, src, <usize>n_elems << 2); break;
    case T_F16: dequantize_f16(src, dst, n_elems); break;
    case T_BF16: dequantize_bf16(src, dst, n_elems); break;
    case T_Q4_0: dequantize_q4_0(src, dst, n_elems); break;
    case T_Q4_1: dequantize_q4_1(src, dst, n_elems); break;
    case T_Q5_0: dequantize_q5_0(src, dst, n_elems); break;
    case T_Q5_1: dequantize_q5_1(src, dst, n_elems); break;
    case T_Q8_0: dequantize_q8_0(src, dst, n_elems); break;
    case T_Q2_K: dequantize_q2_k(src, dst, n_elems); break;
    case T_Q3_K: dequantize_q3_k(src, dst, n_elems); break;
    case T_Q4_K: dequantize_q4_k(src, dst, n_elems); break;
    case T_Q5_K: dequantize_q5_k(src, dst, n_elems); break;
    case T_Q6_K: dequantize_q6_k(src, dst, n_elems); break;
    default: return -1;
  }
  return 0;
}
