// Online-softmax helpers shared by the attention kernel (attention.ts) and the split read over two row sets
// (attention_split.ts). Both keep per (row, head, sequence block) a partial record {m, l, -, -, acc[head_dim]} of
// head_dim + 4 f32 and fold records in a fixed order, so one definition keeps their arithmetic the same.

import { exp_f32 } from './expf';

/** Positions per sequence block (mirrored by ATTN_SEQ_BLOCK in engine/kv/attend.ts, checked there). */
export const SEQ_BLOCK: i32 = 128;

/** o = o * a + acc(r) * c over head_dim values: folds the record at r into the running output o. */
@inline export function foldRecord(simd: bool, o: usize, r: usize, hd: i32, a: f32, c: f32): void {
  if (simd) {
    const av = f32x4.splat(a), cv = f32x4.splat(c);
    for (let d = 0; d < hd; d += 4) {
      const od = o + (<usize>d << 2);
      v128.store(od, f32x4.add(f32x4.mul(v128.load(od), av), f32x4.mul(v128.load(r + 16 + (<usize>d << 2)), cv)));
    }
  } else {
    for (let d = 0; d < hd; d++) {
      const od = o + (<usize>d << 2);
      store<f32>(od, load<f32>(od) * a + load<f32>(r + 16 + (<usize>d << 2)) * c);
    }
  }
}

/**
 * One step of the fold: the running output o (weights so far summing to L, largest score M) takes in the record at r,
 * whose largest score m_r gives M2 = max(M, m_r) (the caller keeps it as the new M). Returns the new L.
 */
@inline export function foldStep(simd: bool, o: usize, r: usize, hd: i32, M: f32, M2: f32, L: f32): f32 {
  const a = exp_f32(M - M2);
  const c = exp_f32(load<f32>(r) - M2);
  foldRecord(simd, o, r, hd, a, c);
  return L * a + load<f32>(r, 4) * c;
}

/** o *= inv over head_dim values: the fold's final normalization by 1/L. */
@inline export function scaleRow(simd: bool, o: usize, hd: i32, inv: f32): void {
  if (simd) {
    const iv = f32x4.splat(inv);
    for (let d = 0; d < hd; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), iv));
  } else {
    for (let d = 0; d < hd; d++) store<f32>(o + (<usize>d << 2), load<f32>(o + (<usize>d << 2)) * inv);
  }
}

/**
 * Attention mass of positions j0..j1-1 for one head: out_j += p_j * w_b over blocks b0..b1-1 of SEQ_BLOCK, with the
 * block weight w_b = exp(m_b - M) * inv read from the block's record (r0 + b * rec) and p_j, the position's weight
 * within its block, at pe + 4 j.
 */
@inline export function spreadMass(simd: bool, r0: usize, rec: usize, b0: i32, b1: i32, j0: i32, j1: i32, pe: usize, out: usize, M: f32, inv: f32): void {
  for (let b = b0; b < b1; b++) {
    const w = exp_f32(load<f32>(r0 + <usize>b * rec) - M) * inv;
    let j = max(j0, b * SEQ_BLOCK);
    const e = min(j1, (b + 1) * SEQ_BLOCK);
    if (simd) {
      const wv = f32x4.splat(w);
      for (; j + 4 <= e; j += 4) {
        const o = out + (<usize>j << 2);
        v128.store(o, f32x4.add(v128.load(o), f32x4.mul(v128.load(pe + (<usize>j << 2)), wv)));
      }
    }
    for (; j < e; j++) {
      const o = out + (<usize>j << 2);
      store<f32>(o, load<f32>(o) + load<f32>(pe + (<usize>j << 2)) * w);
    }
  }
}

