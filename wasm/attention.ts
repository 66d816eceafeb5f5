// Causal multi-head attention with grouped KV heads (GQA) over a KV cache whose rows are f32, f16 or q8, built for
// decode over long caches (one pass over K and V, softmax merged online across sequence blocks, split by KV head and
// by sequence block) and used unchanged for many query rows (prefill, speculative verification).
//
// Layout
//   q     n_q rows of f32; head h of row i at q + 4*(i*q_stride + h*head_dim). Row i has position pos0 + i and
//         attends to positions 0..pos0+i.
//   K, V  rows by position through block tables: position j is row j % block_rows of the block whose base pointer
//         (u32) is entry j / block_rows of the table; rows are row_bytes apart; kv head g starts at byte
//         g * headBytes(type, head_dim) of a row. A contiguous cache is a table of one entry with block_rows >= length.
//   types KV_F32: f32 values. KV_F16: IEEE halves. KV_Q8: blocks of qb (8, 16 or 32) values {f16 d; i8 q[qb]},
//         value = d * q (the q8_0 layout of ggml for qb = 32).
//   part  partial results, one record of head_dim + 4 f32 per (row i, head h, sequence block b) at index
//         (i * n_heads + h) * n_sb + b, n_sb = ceil((pos0 + n_q) / SEQ_BLOCK): {m, l, -, -, acc[head_dim]}.
//
// The arithmetic (what both twins compute, whatever the thread split, the layout or the rows in a call):
//   Positions are cut into sequence blocks of SEQ_BLOCK from position 0. For row i, head h, and block b over the
//   positions j of the block up to the row's own:
//     s_j   = dot(q, k_j) * scale. f32/f16 rows: dot = (a0 + a2) + (a1 + a3), a_l summing q_d * k_d over d = l mod 4
//             in increasing d (f32, k_d converted exactly to f32). q8 rows (as llama.cpp computes q8_0 K): the query
//             is quantized per block like the rows (dq = amax/127 in f32, q = round-half-even(x * 127/amax)) and
//             dot = sum over blocks, in order, of f32(integer dot of the quants) * (dk * dq)
//     m_b   = max_j s_j;  p_j = exp(s_j - m_b) (wasm/expf.ts);  l_b = sum4(p);  acc_b = sum over j (in order) of
//             p_j v_j (f32/f16: p_j * v exactly converted; q8: (p_j * d) * q)
//   sum4(x) adds whole quads lane-wise, then (s0 + s2) + (s1 + s3), then the remaining values in order.
//   The merge folds the blocks in order b = 0, 1, ..: M' = max(M, m_b), a = exp(M - M'), c = exp(m_b - M'),
//   L = L*a + l_b*c, acc = acc*a + acc_b*c, starting from block 0; out = acc * (1/L).
// So a row's result depends only on its query, its position and the cache contents.
//
// Speed: work items go block by block (all KV heads of a block before the next), so a thread streams through the
// rows. The SIMD path reads each K and V row once, converts f16/q8 in registers, and scores 4 key rows per load of
// the query. For f16 it skips the exponent rebias (x 2^112) of the conversion by folding it into the other factor:
// q*2^112 (when |q| < 2^15) and p*2^112, which gives the very same rounded products. q8 scores are integer dot
// products (i32x4.dot_i16x8_s). Several query vectors per block (GQA groups, many rows) run over the block's rows
// from cache, f16 blocks converted once into an f32 buffer in the scratch first.

import { exp_f32, exp_f32x4 } from './expf';
import { SEQ_BLOCK, foldStep, scaleRow, spreadMass } from './softmax_blocks';
import { f32_to_f16 as f32ToF16 } from './f16';

export const KV_F32: i32 = 0;
export const KV_F16: i32 = 1;
export const KV_Q8: i32 = 2;
/** q4 rows (wasm/kv_convert.ts): storage and conversion only; attn_partials does not read them. */
export const KV_Q4: i32 = 3;

/** Positions per sequence block: the unit of the thread split and of the online merge. Fixed: results depend on it. */
const REBIAS: f32 = 5.192296858534828e33; // 2^112: f16 magnitude bits << 13, reinterpreted, times this is the value
const Q_PRESCALE_MAX: f32 = 32768; // |q| below this: q * 2^112 is finite
const TABLE_CONTIGUOUS: i32 = 1 << 30;
const F16_MAX: f32 = 65504;

/** Bytes of one kv head's values in a row. */
@inline function headBytes(kt: i32, qb: i32, hd: i32): usize {
  if (kt == KV_F32) return <usize>hd << 2;
  if (kt == KV_F16) return <usize>hd << 1;
  return <usize>(hd / qb) * <usize>(qb + 2);
}

// ---- conversions ----------------------------------------------------------------------------------------------

/** 4 halves at p -> their magnitude and sign bits in f32 position, without the 2^112 rebias ("raw"). */
@inline function f16raw4(p: usize): v128 {
  return v128.and(i32x4.shl(v128.load16x4_s(p), 13), i32x4.splat(0x8fffe000));
}

@inline function f16raw1(p: usize): f32 {
  return reinterpret<f32>((<i32>load<i16>(p) << 13) & 0x8fffe000);
}

/** The exact value of the half at p. */
@inline function f16val(p: usize): f32 {
  return f16raw1(p) * REBIAS;
}

