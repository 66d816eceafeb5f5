// Causal multi-head attention with grouped KV heads (GQA), f32 throughout.
//
// q:   n_q rows; head h of row i at q + 4*(i*q_stride + h*head_dim)
// k,v: token-major caches; position j of kv head g at k + 4*(j*kv_stride + g*head_dim)
// out: head h of row i at out + 4*(i*out_stride + h*head_dim)
// Row i has position pos0 + i and attends to positions 0..pos0+i (never beyond). Head h reads kv head
// h / (n_heads / n_kv_heads). scratch holds at least pos0 + n_q f32 (the scores of one row).
// Per (i, h): s_j = dot(q, k_j) * scale; p = softmax(s) (f64 sum); out = Σ_j p_j * v_j accumulated in f32.

import { softmax } from './ops';
import { hsum_f32x4 } from './matmul_float';

@inline function dotSimd(a: usize, b: usize, n: i32): f32 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) { // two accumulators hide the add latency
    const o = <usize>i << 2;
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + o + 16), v128.load(b + o + 16)));
  }
  if (i < n) s0 = f32x4.add(s0, f32x4.mul(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2))));
  return hsum_f32x4(f32x4.add(s0, s1));
}

@inline function dotScalar(a: usize, b: usize, n: i32): f32 {
  let s: f32 = 0;
  for (let i = 0; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

// Row addressing: contiguous caches put position j at base + j*kv_stride floats; paged caches (paged = true) keep a
// table of block base pointers (u32 each) and put position j at table[j / block_rows] + (j % block_rows)*kv_stride
// floats. Both walk j in increasing order with the same arithmetic, so the two layouts give bit-identical results.
@inline function attend(simd: bool, paged: bool, q: usize, k: usize, v: usize, block_rows: i32, out: usize, scratch: usize,
  n_q: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, kv_stride: i32, q_stride: i32, out_stride: i32,
  scale: f32, h0: i32, h1: i32): void {
  const group = n_heads / n_kv_heads;
  const kvs = <usize>kv_stride << 2;
  for (let i = 0; i < n_q; i++) {
    const len = pos0 + i + 1;
    for (let h = h0; h < h1; h++) {
      const g = h / group;
      const goff = (<usize>g * head_dim) << 2;
      const qp = q + ((<usize>i * q_stride + <usize>h * head_dim) << 2);
      const op = out + ((<usize>i * out_stride + <usize>h * head_dim) << 2);
      // Contiguous: kj = k + goff + j*kvs. Paged: kj = block base + goff + r*kvs, r = j % block_rows.
      let kj: usize = paged ? <usize>load<u32>(k) + goff : k + goff;
      let r = 0;
      let blk: usize = 0;
      for (let j = 0; j < len; j++) {
        store<f32>(scratch + (<usize>j << 2), (simd ? dotSimd(qp, kj, head_dim) : dotScalar(qp, kj, head_dim)) * scale);
        kj += kvs;
        if (paged) {
          if (++r == block_rows && j + 1 < len) {
            r = 0;
            blk += 4;
            kj = <usize>load<u32>(k + blk) + goff;
          }
        }
      }
      softmax(scratch, len);
      memory.fill(op, 0, <usize>head_dim << 2);
      let vj: usize = paged ? <usize>load<u32>(v) + goff : v + goff;
      r = 0;
      blk = 0;
      for (let j = 0; j < len; j++) {
        const p = load<f32>(scratch + (<usize>j << 2));
        if (simd) {
          const pv = f32x4.splat(p);
          for (let d = 0; d < head_dim; d += 4) {
            const o = <usize>d << 2;
            v128.store(op + o, f32x4.add(v128.load(op + o), f32x4.mul(pv, v128.load(vj + o))));
          }
        } else {
          for (let d = 0; d < head_dim; d++) {
            const o = <usize>d << 2;
            store<f32>(op + o, load<f32>(op + o) + p * load<f32>(vj + o));
          }
        }
        vj += kvs;
        if (paged) {
          if (++r == block_rows && j + 1 < len) {
            r = 0;
            blk += 4;
            vj = <usize>load<u32>(v + blk) + goff;
          }
        }
      }
    }
  }
}

export function attention(q: usize, k: usize, v: usize, out: usize, scratch: usize, n_q: i32, n_heads: i32, n_kv_heads: i32,
  head_dim: i32, pos0: i32, kv_stride: i32, q_stride: i32, out_stride: i32, scale: f32): void {
  if ((head_dim & 3) != 0) {
    attend(false, false, q, k, v, 0, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_stride, q_stride, out_stride, scale, 0, n_heads);
  } else {
    attend(true, false, q, k, v, 0, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_stride, q_stride, out_stride, scale, 0, n_heads);
  }
}

export function attention_scalar(q: usize, k: usize, v: usize, out: usize, scratch: usize, n_q: i32, n_heads: i32, n_kv_heads: i32,
  head_dim: i32, pos0: i32, kv_stride: i32, q_stride: i32, out_stride: i32, scale: f32): void {
  attend(false, false, q, k, v, 0, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_stride, q_stride, out_stride, scale, 0, n_heads);
}

// Heads h0..h1-1 only (a thread's share; each head's result does not depend on the others).
export function attention_range(q: usize, k: usize, v: usize, out: usize, scratch: usize, n_q: i32, n_heads: i32, n_kv_heads: i32,
  head_dim: i32, pos0: i32, kv_stride: i32, q_stride: i32, out_stride: i32, scale: f32, h0: i32, h1: i32): void {
  if ((head_dim & 3) != 0) attend(false, false, q, k, v, 0, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_stride, q_stride, out_stride, scale, h0, h1);
  else attend(true, false, q, k, v, 0, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_stride, q_stride, out_stride, scale, h0, h1);
}

// Paged layout: ktable / vtable hold one u32 block base pointer per block of block_rows positions; within a block,
// position r of kv head g is at base + 4*(r*kv_row_floats + g*head_dim). Only the blocks covering positions
// 0..pos0+n_q-1 are read. Same floating-point operations, in the same order, as `attention`.
export function attention_paged(q: usize, ktable: usize, vtable: usize, block_rows: i32, out: usize, scratch: usize, n_q: i32,
  n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, kv_row_floats: i32, q_stride: i32, out_stride: i32, scale: f32): void {
  if ((head_dim & 3) != 0) {
    attend(false, true, q, ktable, vtable, block_rows, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_row_floats, q_stride, out_stride, scale, 0, n_heads);
  } else {
    attend(true, true, q, ktable, vtable, block_rows, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_row_floats, q_stride, out_stride, scale, 0, n_heads);
  }
}

export function attention_paged_scalar(q: usize, ktable: usize, vtable: usize, block_rows: i32, out: usize, scratch: usize, n_q: i32,
  n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, kv_row_floats: i32, q_stride: i32, out_stride: i32, scale: f32): void {
  attend(false, true, q, ktable, vtable, block_rows, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_row_floats, q_stride, out_stride, scale, 0, n_heads);
}

export function attention_paged_range(q: usize, ktable: usize, vtable: usize, block_rows: i32, out: usize, scratch: usize, n_q: i32,
  n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, kv_row_floats: i32, q_stride: i32, out_stride: i32, scale: f32,
  h0: i32, h1: i32): void {
  if ((head_dim & 3) != 0) attend(false, true, q, ktable, vtable, block_rows, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_row_floats, q_stride, out_stride, scale, h0, h1);
  else attend(true, true, q, ktable, vtable, block_rows, out, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, kv_row_floats, q_stride, out_stride, scale, h0, h1);
}
