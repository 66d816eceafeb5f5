// GGML K-quant super-blocks: 256 elements each, packed without padding (so unaligned).
//   q2_k {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}                 84 B
//   q3_k {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}             110 B
//   q4_k {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}                144 B
//   q5_k {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}     176 B
//   q6_k {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}               210 B
//   q8_k {f32 d; i8 qs[256]; i16 bsums[16]}                          292 B  (activation format of all five)
//
// Element e = 32g + l (group g = 0..7, l = 0..31). Sub-blocks carry a scale (and for q2_k / q4_k / q5_k a min):
// 16 elements each in q2_k, q3_k, q6_k (sub-block e >> 4), 32 elements in q4_k, q5_k (sub-block g).
//   q2_k  q = (qs[32(g>>2) + l] >> 2(g&3)) & 3                          v = d·(sc&15)·q − dmin·(sc>>4)
//   q3_k  q = ((qs[32(g>>2) + l] >> 2(g&3)) & 3) − (bit g of hmask[l] ? 0 : 4)  v = d·(s6 − 32)·q
//   q4_k  q = nibble (g odd: high) of qs[32(g>>1) + l]                   v = d·s6·q − dmin·m6
//   q5_k  q4_k's nibble | (bit g of qh[l]) << 4                         v = d·s6·q − dmin·m6
//   q6_k  q = (nibble (g&2: high) of ql[64(g>>2) + 32(g&1) + l] | ((qh[32(g>>2) + l] >> 2(g&3)) & 3) << 4) − 32
//                                                                      v = d·sc·q
// The 6-bit scales: q3_k packs 16 of them into 12 bytes (low nibbles in bytes 0..7, two high bits each in bytes
// 8..11); q4_k / q5_k pack 8 scales and 8 mins (sub-blocks 0..3 in the low 6 bits of bytes 0..3 / 4..7, sub-blocks
// 4..7 in the nibbles of bytes 8..11 with their high two bits in the top bits of bytes 0..7).
//
// This file holds the q8_k activation quantizer (SIMD + scalar twin), the scalar element accessors used by the
// scalar matmul twins, and the dequantizers (for token embeddings).

import { f16_to_f32 } from './f16';

// ggml type ids.
export const T_Q2_K: i32 = 10;
export const T_Q3_K: i32 = 11;
export const T_Q4_K: i32 = 12;
export const T_Q5_K: i32 = 13;
export const T_Q6_K: i32 = 14;
export const T_Q8_K: i32 = 15;

/** Bytes of one 256-element super-block. */
@inline export function kBlockBytes(t: i32): usize {
  if (t == T_Q2_K) return 84;
  if (t == T_Q3_K) return 110;
  if (t == T_Q4_K) return 144;
  if (t == T_Q5_K) return 176;
  if (t == T_Q6_K) return 210;
  return 292; // q8_k
}

/** Whether the type has per-sub-block mins (a dmin term). */
@inline export function kHasMin(t: i32): bool { return t == T_Q2_K || t == T_Q4_K || t == T_Q5_K; }

/** Whether sub-blocks are 16 elements (else 32). */
@inline export function kSub16(t: i32): bool { return t == T_Q2_K || t == T_Q3_K || t == T_Q6_K; }

/** Byte offsets of d and dmin. */
@inline export function kOffD(t: i32): usize {
  if (t == T_Q2_K) return 80;
  if (t == T_Q3_K) return 108;
  if (t == T_Q6_K) return 208;
  return 0;
}
@inline export function kOffDmin(t: i32): usize { return t == T_Q2_K ? 82 : 2; }

// ---- scalar element accessors (the format definitions) ----------------------------------------------------

/** Integer quant of element e (0..255) of the block at p, offsets included (q3_k −4..3, q6_k −32..31). */
@inline export function kQuant(t: i32, p: usize, e: i32): i32 {
  const g = e >> 5;
  const l = <usize>(e & 31);
  if (t == T_Q2_K) return (<i32>load<u8>(p + 16 + (<usize>(g >> 2) << 5) + l) >> ((g & 3) << 1)) & 3;
  if (t == T_Q3_K) {
    const lo = (<i32>load<u8>(p + 32 + (<usize>(g >> 2) << 5) + l) >> ((g & 3) << 1)) & 3;
    return ((<i32>load<u8>(p + l) >> g) & 1) != 0 ? lo : lo - 4;
  }
  if (t == T_Q4_K || t == T_Q5_K) {
    const b = <i32>load<u8>(p + (t == T_Q4_K ? 16 : 48) + (<usize>(g >> 1) << 5) + l);
    let q = (g & 1) != 0 ? b >> 4 : b & 15;
    if (t == T_Q5_K) q |= ((<i32>load<u8>(p + 16 + l) >> g) & 1) << 4;
    return q;
  }
  // q6_k
  const b = <i32>load<u8>(p + (<usize>(g >> 2) << 6) + (<usize>(g & 1) << 5) + l);
  const nib = (g & 2) != 0 ? b >> 4 : b & 15;
  const hi = (<i32>load<u8>(p + 128 + (<usize>(g >> 2) << 5) + l) >> ((g & 3) << 1)) & 3;
  return (nib | (hi << 4)) - 32;
}