/** Value d of the f32 (kt = KV_F32) or f16 head vector at p (the scalar definition). */
@inline function kvValue(kt: i32, p: usize, d: i32): f32 {
  if (kt == KV_F32) return load<f32>(p + (<usize>d << 2));
  return f16val(p + (<usize>d << 1));
}

// ---- row addressing -------------------------------------------------------------------------------------------

/** Pointers to kv head `hoff` (byte offset in a row) of positions j0..j0+n-1, into dst (u32 each). */
function rowPointers(tab: usize, block_rows: i32, row_bytes: usize, hoff: usize, j0: i32, n: i32, dst: usize): void {
  let blk = j0 / block_rows;
  let r = j0 - blk * block_rows;
  let p = <usize>load<u32>(tab + (<usize>blk << 2)) + <usize>r * row_bytes + hoff;
  for (let t = 0; t < n; t++) {
    if (r == block_rows) {
      blk++;
      r = 0;
      p = <usize>load<u32>(tab + (<usize>blk << 2)) + hoff;
    }
    store<u32>(dst + (<usize>t << 2), <u32>p);
    p += row_bytes;
    r++;
  }
}

/** Loads one word per 64 bytes of the n whole rows at kp and vp (from head 0), so that their misses overlap. */
function touchRows(kp: usize, vp: usize, n: i32, row_bytes: i32, sink: usize): void {
  let x: u32 = 0;
  for (let t = 0; t < n; t++) {
    const k = <usize>load<u32>(kp + (<usize>t << 2));
    const v = <usize>load<u32>(vp + (<usize>t << 2));
    for (let o = 0; o < row_bytes; o += 64) x ^= load<u32>(k + <usize>o) ^ load<u32>(v + <usize>o);
  }
  store<u32>(sink, load<u32>(sink) | (x & 0));
}

/** Converts the n f16 head vectors at the pointers in ptrs to f32 rows of head_dim at buf, and points ptrs at them. */
@inline function convertRowsF16(simd: bool, ptrs: usize, n: i32, hd: i32, buf: usize): void {
  const rowf = <usize>hd << 2;
  for (let t = 0; t < n; t++) {
    const src = <usize>load<u32>(ptrs + (<usize>t << 2));
    const dst = buf + <usize>t * rowf;
    if (simd) {
      const rb = f32x4.splat(REBIAS);
      for (let d = 0; d < hd; d += 4) v128.store(dst + (<usize>d << 2), f32x4.mul(f16raw4(src + (<usize>d << 1)), rb));
    } else {
      for (let d = 0; d < hd; d++) store<f32>(dst + (<usize>d << 2), f16val(src + (<usize>d << 1)));
    }
    store<u32>(ptrs + (<usize>t << 2), <u32>dst);
  }
}

// ---- scores ---------------------------------------------------------------------------------------------------

/** Scores of 4 f32/f16 key rows (k0..k3) against q, as lanes 0..3. `raw`: f16 without rebias, q prescaled by 2^112. */
@inline function dot4(kt: i32, qb: i32, raw: bool, q: usize, k0: usize, k1: usize, k2: usize, k3: usize, hd: i32): v128 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  if (kt == KV_F32) {
    for (let d = 0; d < hd; d += 4) {
      const o = <usize>d << 2;
      const qv = v128.load(q + o);
      a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
      a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
      a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
      a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
    }
  } else if (kt == KV_F16) {
    const rb = f32x4.splat(raw ? 1 : REBIAS);
    for (let d = 0; d < hd; d += 4) {
      const o = <usize>d << 1;
      const qv = v128.load(q + (<usize>d << 2));
      if (raw) {
        a0 = f32x4.add(a0, f32x4.mul(qv, f16raw4(k0 + o)));
        a1 = f32x4.add(a1, f32x4.mul(qv, f16raw4(k1 + o)));
        a2 = f32x4.add(a2, f32x4.mul(qv, f16raw4(k2 + o)));
        a3 = f32x4.add(a3, f32x4.mul(qv, f16raw4(k3 + o)));
      } else {
        a0 = f32x4.add(a0, f32x4.mul(qv, f32x4.mul(f16raw4(k0 + o), rb)));
        a1 = f32x4.add(a1, f32x4.mul(qv, f32x4.mul(f16raw4(k1 + o), rb)));
        a2 = f32x4.add(a2, f32x4.mul(qv, f32x4.mul(f16raw4(k2 + o), rb)));
        a3 = f32x4.add(a3, f32x4.mul(qv, f32x4.mul(f16raw4(k3 + o), rb)));
      }
    }
  }
  // Transpose-add: lane r = (ar.0 + ar.2) + (ar.1 + ar.3).
  const x = f32x4.add(i32x4.shuffle(a0, a1, 0, 4, 1, 5), i32x4.shuffle(a0, a1, 2, 6, 3, 7));
  const y = f32x4.add(i32x4.shuffle(a2, a3, 0, 4, 1, 5), i32x4.shuffle(a2, a3, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(x, y, 0, 1, 4, 5), i32x4.shuffle(x, y, 2, 3, 6, 7));
}

/** Integer dot products of 4 i32x4 lane sums, transposed: lane r = the sum of sr's lanes. */
@inline function isum4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const x = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const y = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(x, y, 0, 1, 4, 5), i32x4.shuffle(x, y, 2, 3, 6, 7));
}

