// K-quant matmuls: Y[t][r] = dot(W[r], X[t]) with W in q2_k .. q6_k super-blocks (256 elements) and X quantized per
// row to q8_k (quantize_q8_k). Only output rows r in [r0, r1) are computed. Formats: kquant_blocks.ts.
//
// Per super-block, as llama.cpp's vec_dot_qN_K_q8_K: an exact integer sum sumi = Σ_sub scale·Σ q_w·q_x (quant offsets
// of q3_k / q6_k included in q_w), for q2_k / q4_k / q5_k also summ = Σ_sub min·(Σ q_x over the sub-block, from the
// q8_k bsums); then acc += (d_w·d_x)·f32(sumi), minus (dmin_w·d_x)·f32(summ). The SIMD kernels and their scalar
// twins perform exactly these float operations in the same order, so they agree bit for bit.
//
// SIMD: weight quants are unpacked per 32-element group to i8x16 (elements 0..15 and 16..31), widened to i16 and
// multiplied with i32x4.dot_i16x8_s. Prefill (1 weight row x 4 activation rows) folds the sub-block scales into the
// widened weights once per group (|q·scale| <= 4096 fits i16) and reuses them for the 4 rows. Decode (4 weight rows x
// 1 activation row) widens the activations once per group, reduces the 4 rows' unscaled sums of a sub-block into the
// lanes of one vector and scales them with a single multiply by the 4 rows' scales (transposed once per block).

import { f16_to_f32, f16x4_gather } from './f16';
import {
  T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, kBlockBytes, kHasMin, kSub16, kOffD, kOffDmin, kQuant, kScale, kMin, reduce4,
} from './kquant_blocks';

const ROW_BLOCK: i32 = 16;
const XB: usize = 292; // q8_k block bytes
const XQ: usize = 4; // offset of its quants
const XS: usize = 260; // offset of its bsums

@inline function lo16(v: v128): v128 { return i16x8.extend_low_i8x16_s(v); }
@inline function hi16(v: v128): v128 { return i16x8.extend_high_i8x16_s(v); }

/** (v >> k) & 3 in every byte (k = 0, 2, 4 or 6). */
@inline function crumb(v: v128, k: i32): v128 { return v128.and(i8x16.shr_u(v, k), i8x16.splat(3)); }

/** Quants (offsets included) of elements 32g + 16h .. 32g + 16h + 15 of the weight block at p, as i8x16, for group
 *  g = 4n + j (n = 0, 1: the 128-element half; j = 0..3). */
@inline function wQuants(ty: i32, p: usize, n: i32, j: i32, h: i32): v128 {
  const l: usize = <usize>h << 4;
  const n32 = <usize>n << 5;
  if (ty == T_Q2_K) return crumb(v128.load(p + 16 + n32 + l), j << 1);
  if (ty == T_Q3_K) {
    const lo = crumb(v128.load(p + 32 + n32 + l), j << 1);
    const bit = i8x16.splat(<i8>(<i32>1 << ((n << 2) + j))); // hmask bit g = 4n + j clear: q − 4
    return i8x16.sub(lo, v128.and(i8x16.eq(v128.and(v128.load(p + l), bit), i8x16.splat(0)), i8x16.splat(4)));
  }
  if (ty == T_Q4_K || ty == T_Q5_K) {
    const b = v128.load(p + (ty == T_Q4_K ? 16 : 48) + (n32 << 1) + (<usize>(j >> 1) << 5) + l);
    const q = (j & 1) != 0 ? i8x16.shr_u(b, 4) : v128.and(b, i8x16.splat(15));
    if (ty == T_Q4_K) return q;
    const bit = i8x16.splat(<i8>(<i32>1 << ((n << 2) + j))); // qh bit g = 4n + j set: q + 16
    return v128.or(q, v128.and(i8x16.eq(v128.and(v128.load(p + 16 + l), bit), bit), i8x16.splat(16)));
  }
  // q6_k
  const b = v128.load(p + (n32 << 1) + (<usize>(j & 1) << 5) + l);
  const nib = (j & 2) != 0 ? i8x16.shr_u(b, 4) : v128.and(b, i8x16.splat(15));
  const hi = i8x16.shl(crumb(v128.load(p + 128 + n32 + l), j << 1), 4);
  return i8x16.sub(v128.or(nib, hi), i8x16.splat(32));
}

/**
 * The block's sub-block scales as bytes, in order (q4_k / q5_k: the 8 scales in bytes 0..7), as signed bytes: q3_k's
 * and q6_k's are signed, the others below 64, so sign extension is right for all.
 */