/** 6-bit scale (sel = 0) or min (sel = 4) of sub-block s (0..7) of a q4_k / q5_k block: scales start at p + 4. */
@inline function scaleMin6(p: usize, s: i32, sel: i32): i32 {
  const sc = p + 4;
  if (s < 4) return <i32>load<u8>(sc + s + sel) & 63;
  const low = sel == 0 ? <i32>load<u8>(sc + s + 4) & 15 : <i32>load<u8>(sc + s + 4) >> 4;
  return low | ((<i32>load<u8>(sc + s - 4 + sel) >> 6) << 4);
}

/** Integer scale of sub-block s (0..15 for 16-element sub-blocks, 0..7 for 32), q3_k's −32 included. */
@inline export function kScale(t: i32, p: usize, s: i32): i32 {
  if (t == T_Q2_K) return <i32>load<u8>(p + s) & 15;
  if (t == T_Q3_K) {
    const sc = p + 96;
    const low = s < 8 ? <i32>load<u8>(sc + s) & 15 : <i32>load<u8>(sc + s - 8) >> 4;
    const hi = (<i32>load<u8>(sc + 8 + (s & 3)) >> ((s >> 2) << 1)) & 3;
    return (low | (hi << 4)) - 32;
  }
  if (t == T_Q6_K) return <i32>load<i8>(p + 192 + s);
  return scaleMin6(p, s, 0);
}

/** Integer min of sub-block s (types with mins only). */
@inline export function kMin(t: i32, p: usize, s: i32): i32 {
  if (t == T_Q2_K) return <i32>load<u8>(p + s) >> 4;
  return scaleMin6(p, s, 4);
}

// ---- q8_k activation quantizer -----------------------------------------------------------------------------
// Bit-for-bit llama.cpp's quantize_row_q8_K (the reference code, which x86 uses): max = the first element of
// largest |x| (signed); amax = 0 gives d = 0 and zero quants; else iscale = −127/max, q = min(127,
// round-half-even(iscale·x)), d = 1/iscale, bsums[j] = Σ q[16j..16j+15]. (We also zero bsums for an all-zero
// block, which llama.cpp leaves untouched; they are only ever multiplied by d = 0.)

@inline function hsum4(v: v128): i32 {
  const t = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(i32x4.add(t, i32x4.shuffle(t, t, 1, 0, 3, 2)), 0);
}

/** [Σ s0, Σ s1, Σ s2, Σ s3]: horizontal sums of four i32x4. */
@inline export function reduce4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** 16 f32 at p times s, rounded half to even, saturated to i8 (the low side never reaches −128 for finite x). */
@inline function q8x16(p: usize, s: v128): v128 {
  const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), s)));
  const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), s)));
  const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 32), s)));
  const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 48), s)));
  return i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3));
}

/** Partial sums (i32x4) of the 16 i8 in q. */
@inline function sum16(q: v128): v128 { return i32x4.extadd_pairwise_i16x8_s(i16x8.extadd_pairwise_i8x16_s(q)); }

