// Quantized matmuls: Y[t][r] = dot(W[r], X[t]) with W in a ggml block type and X pre-quantized per row to
// q8_0 (for q4_0, q5_0, q8_0) or q8_1 (for q4_1, q5_1). Only output rows r in [r0, r1) are computed.
//
// Per block: sumi = Σ qw*qx exactly in i32, then acc += (dw*dx)*f32(sumi)  (+ mw*sx for the _1 types).
// The SIMD kernels and their scalar twins perform exactly these float operations in the same order, so they
// agree bit for bit. SIMD: weight quants are unpacked to i8x16 (elements 0..15 and 16..31), widened to i16
// and multiplied with i32x4.dot_i16x8_s; four blocks' partial sums are reduced together into one i32x4.
//
// Tiling as in matmul_float: weight rows in blocks of ROW_BLOCK, each unpacked weight block feeds 4 activation
// rows (prefill); leftover activation rows (decode) use 4 weight rows against one activation block.

import { f16_to_f32, f16x4_gather } from './f16';
import { T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0, T_Q8_1, blockBytes, hasMin, blockQ } from './quant_blocks';

const ROW_BLOCK: i32 = 16;

/** Activation block bytes and quant offset for a weight type. */
@inline function actBytes(ty: i32): usize { return hasMin(ty) ? 36 : 34; }
@inline function actQs(ty: i32): usize { return hasMin(ty) ? 4 : 2; }

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

/** Quants of elements 0..15 (upper = false) or 16..31 (upper = true) of the weight block at p, as i8x16. */
@inline function weightQ(ty: i32, p: usize, upper: bool): v128 {
  if (ty == T_Q8_0) return v128.load(p + (upper ? 18 : 2));
  const qsOff: usize = ty == T_Q4_0 ? 2 : ty == T_Q4_1 ? 4 : ty == T_Q5_0 ? 6 : 8;
  const qs = v128.load(p + qsOff);
  let q = upper ? i8x16.shr_u(qs, 4) : v128.and(qs, i8x16.splat(0x0f));
  if (ty == T_Q5_0) q = v128.or(q, q5HighBits(p + 2, upper));
  if (ty == T_Q5_1) q = v128.or(q, q5HighBits(p + 4, upper));
  if (ty == T_Q4_0) q = i8x16.sub(q, i8x16.splat(8));
  if (ty == T_Q5_0) q = i8x16.sub(q, i8x16.splat(16));
  return q;
}

@inline function lo16(v: v128): v128 { return i16x8.extend_low_i8x16_s(v); }
@inline function hi16(v: v128): v128 { return i16x8.extend_high_i8x16_s(v); }

/** Partial sums (i32x4) of the 32 products a·b, both given as four i16x8 (elements 0-7, 8-15, 16-23, 24-31). */
@inline function dot32(a0: v128, a1: v128, a2: v128, a3: v128, b0: v128, b1: v128, b2: v128, b3: v128): v128 {
  const s = i32x4.add(i32x4.dot_i16x8_s(a0, b0), i32x4.dot_i16x8_s(a1, b1));
  return i32x4.add(s, i32x4.add(i32x4.dot_i16x8_s(a2, b2), i32x4.dot_i16x8_s(a3, b3)));
}

/** Widened weights against the 32 i8 activation quants at p. */
@inline function dotWithActs(w0: v128, w1: v128, w2: v128, w3: v128, p: usize): v128 {
  const xl = v128.load(p);
  const xh = v128.load(p, 16);
  return dot32(w0, w1, w2, w3, lo16(xl), hi16(xl), lo16(xh), hi16(xh));
}

/** The weight block at p against widened activations. */
@inline function dotWithWeights(ty: i32, p: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const wl = weightQ(ty, p, false);
  const wh = weightQ(ty, p, true);
  return dot32(lo16(wl), hi16(wl), lo16(wh), hi16(wh), x0, x1, x2, x3);
}

/** [Σ s0, Σ s1, Σ s2, Σ s3]: horizontal sums of four i32x4 (a 4x4 transpose-add). */
@inline function reduce4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

