// Kernel module, K-quants: the q8_k activation quantizer, the q2_k .. q6_k dequantizers and matmuls.
// SIMD kernels vs their scalar twins (bit-exact) and both vs float64 JS references written from the formats.
import { describe, expect, it } from 'vitest';
import { Kernels, GGML_TYPE } from '../engine/runtime/kernels.js';
import {
  K_BLOCK_BYTES, decodeKBlock, decodeQ8K, dequantKRef, quantizeQ8KRef, randomF32, randomKBlocks, rng,
} from './kernels-ref.js';
import { place, runMatmul } from './kernel-harness.js';
import type { Shape } from './kernel-harness.js';

const EPS32 = 2 ** -24;
const TYPES = ['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'] as const;
const IDS: Record<(typeof TYPES)[number], number> = {
  q2_k: GGML_TYPE.Q2_K, q3_k: GGML_TYPE.Q3_K, q4_k: GGML_TYPE.Q4_K, q5_k: GGML_TYPE.Q5_K, q6_k: GGML_TYPE.Q6_K,
};

describe('q8_k activation quantizer', () => {
  it('quantize_q8_k (SIMD and scalar) matches llama.cpp quantize_row_q8_K byte for byte', async () => {
    const K = await Kernels.create();
    const r = rng(50);
    const nb = 12;
    const x = randomF32(r, nb * 256, 3);
    x.fill(0, 256, 512); // all-zero block: d = 0, quants and bsums 0
    x[300] = -0; // still all zero
    // max = -127 -> iscale = 1: ties round to even; the positive side reaches +127 exactly
    for (let k = 0; k < 256; k++) x[512 + k] = [2.5, -3.5, 0.5, -0.5, 1.5, 126.5, 127, -126.5][k % 8]!;
    x[512 + 77] = -127;
    // equal |x| with both signs: the first one sets the sign of the scale
    for (let k = 0; k < 256; k++) x[768 + k] = (k % 3) - 1;
    x[768 + 10] = 4; x[768 + 20] = -4;
    for (let k = 0; k < 256; k++) x[1024 + k] = (k - 128) * 1e-30; // tiny
    for (let k = 0; k < 256; k++) x[1280 + k] = (k % 2 ? -1 : 1) * 3e30; // huge
    x[1536 + 255] = 1000; // largest at the last element
    x[1792] = -1000; // negative largest at the first element
    const px = place(K, x);
    const want = quantizeQ8KRef(x);
    for (const fn of ['quantize_q8_k', 'quantize_q8_k_scalar'] as const) {
      const dst = K.alloc(nb * 292);
      K.u8(dst, nb * 292).fill(0xa5); // bsums and quants must all be written, zero blocks included
      K.k[fn](px, dst, nb * 256);
      expect(K.u8(dst, nb * 292), fn).toEqual(want);
      K.free(dst);
    }
    // Spot checks of the definition itself.
    const b2 = decodeQ8K(want, 2 * 292);
    expect(b2.d).toBe(-1);
    expect(b2.q.slice(0, 8)).toEqual([-2, 4, 0, 0, -2, -126, -127, 126]);
    const b3 = decodeQ8K(want, 3 * 292);
    expect(b3.d).toBe(Math.fround(1 / Math.fround(-127 / 4)));
    expect(b3.q[10]).toBe(-127);
    expect(b3.q[20]).toBe(127);
    for (let j = 0; j < 16; j++) expect(b3.bsums[j]).toBe(b3.q.slice(16 * j, 16 * j + 16).reduce((a, v) => a + v, 0));
  });
});

