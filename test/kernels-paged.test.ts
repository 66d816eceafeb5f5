// Paged attention against contiguous attention (bit-identical), and the arena's counted copy.
import { describe, expect, it } from 'vitest';
import { Kernels } from '../engine/runtime/kernels.js';
import { randomF32, rng } from './kernels-ref.js';

/** Index of the first element whose bits differ, or -1. */
function firstBitDiff(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

describe('attention_paged', () => {
  it('is bit-identical to attention (SIMD and scalar) for any block size, block order and GQA shape', async () => {
    const K = await Kernels.create();
    const r = rng(21);
    // [nQ, nHeads, nKv, headDim, pos0, blockRows]
    const cases = [
      [1, 4, 2, 16, 0, 1], [1, 4, 2, 16, 37, 16], [1, 8, 2, 32, 63, 16], [5, 6, 2, 12, 7, 3], [3, 2, 2, 6, 4, 7],
      [4, 8, 8, 32, 0, 5], [16, 8, 4, 8, 40, 16], [9, 8, 4, 8, 23, 1], [2, 4, 4, 20, 100, 64], [1, 2, 1, 5, 12, 4],
    ] as const;
    for (const [nQ, nHeads, nKv, hd, pos0, B] of cases) {
      const rowF = nKv * hd;
      const qStride = nHeads * hd, outStride = nHeads * hd;
      const total = pos0 + nQ;
      const nBlocks = Math.ceil(total / B);
      const q = randomF32(r, nQ * qStride, 1.5);
      const k = randomF32(r, total * rowF, 1.5);
      const v = randomF32(r, total * rowF, 1);
      const scale = Math.fround(1 / Math.sqrt(hd));

      // Contiguous layout: rows past the last position hold NaN (they must never be read).
      const pq = K.alloc(q.byteLength), po = K.alloc(nQ * outStride * 4), ps = K.alloc(total * 4);
      const pk = K.alloc((total + 3) * rowF * 4), pv = K.alloc((total + 3) * rowF * 4);
      K.write(pq, q);
      K.f32(pk, (total + 3) * rowF).fill(NaN);
      K.f32(pv, (total + 3) * rowF).fill(NaN);
      K.write(pk, k);
      K.write(pv, v);

      // Paged layout: blocks allocated in a shuffled order with gaps between them; spare rows of the last block NaN.
      const order = Array.from({ length: nBlocks }, (_, i) => i).sort(() => r() - 0.5);
      const kb = new Array<number>(nBlocks), vb = new Array<number>(nBlocks);
      const gaps: number[] = [];
      for (const b of order) {
        kb[b] = K.alloc(B * rowF * 4);
        gaps.push(K.alloc(16 + Math.floor(r() * 200)));
        vb[b] = K.alloc(B * rowF * 4);
      }
      const kt = K.alloc(nBlocks * 4), vt = K.alloc(nBlocks * 4);
      K.i32(kt, nBlocks).set(kb);
      K.i32(vt, nBlocks).set(vb);
      for (let b = 0; b < nBlocks; b++) {
        K.f32(kb[b]!, B * rowF).fill(NaN);
        K.f32(vb[b]!, B * rowF).fill(NaN);
        const rows = Math.min(B, total - b * B);
        K.write(kb[b]!, k.subarray(b * B * rowF, (b * B + rows) * rowF));
        K.write(vb[b]!, v.subarray(b * B * rowF, (b * B + rows) * rowF));
      }

      for (const [dense, paged] of [['attention', 'attention_paged'], ['attention_scalar', 'attention_paged_scalar']] as const) {
        K.f32(po, nQ * outStride).fill(7);
        K.k[dense](pq, pk, pv, po, ps, nQ, nHeads, nKv, hd, pos0, rowF, qStride, outStride, scale);
        const want = K.f32(po, nQ * outStride).slice();
        K.f32(po, nQ * outStride).fill(-7);
        K.k[paged](pq, kt, vt, B, po, ps, nQ, nHeads, nKv, hd, pos0, rowF, qStride, outStride, scale);
        const got = K.f32(po, nQ * outStride).slice();
        expect(want.every(Number.isFinite)).toBe(true);
        const at = firstBitDiff(want, got);
        if (at >= 0) expect.fail(`${paged} [${nQ},${nHeads},${nKv},${hd},${pos0},B=${B}] differs at ${at}: ${got[at]} vs ${want[at]}`);
      }
      for (const p of [pq, po, ps, pk, pv, kt, vt, ...kb, ...vb, ...gaps]) K.free(p);
    }
    expect(K.stats().bytesInUse).toBe(0);
  });

  it('reads no table entry past the last block in use', async () => {
    const K = await Kernels.create();
    const r = rng(5);
    const [nHeads, nKv, hd, B] = [4, 2, 8, 4];
    const rowF = nKv * hd;
    const pos0 = 7; // positions 0..7: exactly two full blocks
    const q = randomF32(r, nHeads * hd, 1);
    const kb = [K.alloc(B * rowF * 4), K.alloc(B * rowF * 4)], vb = [K.alloc(B * rowF * 4), K.alloc(B * rowF * 4)];
    for (const p of [...kb, ...vb]) K.write(p, randomF32(r, B * rowF, 1));
    const kt = K.alloc(16), vt = K.alloc(16);
    K.i32(kt, 4).set([kb[0]!, kb[1]!, -1, -1]); // entries past the blocks in use point out of memory
    K.i32(vt, 4).set([vb[0]!, vb[1]!, -1, -1]);
    const pq = K.alloc(q.byteLength), po = K.alloc(q.byteLength), ps = K.alloc(64);
    K.write(pq, q);
    K.k.attention_paged(pq, kt, vt, B, po, ps, 1, nHeads, nKv, hd, pos0, rowF, nHeads * hd, nHeads * hd, 0.25);
    expect(K.f32(po, nHeads * hd).every(Number.isFinite)).toBe(true);
  });
});

describe('arena_copy', () => {
  it('copies like memory.copy and counts the bytes in stats().bytesCopied', async () => {
    const K = await Kernels.create();
    expect(K.stats().bytesCopied).toBe(0);
    const a = K.alloc(1000), b = K.alloc(1000);
    K.u8(a, 1000).forEach((_, i, arr) => { arr[i] = (i * 7) & 0xff; });
    K.copyCounted(b, a, 1000);
    expect([...K.u8(b, 1000)]).toEqual([...K.u8(a, 1000)]);
    K.copyCounted(a + 1, a, 500); // overlapping, like memmove
    expect(K.u8(a + 1, 3)[2]).toBe(14);
    expect(K.stats().bytesCopied).toBe(1500);
    K.k.copy(b, a, 100); // the plain copy kernel is not counted
    expect(K.stats().bytesCopied).toBe(1500);
    K.k.arena_init(0);
    expect(K.stats().bytesCopied).toBe(0);
  });
});
