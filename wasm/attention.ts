// Causal multi-head attention with grouped KV heads (GQA), f32 throughout.
//
// q:   n_q rows; head h of row i at q + 4*(i*q_stride + h*head_dim)
// k,v: token-major caches; position j of kv head g at k + 4*(j*kv_stride + g*head_dim)
// out: head h of row i at out + 4*(i*out_stride + h*head_dim)
// Row i has position pos0 + i and attends to positions 0..pos0+i (never beyond). Head h reads kv head
// h / (n_heads / n_kv_heads). scratch holds at least pos0 + n_q f32 (the scores of one row).
// Per (i, h): s_j = dot(q, k_j) * scale; p = softmax(s) (f64 sum); out = Σ_j p_j * v_j accumulated in f32.

import { softmax, softmax_scalar } from './ops';

// SIMD score of one key row: one f32x4 accumulator over head_dim, summed as (l0 + l2) + (l1 + l3), which is exactly
// what lane k of dot4 computes for its k-th row. So a score never depends on how rows are grouped (4 at a time, or
// one by one at the end of a segment), and the contiguous and paged layouts stay bit-identical for any block size.
@inline function dot1(q: usize, k: usize, n: i32): f32 {
  let a = f32x4.splat(0);
  for (let d = 0; d < n; d += 4) {
    const o = <usize>d << 2;
    a = f32x4.add(a, f32x4.mul(v128.load(q + o), v128.load(k + o)));
  }
  return (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 2)) + (f32x4.extract_lane(a, 1) + f32x4.extract_lane(a, 3));
}

/** Scores of 4 consecutive key rows (k, k + kvs, ...): q is loaded once for the 4 rows. */
@inline function dot4(q: usize, k: usize, kvs: usize, n: i32): v128 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let d = 0; d < n; d += 4) {
    const o = <usize>d << 2;
    const qv = v128.load(q + o);
    const kp = k + o;
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(kp)));
    a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(kp + kvs)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(kp + 2 * kvs)));
    a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(kp + 3 * kvs)));
  }
  // Transpose-add: lane k = (ak.0 + ak.2) + (ak.1 + ak.3), as in dot1.
  const a = f32x4.add(i32x4.shuffle(a0, a1, 0, 4, 1, 5), i32x4.shuffle(a0, a1, 2, 6, 3, 7));
  const b = f32x4.add(i32x4.shuffle(a2, a3, 0, 4, 1, 5), i32x4.shuffle(a2, a3, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
}

@inline function dotScalar(a: usize, b: usize, n: i32): f32 {
  let s: f32 = 0;
  for (let i = 0; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

// Row addressing: the rows 0..len-1 are walked as segments of consecutive rows. A contiguous cache is one segment
// (row j at base + j*kv_stride floats); a paged cache has one segment per block, whose base pointer (u32) is in the
// block table. Position j is always visited in increasing order with the same arithmetic, so both layouts give
// bit-identical results.
@inline function segBase(paged: bool, p: usize, blk: usize): usize {
  return paged ? <usize>load<u32>(p + blk) : p;
}

/** out[0..4*NV) += Σ_j p_j v_j[0..4*NV) over all rows, NV f32x4 accumulators held in registers across j. */
@inline function accumulate8(paged: bool, v: usize, goff: usize, kvs: usize, block_rows: i32, len: i32, p: usize, op: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let blk: usize = 0;
  for (let js = 0; js < len; blk += 4) {
    const seg = paged ? min(block_rows, len - js) : len;
    let vp = segBase(paged, v, blk) + goff;
    for (let j = 0; j < seg; j++) {
      const pv = f32x4.splat(load<f32>(p + (<usize>(js + j) << 2)));
      a0 = f32x4.add(a0, f32x4.mul(pv, v128.load(vp)));
      a1 = f32x4.add(a1, f32x4.mul(pv, v128.load(vp, 16)));
      a2 = f32x4.add(a2, f32x4.mul(pv, v128.load(vp, 32)));
      a3 = f32x4.add(a3, f32x4.mul(pv, v128.load(vp, 48)));
      a4 = f32x4.add(a4, f32x4.mul(pv, v128.load(vp, 64)));
      a5 = f32x4.add(a5, f32x4.mul(pv, v128.load(vp, 80)));
      a6 = f32x4.add(a6, f32x4.mul(pv, v128.load(vp, 96)));
      a7 = f32x4.add(a7, f32x4.mul(pv, v128.load(vp, 112)));
      vp += kvs;
    }
    js += seg;
  }
  v128.store(op, a0); v128.store(op, a1, 16); v128.store(op, a2, 32); v128.store(op, a3, 48);
  v128.store(op, a4, 64); v128.store(op, a5, 80); v128.store(op, a6, 96); v128.store(op, a7, 112);
}

@inline function accumulate1(paged: bool, v: usize, goff: usize, kvs: usize, block_rows: i32, len: i32, p: usize, op: usize): void {
  let a0 = f32x4.splat(0);
  let blk: usize = 0;
  for (let js = 0; js < len; blk += 4) {
    const seg = paged ? min(block_rows, len - js) : len;
    let vp = segBase(paged, v, blk) + goff;
    for (let j = 0; j < seg; j++) {
      a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(p + (<usize>(js + j) << 2))), v128.load(vp)));
      vp += kvs;
    }
    js += seg;
  }
  v128.store(op, a0);
}