describe('K-quant dequantizers', () => {
  it('dequantize_row for q2_k .. q6_k matches the JS block decoder exactly', async () => {
    const K = await Kernels.create();
    const r = rng(60);
    for (const type of TYPES) {
      const nb = 5;
      const blocks = randomKBlocks(r, type, nb);
      const src = place(K, blocks), dst = K.alloc(nb * 1024), dst2 = K.alloc(nb * 1024);
      expect(K.k.dequantize_row(IDS[type], src, dst, nb * 256)).toBe(0);
      expect(K.f32(dst, nb * 256), type).toEqual(dequantKRef(type, blocks, nb * 256));
      (K.k[`dequantize_${type}` as 'dequantize_q4_k'])(src, dst2, nb * 256);
      expect(K.f32(dst2, nb * 256)).toEqual(K.f32(dst, nb * 256));
      for (const p of [src, dst, dst2]) K.free(p);
    }
    expect(K.stats().bytesInUse).toBe(0);
  });

  it('known q4_k / q6_k block values', async () => {
    const K = await Kernels.create();
    // q4_k: d = 1, dmin = 0.5; sub-block 1: scale 3, min 2; sub-block 6: scale 1 + 2*16 = 33 (high bits from
    // byte 2), min 5 + 1*16 = 21 (high bits from byte 6); element 32 + l has the high nibble of qs[l].
    const b = new Uint8Array(144);
    const dv = new DataView(b.buffer);
    dv.setUint16(0, 0x3c00, true);
    dv.setUint16(2, 0x3800, true);
    b[4 + 1] = 3; b[4 + 5] = 2;
    b[4 + 10] = 0x51; b[4 + 2] |= 2 << 6; b[4 + 6] |= 1 << 6;
    for (let l = 0; l < 32; l++) b[16 + l] = (l & 15) << 4;
    for (let l = 0; l < 32; l++) b[16 + 96 + l] = 7;
    const src = place(K, b), dst = K.alloc(1024);
    K.k.dequantize_q4_k(src, dst, 256);
    const y = K.f32(dst, 256);
    for (let l = 0; l < 32; l++) expect(y[32 + l]).toBe(3 * (l & 15) - 0.5 * 2);
    for (let l = 0; l < 32; l++) expect(y[192 + l]).toBe(33 * 7 - 0.5 * 21);
    // q6_k: d = 0.25, scales[s] = s - 8; element l: low nibble of ql[l] and bits 0-1 of qh[l] (0 -> -32);
    // element 64 + l: high nibble of ql[l] and bits 4-5 of qh[l] (9 | 2 << 4 = 41 -> 9).
    const c = new Uint8Array(210);
    new DataView(c.buffer).setUint16(208, 0x3400, true);
    for (let s = 0; s < 16; s++) c[192 + s] = (s - 8) & 0xff;
    for (let l = 0; l < 32; l++) { c[l] = 0x90; c[128 + l] = 0x20; }
    const src6 = place(K, c);
    K.k.dequantize_q6_k(src6, dst, 256);
    const y6 = K.f32(dst, 256);
    for (let l = 0; l < 32; l++) expect(y6[64 + l]).toBe(0.25 * (((64 + l) >> 4) - 8) * 9);
    for (let l = 0; l < 32; l++) expect(y6[l]).toBe(0.25 * ((l >> 4) - 8) * -32);
  });
});

describe('K-quant matmuls', () => {
  const SHAPES: Shape[] = [
    { rows: 13, cols: 256, n: 1, r0: 0, r1: 13 },
    { rows: 13, cols: 512, n: 5, r0: 2, r1: 11 },
    { rows: 8, cols: 256, n: 4, r0: 0, r1: 8 },
    { rows: 7, cols: 768, n: 7, r0: 1, r1: 6 },
    { rows: 37, cols: 256, n: 10, r0: 0, r1: 37 },
    { rows: 5, cols: 256, n: 3, r0: 4, r1: 5 },
  ];

  for (const type of TYPES) {
    it(`matmul_${type}: SIMD == scalar bit for bit, both vs float64 block math and vs dequantized dot`, async () => {
      const K = await Kernels.create();
      const r = rng(70 + type.charCodeAt(1));
      for (const s of SHAPES) {
        const nb = s.cols / 256;
        const w = randomKBlocks(r, type, s.rows * nb);
        const x = randomF32(r, s.n * s.cols, 2);
        const pw = place(K, w), px = place(K, x);
        const xqBytes = s.n * nb * 292;
        const pxq = K.alloc(xqBytes);
        K.k.quantize_q8_k(px, pxq, s.n * s.cols);
        const xq = K.u8(pxq, xqBytes).slice();
        expect(xq).toEqual(quantizeQ8KRef(x));
        const simd = runMatmul(K, `matmul_${type}`, pw, pxq, s);
        const scal = runMatmul(K, `matmul_${type}_scalar`, pw, pxq, s);
        expect(simd).toEqual(scal);
        const wDeq = dequantKRef(type, w, s.rows * s.cols);
        const ldy = s.rows + 3;
        for (let t = 0; t < s.n; t++) {
          for (let row = s.r0; row < s.r1; row++) {
            let ref = 0, mag = 0, fdot = 0, fmag = 0;
            for (let b = 0; b < nb; b++) {
              const wb = decodeKBlock(type, w, (row * nb + b) * K_BLOCK_BYTES[type]!);
              const xb = decodeQ8K(xq, (t * nb + b) * 292);
              let sumi = 0, summ = 0;
              for (let e = 0; e < 256; e++) {
                sumi += wb.sc[e]! * wb.q[e]! * xb.q[e]!;
                summ += wb.mn[e]! * xb.q[e]!;
              }
              ref += wb.d * xb.d * sumi - wb.dmin * xb.d * summ;
              mag += Math.abs(wb.d * xb.d * sumi) + Math.abs(wb.dmin * xb.d * summ);
            }
            for (let c = 0; c < s.cols; c++) {
              fdot += wDeq[row * s.cols + c]! * x[t * s.cols + c]!;
              fmag += Math.abs(wDeq[row * s.cols + c]! * x[t * s.cols + c]!);
            }
            const got = simd[t * ldy + row]!;
            expect(Math.abs(got - ref)).toBeLessThanOrEqual((nb + 4) * EPS32 * mag + 1e-30);
            // Semantics: close to the float dot of the dequantized weights with the unquantized activations
            // (the q8_k rounding of x costs well under 1% of the magnitude).
            expect(Math.abs(got - fdot)).toBeLessThanOrEqual(0.01 * fmag + 1e-6);
          }
        }
        for (const p of [pw, px, pxq]) K.free(p);
      }
      expect(K.stats().bytesInUse).toBe(0);
    });
  }
});
