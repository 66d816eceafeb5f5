// Quantized matmuls: Y[t][r] = dot(W[r], X[t]) with W in a ggml block type and X pre-quantized per row to
// q8_0 (for q4_0, q5_0, q8_0) or q8_1 (for q4_1, q5_1). Only output rows r in [r0, r1) are computed.
//
// Per block: sumi = Σ qw*qx exactly in i32, then acc += (dw*dx)*f32(sumi)  (+ mw*sx for the _1 types).
// The SIMD kernels and their scalar twins perform exactly these float operations in the same order, so they
// agree bit for bit; only the way the exact integer sum is formed differs:
//  - plain SIMD: quants widened to i16 (load8x8), multiplied and pair-added with i32x4.dot_i16x8_s;
//  - relaxed SIMD (the second build, ASC_FEATURE_RELAXED_SIMD): for the 4- and 5-bit types, the unsigned quants
//    (0..15 / 0..31, valid i7 operands, so the result is deterministic) times the activation quants with
//    i16x8.relaxed_dot_i8x16_i7x16_s; the offset (-8 / -16) enters as offset * Σ qx, the exact block sum of the
//    activation quants (computed once per activation block and tile). Partial sums stay within i16 (|Σ of 4
//    products| <= 4*31*128 < 2^14, so a first reduction level adds pairs of lanes in i16), then widen to i32.
// Four dot products' partial sums are reduced together (a 4x4 transpose-add) into one i32x4.
//
// Tiles: decode (activation rows left over from the prefill tiles, n % 4) runs 4 weight rows against one
// activation row; prefill runs 2 weight rows against 4 activation rows, over blocks of ROW_BLOCK weight rows, so each
// unpacked weight block is used 4 times and each activation block (with its offset sum) twice.

import { T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0, T_Q8_1, blockBytes, hasMin, blockQ } from './quant_blocks';
import { f16_to_f32 } from './f16';

/** True in the relaxed-SIMD build (scripts/build.mjs builds the module with and without relaxed-simd). */
const RELAXED: bool = ASC_FEATURE_RELAXED_SIMD;

const ROW_BLOCK: i32 = 16;

/** Activation block bytes and quant offset for a weight type. */
@inline function actBytes(ty: i32): usize { return hasMin(ty) ? 36 : 34; }
@inline function actQs(ty: i32): usize { return hasMin(ty) ? 4 : 2; }
/** Offset of the 16 nibble bytes in a 4/5-bit weight block. */
@inline function qsOff(ty: i32): usize { return ty == T_Q4_0 ? 2 : ty == T_Q4_1 ? 4 : ty == T_Q5_0 ? 6 : 8; }
/** What the format subtracts from the unsigned quant: q4_0 8, q5_0 16, others 0. */
@inline function qOffset(ty: i32): i32 { return ty == T_Q4_0 ? 8 : ty == T_Q5_0 ? 16 : 0; }
/** Whether this build forms the type's integer sums with the relaxed dot (q8_0 weights are signed: plain path). */
@inline function relaxedDot(ty: i32): bool { return RELAXED && ty != T_Q8_0; }

// ---- block scales (halves). Finite scales assumed (README): no inf/NaN special case. ----

const F16_REBIAS: f32 = 5.192296858534828e33; // 2^112

/** f32x4 from halves in the high 16 bits of each i32 lane (low bits ignored): an arithmetic shift by 3 puts the
 *  sign at bit 31 and exponent+mantissa at bits 27..13; mask the rest, rescale by 2^112 (exact, subnormals too). */
@inline function f16High(h: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(h, 3), i32x4.splat(0x8fffe000)), f32x4.splat(F16_REBIAS));
}
/** The half at p in all four lanes. */
@inline function f16Splat(p: usize): v128 { return f16High(v128.load16_splat(p)); }
/** Halves at 4 addresses -> f32x4 (scales of 4 blocks). */
@inline function f16Gather(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = v128.load16_splat(p0);
  h = v128.load16_lane(p1, h, 3);
  h = v128.load16_lane(p2, h, 5);
  h = v128.load16_lane(p3, h, 7);
  return f16High(h);
}