@inline function quantizeQ8KSimd(x: usize, dst: usize, nElems: i32): void {
  const nb = nElems >> 8;
  for (let b = 0; b < nb; b++) {
    const xp = x + (<usize>b << 10);
    const dp = dst + <usize>b * 292;
    let m = f32x4.splat(0);
    for (let k = 0; k < 64; k++) m = f32x4.max(m, f32x4.abs(v128.load(xp + (<usize>k << 4))));
    m = f32x4.max(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
    m = f32x4.max(m, i32x4.shuffle(m, m, 1, 0, 3, 2));
    const amax = f32x4.extract_lane(m, 0);
    if (amax == 0) {
      memory.fill(dp, 0, 292);
      continue;
    }
    // The first element with |x| == amax carries the sign.
    const want = f32x4.splat(amax);
    let at = 0;
    for (let k = 0; k < 64; k++) {
      const bits = i32x4.bitmask(f32x4.eq(f32x4.abs(v128.load(xp + (<usize>k << 4))), want));
      if (bits != 0) {
        at = (k << 2) + ctz(bits);
        break;
      }
    }
    const iscale: f32 = <f32>-127 / load<f32>(xp + (<usize>at << 2));
    const s = f32x4.splat(iscale);
    store<f32>(dp, <f32>1 / iscale);
    for (let j = 0; j < 16; j += 4) {
      const qa = q8x16(xp + (<usize>j << 6), s);
      const qb = q8x16(xp + (<usize>(j + 1) << 6), s);
      const qc = q8x16(xp + (<usize>(j + 2) << 6), s);
      const qd = q8x16(xp + (<usize>(j + 3) << 6), s);
      const qp = dp + 4 + (<usize>j << 4);
      v128.store(qp, qa);
      v128.store(qp, qb, 16);
      v128.store(qp, qc, 32);
      v128.store(qp, qd, 48);
      const sums = reduce4(sum16(qa), sum16(qb), sum16(qc), sum16(qd));
      v128.store64_lane(dp + 260 + (<usize>j << 1), i16x8.narrow_i32x4_s(sums, sums), 0);
    }
  }
}

@inline function quantizeQ8KScalar(x: usize, dst: usize, nElems: i32): void {
  const nb = nElems >> 8;
  for (let b = 0; b < nb; b++) {
    const xp = x + (<usize>b << 10);
    const dp = dst + <usize>b * 292;
    let amax: f32 = 0;
    let mx: f32 = 0;
    for (let k = 0; k < 256; k++) {
      const v = load<f32>(xp + (<usize>k << 2));
      if (Mathf.abs(v) > amax) {
        amax = Mathf.abs(v);
        mx = v;
      }
    }
    if (amax == 0) {
      memory.fill(dp, 0, 292);
      continue;
    }
    const iscale: f32 = <f32>-127 / mx;
    store<f32>(dp, <f32>1 / iscale);
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let k = 0; k < 16; k++) {
        const e = (j << 4) + k;
        const q = max(-128, min(127, <i32>nearest<f32>(iscale * load<f32>(xp + (<usize>e << 2)))));
        store<i8>(dp + 4 + e, <i8>q);
        sum += q;
      }
      store<i16>(dp + 260 + (<usize>j << 1), <i16>sum);
    }
  }
}

/** x: n_elems f32 (multiple of 256) -> dst: n_elems/256 q8_k blocks. */
export function quantize_q8_k(x: usize, dst: usize, n_elems: i32): void { quantizeQ8KSimd(x, dst, n_elems); }
export function quantize_q8_k_scalar(x: usize, dst: usize, n_elems: i32): void { quantizeQ8KScalar(x, dst, n_elems); }

// ---- dequantizers ------------------------------------------------------------------------------------------
// Same float operations as llama.cpp's dequantize_row_qN_K, so embedding rows come out identical:
// q2_k / q4_k / q5_k: (d·sc)·q − dmin·m;  q3_k / q6_k: (d·sc)·q.

@inline function dequantK(t: i32, src: usize, dst: usize, nElems: i32): void {
  const bs = kBlockBytes(t);
  const nb = nElems >> 8;
  const shift = kSub16(t) ? 4 : 5;
  for (let b = 0; b < nb; b++) {
    const p = src + <usize>b * bs;
    const yp = dst + (<usize>b << 10);
    const d = f16_to_f32(load<u16>(p + kOffD(t)));
    const dmin: f32 = kHasMin(t) ? f16_to_f32(load<u16>(p + kOffDmin(t))) : 0;
    for (let s = 0; s < 256 >> shift; s++) {
      const dl = d * <f32>kScale(t, p, s);
      const ml: f32 = kHasMin(t) ? dmin * <f32>kMin(t, p, s) : 0;
      for (let k = 0; k < 1 << shift; k++) {
        const e = (s << shift) + k;
        const v = dl * <f32>kQuant(t, p, e);
        store<f32>(yp + (<usize>e << 2), kHasMin(t) ? v - ml : v);
      }
    }
  }
}

export function dequantize_q2_k(src: usize, dst: usize, n_elems: i32): void { dequantK(T_Q2_K, src, dst, n_elems); }
export function dequantize_q3_k(src: usize, dst: usize, n_elems: i32): void { dequantK(T_Q3_K, src, dst, n_elems); }
export function dequantize_q4_k(src: usize, dst: usize, n_elems: i32): void { dequantK(T_Q4_K, src, dst, n_elems); }
export function dequantize_q5_k(src: usize, dst: usize, n_elems: i32): void { dequantK(T_Q5_K, src, dst, n_elems); }
export function dequantize_q6_k(src: usize, dst: usize, n_elems: i32): void { dequantK(T_Q6_K, src, dst, n_elems); }