@inline function attend(simd: bool, paged: bool, q: usize, k: usize, v: usize, block_rows: i32, out: usize, scratch: usize,
  n_q: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, kv_stride: i32, q_stride: i32, out_stride: i32,
  scale: f32, h0: i32, h1: i32): void {
  if (paged && block_rows <= 0) return; // no rows per block: nothing addressable (the engine never asks)
  const group = n_heads / n_kv_heads;
  const kvs = <usize>kv_stride << 2;
  const sv = f32x4.splat(scale);
  for (let i = 0; i < n_q; i++) {
    const len = pos0 + i + 1;
    for (let h = h0; h < h1; h++) {
      const goff = (<usize>(h / group) * head_dim) << 2;
      const qp = q + ((<usize>i * q_stride + <usize>h * head_dim) << 2);
      const op = out + ((<usize>i * out_stride + <usize>h * head_dim) << 2);

      // Scores s_j = q·k_j * scale, 4 rows at a time within each segment.
      let blk: usize = 0;
      for (let js = 0; js < len; blk += 4) {
        const seg = paged ? min(block_rows, len - js) : len;
        const kb = segBase(paged, k, blk) + goff;
        let j = 0;
        if (simd) {
          for (; j + 4 <= seg; j += 4) v128.store(scratch + (<usize>(js + j) << 2), f32x4.mul(dot4(qp, kb + <usize>j * kvs, kvs, head_dim), sv));
          for (; j < seg; j++) store<f32>(scratch + (<usize>(js + j) << 2), dot1(qp, kb + <usize>j * kvs, head_dim) * scale);
        } else {
          for (; j < seg; j++) store<f32>(scratch + (<usize>(js + j) << 2), dotScalar(qp, kb + <usize>j * kvs, head_dim) * scale);
        }
        js += seg;
      }
      if (simd) softmax(scratch, len);
      else softmax_scalar(scratch, len);

      // out = Σ_j p_j v_j, each output element accumulated over j in increasing order.
      if (simd) {
        let d = 0;
        for (; d + 32 <= head_dim; d += 32) accumulate8(paged, v, goff + (<usize>d << 2), kvs, block_rows, len, scratch, op + (<usize>d << 2));
        for (; d < head_dim; d += 4) accumulate1(paged, v, goff + (<usize>d << 2), kvs, block_rows, len, scratch, op + (<usize>d << 2));
      } else {
        memory.fill(op, 0, <usize>head_dim << 2);
        blk = 0;
        for (let js = 0; js < len; blk += 4) {
          const seg = paged ? min(block_rows, len - js) : len;
          let vp = segBase(paged, v, blk) + goff;
          for (let j = 0; j < seg; j++) {
            const p = load<f32>(scratch + (<usize>(js + j) << 2));
            for (let dd = 0; dd < head_dim; dd++) {
              const o = <usize>dd << 2;
              store<f32>(op + o, load<f32>(op + o) + p * load<f32>(vp + o));
            }
            vp += kvs;
          }
          js += seg;
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
