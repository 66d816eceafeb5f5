// Running matmul kernels in tests: placing inputs in the arena, and calling a matmul export into a NaN-prefilled
// output that proves the kernel wrote exactly its row range. Shared by the matmul test files.
import { expect } from 'vitest';
import type { Kernels } from '../engine/runtime/kernels.js';

export type Shape = { rows: number; cols: number; n: number; r0: number; r1: number };

export function place(K: Kernels, data: Uint8Array | Float32Array): number {
  const p = K.alloc(Math.max(16, data.byteLength));
  K.write(p, data);
  return p;
}

/** Runs a matmul export into a NaN-prefilled Y (ldy = rows + 3) and returns Y; checks untouched entries stay NaN. */
export function runMatmul(K: Kernels, fn: keyof Kernels['k'], w: number, x: number, s: Shape): Float32Array {
  const ldy = s.rows + 3;
  const y = place(K, new Float32Array(s.n * ldy).fill(NaN));
  (K.k[fn] as (...a: number[]) => void)(w, x, y, s.rows, s.cols, s.n, ldy, s.r0, s.r1);
  const out = K.f32(y, s.n * ldy).slice();
  for (let t = 0; t < s.n; t++) {
    for (let r = 0; r < ldy; r++) {
      const inside = r >= s.r0 && r < s.r1;
      expect(Number.isNaN(out[t * ldy + r]!), `${String(fn)} Y[${t}][${r}]`).toBe(!inside);
    }
  }
  K.free(y);
  return out;
}