/** 4 halves at scattered addresses, exactly, as f32x4. */
@inline function f16gather(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = i32x4.splat(load<i16>(p0));
  h = i32x4.replace_lane(h, 1, load<i16>(p1));
  h = i32x4.replace_lane(h, 2, load<i16>(p2));
  h = i32x4.replace_lane(h, 3, load<i16>(p3));
  return f32x4.mul(v128.and(i32x4.shl(h, 13), i32x4.splat(0x8fffe000)), f32x4.splat(REBIAS));
}

/**
 * q8 scores of 4 key rows against a quantized query (qi: i16 quants, qd: f32 block scales), as lanes 0..3:
 * per block, the exact integer dot times dk * dq, summed over blocks in order.
 */
@inline function dot4q8(qb: i32, qi: usize, qd: usize, k0: usize, k1: usize, k2: usize, k3: usize, hd: i32): v128 {
  let acc = f32x4.splat(0);
  let o: usize = 0;
  let dq = qd;
  for (let b = 0; b < hd; b += qb) {
    let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
    for (let e = 0; e < qb; e += 8) {
      const qv = v128.load(qi + (<usize>(b + e) << 1));
      const ko = o + 2 + <usize>e;
      s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(k0 + ko), qv));
      s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(k1 + ko), qv));
      s2 = i32x4.add(s2, i32x4.dot_i16x8_s(v128.load8x8_s(k2 + ko), qv));
      s3 = i32x4.add(s3, i32x4.dot_i16x8_s(v128.load8x8_s(k3 + ko), qv));
    }
    const dk = f16gather(k0 + o, k1 + o, k2 + o, k3 + o);
    const dkq = f32x4.mul(dk, f32x4.splat(load<f32>(dq)));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum4(s0, s1, s2, s3)), dkq));
    o += <usize>(qb + 2);
    dq += 4;
  }
  return acc;
}

/** Scalar definition of a q8 score's dot product. */
@inline function dotQ8Scalar(qb: i32, qi: usize, qd: usize, k: usize, hd: i32): f32 {
  let acc: f32 = 0;
  let o: usize = 0;
  for (let b = 0; b < hd; b += qb) {
    let s: i32 = 0;
    for (let e = 0; e < qb; e++) s += <i32>load<i8>(k + o + 2 + <usize>e) * <i32>load<i16>(qi + (<usize>(b + e) << 1));
    acc += <f32>s * (f16val(k + o) * load<f32>(qd + (<usize>(b / qb) << 2)));
    o += <usize>(qb + 2);
  }
  return acc;
}

/** Quantizes the query head at q (hd values) per block of qb: i16 quants at qi, f32 scales at qd (as kv_store_rows). */
@inline function quantizeQuery(qb: i32, q: usize, hd: i32, qi: usize, qd: usize): void {
  for (let b = 0; b < hd; b += qb) {
    let amax: f32 = 0;
    for (let e = 0; e < qb; e++) amax = max(amax, abs(load<f32>(q + (<usize>(b + e) << 2))));
    const id: f32 = amax != 0 ? <f32>127 / amax : 0;
    store<f32>(qd + (<usize>(b / qb) << 2), amax / 127);
    for (let e = 0; e < qb; e++) store<i16>(qi + (<usize>(b + e) << 1), <i16><i32>nearest(load<f32>(q + (<usize>(b + e) << 2)) * id));
  }
}

/** Scalar definition of one f32/f16 score's dot product (lane sums in order, then the pairwise reduction). */
@inline function dotScalar(kt: i32, qb: i32, q: usize, k: usize, hd: i32): f32 {
  let a0: f32 = 0, a1: f32 = 0, a2: f32 = 0, a3: f32 = 0;
  for (let d = 0; d < hd; d++) {
    const x = load<f32>(q + (<usize>d << 2)) * kvValue(kt, k, d);
    const l = d & 3;
    if (l == 0) a0 += x;
    else if (l == 1) a1 += x;
    else if (l == 2) a2 += x;
    else a3 += x;
  }
  return (a0 + a2) + (a1 + a3);
}

/**
 * s[t] = dot(q, k_t) * scale for the n key rows at the pointers in kp. For q8 rows, q is the quantized query: i16
 * quants at q, f32 block scales at qd.
 */
@inline function scores(simd: bool, kt: i32, qb: i32, raw: bool, q: usize, qd: usize, kp: usize, n: i32, hd: i32, scale: f32, s: usize): void {
  let t = 0;
  if (kt == KV_Q8) {
    if (simd) {
      const sv = f32x4.splat(scale);
      for (; t + 4 <= n; t += 4) {
        const pp = kp + (<usize>t << 2);
        const d = dot4q8(qb, q, qd, <usize>load<u32>(pp), <usize>load<u32>(pp, 4), <usize>load<u32>(pp, 8), <usize>load<u32>(pp, 12), hd);
        v128.store(s + (<usize>t << 2), f32x4.mul(d, sv));
      }
      for (; t < n; t++) {
        const k = <usize>load<u32>(kp + (<usize>t << 2));
        store<f32>(s + (<usize>t << 2), f32x4.extract_lane(dot4q8(qb, q, qd, k, k, k, k, hd), 0) * scale);
      }
    } else {
      for (; t < n; t++) store<f32>(s + (<usize>t << 2), dotQ8Scalar(qb, q, qd, <usize>load<u32>(kp + (<usize>t << 2)), hd) * scale);
    }
    return;
  }
  if (simd) {
    const sv = f32x4.splat(scale);
    for (; t + 4 <= n; t += 4) {
      const pp = kp + (<usize>t << 2);
      const d = dot4(kt, qb, raw, q, <usize>load<u32>(pp), <usize>load<u32>(pp, 4), <usize>load<u32>(pp, 8), <usize>load<u32>(pp, 12), hd);
      v128.store(s + (<usize>t << 2), f32x4.mul(d, sv));
    }
    // The rest one row at a time through lane 0 of dot4 (the same arithmetic as a lane of a full quad).
    for (; t < n; t++) {
      const k = <usize>load<u32>(kp + (<usize>t << 2));
      store<f32>(s + (<usize>t << 2), f32x4.extract_lane(dot4(kt, qb, raw, q, k, k, k, k, hd), 0) * scale);
    }
  } else {
    for (; t < n; t++) store<f32>(s + (<usize>t << 2), dotScalar(kt, qb, q, <usize>load<u32>(kp + (<usize>t << 2)), hd) * scale);
  }
}