// ---- weight quants ----

/** 0x10 in byte lane k where bit k (+16 when `upper`) of the u32 at p is set: the q5 fifth bits. */
@inline function q5HighBits(p: usize, upper: bool): v128 {
  const qh = v128.load32_splat(p);
  const idx = upper
    ? i8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
    : i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const bit = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const set = i8x16.eq(v128.and(i8x16.swizzle(qh, idx), bit), bit);
  return v128.and(set, i8x16.splat(0x10));
}

/** Unsigned quants (offset not applied) of elements 0..15 (upper = false) or 16..31 of a 4/5-bit block, as u8x16. */
@inline function wU8(ty: i32, p: usize, upper: bool): v128 {
  const qs = v128.load(p + qsOff(ty));
  // High nibbles: a 16-bit shift and a mask (an i8x16 shift has no x86 instruction of its own).
  let q = v128.and(upper ? i16x8.shr_u(qs, 4) : qs, i8x16.splat(0x0f));
  if (ty == T_Q5_0) q = v128.or(q, q5HighBits(p + 2, upper));
  if (ty == T_Q5_1) q = v128.or(q, q5HighBits(p + 4, upper));
  return q;
}

/** Quants of elements 8k..8k+7 (k = 0..3) of the weight block at p as i16x8, minus `off`. For the q5 types `u` is
 *  wU8(ty, p, k >= 2) (computed once for two k); the others read the block directly. */
@inline function wI16(ty: i32, p: usize, k: i32, u: v128, off: i32): v128 {
  if (ty == T_Q8_0) return v128.load8x8_s(p + 2 + (<usize>k << 3));
  let q: v128;
  if (ty == T_Q4_0 || ty == T_Q4_1) {
    const b = v128.load8x8_u(p + qsOff(ty) + (<usize>(k & 1) << 3)); // bytes zero-extended: both nibbles intact
    q = k < 2 ? v128.and(b, i16x8.splat(0x0f)) : i16x8.shr_u(b, 4);
  } else {
    q = (k & 1) != 0 ? i16x8.extend_high_i8x16_u(u) : i16x8.extend_low_i8x16_u(u);
  }
  if (off != 0) q = i16x8.sub(q, i16x8.splat(<i16>off));
  return q;
}

/** Partial sums (i32x4) of the 32 products a·b, both given as four i16x8 (elements 0-7, 8-15, 16-23, 24-31). */
@inline function dot32(a0: v128, a1: v128, a2: v128, a3: v128, b0: v128, b1: v128, b2: v128, b3: v128): v128 {
  const s = i32x4.add(i32x4.dot_i16x8_s(a0, b0), i32x4.dot_i16x8_s(a1, b1));
  return i32x4.add(s, i32x4.add(i32x4.dot_i16x8_s(a2, b2), i32x4.dot_i16x8_s(a3, b3)));
}

/** Relaxed build: i16x8 partial sums of Σ u·x over a block; u unsigned (i7) quants, x signed activation quants. */
@inline function rdot(xl: v128, xh: v128, ul: v128, uh: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, ul), i16x8.relaxed_dot_i8x16_i7x16_s(xh, uh));
  } else {
    return unreachable(); // the plain build never takes the relaxed path (relaxedDot is false there)
  }
}

/** Relaxed build: i16x8 partial sums of offset * Σx for the activation block (xl, xh); zero without an offset. */
@inline function rOffsetSum(ty: i32, xl: v128, xh: v128): v128 {
  const off = qOffset(ty);
  return off != 0 ? rdot(xl, xh, i8x16.splat(<i8>off), i8x16.splat(<i8>off)) : i16x8.splat(0);
}

/** Relaxed build: i16x8 partial sums of Σ (u - offset)·x for the weight block at p (|lane| <= 4*31*128 < 2^14). */
@inline function rPair(ty: i32, p: usize, xl: v128, xh: v128, c: v128): v128 {
  const s = rdot(xl, xh, wU8(ty, p, false), wU8(ty, p, true));
  return qOffset(ty) != 0 ? i16x8.sub(s, c) : s;
}

