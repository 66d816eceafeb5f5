// The merge of one query row's attention over two disjoint sets of rows: the partial results of attn_partials over
// set A (e.g. the tiered cache's hot and staged rows at the cache's type) and over set B (its warm rows, read by the
// kernel at their compressed type), each cut into its own sequence blocks. The blocks are folded in a fixed order,
// all of A's in order then all of B's, with the arithmetic of attn_merge (wasm/attention.ts):
//   M' = max(M, m_b), a = exp(M - M'), c = exp(m_b - M'), L = L*a + l_b*c, acc = acc*a + acc_b*c; out = acc * (1/L).
// So the result depends only on the query and the two row sets, never on the thread split of the partials.
// Records: {m, l, -, -, acc[head_dim]} of head_dim + 4 f32, head h's block b at part + (h * n_sb + b) * record.

import { exp_f32 } from './expf';
import { foldStep, scaleRow, spreadMass } from './softmax_blocks';

@inline function mergeSplit(simd: bool, part_a: usize, n_sb_a: i32, part_b: usize, n_sb_b: i32, out: usize, n_heads: i32, hd: i32): void {
  const rec = <usize>(hd + 4) << 2;
  for (let h = 0; h < n_heads; h++) {
    const o = out + (<usize>(h * hd) << 2);
    let r = part_a + <usize>(h * n_sb_a) * rec;
    let M = load<f32>(r);
    let L = load<f32>(r, 4);
    memory.copy(o, r + 16, <usize>hd << 2);
    for (let k = 1; k < n_sb_a + n_sb_b; k++) {
      r = k < n_sb_a ? part_a + <usize>(h * n_sb_a + k) * rec : part_b + <usize>(h * n_sb_b + k - n_sb_a) * rec;
      const M2 = max(M, load<f32>(r));
      L = foldStep(simd, o, r, hd, M, M2, L);
      M = M2;
    }
    scaleRow(simd, o, hd, <f32>1 / L);
  }
}

/** One query row: folds A's n_sb_a blocks then B's n_sb_b blocks of every head into out (head h at out + 4*h*head_dim). */
export function attn_merge_split(part_a: usize, n_sb_a: i32, part_b: usize, n_sb_b: i32, out: usize, n_heads: i32, head_dim: i32): void {
  if ((head_dim & 3) == 0) mergeSplit(true, part_a, n_sb_a, part_b, n_sb_b, out, n_heads, head_dim);
  else mergeSplit(false, part_a, n_sb_a, part_b, n_sb_b, out, n_heads, head_dim);
}

export function attn_merge_split_scalar(part_a: usize, n_sb_a: i32, part_b: usize, n_sb_b: i32, out: usize, n_heads: i32, head_dim: i32): void {
  mergeSplit(false, part_a, n_sb_a, part_b, n_sb_b, out, n_heads, head_dim);
}

// ---- attention mass over the two sets ----------------------------------------------------------------------------
// The tiered cache's placement needs the mass of every row at every step (attn_mass in wasm/attention.ts). With the
// row split in two sets, each set's block weights p_j (attn_partials' mass_exp, head h's at h * n + j of that set)
// are only normalized within their block: per head, M and L fold A's blocks then B's as mergeSplit does, and each
// block's weight is w_b = exp(m_b - M) * (1/L), as attn_mass computes for one set.

@inline function massSplit(simd: bool, part_a: usize, n_sb_a: i32, exp_a: usize, n_a: i32, part_b: usize, n_sb_b: i32, exp_b: usize, n_b: i32,
  out_a: usize, out_b: usize, n_heads: i32, hd: i32): void {
  const rec = <usize>(hd + 4) << 2;
  memory.fill(out_a, 0, <usize>n_a << 2);
  memory.fill(out_b, 0, <usize>n_b << 2);
  for (let h = 0; h < n_heads; h++) {
    const ra = part_a + <usize>(h * n_sb_a) * rec;
    const rb = part_b + <usize>(h * n_sb_b) * rec;
    let M = load<f32>(ra);
    let L = load<f32>(ra, 4);
    for (let k = 1; k < n_sb_a + n_sb_b; k++) {
      const r = k < n_sb_a ? ra + <usize>k * rec : rb + <usize>(k - n_sb_a) * rec;
      const m = load<f32>(r);
      const M2 = max(M, m);
      L = L * exp_f32(M - M2) + load<f32>(r, 4) * exp_f32(m - M2);
      M = M2;
    }
    const inv: f32 = <f32>1 / L;
    spreadMass(simd, ra, rec, 0, n_sb_a, 0, n_a, exp_a + ((<usize>h * <usize>n_a) << 2), out_a, M, inv);
    spreadMass(simd, rb, rec, 0, n_sb_b, 0, n_b, exp_b + ((<usize>h * <usize>n_b) << 2), out_b, M, inv);
  }
}

/**
 * The mass of the row attn_merge_split merges, per row of each set in its table order: A's n_a rows into out_a, B's
 * n_b into out_b (f32 each), heads summed in order. exp_a / exp_b: attn_partials' mass_exp of each set's call.
 */
export function attn_mass_split(part_a: usize, n_sb_a: i32, exp_a: usize, n_a: i32, part_b: usize, n_sb_b: i32, exp_b: usize, n_b: i32,
  out_a: usize, out_b: usize, n_heads: i32, head_dim: i32): void {
  massSplit(true, part_a, n_sb_a, exp_a, n_a, part_b, n_sb_b, exp_b, n_b, out_a, out_b, n_heads, head_dim);
}

export function attn_mass_split_scalar(part_a: usize, n_sb_a: i32, exp_a: usize, n_a: i32, part_b: usize, n_sb_b: i32, exp_b: usize, n_b: i32,
  out_a: usize, out_b: usize, n_heads: i32, head_dim: i32): void {
  massSplit(false, part_a, n_sb_a, exp_a, n_a, part_b, n_sb_b, exp_b, n_b, out_a, out_b, n_heads, head_dim);
}
