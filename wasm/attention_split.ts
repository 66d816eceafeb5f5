// The merge of one query row's attention over two disjoint sets of rows: the partial results of attn_partials over
// set A (e.g. the tiered cache's hot and staged rows at the cache's type) and over set B (its warm rows, read by the
// kernel at their compressed type), each cut into its own sequence blocks. The blocks are folded in a fixed order,
// all of A's in order then all of B's, with the arithmetic of attn_merge (wasm/attention.ts):
//   M' = max(M, m_b), a = exp(M - M'), c = exp(m_b - M'), L = L*a + l_b*c, acc = acc*a + acc_b*c; out = acc * (1/L).
// So the result depends only on the query and the two row sets, never on the thread split of the partials.
// Records: {m, l, -, -, acc[head_dim]} of head_dim + 4 f32, head h's block b at part + (h * n_sb + b) * record.

import { exp_f32 } from './expf';

@inline function fold(simd: bool, o: usize, r: usize, hd: i32, a: f32, c: f32): void {
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
      const m = load<f32>(r);
      const M2 = max(M, m);
      const a = exp_f32(M - M2);
      const c = exp_f32(m - M2);
      L = L * a + load<f32>(r, 4) * c;
      M = M2;
      fold(simd, o, r, hd, a, c);
    }
    const inv: f32 = <f32>1 / L;
    if (simd) {
      const iv = f32x4.splat(inv);
      for (let d = 0; d < hd; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), iv));
    } else {
      for (let d = 0; d < hd; d++) store<f32>(o + (<usize>d << 2), load<f32>(o + (<usize>d << 2)) * inv);
    }
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
