// Element-wise and per-row ops on f32 vectors: rmsnorm, rope, silu_mul, add, scale, softmax.
// All pointers are byte offsets into linear memory; in-place use (output == input) is allowed everywhere.

import { exp_f32, exp_f32x4 } from './expf';

// ---- rmsnorm ------------------------------------------------------------------------------------------------
// Like ggml rms_norm + mul: sum of f32 squares accumulated in f64; mean = f32(sum/dim);
// scale = 1/sqrtf(mean + eps) in f32; y = f32(x*scale) * w (two roundings). w == 0 means no weight.

@inline function rmsScale(sum: f64, dim: i32, eps: f32): f32 {
  const mean = <f32>(sum / <f64>dim);
  return <f32>1 / Mathf.sqrt(mean + eps);
}

export function rmsnorm(x: usize, w: usize, y: usize, dim: i32, n: i32, eps: f32): void {
  const d4 = dim & ~3;
  for (let t = 0; t < n; t++) {
    const xr = x + ((<usize>t * dim) << 2);
    const yr = y + ((<usize>t * dim) << 2);
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
    for (let i = 0; i < d4; i += 4) {
      const v = v128.load(xr + (<usize>i << 2));
      const sq = f32x4.mul(v, v);
      s0 = f64x2.add(s0, f64x2.promote_low_f32x4(sq));
      s1 = f64x2.add(s1, f64x2.promote_low_f32x4(i32x4.shuffle(sq, sq, 2, 3, 0, 1)));
    }
    let sum = (f64x2.extract_lane(s0, 0) + f64x2.extract_lane(s0, 1)) + (f64x2.extract_lane(s1, 0) + f64x2.extract_lane(s1, 1));
    for (let i = d4; i < dim; i++) {
      const v = load<f32>(xr + (<usize>i << 2));
      sum += <f64>(v * v);
    }
    const sc = rmsScale(sum, dim, eps);
    const scv = f32x4.splat(sc);
    for (let i = 0; i < d4; i += 4) {
      const o = <usize>i << 2;
      let v = f32x4.mul(v128.load(xr + o), scv);
      if (w != 0) v = f32x4.mul(v, v128.load(w + o));
      v128.store(yr + o, v);
    }
    for (let i = d4; i < dim; i++) {
      const o = <usize>i << 2;
      let v = load<f32>(xr + o) * sc;
      if (w != 0) v *= load<f32>(w + o);
      store<f32>(yr + o, v);
    }
  }
}

export function rmsnorm_scalar(x: usize, w: usize, y: usize, dim: i32, n: i32, eps: f32): void {
  for (let t = 0; t < n; t++) {
    const xr = x + ((<usize>t * dim) << 2);
    const yr = y + ((<usize>t * dim) << 2);
    let sum: f64 = 0;
    for (let i = 0; i < dim; i++) {
      const v = load<f32>(xr + (<usize>i << 2));
      sum += <f64>(v * v);
    }
    const sc = rmsScale(sum, dim, eps);
    for (let i = 0; i < dim; i++) {
      const o = <usize>i << 2;
      let v = load<f32>(xr + o) * sc;
      if (w != 0) v *= load<f32>(w + o);
      store<f32>(yr + o, v);
    }
  }
}

// ---- rope ---------------------------------------------------------------------------------------------------
// In place. Row t, head h starts at x + 4*(t*row_stride + h*head_dim); cs row t holds head_dim/2 (cos, sin)
// pairs shared by all heads. Normal mode rotates pairs (2i, 2i+1), NeoX mode pairs (i, i + head_dim/2):
// a' = a*c - b*s; b' = a*s + b*c.