/** Plain build, decode: i32x4 partial sums of Σ (q - offset)·x for the weight block at p against widened
 *  activations; the offset enters through c = partial sums of offset * Σx (once per activation block). */
@inline function pPair(ty: i32, p: usize, a0: v128, a1: v128, a2: v128, a3: v128, c: v128): v128 {
  const q5 = ty == T_Q5_0 || ty == T_Q5_1;
  const ul = q5 ? wU8(ty, p, false) : i16x8.splat(0);
  const uh = q5 ? wU8(ty, p, true) : i16x8.splat(0);
  const s = dot32(wI16(ty, p, 0, ul, 0), wI16(ty, p, 1, ul, 0), wI16(ty, p, 2, uh, 0), wI16(ty, p, 3, uh, 0), a0, a1, a2, a3);
  return qOffset(ty) != 0 ? i32x4.sub(s, c) : s;
}

/** Plain build, decode, q4 types: the same from the whole nibble bytes b (zero-extended to i16): with lo = b - 16·hi,
 *  Σ lo·x[k] + hi·x[k+16] = Σ b·x[k] + Σ hi·(x[k+16] - 16·x[k]); d0, d1 = x[16..31] - 16·x[0..15], once per
 *  activation block (|lane| <= 127 + 16·128). */
@inline function pPairQ4(ty: i32, p: usize, a0: v128, a1: v128, d0: v128, d1: v128, c: v128): v128 {
  const b0 = v128.load8x8_u(p + qsOff(ty)), b1 = v128.load8x8_u(p + qsOff(ty) + 8);
  const s = dot32(b0, b1, i16x8.shr_u(b0, 4), i16x8.shr_u(b1, 4), a0, a1, d0, d1);
  return qOffset(ty) != 0 ? i32x4.sub(s, c) : s;
}

/** [Σ s0, Σ s1, Σ s2, Σ s3]: horizontal sums of four i32x4 (a 4x4 transpose-add). */
@inline function reduce4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** The same for four i16x8 partial sums with |lane| < 2^14: the first level adds lanes in i16 (no overflow), the
 *  second pair-wise to i32, then one i32 level. */
@inline function reduce4x16(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const p01 = i16x8.add(i64x2.shuffle(s0, s1, 0, 2), i64x2.shuffle(s0, s1, 1, 3)); // [s0 lanes 0-3 + 4-7, s1 ...]
  const p23 = i16x8.add(i64x2.shuffle(s2, s3, 0, 2), i64x2.shuffle(s2, s3, 1, 3));
  const q01 = i32x4.dot_i16x8_s(p01, i16x8.splat(1)); // [s0 a, s0 b, s1 a, s1 b]
  const q23 = i32x4.dot_i16x8_s(p23, i16x8.splat(1));
  return i32x4.add(i32x4.shuffle(q01, q23, 0, 2, 4, 6), i32x4.shuffle(q01, q23, 1, 3, 5, 7));
}

/** Widened activation quants of elements 8k..8k+7 of the activation block at p (quants at p). */
@inline function xI16(p: usize, k: i32): v128 { return v128.load8x8_s(p + (<usize>k << 3)); }

@inline function store4(yp: usize, yl: usize, v: v128): void {
  store<f32>(yp, f32x4.extract_lane(v, 0));
  store<f32>(yp + yl, f32x4.extract_lane(v, 1));
  store<f32>(yp + 2 * yl, f32x4.extract_lane(v, 2));
  store<f32>(yp + 3 * yl, f32x4.extract_lane(v, 3));
}

/** Weight rows r, r+1 (cnt = 1: row r only; the second aliases it and is not stored) against activation rows
 *  t..t+3; the activation blocks (and, relaxed, their offset sums) are loaded once for both weight rows. */
