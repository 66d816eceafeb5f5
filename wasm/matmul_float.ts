// Float matmuls: Y[t][r] = dot(W[r], X[t]) for weights in f32, f16 or bf16 and f32 activations.
// W: `rows` rows of `cols` elements; X: n rows of `cols` f32; Y[t][r] at y + 4*(t*ldy + r); only r in [r0, r1).
//
// Tiling: weight rows are taken in blocks of ROW_BLOCK (small enough to stay in L2) and each block is swept by
// groups of 4 activation rows, so a decoded weight vector feeds 4 dot products (prefill is matrix-matrix).
// Leftover activation rows (all of them when n < 4, i.e. decode) use transposed tiles: 4 weight rows against two
// activation rows, then one, so decode does not pay for padding lanes (only a last partial row group does).

import { f16x4_load, bf16x4_load, f16_to_f32, bf16_to_f32 } from './f16';

const K_F32: i32 = 0;
const K_F16: i32 = 1;
const K_BF16: i32 = 2;
const ROW_BLOCK: i32 = 16;

@inline function elemBytes(kind: i32): usize { return kind == K_F32 ? 4 : 2; }

/** 4 consecutive weights at p as f32x4. `kind` is a compile-time constant after inlining. */
@inline function wload4(kind: i32, p: usize): v128 {
  if (kind == K_F32) return v128.load(p);
  if (kind == K_F16) return f16x4_load(p);
  return bf16x4_load(p);
}

@inline function wload1(kind: i32, p: usize): f32 {
  if (kind == K_F32) return load<f32>(p);
  if (kind == K_F16) return f16_to_f32(load<u16>(p));
  return bf16_to_f32(load<u16>(p));
}

@inline export function hsum_f32x4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** One weight row against activation rows t..t+3; writes Y[t..t+3][r]. */
@inline function tileW1X4(kind: i32, wr: usize, x: usize, xs: usize, t: i32, cols: i32, y: usize, ldy: i32, r: i32): void {
  const x0 = x + <usize>t * xs;
  const x1 = x0 + xs;
  const x2 = x1 + xs;
  const x3 = x2 + xs;
  const es = elemBytes(kind);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const c4 = cols & ~3;
  for (let c = 0; c < c4; c += 4) {
    const wv = wload4(kind, wr + <usize>c * es);
    const o = <usize>c << 2;
    a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(x0 + o)));
    a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(x1 + o)));
    a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(x2 + o)));
    a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(x3 + o)));
  }
  let s0 = hsum_f32x4(a0), s1 = hsum_f32x4(a1), s2 = hsum_f32x4(a2), s3 = hsum_f32x4(a3);
  for (let c = c4; c < cols; c++) {
    const wf = wload1(kind, wr + <usize>c * es);
    const o = <usize>c << 2;
    s0 += wf * load<f32>(x0 + o);
    s1 += wf * load<f32>(x1 + o);
    s2 += wf * load<f32>(x2 + o);
    s3 += wf * load<f32>(x3 + o);
  }
  const yp = y + ((<usize>t * ldy + r) << 2);
  const yl = <usize>ldy << 2;
  store<f32>(yp, s0);
  store<f32>(yp + yl, s1);
  store<f32>(yp + 2 * yl, s2);
  store<f32>(yp + 3 * yl, s3);
}

/** 4 weight rows (r.. r+cnt-1, extra lanes alias row r) against one activation row t. */
@inline function tileW4X1(kind: i32, w: usize, ws: usize, r: i32, cnt: i32, xr: usize, cols: i32, yp: usize): void {
  const es = elemBytes(kind);
  const w0 = w + <usize>r * ws;
  const w1 = w0 + (cnt > 1 ? ws : 0);
  const w2 = w0 + (cnt > 2 ? 2 * ws : 0);
  const w3 = w0 + (cnt > 3 ? 3 * ws : 0);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const c4 = cols & ~3;
  for (let c = 0; c < c4; c += 4) {
    const xv = v128.load(xr + (<usize>c << 2));
    const o = <usize>c * es;
    a0 = f32x4.add(a0, f32x4.mul(wload4(kind, w0 + o), xv));
    a1 = f32x4.add(a1, f32x4.mul(wload4(kind, w1 + o), xv));
    a2 = f32x4.add(a2, f32x4.mul(wload4(kind, w2 + o), xv));
    a3 = f32x4.add(a3, f32x4.mul(wload4(kind, w3 + o), xv));
  }
  let s0 = hsum_f32x4(a0), s1 = hsum_f32x4(a1), s2 = hsum_f32x4(a2), s3 = hsum_f32x4(a3);
  for (let c = c4; c < cols; c++) {
    const xf = load<f32>(xr + (<usize>c << 2));
    const o = <usize>c * es;
    s0 += wload1(kind, w0 + o) * xf;
    s1 += wload1(kind, w1 + o) * xf;
    s2 += wload1(kind, w2 + o) * xf;
    s3 += wload1(kind, w3 + o) * xf;
  }
  const yr = yp + (<usize>r << 2);
  store<f32>(yr, s0);
  if (cnt > 1) store<f32>(yr, s1, 4);
  if (cnt > 2) store<f32>(yr, s2, 8);
  if (cnt > 3) store<f32>(yr, s3, 12);
}

/** 4 weight rows (as in tileW4X1) against activation rows xr and xr + xs: each weight vector loaded (and converted)
 *  once for both rows; every dot keeps tileW4X1's summation order, so results do not depend on the tiling. */