// ---- softmax of a block ----------------------------------------------------------------------------------------

/** In place over s[0..n): p = exp(s - m) with m = max s. Writes m and l = sum4(p) to rec[0], rec[1]. */
@inline function blockSoftmax(simd: bool, s: usize, n: i32, rec: usize): void {
  const n4 = n & ~3;
  let m = load<f32>(s);
  if (simd) {
    let mv = f32x4.splat(m);
    for (let t = 0; t < n4; t += 4) mv = f32x4.max(mv, v128.load(s + (<usize>t << 2)));
    m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
    for (let t = n4; t < n; t++) m = max(m, load<f32>(s + (<usize>t << 2)));
    const ms = f32x4.splat(m);
    let acc = f32x4.splat(0);
    for (let t = 0; t < n4; t += 4) {
      const o = <usize>t << 2;
      const e = exp_f32x4(f32x4.sub(v128.load(s + o), ms));
      v128.store(s + o, e);
      acc = f32x4.add(acc, e);
    }
    let l = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 2)) + (f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 3));
    for (let t = n4; t < n; t++) {
      const e = exp_f32(load<f32>(s + (<usize>t << 2)) - m);
      store<f32>(s + (<usize>t << 2), e);
      l += e;
    }
    store<f32>(rec, m);
    store<f32>(rec, l, 4);
  } else {
    for (let t = 1; t < n; t++) m = max(m, load<f32>(s + (<usize>t << 2)));
    let l0: f32 = 0, l1: f32 = 0, l2: f32 = 0, l3: f32 = 0;
    for (let t = 0; t < n; t++) {
      const e = exp_f32(load<f32>(s + (<usize>t << 2)) - m);
      store<f32>(s + (<usize>t << 2), e);
      if (t >= n4) continue;
      const lane = t & 3;
      if (lane == 0) l0 += e;
      else if (lane == 1) l1 += e;
      else if (lane == 2) l2 += e;
      else l3 += e;
    }
    let l = (l0 + l2) + (l1 + l3);
    for (let t = n4; t < n; t++) l += load<f32>(s + (<usize>t << 2));
    store<f32>(rec, m);
    store<f32>(rec, l, 4);
  }
}

// ---- value sums -----------------------------------------------------------------------------------------------

/**
 * acc[d0 .. d0 + 4*W) = sum over t of p_t * v_t, with W f32x4 accumulators held across the n rows (W = 8, 4, 2 or 1,
 * a constant at each call site). f16 rows are read raw with p prescaled by 2^112.
 */
@inline function valueSlab(kt: i32, qb: i32, W: i32, p: usize, vp: usize, n: i32, d0: i32, acc: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  for (let t = 0; t < n; t++) {
    const row = <usize>load<u32>(vp + (<usize>t << 2));
    const pt = load<f32>(p + (<usize>t << 2));
    if (kt == KV_F32) {
      const pv = f32x4.splat(pt);
      const r = row + (<usize>d0 << 2);
      a0 = f32x4.add(a0, f32x4.mul(pv, v128.load(r)));
      if (W >= 2) a1 = f32x4.add(a1, f32x4.mul(pv, v128.load(r, 16)));
      if (W >= 4) {
        a2 = f32x4.add(a2, f32x4.mul(pv, v128.load(r, 32)));
        a3 = f32x4.add(a3, f32x4.mul(pv, v128.load(r, 48)));
      }
      if (W >= 8) {
        a4 = f32x4.add(a4, f32x4.mul(pv, v128.load(r, 64)));
        a5 = f32x4.add(a5, f32x4.mul(pv, v128.load(r, 80)));
        a6 = f32x4.add(a6, f32x4.mul(pv, v128.load(r, 96)));
        a7 = f32x4.add(a7, f32x4.mul(pv, v128.load(r, 112)));
      }
    } else if (kt == KV_F16) {
      const pv = f32x4.splat(pt * REBIAS);
      const r = row + (<usize>d0 << 1);
      a0 = f32x4.add(a0, f32x4.mul(pv, f16raw4(r)));
      if (W >= 2) a1 = f32x4.add(a1, f32x4.mul(pv, f16raw4(r + 8)));
      if (W >= 4) {
        a2 = f32x4.add(a2, f32x4.mul(pv, f16raw4(r + 16)));
        a3 = f32x4.add(a3, f32x4.mul(pv, f16raw4(r + 24)));
      }
      if (W >= 8) {
        a4 = f32x4.add(a4, f32x4.mul(pv, f16raw4(r + 32)));
        a5 = f32x4.add(a5, f32x4.mul(pv, f16raw4(r + 40)));
        a6 = f32x4.add(a6, f32x4.mul(pv, f16raw4(r + 48)));
        a7 = f32x4.add(a7, f32x4.mul(pv, f16raw4(r + 56)));
      }
    }
  }
  const o = acc + (<usize>d0 << 2);
  v128.store(o, a0);
  if (W >= 2) v128.store(o, a1, 16);
  if (W >= 4) { v128.store(o, a2, 32); v128.store(o, a3, 48); }
  if (W >= 8) { v128.store(o, a4, 64); v128.store(o, a5, 80); v128.store(o, a6, 96); v128.store(o, a7, 112); }
}

