// Kernel module: float and quantized matmuls, q8 activation quantizers, block dequantizers, in both kernel builds
// (plain SIMD and relaxed SIMD; vitest.config.ts gives Node 20 the V8 flag for the latter).
// SIMD kernels vs their scalar twins (bit-exact for quantized paths) and both vs float64 JS references.
import { describe, expect, it } from 'vitest';
import { Kernels, GGML_TYPE } from '../engine/runtime/kernels.js';
import type { SimdVariant } from '../engine/runtime/kernels.js';
import {
  BLOCK_BYTES, bf16ToNumber, decodeBlock, dequantRef, f32Bits, halfToNumber, numberToHalf, quantizeQ8Ref, randomBlocks,
  randomF32, rng,
} from './kernels-ref.js';
import { place, runMatmul } from './kernel-harness.js';
import type { Shape } from './kernel-harness.js';

const EPS32 = 2 ** -24;

const FLOAT_SHAPES: Shape[] = [
  { rows: 13, cols: 37, n: 1, r0: 0, r1: 13 },
  { rows: 13, cols: 37, n: 5, r0: 2, r1: 11 },
  { rows: 9, cols: 64, n: 4, r0: 0, r1: 9 },
  { rows: 7, cols: 3, n: 7, r0: 1, r1: 6 },
  { rows: 35, cols: 130, n: 9, r0: 0, r1: 35 },
  { rows: 6, cols: 1, n: 2, r0: 5, r1: 6 },
];

const BUILDS: SimdVariant[] = ['plain', 'relaxed'];