export function rope(x: usize, cs: usize, n_rows: i32, n_heads: i32, head_dim: i32, row_stride: i32, neox: i32): void {
  const half = head_dim >> 1;
  if ((neox != 0 && (half & 3) != 0) || (neox == 0 && (head_dim & 3) != 0)) {
    rope_scalar(x, cs, n_rows, n_heads, head_dim, row_stride, neox);
    return;
  }
  // Normal mode: x = [a0 b0 a1 b1], cs = [c0 s0 c1 s1] -> x*[c0 c0 c1 c1] + [b0 a0 b1 a1]*[-s0 s0 -s1 s1].
  const signs = f32x4(-1, 1, -1, 1);
  for (let t = 0; t < n_rows; t++) {
    const ct = cs + ((<usize>t * head_dim) << 2);
    for (let h = 0; h < n_heads; h++) {
      const xh = x + ((<usize>t * row_stride + <usize>h * head_dim) << 2);
      if (neox == 0) {
        for (let i = 0; i < head_dim; i += 4) {
          const o = <usize>i << 2;
          const v = v128.load(xh + o);
          const c = v128.load(ct + o);
          const cc = i32x4.shuffle(c, c, 0, 0, 2, 2);
          const ss = f32x4.mul(i32x4.shuffle(c, c, 1, 1, 3, 3), signs);
          v128.store(xh + o, f32x4.add(f32x4.mul(v, cc), f32x4.mul(i32x4.shuffle(v, v, 1, 0, 3, 2), ss)));
        }
      } else {
        for (let i = 0; i < half; i += 4) {
          const o = <usize>i << 2;
          const a = v128.load(xh + o);
          const b = v128.load(xh + o + (<usize>half << 2));
          const c01 = v128.load(ct + (o << 1));
          const c23 = v128.load(ct + (o << 1) + 16);
          const c = i32x4.shuffle(c01, c23, 0, 2, 4, 6);
          const s = i32x4.shuffle(c01, c23, 1, 3, 5, 7);
          v128.store(xh + o, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
          v128.store(xh + o + (<usize>half << 2), f32x4.add(f32x4.mul(a, s), f32x4.mul(b, c)));
        }
      }
    }
  }
}

export function rope_scalar(x: usize, cs: usize, n_rows: i32, n_heads: i32, head_dim: i32, row_stride: i32, neox: i32): void {
  const half = head_dim >> 1;
  for (let t = 0; t < n_rows; t++) {
    const ct = cs + ((<usize>t * head_dim) << 2);
    for (let h = 0; h < n_heads; h++) {
      const xh = x + ((<usize>t * row_stride + <usize>h * head_dim) << 2);
      for (let i = 0; i < half; i++) {
        const c = load<f32>(ct + (<usize>i << 3));
        const s = load<f32>(ct + (<usize>i << 3), 4);
        const pa = xh + ((neox != 0 ? <usize>i : <usize>i << 1) << 2);
        const pb = pa + (neox != 0 ? <usize>half << 2 : 4);
        const a = load<f32>(pa);
        const b = load<f32>(pb);
        store<f32>(pa, a * c - b * s);
        store<f32>(pb, a * s + b * c);
      }
    }
  }
}

// ---- element-wise -------------------------------------------------------------------------------------------

/** out = silu(g) * u = g / (1 + exp(-g)) * u. Scalar: the cost is the exp. */
export function silu_mul(g: usize, u: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const gv = load<f32>(g + o);
    store<f32>(out + o, gv / (<f32>1 + Mathf.exp(-gv)) * load<f32>(u + o));
  }
}

/** out = a + b. */
export function add(a: usize, b: usize, out: usize, n: i32): void {
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (let i = n4; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

export function add_scalar(a: usize, b: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** x *= s, in place. */
export function scale(x: usize, s: f32, n: i32): void {
  const n4 = n & ~3;
  const sv = f32x4.splat(s);
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), sv));
  }
  for (let i = n4; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) * s);
  }
}

export function scale_scalar(x: usize, s: f32, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) * s);
  }
}

/** Copies n bytes (regions may overlap). */
export function copy(dst: usize, src: usize, n: usize): void {
  memory.copy(dst, src, n);
}

// ---- softmax ------------------------------------------------------------------------------------------------

/** In place over n f32: e = exp(x - max) (wasm/expf.ts); sum of the e in f64; x = e * f32(1/sum). */
export function softmax(x: usize, n: i32): void {
  if (n <= 0) return;
  const n4 = n & ~3;
  let mv = f32x4.splat(load<f32>(x));
  for (let i = 0; i < n4; i += 4) mv = f32x4.max(mv, v128.load(x + (<usize>i << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (let i = n4; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  const ms = f32x4.splat(m);
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    const e = exp_f32x4(f32x4.sub(v128.load(x + o), ms));
    v128.store(x + o, e);
    s0 = f64x2.add(s0, f64x2.promote_low_f32x4(e));
    s1 = f64x2.add(s1, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1)));
  }
  let sum = (f64x2.extract_lane(s0, 0) + f64x2.extract_lane(s0, 1)) + (f64x2.extract_lane(s1, 0) + f64x2.extract_lane(s1, 1));
  for (let i = n4; i < n; i++) {
    const o = <usize>i << 2;
    const e = exp_f32(load<f32>(x + o) - m);
    store<f32>(x + o, e);
    sum += <f64>e;
  }
  const inv = <f32>(1.0 / sum);
  const iv = f32x4.splat(inv);
  for (let i = 0; i < n4; i += 4) v128.store(x + (<usize>i << 2), f32x4.mul(v128.load(x + (<usize>i << 2)), iv));
  for (let i = n4; i < n; i++) store<f32>(x + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) * inv);
}

/** Scalar twin of softmax: the same exp values (bit for bit), summed in order. */
export function softmax_scalar(x: usize, n: i32): void {
  if (n <= 0) return;
  let m = load<f32>(x);
  for (let i = 1; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const e = exp_f32(load<f32>(x + o) - m);
    store<f32>(x + o, e);
    sum += <f64>e;
  }
  const inv = <f32>(1.0 / sum);
  for (let i = 0; i < n; i++) store<f32>(x + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) * inv);
}