@inline function tileW2X4(ty: i32, wr: usize, ws: usize, cnt: i32, x: usize, xs: usize, t: i32, nb: i32, y: usize, ldy: i32, r: i32): void {
  const wbs = blockBytes(ty);
  const xbs = actBytes(ty);
  const qo = actQs(ty);
  const off = qOffset(ty);
  const q5 = ty == T_Q5_0 || ty == T_Q5_1;
  const rel = relaxedDot(ty);
  let wa = wr;
  let wc = wr + (cnt > 1 ? ws : 0);
  let x0 = x + <usize>t * xs;
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const x1 = x0 + xs, x2 = x1 + xs, x3 = x2 + xs;
    let sumi0: v128, sumi1: v128;
    if (rel) {
      const ua = wU8(ty, wa, false), va = wU8(ty, wa, true);
      const uc = wU8(ty, wc, false), vc = wU8(ty, wc, true);
      let l = v128.load(x0 + qo), h = v128.load(x0 + qo, 16), c = rOffsetSum(ty, l, h);
      const a0 = rdot(l, h, ua, va), c0 = rdot(l, h, uc, vc), k0 = c;
      l = v128.load(x1 + qo); h = v128.load(x1 + qo, 16); c = rOffsetSum(ty, l, h);
      const a1 = rdot(l, h, ua, va), c1 = rdot(l, h, uc, vc), k1 = c;
      l = v128.load(x2 + qo); h = v128.load(x2 + qo, 16); c = rOffsetSum(ty, l, h);
      const a2 = rdot(l, h, ua, va), c2 = rdot(l, h, uc, vc), k2 = c;
      l = v128.load(x3 + qo); h = v128.load(x3 + qo, 16); c = rOffsetSum(ty, l, h);
      const a3 = rdot(l, h, ua, va), c3 = rdot(l, h, uc, vc), k3 = c;
      if (off != 0) {
        sumi0 = reduce4x16(i16x8.sub(a0, k0), i16x8.sub(a1, k1), i16x8.sub(a2, k2), i16x8.sub(a3, k3));
        sumi1 = reduce4x16(i16x8.sub(c0, k0), i16x8.sub(c1, k1), i16x8.sub(c2, k2), i16x8.sub(c3, k3));
      } else {
        sumi0 = reduce4x16(a0, a1, a2, a3);
        sumi1 = reduce4x16(c0, c1, c2, c3);
      }
    } else {
      const ua = q5 ? wU8(ty, wa, false) : i16x8.splat(0), va = q5 ? wU8(ty, wa, true) : i16x8.splat(0);
      const uc = q5 ? wU8(ty, wc, false) : i16x8.splat(0), vc = q5 ? wU8(ty, wc, true) : i16x8.splat(0);
      const p0 = wI16(ty, wa, 0, ua, off), p1 = wI16(ty, wa, 1, ua, off), p2 = wI16(ty, wa, 2, va, off), p3 = wI16(ty, wa, 3, va, off);
      const q0 = wI16(ty, wc, 0, uc, off), q1 = wI16(ty, wc, 1, uc, off), q2 = wI16(ty, wc, 2, vc, off), q3 = wI16(ty, wc, 3, vc, off);
      let e0 = xI16(x0 + qo, 0), e1 = xI16(x0 + qo, 1), e2 = xI16(x0 + qo, 2), e3 = xI16(x0 + qo, 3);
      const a0 = dot32(p0, p1, p2, p3, e0, e1, e2, e3), c0 = dot32(q0, q1, q2, q3, e0, e1, e2, e3);
      e0 = xI16(x1 + qo, 0); e1 = xI16(x1 + qo, 1); e2 = xI16(x1 + qo, 2); e3 = xI16(x1 + qo, 3);
      const a1 = dot32(p0, p1, p2, p3, e0, e1, e2, e3), c1 = dot32(q0, q1, q2, q3, e0, e1, e2, e3);
      e0 = xI16(x2 + qo, 0); e1 = xI16(x2 + qo, 1); e2 = xI16(x2 + qo, 2); e3 = xI16(x2 + qo, 3);
      const a2 = dot32(p0, p1, p2, p3, e0, e1, e2, e3), c2 = dot32(q0, q1, q2, q3, e0, e1, e2, e3);
      e0 = xI16(x3 + qo, 0); e1 = xI16(x3 + qo, 1); e2 = xI16(x3 + qo, 2); e3 = xI16(x3 + qo, 3);
      const a3 = dot32(p0, p1, p2, p3, e0, e1, e2, e3), c3 = dot32(q0, q1, q2, q3, e0, e1, e2, e3);
      sumi0 = reduce4(a0, a1, a2, a3);
      sumi1 = reduce4(c0, c1, c2, c3);
    }
    const dx = f16Gather(x0, x1, x2, x3);
    let term0 = f32x4.mul(f32x4.mul(f16Splat(wa), dx), f32x4.convert_i32x4_s(sumi0));
    let term1 = f32x4.mul(f32x4.mul(f16Splat(wc), dx), f32x4.convert_i32x4_s(sumi1));
    if (hasMin(ty)) {
      const sx = f16Gather(x0 + 2, x1 + 2, x2 + 2, x3 + 2);
      term0 = f32x4.add(term0, f32x4.mul(f16Splat(wa + 2), sx));
      term1 = f32x4.add(term1, f32x4.mul(f16Splat(wc + 2), sx));
    }
    acc0 = f32x4.add(acc0, term0);
    acc1 = f32x4.add(acc1, term1);
    wa += wbs;
    wc += wbs;
    x0 += xbs;
  }
  const yl = <usize>ldy << 2;
  const yp = y + ((<usize>t * ldy + r) << 2);
  store4(yp, yl, acc0);
  if (cnt > 1) store4(yp + 4, yl, acc1);
}