describe.each(BUILDS)('%s SIMD build', (simd) => {
  describe('float matmuls', () => {
    for (const kind of ['f32', 'f16', 'bf16'] as const) {
      it(`matmul_${kind}: SIMD and scalar vs float64, tails, row ranges`, async () => {
        const K = await Kernels.create({ simd });
        const r = rng(10 + kind.length);
        for (const s of FLOAT_SHAPES) {
          const wf = randomF32(r, s.rows * s.cols, 1);
          let wBytes: Uint8Array;
          const wv = new Float64Array(wf.length); // the weight values the kernel sees
          if (kind === 'f32') {
            wBytes = new Uint8Array(wf.buffer);
            wv.set(wf);
          } else {
            const h = new Uint16Array(wf.length);
            for (let i = 0; i < wf.length; i++) {
              h[i] = kind === 'f16' ? numberToHalf(wf[i]!) : f32Bits(wf[i]!) >>> 16;
              wv[i] = kind === 'f16' ? halfToNumber(h[i]!) : bf16ToNumber(h[i]!);
            }
            wBytes = new Uint8Array(h.buffer);
          }
          const x = randomF32(r, s.n * s.cols, 2);
          const pw = place(K, wBytes), px = place(K, x);
          const simd = runMatmul(K, `matmul_${kind}`, pw, px, s);
          const scal = runMatmul(K, `matmul_${kind}_scalar`, pw, px, s);
          const ldy = s.rows + 3;
          for (let t = 0; t < s.n; t++) {
            for (let row = s.r0; row < s.r1; row++) {
              let ref = 0, mag = 0;
              for (let c = 0; c < s.cols; c++) {
                const p = wv[row * s.cols + c]! * x[t * s.cols + c]!;
                ref += p;
                mag += Math.abs(p);
              }
              const tol = (s.cols + 2) * EPS32 * mag + 1e-30; // worst-case f32 summation bound
              expect(Math.abs(simd[t * ldy + row]! - ref)).toBeLessThanOrEqual(tol);
              expect(Math.abs(scal[t * ldy + row]! - ref)).toBeLessThanOrEqual(tol);
            }
          }
          K.free(pw);
          K.free(px);
        }
        expect(K.stats().bytesInUse).toBe(0);
      });
    }
  });

  describe('float weight decoding', () => {
    it('matmul_f16 / matmul_bf16 decode every finite bit pattern exactly (both tiles)', async () => {
      const K = await Kernels.create({ simd });
      const finite = (h: number, bf: boolean) => ((h >> (bf ? 7 : 10)) & (bf ? 0xff : 0x1f)) !== (bf ? 0xff : 0x1f);
      for (const bf of [false, true]) {
        const pats: number[] = [];
        for (let h = 0; h < 0x10000; h++) if (finite(h, bf)) pats.push(h);
        while (pats.length % 4) pats.push(0);
        const cols = 4, rows = pats.length / cols;
        const pw = place(K, new Uint8Array(new Uint16Array(pats).buffer));
        const px = place(K, new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])); // identity: Y[t][r] = W[r][t]
        for (const n of [4, 1]) {
          const py = K.alloc(n * rows * 4);
          K.k[bf ? 'matmul_bf16' : 'matmul_f16'](pw, px, py, rows, cols, n, rows, 0, rows);
          const y = K.f32(py, n * rows);
          for (let t = 0; t < n; t++) {
            for (let r = 0; r < rows; r++) {
              const h = pats[r * cols + t]!;
              const want = bf ? bf16ToNumber(h) : halfToNumber(h);
              if (y[t * rows + r] !== want) expect.fail(`${bf ? 'bf16' : 'f16'} 0x${h.toString(16)}: ${y[t * rows + r]} != ${want}`);
            }
          }
          K.free(py);
        }
        K.free(pw);
        K.free(px);
      }
    });
  });

  describe('q8 activation quantizers', () => {
    it('quantize_q8_0 / q8_1 (SIMD and scalar) match llama.cpp x86 byte for byte', async () => {
      const K = await Kernels.create({ simd });
      const r = rng(20);
      const nb = 40;
      const x = randomF32(r, nb * 32, 3);
      x.fill(0, 32, 64); // all-zero block: d = 0, id = 0
      for (let k = 0; k < 32; k++) x[64 + k] = [127, -127, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5][k % 8]!; // id = 1, ties
      for (let k = 0; k < 32; k++) x[96 + k] = (k - 16) * 1e-6; // tiny values: subnormal half scale
      for (let k = 0; k < 32; k++) x[128 + k] = (k % 2 ? -1 : 1) * 3e6; // huge: d overflows half to inf
      x[200] = -1000; // negative extreme
      const px = place(K, x);
      for (const [fn, withSum] of [['quantize_q8_0', false], ['quantize_q8_0_scalar', false], ['quantize_q8_1', true], ['quantize_q8_1_scalar', true]] as const) {
        const bytes = nb * (withSum ? 36 : 34);
        const dst = K.alloc(bytes);
        K.k[fn](px, dst, nb * 32);
        expect(K.u8(dst, bytes), fn).toEqual(quantizeQ8Ref(x, withSum));
        K.free(dst);
      }
    });
  });

  describe('dequantizers', () => {
    it('dequantize_row for every block type matches the JS block decoder exactly', async () => {
      const K = await Kernels.create({ simd });
      const r = rng(30);
      const ids: Record<string, number> = { q4_0: GGML_TYPE.Q4_0, q4_1: GGML_TYPE.Q4_1, q5_0: GGML_TYPE.Q5_0, q5_1: GGML_TYPE.Q5_1, q8_0: GGML_TYPE.Q8_0 };
      for (const type of Object.keys(ids)) {
        const nb = 7;
        const blocks = randomBlocks(r, type, nb);
        const src = place(K, blocks), dst = K.alloc(nb * 128), dst2 = K.alloc(nb * 128);
        expect(K.k.dequantize_row(ids[type]!, src, dst, nb * 32)).toBe(0);
        expect(K.f32(dst, nb * 32), type).toEqual(dequantRef(type, blocks, nb * 32));
        (K.k[`dequantize_${type}` as 'dequantize_q4_0'])(src, dst2, nb * 32);
        expect(K.f32(dst2, nb * 32)).toEqual(K.f32(dst, nb * 32));
      }
    });

    it('known q4_0 / q5_0 block values', async () => {
      const K = await Kernels.create({ simd });
      // q4_0: d = 0.5, qs[j] = j | (15 - j) << 4 -> elements j: (j - 8)/2, j + 16: (7 - j)/2
      const b = new Uint8Array(18);
      new DataView(b.buffer).setUint16(0, 0x3800, true);
      for (let j = 0; j < 16; j++) b[2 + j] = j | ((15 - j) << 4);
      const src = place(K, b), dst = K.alloc(128);
      K.k.dequantize_q4_0(src, dst, 32);
      const want = [...Array(32)].map((_, k) => (k < 16 ? k - 8 : 7 - (k - 16)) / 2);
      expect([...K.f32(dst, 32)]).toEqual(want);
      // q5_0: d = 1, qh = 0x80000001 -> element 0 and 31 get +16
      const c = new Uint8Array(22);
      const dv = new DataView(c.buffer);
      dv.setUint16(0, 0x3c00, true);
      dv.setUint32(2, 0x80000001, true);
      const src5 = place(K, c);
      K.k.dequantize_q5_0(src5, dst, 32);
      const got = K.f32(dst, 32);
      expect(got[0]).toBe(0);
      expect(got[1]).toBe(-16);
      expect(got[31]).toBe(0);
      expect(got[30]).toBe(-16);
    });
  });

  describe('quantized matmuls', () => {
    const QUANT_SHAPES: Shape[] = [
      { rows: 13, cols: 64, n: 1, r0: 0, r1: 13 },
      { rows: 13, cols: 96, n: 5, r0: 2, r1: 11 },
      { rows: 8, cols: 32, n: 4, r0: 0, r1: 8 },
      { rows: 7, cols: 160, n: 7, r0: 1, r1: 6 },
      { rows: 37, cols: 256, n: 10, r0: 0, r1: 37 },
      { rows: 5, cols: 32, n: 3, r0: 4, r1: 5 },
    ];

    for (const type of ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'] as const) {
      it(`matmul_${type}: SIMD == scalar bit for bit, both vs float64 block math and vs dequantized dot`, async () => {
        const K = await Kernels.create({ simd });
        const r = rng(40 + type.charCodeAt(1) * 3 + type.charCodeAt(3));
        const withSum = type === 'q4_1' || type === 'q5_1';
        const act = withSum ? 'q8_1' : 'q8_0';
        for (const s of QUANT_SHAPES) {
          const nb = s.cols / 32;
          const w = randomBlocks(r, type, s.rows * nb);
          const x = randomF32(r, s.n * s.cols, 2);
          const pw = place(K, w), px = place(K, x);
          const xqBytes = s.n * nb * BLOCK_BYTES[act]!;
          const pxq = K.alloc(xqBytes);
          K.k[withSum ? 'quantize_q8_1' : 'quantize_q8_0'](px, pxq, s.n * s.cols);
          const xq = K.u8(pxq, xqBytes).slice();
          expect(xq).toEqual(quantizeQ8Ref(x, withSum));
          const simd = runMatmul(K, `matmul_${type}`, pw, pxq, s);
          const scal = runMatmul(K, `matmul_${type}_scalar`, pw, pxq, s);
          expect(simd).toEqual(scal);
          const wDeq = dequantRef(type, w, s.rows * s.cols);
          const ldy = s.rows + 3;
          for (let t = 0; t < s.n; t++) {
            for (let row = s.r0; row < s.r1; row++) {
              let ref = 0, mag = 0, fdot = 0, fmag = 0;
              for (let b = 0; b < nb; b++) {
                const wb = decodeBlock(type, w, (row * nb + b) * BLOCK_BYTES[type]!);
                const xb = decodeBlock(act, xq, (t * nb + b) * BLOCK_BYTES[act]!);
                let sumi = 0;
                for (let k = 0; k < 32; k++) sumi += wb.q[k]! * xb.q[k]!;
                const term = wb.d * xb.d * sumi + wb.m * xb.m;
                ref += term;
                mag += Math.abs(wb.d * xb.d * sumi) + Math.abs(wb.m * xb.m);
              }
              for (let c = 0; c < s.cols; c++) {
                fdot += wDeq[row * s.cols + c]! * x[t * s.cols + c]!;
                fmag += Math.abs(wDeq[row * s.cols + c]! * x[t * s.cols + c]!);
              }
              const got = simd[t * ldy + row]!;
              expect(Math.abs(got - ref)).toBeLessThanOrEqual((nb + 4) * EPS32 * mag + 1e-30);
              // Semantics: close to the float dot of the dequantized weights with the unquantized activations
              // (q8 rounding of x and the f16 sum term cost well under 1% of the magnitude).
              expect(Math.abs(got - fdot)).toBeLessThanOrEqual(0.01 * fmag + 1e-6);
            }
          }
          for (const p of [pw, px, pxq]) K.free(p);
        }
        expect(K.stats().bytesInUse).toBe(0);
      });
    }
  });
});