@inline function scaleVec(ty: i32, p: usize): v128 {
  if (ty == T_Q2_K) return v128.and(v128.load(p), i8x16.splat(15));
  if (ty == T_Q6_K) return v128.load(p + 192);
  if (ty == T_Q3_K) {
    const a0 = load<u32>(p + 96), a1 = load<u32>(p + 100), t = load<u32>(p + 104);
    let v = i32x4.splat((a0 & 0x0f0f0f0f) | ((t & 0x03030303) << 4));
    v = i32x4.replace_lane(v, 1, (a1 & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4));
    v = i32x4.replace_lane(v, 2, ((a0 >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4));
    v = i32x4.replace_lane(v, 3, ((a1 >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4));
    return i8x16.sub(v, i8x16.splat(32));
  }
  // q4_k / q5_k: sub-blocks 0..3 in the low 6 bits of bytes 0..3; 4..7 from the low nibbles of bytes 8..11 and the
  // top two bits of bytes 0..3.
  const u0 = load<u32>(p + 4), u2 = load<u32>(p + 12);
  const v = i32x4.splat(u0 & 0x3f3f3f3f);
  return i32x4.replace_lane(v, 1, (u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4));
}

/** Index vector selecting the scale byte of half h of group g = 4n + j. */
@inline function scaleIdx(ty: i32, n: i32, j: i32, h: i32): v128 {
  return i8x16.splat(<i8>(kSub16(ty) ? (n << 3) + (j << 1) + h : (n << 2) + j));
}

/** The scale byte picked by idx (from scaleIdx) in every i16 lane, sign-extended. */
@inline function splat16(sc: v128, idx: v128): v128 { return i16x8.shr_s(i8x16.swizzle(sc, idx), 8); }

/** Partial sums (i32x4) of the 32 products a·b, both given as four i16x8 (elements 0-7, 8-15, 16-23, 24-31). */
@inline function dot32(a0: v128, a1: v128, a2: v128, a3: v128, b0: v128, b1: v128, b2: v128, b3: v128): v128 {
  const s = i32x4.add(i32x4.dot_i16x8_s(a0, b0), i32x4.dot_i16x8_s(a1, b1));
  return i32x4.add(s, i32x4.add(i32x4.dot_i16x8_s(a2, b2), i32x4.dot_i16x8_s(a3, b3)));
}

/** Widened (scaled) weights against the 32 i8 activation quants at p. */
@inline function dotWithActs(w0: v128, w1: v128, w2: v128, w3: v128, p: usize): v128 {
  const xl = v128.load(p);
  const xh = v128.load(p, 16);
  return dot32(w0, w1, w2, w3, lo16(xl), hi16(xl), lo16(xh), hi16(xh));
}

/**
 * Decode: the scale bytes of 4 weight rows (c0..c3, from scaleVec) transposed, 4 scale indices per vector: byte 4i + r
 * of transposed(.., q) is row r's scale 4q + i (q = 0..3; types with 8 scales use q = 0, 1).
 */
@inline function transposed(c0: v128, c1: v128, c2: v128, c3: v128, q: i32): v128 {
  const a = q < 2 ? i8x16.shuffle(c0, c1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
    : i8x16.shuffle(c0, c1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b = q < 2 ? i8x16.shuffle(c2, c3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
    : i8x16.shuffle(c2, c3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  return (q & 1) == 0 ? i8x16.shuffle(a, b, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23)
    : i8x16.shuffle(a, b, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
}

/** i32x4 of the 4 rows' scale i (0..3) of a transposed vector, sign-extended. */
@inline function rowScales(t: v128, i: i32): v128 {
  const idx = i32x4.add(i32x4(0x00808080, 0x01808080, 0x02808080, 0x03808080), i32x4.splat((i << 2) << 24));
  return i32x4.shr_s(i8x16.swizzle(t, idx), 24);
}

/** Unscaled partial sums of half h of group 4n + j of the weight block at p against widened activations. */
@inline function halfDot(ty: i32, p: usize, n: i32, j: i32, h: i32, x0: v128, x1: v128): v128 {
  const w = wQuants(ty, p, n, j, h);
  return i32x4.add(i32x4.dot_i16x8_s(lo16(w), x0), i32x4.dot_i16x8_s(hi16(w), x1));
}

/** Unscaled partial sums of group 4n + j of the weight block at p against widened activations. */
@inline function fullDot(ty: i32, p: usize, n: i32, j: i32, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  return i32x4.add(halfDot(ty, p, n, j, 0, x0, x1), halfDot(ty, p, n, j, 1, x2, x3));
}

/**
 * Decode step: group 4n + j of 4 weight blocks (at p0..p3) against one activation block at xb; the activations are
 * widened once and used for the 4 rows. The 4 rows' integer sums are reduced into lanes first and then scaled with
 * one multiply by their transposed scales (u0: the half's scale indices 0..3, u1: 4..7). Returns the 4 rows' sums.
 */
@inline function groupW4X1(ty: i32, p0: usize, p1: usize, p2: usize, p3: usize, u0: v128, u1: v128, n: i32, j: i32, xb: usize): v128 {
  const xq = xb + XQ + (<usize>n << 7) + (<usize>j << 5);
  const xl = v128.load(xq);
  const xh = v128.load(xq, 16);
  const x0 = lo16(xl), x1 = hi16(xl), x2 = lo16(xh), x3 = hi16(xh);
  if (kSub16(ty)) {
    const u = j < 2 ? u0 : u1;
    const a = reduce4(halfDot(ty, p0, n, j, 0, x0, x1), halfDot(ty, p1, n, j, 0, x0, x1), halfDot(ty, p2, n, j, 0, x0, x1), halfDot(ty, p3, n, j, 0, x0, x1));
    const b = reduce4(halfDot(ty, p0, n, j, 1, x2, x3), halfDot(ty, p1, n, j, 1, x2, x3), halfDot(ty, p2, n, j, 1, x2, x3), halfDot(ty, p3, n, j, 1, x2, x3));
    return i32x4.add(i32x4.mul(a, rowScales(u, (j << 1) & 3)), i32x4.mul(b, rowScales(u, ((j << 1) + 1) & 3)));
  }
  const d = reduce4(fullDot(ty, p0, n, j, x0, x1, x2, x3), fullDot(ty, p1, n, j, x0, x1, x2, x3),
    fullDot(ty, p2, n, j, x0, x1, x2, x3), fullDot(ty, p3, n, j, x0, x1, x2, x3));
  return i32x4.mul(d, rowScales(u0, j));
}

/** Sums of adjacent bsums of the q8_k block at xb, as i16x8: Σ q_x over each 32-element group. */
@inline function bsumPairs(xb: usize): v128 {
  return i16x8.narrow_i32x4_s(i32x4.extadd_pairwise_i16x8_s(v128.load(xb + XS)), i32x4.extadd_pairwise_i16x8_s(v128.load(xb + XS + 16)));
}

/** Partial sums (i32x4) of Σ min·bsum for the weight block at p; xb the q8_k block, pairs = bsumPairs(xb). */
@inline function minDot(ty: i32, p: usize, xb: usize, pairs: v128): v128 {
  if (ty == T_Q2_K) {
    const m = i8x16.shr_u(v128.load(p), 4);
    const a = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(m), v128.load(xb + XS));
    return i32x4.add(a, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(m), v128.load(xb + XS + 16)));
  }
  // q4_k / q5_k: mins of sub-blocks 0..3 in the low 6 bits of bytes 4..7; 4..7 from the high nibbles of bytes 8..11
  // and the top two bits of bytes 4..7.
  const u1 = load<u32>(p + 8);
  const u2 = load<u32>(p + 12);
  const lo = u1 & 0x3f3f3f3f;
  const hi = ((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4);
  const mins = i16x8.extend_low_i8x16_u(i32x4.replace_lane(i32x4.splat(lo), 1, hi));
  return i32x4.dot_i16x8_s(mins, pairs);
}

/** f32x4 of the q8_k scales d of four activation blocks. */
@inline function actScales(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let v = f32x4.splat(load<f32>(p0));
  v = f32x4.replace_lane(v, 1, load<f32>(p1));
  v = f32x4.replace_lane(v, 2, load<f32>(p2));
  return f32x4.replace_lane(v, 3, load<f32>(p3));
}

/** One weight row against activation rows t..t+3; writes Y[t..t+3][r]. */
@inline function tileW1X4(ty: i32, wr: usize, x: usize, xs: usize, t: i32, nb: i32, y: usize, ldy: i32, r: i32): void {
  const wbs = kBlockBytes(ty);
  const x0 = x + <usize>t * xs;
  const x1 = x0 + xs;
  const x2 = x1 + xs;
  const x3 = x2 + xs;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * wbs;
    const o = <usize>b * XB;
    const p0 = x0 + o, p1 = x1 + o, p2 = x2 + o, p3 = x3 + o;
    const sc = scaleVec(ty, wb);
    let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
    for (let g = 0; g < 8; g++) {
      // Unpacked, widened and scaled once (|q·scale| <= 4096 fits i16), used for 4 activation rows.
      const n = g >> 2, j = g & 3;
      const wl = wQuants(ty, wb, n, j, 0);
      const wh = wQuants(ty, wb, n, j, 1);
      const sa = splat16(sc, scaleIdx(ty, n, j, 0));
      const sb = kSub16(ty) ? splat16(sc, scaleIdx(ty, n, j, 1)) : sa;
      const w0 = i16x8.mul(lo16(wl), sa), w1 = i16x8.mul(hi16(wl), sa);
      const w2 = i16x8.mul(lo16(wh), sb), w3 = i16x8.mul(hi16(wh), sb);
      const q = XQ + (<usize>g << 5);
      s0 = i32x4.add(s0, dotWithActs(w0, w1, w2, w3, p0 + q));
      s1 = i32x4.add(s1, dotWithActs(w0, w1, w2, w3, p1 + q));
      s2 = i32x4.add(s2, dotWithActs(w0, w1, w2, w3, p2 + q));
      s3 = i32x4.add(s3, dotWithActs(w0, w1, w2, w3, p3 + q));
    }
    const sumi = reduce4(s0, s1, s2, s3);
    const dx = actScales(p0, p1, p2, p3);
    let term = f32x4.mul(f32x4.mul(f32x4.splat(f16_to_f32(load<u16>(wb + kOffD(ty)))), dx), f32x4.convert_i32x4_s(sumi));
    if (kHasMin(ty)) {
      const summ = reduce4(minDot(ty, wb, p0, bsumPairs(p0)), minDot(ty, wb, p1, bsumPairs(p1)),
        minDot(ty, wb, p2, bsumPairs(p2)), minDot(ty, wb, p3, bsumPairs(p3)));
      const dm = f32x4.mul(f32x4.splat(f16_to_f32(load<u16>(wb + kOffDmin(ty)))), dx);
      term = f32x4.sub(term, f32x4.mul(dm, f32x4.convert_i32x4_s(summ)));
    }
    acc = f32x4.add(acc, term);
  }
  const yp = y + ((<usize>t * ldy + r) << 2);
  const yl = <usize>ldy << 2;
  store<f32>(yp, f32x4.extract_lane(acc, 0));
  store<f32>(yp + yl, f32x4.extract_lane(acc, 1));
  store<f32>(yp + 2 * yl, f32x4.extract_lane(acc, 2));
  store<f32>(yp + 3 * yl, f32x4.extract_lane(acc, 3));
}

/** 4 weight rows r..r+3 (rows past cnt alias row r and are not stored) against one activation row. */
@inline function tileW4X1(ty: i32, w: usize, ws: usize, r: i32, cnt: i32, xr: usize, nb: i32, yp: usize): void {
  const wbs = kBlockBytes(ty);
  const w0 = w + <usize>r * ws;
  const w1 = w0 + (cnt > 1 ? ws : 0);
  const w2 = w0 + (cnt > 2 ? 2 * ws : 0);
  const w3 = w0 + (cnt > 3 ? 3 * ws : 0);
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const xb = xr + <usize>b * XB;
    const o = <usize>b * wbs;
    const b0 = w0 + o, b1 = w1 + o, b2 = w2 + o, b3 = w3 + o;
    const c0 = scaleVec(ty, b0), c1 = scaleVec(ty, b1), c2 = scaleVec(ty, b2), c3 = scaleVec(ty, b3);
    const t0 = transposed(c0, c1, c2, c3, 0), t1 = transposed(c0, c1, c2, c3, 1);
    const t2 = kSub16(ty) ? transposed(c0, c1, c2, c3, 2) : t1, t3 = kSub16(ty) ? transposed(c0, c1, c2, c3, 3) : t1;
    let sumi = i32x4.splat(0);
    for (let g = 0; g < 8; g++) {
      const n = g >> 2;
      // Scale indices of this half: 8n.. (16 scales) or 4n.. (8 scales).
      const u0 = kSub16(ty) ? (n == 0 ? t0 : t2) : (n == 0 ? t0 : t1);
      const u1 = n == 0 ? t1 : t3;
      sumi = i32x4.add(sumi, groupW4X1(ty, b0, b1, b2, b3, u0, u1, n, g & 3, xb));
    }
    const dx = f32x4.splat(load<f32>(xb));
    const od = kOffD(ty);
    let term = f32x4.mul(f32x4.mul(f16x4_gather(b0 + od, b1 + od, b2 + od, b3 + od), dx), f32x4.convert_i32x4_s(sumi));
    if (kHasMin(ty)) {
      const pairs = bsumPairs(xb);
      const summ = reduce4(minDot(ty, b0, xb, pairs), minDot(ty, b1, xb, pairs), minDot(ty, b2, xb, pairs), minDot(ty, b3, xb, pairs));
      const om = kOffDmin(ty);
      const dm = f32x4.mul(f16x4_gather(b0 + om, b1 + om, b2 + om, b3 + om), dx);
      term = f32x4.sub(term, f32x4.mul(dm, f32x4.convert_i32x4_s(summ)));
    }
    acc = f32x4.add(acc, term);
  }
  const yr = yp + (<usize>r << 2);
  store<f32>(yr, f32x4.extract_lane(acc, 0));
  if (cnt > 1) store<f32>(yr, f32x4.extract_lane(acc, 1), 4);
  if (cnt > 2) store<f32>(yr, f32x4.extract_lane(acc, 2), 8);
  if (cnt > 3) store<f32>(yr, f32x4.extract_lane(acc, 3), 12);
}

@inline function matmulK(ty: i32, w: usize, x: usize, y: usize, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  const nb = cols >> 8;
  const ws = <usize>nb * kBlockBytes(ty);
  const xs = <usize>nb * XB;
  const n4 = n & ~3;
  for (let rb = r0; rb < r1; rb += ROW_BLOCK) {
    const re = min(rb + ROW_BLOCK, r1);
    for (let t = 0; t < n4; t += 4) {
      for (let r = rb; r < re; r++) tileW1X4(ty, w + <usize>r * ws, x, xs, t, nb, y, ldy, r);
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

/** Scalar twin: the same per-block integer sums from the format definition (kQuant / kScale / kMin). */
@inline function matmulKScalar(ty: i32, w: usize, x: usize, y: usize, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  const nb = cols >> 8;
  const wbs = kBlockBytes(ty);
  const shift = kSub16(ty) ? 4 : 5;
  for (let t = 0; t < n; t++) {
    for (let r = r0; r < r1; r++) {
      let acc: f32 = 0;
      for (let b = 0; b < nb; b++) {
        const wb = w + (<usize>r * nb + b) * wbs;
        const xb = x + (<usize>t * nb + b) * XB;
        let sumi = 0;
        let summ = 0;
        for (let s = 0; s < 256 >> shift; s++) {
          let si = 0;
          for (let k = 0; k < 1 << shift; k++) {
            const e = (s << shift) + k;
            si += kQuant(ty, wb, e) * <i32>load<i8>(xb + XQ + e);
          }
          sumi += kScale(ty, wb, s) * si;
          if (kHasMin(ty)) {
            let bs = <i32>load<i16>(xb + XS + (<usize>(s << shift >> 4) << 1));
            if (shift == 5) bs += <i32>load<i16>(xb + XS + (<usize>(s << shift >> 4) << 1), 2);
            summ += kMin(ty, wb, s) * bs;
          }
        }
        const dx = load<f32>(xb);
        let term = f16_to_f32(load<u16>(wb + kOffD(ty))) * dx * <f32>sumi;
        if (kHasMin(ty)) term -= f16_to_f32(load<u16>(wb + kOffDmin(ty))) * dx * <f32>summ;
        acc += term;
      }
      store<f32>(y + ((<usize>t * ldy + r) << 2), acc);
    }
  }
}

// Exports. Arguments: w weights, x q8_k activations (n rows of cols/256 blocks), y f32 output, rows/cols of W
// (cols a multiple of 256), n activation rows, ldy output row stride (floats), [r0, r1) output rows to compute.
export function matmul_q2_k(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulK(T_Q2_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q3_k(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulK(T_Q3_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q4_k(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulK(T_Q4_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q5_k(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulK(T_Q5_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q6_k(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulK(T_Q6_K, w, x, y, cols, n, ldy, r0, r1); }

export function matmul_q2_k_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulKScalar(T_Q2_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q3_k_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulKScalar(T_Q3_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q4_k_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulKScalar(T_Q4_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q5_k_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulKScalar(T_Q5_K, w, x, y, cols, n, ldy, r0, r1); }
export function matmul_q6_k_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void { matmulKScalar(T_Q6_K, w, x, y, cols, n, ldy, r0, r1); }