/** 4 weight rows r..r+3 (rows past cnt alias row r and are not stored) against one activation row. */
@inline function tileW4X1(ty: i32, w: usize, ws: usize, r: i32, cnt: i32, xr: usize, nb: i32, yp: usize): void {
  const wbs = blockBytes(ty);
  const xbs = actBytes(ty);
  const qo = actQs(ty);
  let w0 = w + <usize>r * ws;
  let w1 = w0 + (cnt > 1 ? ws : 0);
  let w2 = w0 + (cnt > 2 ? 2 * ws : 0);
  let w3 = w0 + (cnt > 3 ? 3 * ws : 0);
  let xb = xr;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    let sumi: v128;
    if (relaxedDot(ty)) {
      const xl = v128.load(xb + qo), xh = v128.load(xb + qo, 16);
      const c = rOffsetSum(ty, xl, xh); // once per activation block, for 4 weight rows
      sumi = reduce4x16(rPair(ty, w0, xl, xh, c), rPair(ty, w1, xl, xh, c), rPair(ty, w2, xl, xh, c), rPair(ty, w3, xl, xh, c));
    } else {
      const a0 = xI16(xb + qo, 0), a1 = xI16(xb + qo, 1), a2 = xI16(xb + qo, 2), a3 = xI16(xb + qo, 3); // widened once
      const off = qOffset(ty);
      const c = off != 0 ? i32x4.dot_i16x8_s(i16x8.add(i16x8.add(a0, a1), i16x8.add(a2, a3)), i16x8.splat(<i16>off)) : i32x4.splat(0);
      if (ty == T_Q4_0 || ty == T_Q4_1) {
        // Whole bytes b = lo + 16·hi against x[k], and hi against x[k+16] - 16·x[k]: no mask per weight row.
        const d0 = i16x8.sub(a2, i16x8.shl(a0, 4)), d1 = i16x8.sub(a3, i16x8.shl(a1, 4));
        sumi = reduce4(pPairQ4(ty, w0, a0, a1, d0, d1, c), pPairQ4(ty, w1, a0, a1, d0, d1, c),
          pPairQ4(ty, w2, a0, a1, d0, d1, c), pPairQ4(ty, w3, a0, a1, d0, d1, c));
      } else {
        sumi = reduce4(pPair(ty, w0, a0, a1, a2, a3, c), pPair(ty, w1, a0, a1, a2, a3, c),
          pPair(ty, w2, a0, a1, a2, a3, c), pPair(ty, w3, a0, a1, a2, a3, c));
      }
    }
    let term = f32x4.mul(f32x4.mul(f16Gather(w0, w1, w2, w3), f16Splat(xb)), f32x4.convert_i32x4_s(sumi));
    if (hasMin(ty)) term = f32x4.add(term, f32x4.mul(f16Gather(w0 + 2, w1 + 2, w2 + 2, w3 + 2), f16Splat(xb + 2)));
    acc = f32x4.add(acc, term);
    w0 += wbs;
    w1 += wbs;
    w2 += wbs;
    w3 += wbs;
    xb += xbs;
  }
  const yr = yp + (<usize>r << 2);
  store<f32>(yr, f32x4.extract_lane(acc, 0));
  if (cnt > 1) store<f32>(yr, f32x4.extract_lane(acc, 1), 4);
  if (cnt > 2) store<f32>(yr, f32x4.extract_lane(acc, 2), 8);
  if (cnt > 3) store<f32>(yr, f32x4.extract_lane(acc, 3), 12);
}