/** One weight row against activation rows t..t+3; writes Y[t..t+3][r]. */
@inline function tileW1X4(ty: i32, wr: usize, x: usize, xs: usize, t: i32, nb: i32, y: usize, ldy: i32, r: i32): void {
  const wbs = blockBytes(ty);
  const xbs = actBytes(ty);
  const qo = actQs(ty);
  const x0 = x + <usize>t * xs;
  const x1 = x0 + xs;
  const x2 = x1 + xs;
  const x3 = x2 + xs;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * wbs;
    const o = <usize>b * xbs;
    const wl = weightQ(ty, wb, false); // unpacked and widened once, used for 4 activation rows
    const wh = weightQ(ty, wb, true);
    const w0 = lo16(wl), w1 = hi16(wl), w2 = lo16(wh), w3 = hi16(wh);
    const sumi = reduce4(
      dotWithActs(w0, w1, w2, w3, x0 + o + qo),
      dotWithActs(w0, w1, w2, w3, x1 + o + qo),
      dotWithActs(w0, w1, w2, w3, x2 + o + qo),
      dotWithActs(w0, w1, w2, w3, x3 + o + qo));
    const scale = f32x4.mul(f32x4.splat(f16_to_f32(load<u16>(wb))), f16x4_gather(x0 + o, x1 + o, x2 + o, x3 + o));
    let term = f32x4.mul(scale, f32x4.convert_i32x4_s(sumi));
    if (hasMin(ty)) {
      const sx = f16x4_gather(x0 + o + 2, x1 + o + 2, x2 + o + 2, x3 + o + 2);
      term = f32x4.add(term, f32x4.mul(f32x4.splat(f16_to_f32(load<u16>(wb, 2))), sx));
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
  const wbs = blockBytes(ty);
  const xbs = actBytes(ty);
  const qo = actQs(ty);
  const w0 = w + <usize>r * ws;
  const w1 = w0 + (cnt > 1 ? ws : 0);
  const w2 = w0 + (cnt > 2 ? 2 * ws : 0);
  const w3 = w0 + (cnt > 3 ? 3 * ws : 0);
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const xb = xr + <usize>b * xbs;
    const o = <usize>b * wbs;
    const xl = v128.load(xb + qo); // widened once, used for 4 weight rows
    const xh = v128.load(xb + qo + 16);
    const a0 = lo16(xl), a1 = hi16(xl), a2 = lo16(xh), a3 = hi16(xh);
    const sumi = reduce4(
      dotWithWeights(ty, w0 + o, a0, a1, a2, a3),
      dotWithWeights(ty, w1 + o, a0, a1, a2, a3),
      dotWithWeights(ty, w2 + o, a0, a1, a2, a3),
      dotWithWeights(ty, w3 + o, a0, a1, a2, a3));
    const scale = f32x4.mul(f16x4_gather(w0 + o, w1 + o, w2 + o, w3 + o), f32x4.splat(f16_to_f32(load<u16>(xb))));
    let term = f32x4.mul(scale, f32x4.convert_i32x4_s(sumi));
    if (hasMin(ty)) {
      const mw = f16x4_gather(w0 + o + 2, w1 + o + 2, w2 + o + 2, w3 + o + 2);
      term = f32x4.add(term, f32x4.mul(mw, f32x4.splat(f16_to_f32(load<u16>(xb, 2)))));
    }
    acc = f32x4.add(acc, term);
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
  if (n4 > 0) {
    for (let rb = r0; rb < r1; rb += ROW_BLOCK) {
      const re = min(rb + ROW_BLOCK, r1);
      for (let t = 0; t < n4; t += 4) {
        for (let r = rb; r < re; r++) tileW1X4(ty, w + <usize>r * ws, x, xs, t, nb, y, ldy, r);
      }
    }
  }
  for (let t = n4; t < n; t++) {
    const xr = x + <usize>t * xs;
    const yp = y + ((<usize>t * ldy) << 2);
    for (let r = r0; r < r1; r += 4) tileW4X1(ty, w, ws, r, min(4, r1 - r), xr, nb, yp);
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