/** The q8 slab: acc[d0 .. d0 + 4*W) += (p_t * d) * q over the rows, in pieces of 8 values (W = 8, 4 or 2). */
@inline function valueSlabQ8(qb: i32, W: i32, p: usize, vp: usize, n: i32, d0: i32, acc: usize): void {
  // Byte offsets in a row of each piece's block scale and first quant.
  const bs = <usize>(qb + 2);
  const s0 = <usize>(d0 / qb) * bs, s1 = <usize>((d0 + 8) / qb) * bs, s2 = <usize>((d0 + 16) / qb) * bs, s3 = <usize>((d0 + 24) / qb) * bs;
  const q0 = s0 + 2 + <usize>(d0 % qb), q1 = s1 + 2 + <usize>((d0 + 8) % qb);
  const q2 = s2 + 2 + <usize>((d0 + 16) % qb), q3 = s3 + 2 + <usize>((d0 + 24) % qb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  for (let t = 0; t < n; t++) {
    const row = <usize>load<u32>(vp + (<usize>t << 2));
    const pt = load<f32>(p + (<usize>t << 2));
    let pd = f32x4.splat(pt * f16val(row + s0));
    let w = v128.load8x8_s(row + q0);
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(w)), pd));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(w)), pd));
    if (W >= 4) {
      if (s1 != s0) pd = f32x4.splat(pt * f16val(row + s1));
      w = v128.load8x8_s(row + q1);
      a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(w)), pd));
      a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(w)), pd));
    }
    if (W >= 8) {
      if (s2 != s1) pd = f32x4.splat(pt * f16val(row + s2));
      w = v128.load8x8_s(row + q2);
      a4 = f32x4.add(a4, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(w)), pd));
      a5 = f32x4.add(a5, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(w)), pd));
      if (s3 != s2) pd = f32x4.splat(pt * f16val(row + s3));
      w = v128.load8x8_s(row + q3);
      a6 = f32x4.add(a6, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(w)), pd));
      a7 = f32x4.add(a7, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(w)), pd));
    }
  }
  const o = acc + (<usize>d0 << 2);
  v128.store(o, a0);
  v128.store(o, a1, 16);
  if (W >= 4) { v128.store(o, a2, 32); v128.store(o, a3, 48); }
  if (W >= 8) { v128.store(o, a4, 64); v128.store(o, a5, 80); v128.store(o, a6, 96); v128.store(o, a7, 112); }
}

/** acc[0..hd) = sum over t (in order) of p_t * v_t over the n value rows at the pointers in vp. */
@inline function values(simd: bool, kt: i32, qb: i32, p: usize, vp: usize, n: i32, hd: i32, acc: usize): void {
  if (simd && kt == KV_Q8) {
    let d = 0;
    for (; d + 32 <= hd; d += 32) valueSlabQ8(qb, 8, p, vp, n, d, acc);
    if (d + 16 <= hd) { valueSlabQ8(qb, 4, p, vp, n, d, acc); d += 16; }
    if (d + 8 <= hd) valueSlabQ8(qb, 2, p, vp, n, d, acc);
  } else if (simd) {
    let d = 0;
    for (; d + 32 <= hd; d += 32) valueSlab(kt, qb, 8, p, vp, n, d, acc);
    if (d + 16 <= hd) { valueSlab(kt, qb, 4, p, vp, n, d, acc); d += 16; }
    if (d + 8 <= hd) { valueSlab(kt, qb, 2, p, vp, n, d, acc); d += 8; }
    if (d < hd) valueSlab(kt, qb, 1, p, vp, n, d, acc);
  } else {
    for (let d = 0; d < hd; d++) store<f32>(acc + (<usize>d << 2), 0);
    for (let t = 0; t < n; t++) {
      const row = <usize>load<u32>(vp + (<usize>t << 2));
      const pt = load<f32>(p + (<usize>t << 2));
      for (let d = 0; d < hd; d++) {
        const o = acc + (<usize>d << 2);
        let x: f32;
        if (kt == KV_Q8) {
          const blk = row + <usize>(d / qb) * <usize>(qb + 2);
          x = (pt * f16val(blk)) * <f32>load<i8>(blk + 2 + <usize>(d % qb));
        } else {
          x = pt * kvValue(kt, row, d);
        }
        store<f32>(o, load<f32>(o) + x);
      }
    }
  }
}

// ---- partials -------------------------------------------------------------------------------------------------

/** Per-thread scratch bytes of attn_partials for a head size: row pointers, scores, two f32 blocks. */
export function attn_scratch_bytes(head_dim: i32): i32 {
  const hd4 = (head_dim + 3) & ~3;
  return (3 * SEQ_BLOCK + 2 * SEQ_BLOCK * hd4) * 4 + 64;
}

/** Bytes of one prepared query head (attn_queries), for a head size. */
export function attn_query_bytes(head_dim: i32): i32 {
  return (((head_dim + 3) & ~3) + 4) * 4;
}