@inline function tileW4X2(kind: i32, w: usize, ws: usize, r: i32, cnt: i32, xr: usize, xs: usize, cols: i32, yp: usize, yl: usize): void {
  const es = elemBytes(kind);
  const w0 = w + <usize>r * ws;
  const w1 = w0 + (cnt > 1 ? ws : 0);
  const w2 = w0 + (cnt > 2 ? 2 * ws : 0);
  const w3 = w0 + (cnt > 3 ? 3 * ws : 0);
  const xq = xr + xs;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const c4 = cols & ~3;
  for (let c = 0; c < c4; c += 4) {
    const xo = <usize>c << 2;
    const xv = v128.load(xr + xo);
    const xw = v128.load(xq + xo);
    const o = <usize>c * es;
    const v0 = wload4(kind, w0 + o), v1 = wload4(kind, w1 + o), v2 = wload4(kind, w2 + o), v3 = wload4(kind, w3 + o);
    a0 = f32x4.add(a0, f32x4.mul(v0, xv));
    a1 = f32x4.add(a1, f32x4.mul(v1, xv));
    a2 = f32x4.add(a2, f32x4.mul(v2, xv));
    a3 = f32x4.add(a3, f32x4.mul(v3, xv));
    b0 = f32x4.add(b0, f32x4.mul(v0, xw));
    b1 = f32x4.add(b1, f32x4.mul(v1, xw));
    b2 = f32x4.add(b2, f32x4.mul(v2, xw));
    b3 = f32x4.add(b3, f32x4.mul(v3, xw));
  }
  let s0 = hsum_f32x4(a0), s1 = hsum_f32x4(a1), s2 = hsum_f32x4(a2), s3 = hsum_f32x4(a3);
  let t0 = hsum_f32x4(b0), t1 = hsum_f32x4(b1), t2 = hsum_f32x4(b2), t3 = hsum_f32x4(b3);
  for (let c = c4; c < cols; c++) {
    const xo = <usize>c << 2;
    const xf = load<f32>(xr + xo);
    const xg = load<f32>(xq + xo);
    const o = <usize>c * es;
    const f0 = wload1(kind, w0 + o), f1 = wload1(kind, w1 + o), f2 = wload1(kind, w2 + o), f3 = wload1(kind, w3 + o);
    s0 += f0 * xf; s1 += f1 * xf; s2 += f2 * xf; s3 += f3 * xf;
    t0 += f0 * xg; t1 += f1 * xg; t2 += f2 * xg; t3 += f3 * xg;
  }
  const yr = yp + (<usize>r << 2);
  const ys = yr + yl;
  store<f32>(yr, s0);
  store<f32>(ys, t0);
  if (cnt > 1) { store<f32>(yr, s1, 4); store<f32>(ys, t1, 4); }
  if (cnt > 2) { store<f32>(yr, s2, 8); store<f32>(ys, t2, 8); }
  if (cnt > 3) { store<f32>(yr, s3, 12); store<f32>(ys, t3, 12); }
}

@inline function matmulFloat(kind: i32, w: usize, x: usize, y: usize, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  const ws = <usize>cols * elemBytes(kind);
  const xs = <usize>cols << 2;
  const n4 = n & ~3;
  for (let rb = r0; rb < r1; rb += ROW_BLOCK) {
    const re = min(rb + ROW_BLOCK, r1);
    for (let t = 0; t < n4; t += 4) {
      for (let r = rb; r < re; r++) tileW1X4(kind, w + <usize>r * ws, x, xs, t, cols, y, ldy, r);
    }
    // Leftover activation rows (all of them in decode) take this block of weight rows while it is still in cache, so
    // a pass of 5 rows (a verify pass with k = 4) reads the weights from memory once, not twice.
    let t = n4;
    for (; t + 1 < n; t += 2) {
      const yp = y + ((<usize>t * ldy) << 2);
      for (let r = rb; r < re; r += 4) tileW4X2(kind, w, ws, r, min(4, re - r), x + <usize>t * xs, xs, cols, yp, <usize>ldy << 2);
    }
    if (t < n) {
      const xr = x + <usize>t * xs;
      const yp = y + ((<usize>t * ldy) << 2);
      for (let r = rb; r < re; r += 4) tileW4X1(kind, w, ws, r, min(4, re - r), xr, cols, yp);
    }
  }
}

@inline function matmulFloatScalar(kind: i32, w: usize, x: usize, y: usize, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  const es = elemBytes(kind);
  for (let t = 0; t < n; t++) {
    const xr = x + ((<usize>t * cols) << 2);
    for (let r = r0; r < r1; r++) {
      const wr = w + <usize>r * cols * es;
      let s: f32 = 0;
      for (let c = 0; c < cols; c++) s += wload1(kind, wr + <usize>c * es) * load<f32>(xr + (<usize>c << 2));
      store<f32>(y + ((<usize>t * ldy + r) << 2), s);
    }
  }
}

export function matmul_f32(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  matmulFloat(K_F32, w, x, y, cols, n, ldy, r0, r1);
}
export function matmul_f16(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  matmulFloat(K_F16, w, x, y, cols, n, ldy, r0, r1);
}
export function matmul_bf16(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  matmulFloat(K_BF16, w, x, y, cols, n, ldy, r0, r1);
}
export function matmul_f32_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  matmulFloatScalar(K_F32, w, x, y, cols, n, ldy, r0, r1);
}
export function matmul_f16_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  matmulFloatScalar(K_F16, w, x, y, cols, n, ldy, r0, r1);
}
export function matmul_bf16_scalar(w: usize, x: usize, y: usize, rows: i32, cols: i32, n: i32, ldy: i32, r0: i32, r1: i32): void {
  matmulFloatScalar(K_BF16, w, x, y, cols, n, ldy, r0, r1);
}