@inline function matmulQuant(ty: i32, w: usize, x: usize, y: usize, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  const nb = cols >> 5;
  const ws = <usize>nb * blockBytes(ty);
  const xs = <usize>nb * actBytes(ty);
  const n4 = n & ~3;
  for (let rb = r0; rb < r1; rb += ROW_BLOCK) {
    const re = min(rb + ROW_BLOCK, r1);
    for (let t = 0; t < n4; t += 4) {
      for (let r = rb; r < re; r += 2) tileW2X4(ty, w + <usize>r * ws, ws, min(2, re - r), x, xs, t, nb, y, ldy, r);
    }
    // Leftover activation rows (all of them in decode) take this block of weight rows while it is still in cache, so
    // a pass of 5 rows (a verify pass with k = 4) reads the weights from memory once, not twice.
    for (let t = n4; t < n; t++) {
      const xr = x + <usize>t * xs;
      const yp = y + ((<usize>t * ldy) << 2);
      for (let r = rb; r < re; r += 4) tileW4X1(ty, w, ws, r, min(4, re - r), xr, nb, yp);
    }
  }
}

/** Scalar twin: same per-block math from the format definition (blockQ), one element at a time. */
@inline function matmulQuantScalar(ty: i32, w: usize, x: usize, y: usize, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  const nb = cols >> 5;
  const wbs = blockBytes(ty);
  const at = hasMin(ty) ? T_Q8_1 : T_Q8_0;
  const xbs = actBytes(ty);
  for (let t = 0; t < n; t++) {
    for (let r = r0; r < r1; r++) {
      let acc: f32 = 0;
      for (let b = 0; b < nb; b++) {
        const wb = w + (<usize>r * nb + b) * wbs;
        const xb = x + (<usize>t * nb + b) * xbs;
        let sumi = 0;
        for (let k = 0; k < 32; k++) sumi += blockQ(ty, wb, k) * blockQ(at, xb, k);
        let term = f16_to_f32(load<u16>(wb)) * f16_to_f32(load<u16>(xb)) * <f32>sumi;
        if (hasMin(ty)) term += f16_to_f32(load<u16>(wb, 2)) * f16_to_f32(load<u16>(xb, 2));
        acc += term;
      }
      store<f32>(y + ((<usize>t * ldy + r) << 2), acc);
    }
  }
}

// Exports. Arguments: w weights, x quantized activations (n rows of cols/32 blocks), y f32 output,
// rows/cols of W, n activation rows, ldy output row stride (floats), [r0, r1) output rows to compute.
export function matmul_q4_0(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuant(T_Q4_0, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q4_1(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuant(T_Q4_1, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q5_0(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuant(T_Q5_0, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q5_1(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuant(T_Q5_1, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q8_0(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuant(T_Q8_0, w, x, y, cols, n, ldy, r0, r1); }

export function matmul_q4_0_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuantScalar(T_Q4_0, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q4_1_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuantScalar(T_Q4_1, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q5_0_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuantScalar(T_Q5_0, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q5_1_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuantScalar(T_Q5_1, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q8_0_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulQuantScalar(T_Q8_0, w, x, y, cols, n, ldy, r0, r1); }