/**
 * Prepares the query heads of rows r0..r1-1 for attn_partials, one record of attn_query_bytes at
 * qq + (i * n_heads + h) * attn_query_bytes: f16 rows: q * 2^112 (f32) and, after head_dim rounded up to 4 values,
 * an i32 flag (1: every |q| < 2^15, so the prescaled query can be used); q8 rows: the quantized query (i16 quants,
 * then the f32 block scales after head_dim rounded up to 4 i16). Nothing for f32 rows.
 */
export function attn_queries(kv_type: i32, qb: i32, q: usize, qq: usize, n_heads: i32, head_dim: i32, q_stride: i32, r0: i32, r1: i32): void {
  if (kv_type == KV_F32) return;
  const hd4 = (head_dim + 3) & ~3;
  const rec = <usize>attn_query_bytes(head_dim);
  for (let i = r0; i < r1; i++) {
    for (let h = 0; h < n_heads; h++) {
      const qp = q + ((<usize>i * q_stride + <usize>h * head_dim) << 2);
      const r = qq + <usize>(i * n_heads + h) * rec;
      if (kv_type == KV_Q8) {
        quantizeQuery(qb, qp, head_dim, r, r + (<usize>hd4 << 1));
      } else {
        let ok = true;
        for (let d = 0; d < head_dim; d++) {
          const x = load<f32>(qp + (<usize>d << 2));
          ok = ok && abs(x) < Q_PRESCALE_MAX;
          store<f32>(r + (<usize>d << 2), x * REBIAS);
        }
        store<i32>(r + (<usize>hd4 << 2), ok ? 1 : 0);
      }
    }
  }
}

/** Positions per sequence block (the partials and the merge depend on it). */
export function attn_seq_block(): i32 {
  return SEQ_BLOCK;
}

/** The table block size that makes a one-entry table address a contiguous cache. */
export function attn_contiguous_rows(): i32 {
  return TABLE_CONTIGUOUS;
}

@inline function partials(simd: bool, kt: i32, qb: i32, q: usize, qq: usize, ktab: usize, vtab: usize, block_rows: i32, part: usize,
  scratch: usize, n_q: i32, n_heads: i32, n_kv_heads: i32, hd: i32, pos0: i32, row_bytes: i32, q_stride: i32,
  scale: f32, w0: i32, w1: i32, mass_exp: usize): void {
  const total = pos0 + n_q;
  const n_sb = (total + SEQ_BLOCK - 1) / SEQ_BLOCK;
  const group = n_heads / n_kv_heads;
  const hd4 = (hd + 3) & ~3;
  const kp = scratch;
  const vp = kp + (<usize>SEQ_BLOCK << 2);
  const sc = vp + (<usize>SEQ_BLOCK << 2);
  const kbuf = sc + (<usize>SEQ_BLOCK << 2);
  const qrec = <usize>attn_query_bytes(hd);
  const vbuf = kbuf + (<usize>(SEQ_BLOCK * hd4) << 2);
  const hb = headBytes(kt, qb, hd);
  const rec = <usize>(hd + 4) << 2;
  for (let w = w0; w < w1; w++) {
    const b = w / n_kv_heads;
    const g = w - b * n_kv_heads;
    const j0 = b * SEQ_BLOCK;
    const nAll = min(j0 + SEQ_BLOCK, total) - j0;
    const i0 = max(0, j0 - pos0); // rows before it end before this block
    const pairs = (n_q - i0) * group;
    rowPointers(ktab, block_rows, <usize>row_bytes, <usize>g * hb, j0, nAll, kp);
    rowPointers(vtab, block_rows, <usize>row_bytes, <usize>g * hb, j0, nAll, vp);
    if (g == 0 || w == w0) touchRows(kp, vp, nAll, row_bytes, scratch);
    // f16 with several query vectors: convert the block once (exactly) and run the f32 path from the buffers.
    let et = kt;
    if (kt == KV_F16 && pairs > 1) {
      convertRowsF16(simd, kp, nAll, hd, kbuf);
      convertRowsF16(simd, vp, nAll, hd, vbuf);
      et = KV_F32;
    }
    for (let i = i0; i < n_q; i++) {
      const n = min(nAll, pos0 + i + 1 - j0);
      for (let h = g * group; h < (g + 1) * group; h++) {
        const qp = q + ((<usize>i * q_stride + <usize>h * hd) << 2);
        const qr = qq + <usize>(i * n_heads + h) * qrec; // the prepared query (attn_queries)
        const r = part + (<usize>((i * n_heads + h) * n_sb + b)) * rec;
        if (kt == KV_Q8) {
          scores(simd, KV_Q8, qb, false, qr, qr + (<usize>hd4 << 1), kp, n, hd, scale, sc);
        } else if (simd && et == KV_F16) {
          // With the query prescaled by 2^112, K is read raw; a |q| too large for that decodes with the rebias.
          if (load<i32>(qr + (<usize>hd4 << 2)) != 0) scores(simd, KV_F16, qb, true, qr, 0, kp, n, hd, scale, sc);
          else scores(simd, KV_F16, qb, false, qp, 0, kp, n, hd, scale, sc);
        } else if (et == KV_F32) {
          scores(simd, KV_F32, qb, false, qp, 0, kp, n, hd, scale, sc);
        } else {
          scores(simd, KV_F16, qb, false, qp, 0, kp, n, hd, scale, sc);
        }
        blockSoftmax(simd, sc, n, r);
        // The last row's block weights, kept for attn_mass (only they cover every position).
        if (mass_exp != 0 && i == n_q - 1) memory.copy(mass_exp + ((<usize>h * <usize>total + <usize>j0) << 2), sc, <usize>n << 2);
        if (kt == KV_Q8) values(simd, KV_Q8, qb, sc, vp, n, hd, r + 16);
        else if (et == KV_F32) values(simd, KV_F32, qb, sc, vp, n, hd, r + 16);
        else values(simd, KV_F16, qb, sc, vp, n, hd, r + 16);
      }
    }
  }
}

/**
 * Partial attention results of work items w0..w1-1, item w = b * n_kv_heads + g being kv head g (with all its query
 * heads) over sequence block b, for every row whose positions reach into the block. `qq`: the queries prepared by
 * attn_queries; `scratch`: attn_scratch_bytes(head_dim) bytes, private to the calling thread. `mass_exp` (0: none):
 * n_heads * (pos0 + n_q) f32 where the last row's block weights p_j = exp(s_j - m_b) of head h go, at
 * h * (pos0 + n_q) + j, for attn_mass. Writing them changes nothing else.
 */
export function attn_partials(q: usize, qq: usize, ktab: usize, vtab: usize, block_rows: i32, kv_type: i32, qb: i32, part: usize,
  scratch: usize, n_q: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, row_bytes: i32, q_stride: i32,
  scale: f32, w0: i32, w1: i32, mass_exp: usize): void {
  if (block_rows <= 0 || n_kv_heads <= 0) return;
  const simd = (head_dim & 3) == 0;
  if (!simd) partials(false, kv_type, qb, q, qq, ktab, vtab, block_rows, part, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, row_bytes, q_stride, scale, w0, w1, mass_exp);
  else if (kv_type == KV_F32) partials(true, KV_F32, qb, q, qq, ktab, vtab, block_rows, part, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, row_bytes, q_stride, scale, w0, w1, mass_exp);
  else if (kv_type == KV_F16) partials(true, KV_F16, qb, q, qq, ktab, vtab, block_rows, part, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, row_bytes, q_stride, scale, w0, w1, mass_exp);
  else partials(true, KV_Q8, qb, q, qq, ktab, vtab, block_rows, part, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, row_bytes, q_stride, scale, w0, w1, mass_exp);
}

export function attn_partials_scalar(q: usize, qq: usize, ktab: usize, vtab: usize, block_rows: i32, kv_type: i32, qb: i32, part: usize,
  scratch: usize, n_q: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32, pos0: i32, row_bytes: i32, q_stride: i32,
  scale: f32, w0: i32, w1: i32, mass_exp: usize): void {
  if (block_rows <= 0 || n_kv_heads <= 0) return;
  partials(false, kv_type, qb, q, qq, ktab, vtab, block_rows, part, scratch, n_q, n_heads, n_kv_heads, head_dim, pos0, row_bytes, q_stride, scale, w0, w1, mass_exp);
}

// ---- attention mass -------------------------------------------------------------------------------------------

/**
 * The attention mass of the last query row (row n_q - 1 at position pos0 + n_q - 1) over positions j0..j1-1: per
 * position, its softmax probability summed over the query heads in order h = 0, 1, .. (a row's masses sum to about
 * n_heads). From what the kernel already has: the block weights p_j that attn_partials wrote to mass_exp, and the
 * partials' block maxima m_b and sums l_b. Per head, M and L fold the blocks exactly as the merge does, then
 * w_b = exp(m_b - M) * (1/L) and mass_j += p_j * w_b. Positions are independent, so any split gives the same bits.
 */
@inline function mass(simd: bool, part: usize, mass_exp: usize, out: usize, n_q: i32, n_heads: i32, hd: i32, pos0: i32, j0: i32, j1: i32): void {
  const total = pos0 + n_q;
  const n_sb = (total + SEQ_BLOCK - 1) / SEQ_BLOCK;
  const rec = <usize>(hd + 4) << 2;
  const i = n_q - 1;
  for (let j = j0; j < j1; j++) store<f32>(out + (<usize>j << 2), 0);
  for (let h = 0; h < n_heads; h++) {
    const r0 = part + <usize>((i * n_heads + h) * n_sb) * rec;
    let M = load<f32>(r0);
    let L = load<f32>(r0, 4);
    for (let b = 1; b < n_sb; b++) {
      const r = r0 + <usize>b * rec;
      const m = load<f32>(r);
      const M2 = max(M, m);
      L = L * exp_f32(M - M2) + load<f32>(r, 4) * exp_f32(m - M2);
      M = M2;
    }
    const inv: f32 = <f32>1 / L;
    const pe = mass_exp + ((<usize>h * <usize>total) << 2);
    spreadMass(simd, r0, rec, j0 / SEQ_BLOCK, (j1 + SEQ_BLOCK - 1) / SEQ_BLOCK, j0, j1, pe, out, M, inv);
  }
}

/** Mass of positions j0..j1-1 into out (f32 per position), after attn_partials with mass_exp (see mass above). */
export function attn_mass(part: usize, mass_exp: usize, out: usize, n_q: i32, n_heads: i32, head_dim: i32, pos0: i32, j0: i32, j1: i32): void {
  mass(true, part, mass_exp, out, n_q, n_heads, head_dim, pos0, j0, j1);
}

export function attn_mass_scalar(part: usize, mass_exp: usize, out: usize, n_q: i32, n_heads: i32, head_dim: i32, pos0: i32, j0: i32, j1: i32): void {
  mass(false, part, mass_exp, out, n_q, n_heads, head_dim, pos0, j0, j1);
}

// ---- merge ----------------------------------------------------------------------------------------------------

@inline function merge(simd: bool, part: usize, out: usize, n_q: i32, n_heads: i32, hd: i32, pos0: i32, out_stride: i32, r0: i32, r1: i32): void {
  const n_sb = (pos0 + n_q + SEQ_BLOCK - 1) / SEQ_BLOCK;
  const rec = <usize>(hd + 4) << 2;
  for (let i = r0; i < r1; i++) {
    const nb = (pos0 + i) / SEQ_BLOCK + 1;
    for (let h = 0; h < n_heads; h++) {
      const o = out + ((<usize>i * out_stride + <usize>h * hd) << 2);
      let r = part + <usize>((i * n_heads + h) * n_sb) * rec;
      let M = load<f32>(r);
      let L = load<f32>(r, 4);
      memory.copy(o, r + 16, <usize>hd << 2);
      for (let b = 1; b < nb; b++) {
        r += rec;
        const M2 = max(M, load<f32>(r));
        L = foldStep(simd, o, r, hd, M, M2, L);
        M = M2;
      }
      scaleRow(simd, o, hd, <f32>1 / L);
    }
  }
}

/** Folds the partials of rows r0..r1-1 (all heads) into out: head h of row i at out + 4*(i*out_stride + h*head_dim). */
export function attn_merge(part: usize, out: usize, n_q: i32, n_heads: i32, head_dim: i32, pos0: i32, out_stride: i32, r0: i32, r1: i32): void {
  if ((head_dim & 3) == 0) merge(true, part, out, n_q, n_heads, head_dim, pos0, out_stride, r0, r1);
  else merge(false, part, out, n_q, n_heads, head_dim, pos0, out_stride, r0, r1);
}

export function attn_merge_scalar(part: usize, out: usize, n_q: i32, n_heads: i32, head_dim: i32, pos0: i32, out_stride: i32, r0: i32, r1: i32): void {
  merge(false, part, out, n_q, n_heads, head_dim, pos0, out_stride, r0, r1);
}

// ---- writing rows ---------------------------------------------------------------------------------------------

/**
 * Stores n_rows f32 rows of row_floats values (src, consecutive) as cache rows of kv_type at dst (row_bytes apart):
 * f16 rounded to nearest even and saturated to +-65504; q8 per block of qb: d = amax / 127 stored as f16,
 * q = round-half-even(x * 127 / amax) (the rounding llama.cpp's x86 q8_0 quantizer uses, here for any block size);
 * q4 as defined in wasm/kv_convert.ts. f32 rows are copied.
 */
export function kv_store_rows(kv_type: i32, qb: i32, src: usize, dst: usize, n_rows: i32, row_floats: i32, row_bytes: i32): void {
  for (let t = 0; t < n_rows; t++) {
    const s = src + (<usize>(t * row_floats) << 2);
    const o = dst + <usize>t * <usize>row_bytes;
    if (kv_type == KV_F32) {
      memory.copy(o, s, <usize>row_floats << 2);
    } else if (kv_type == KV_F16) {
      // Saturated to the largest half (the kernels read halves without an inf/NaN case).
      for (let d = 0; d < row_floats; d++) store<u16>(o + (<usize>d << 1), <u16>f32ToF16(min(max(load<f32>(s + (<usize>d << 2)), -F16_MAX), F16_MAX)));
    } else if (kv_type == KV_Q4) {
      let bo = o;
      const half = qb >> 1;
      for (let b = 0; b < row_floats; b += qb) {
        let amax: f32 = 0;
        let m: f32 = 0;
        for (let e = 0; e < qb; e++) {
          const x = load<f32>(s + (<usize>(b + e) << 2));
          if (abs(x) > amax) { amax = abs(x); m = x; }
        }
        const d: f32 = m / -8;
        const id: f32 = d != 0 ? <f32>1 / d : 0;
        store<u16>(bo, <u16>f32ToF16(min(max(d, -F16_MAX), F16_MAX)));
        for (let e = 0; e < half; e++) {
          const x0 = load<f32>(s + (<usize>(b + e) << 2));
          const x1 = load<f32>(s + (<usize>(b + e + half) << 2));
          const n0 = min<i32>(15, <i32>(x0 * id + <f32>8.5));
          const n1 = min<i32>(15, <i32>(x1 * id + <f32>8.5));
          store<u8>(bo + 2 + <usize>e, <u8>(n0 | (n1 << 4)));
        }
        bo += <usize>(half + 2);
      }
    } else {
      let bo = o;
      for (let b = 0; b < row_floats; b += qb) {
        let amax: f32 = 0;
        for (let e = 0; e < qb; e++) amax = max(amax, abs(load<f32>(s + (<usize>(b + e) << 2))));
        const id: f32 = amax != 0 ? <f32>127 / amax : 0;
        store<u16>(bo, <u16>f32ToF16(amax / 127));
        for (let e = 0; e < qb; e++) store<i8>(bo + 2 + <usize>e, <i8><i32>nearest(load<f32>(s + (<usize>(b + e) << 2)) * id));
        bo += <usize>(qb + 2);
      }
    }
  }
}
