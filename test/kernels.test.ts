// Kernel module: arena allocator, number conversions and element-wise ops (attention: kernels-attention.test.ts).
// SIMD kernels are checked against their scalar twins and both against float64 JS references.
import { describe, expect, it } from 'vitest';
import { Kernels, GGML_TYPE } from '../engine/runtime/kernels.js';
import { OutOfMemoryError } from '../engine/errors.js';
import { bf16ToNumber, bitsF32, f32Bits, fr, halfToNumber, numberToHalf, randomF32, rng } from './kernels-ref.js';

describe('arena', () => {
  it('random alloc/free: aligned, disjoint, contents intact, coalesces back to empty', async () => {
    const K = await Kernels.create();
    const r = rng(1);
    const live = new Map<number, { size: number; tag: number }>();
    const start = K.stats().bytesReserved;
    const firstPtr = K.alloc(64);
    K.free(firstPtr);
    for (let step = 0; step < 3000; step++) {
      if (live.size > 0 && r() < 0.45) {
        const keys = [...live.keys()];
        const p = keys[Math.floor(r() * keys.length)]!;
        const { size, tag } = live.get(p)!;
        const bytes = K.u8(p, size);
        if (!bytes.every((b) => b === tag)) expect.fail(`block ${p} was overwritten`);
        K.free(p);
        live.delete(p);
      } else {
        const size = 1 + Math.floor(r() ** 3 * 200_000);
        const align = [16, 32, 64, 128, 4096][Math.floor(r() * 5)]!;
        const p = K.alloc(size, align);
        expect(p % align).toBe(0);
        expect(K.sizeOf(p)).toBeGreaterThanOrEqual(size);
        for (const [q, b] of live) if (!(p + size <= q || q + b.size <= p)) expect.fail(`overlap ${p}+${size} / ${q}+${b.size}`);
        const tag = step & 0xff;
        K.u8(p, size).fill(tag); // fresh view: alloc may have grown memory
        live.set(p, { size, tag });
      }
    }
    const s = K.stats();
    expect(s.allocs - s.frees).toBe(live.size);
    expect(s.bytesPeak).toBeGreaterThanOrEqual(s.bytesInUse);
    for (const p of live.keys()) K.free(p);
    expect(K.stats().bytesInUse).toBe(0);
    expect(K.stats().bytesReserved).toBe(start); // everything went back to the untouched tail
    const big = K.alloc(4 << 20);
    expect(big).toBe(firstPtr); // one big block in the place of the first one
  });

  it('reuses and coalesces free blocks in the middle', async () => {
    const K = await Kernels.create();
    const a = K.alloc(1000), b = K.alloc(3000), c = K.alloc(500), d = K.alloc(100);
    K.free(b);
    const b2 = K.alloc(2000);
    expect(b2).toBe(b); // first fit into the hole
    K.free(b2);
    K.free(a); // a + b merge
    const ab = K.alloc(3900);
    expect(ab).toBe(a);
    K.free(c); // c merges with the remainder of the a+b hole
    const before = K.stats().bytesReserved;
    for (let i = 0; i < 100; i++) K.free(K.alloc(1 << 20)); // top alloc/free cycles do not creep
    expect(K.stats().bytesReserved).toBe(before);
    K.free(ab);
    K.free(d);
    expect(K.stats()).toMatchObject({ bytesInUse: 0, bytesReserved: 0 });
  });

  it('grows linear memory in large steps (each grow replaces the ArrayBuffer and costs V8 a GC)', async () => {
    const K = await Kernels.create();
    let buf = K.memory.buffer;
    let grows = 0;
    // 300 x 64 KiB = 18.75 MiB from the tail: page-by-page growth would grow on nearly every call.
    for (let i = 0; i < 300; i++) {
      K.alloc(64 * 1024);
      if (K.memory.buffer !== buf) {
        grows++;
        buf = K.memory.buffer;
      }
    }
    expect(grows).toBeGreaterThanOrEqual(1);
    expect(grows).toBeLessThanOrEqual(3);
  });

  it('respects the limit, grows memory, reports peak', async () => {
    const K = await Kernels.create({ limitBytes: 1 << 20 });
    expect(K.limitBytes).toBe(1 << 20);
    expect(() => K.alloc(2 << 20)).toThrow(OutOfMemoryError);
    expect(K.k.arena_alloc(2 << 20, 64)).toBe(0);
    const p = K.alloc(900_000);
    expect(K.memory.buffer.byteLength).toBeGreaterThanOrEqual(p + 900_000);
    expect(() => K.alloc(200_000)).toThrow(OutOfMemoryError);
    K.free(p);
    expect(K.stats().bytesPeak).toBeGreaterThanOrEqual(900_000);
    K.resetPeak();
    expect(K.stats().bytesPeak).toBe(0);
    expect(K.alloc(1000)).toBe(p);
    const U = await Kernels.create();
    expect(U.limitBytes).toBeGreaterThan(4 * 2 ** 30 - 2 ** 20);
    expect(U.k.arena_alloc(-1, 64)).toBe(0); // 4 GiB - 1 can never fit
  });
});

describe('number formats', () => {
  it('f32 -> f16 matches F16C rounding on edge cases and random values', async () => {
    const K = await Kernels.create();
    const cases = [
      0, -0, 1, -1, 65504, 65519, 65519.99, 65520, 1e6, -1e6, Infinity, -Infinity, 2 ** -14, 2 ** -24, 2 ** -25,
      2 ** -25 * 1.0000001, 2 ** -26, 3 * 2 ** -25, 5 * 2 ** -25, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 1 + 2 ** -11,
      1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 2047 * 2 ** -25, 2 ** -14 - 2 ** -25, 1e-45, -1e-40, 0.1, 1 / 3,
    ];
    for (const v of cases) expect([v, K.k.f32_to_f16(v)]).toEqual([v, numberToHalf(v)]);
    expect(K.k.f32_to_f16(NaN) & 0x7e00).toBe(0x7e00);
    const r = rng(2);
    for (let i = 0; i < 20000; i++) {
      const v = bitsF32(Math.floor(r() * 2 ** 32)); // every exponent, including subnormal and NaN patterns
      expect(K.k.f32_to_f16(v)).toBe(numberToHalf(v));
    }
    // halves and ties exactly between two halves
    for (let h = 0; h < 0x7c00; h += 7) {
      const lo = halfToNumber(h), hi = halfToNumber(h + 1);
      expect(K.k.f32_to_f16(lo)).toBe(h);
      expect(K.k.f32_to_f16((lo + hi) / 2)).toBe(h % 2 === 0 ? h : h + 1);
    }
  });

  it('f16/bf16 -> f32 for every bit pattern; f32 -> bf16 round to nearest even', async () => {
    const K = await Kernels.create();
    for (let h = 0; h < 0x10000; h++) {
      const want = halfToNumber(h);
      const got = K.k.f16_to_f32(h);
      if (Number.isNaN(want)) expect(got).toBeNaN();
      else expect(Object.is(got, want)).toBe(true);
      const b = K.k.bf16_to_f32(h);
      if (!Number.isNaN(b)) expect(b).toBe(bf16ToNumber(h));
    }
    expect(K.k.f32_to_bf16(bitsF32(0x3f808000))).toBe(0x3f80); // tie, even stays
    expect(K.k.f32_to_bf16(bitsF32(0x3f818000))).toBe(0x3f82); // tie, odd rounds up
    expect(K.k.f32_to_bf16(bitsF32(0x3f808001))).toBe(0x3f81);
    expect(K.k.f32_to_bf16(NaN) & 0x7fc0).toBe(0x7fc0);
    const r = rng(3);
    for (let i = 0; i < 5000; i++) {
      const v = fr((r() * 2 - 1) * 1000);
      const b = K.k.f32_to_bf16(v);
      const down = f32Bits(v) >>> 16;
      const err = Math.abs(bf16ToNumber(b) - v);
      expect(err).toBeLessThanOrEqual(Math.abs(bf16ToNumber(down) - v));
      expect(err).toBeLessThanOrEqual(Math.abs(bf16ToNumber(down + 1) - v));
    }
  });

  it('bulk conversions and dequantize_row for float types', async () => {
    const K = await Kernels.create();
    const n = 37;
    const x = randomF32(rng(4), n, 100);
    const src = K.alloc(n * 4), h = K.alloc(n * 2), dst = K.alloc(n * 4);
    K.write(src, x);
    K.k.convert_f32_to_f16(src, h, n);
    expect(K.k.dequantize_row(GGML_TYPE.F16, h, dst, n)).toBe(0);
    for (let i = 0; i < n; i++) expect(K.f32(dst, n)[i]).toBe(halfToNumber(numberToHalf(x[i]!)));
    K.k.convert_f32_to_bf16(src, h, n);
    expect(K.k.dequantize_row(GGML_TYPE.BF16, h, dst, n)).toBe(0);
    for (let i = 0; i < n; i++) expect(Math.abs(K.f32(dst, n)[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
    expect(K.k.dequantize_row(GGML_TYPE.F32, src, dst, n)).toBe(0);
    expect(K.f32(dst, n)).toEqual(x);
    expect(K.k.dequantize_row(20, src, dst, n)).toBe(-1); // IQ4_NL
  });

  it('round_to_f16 / round_to_bf16 keep f32 values at half precision (nearest even)', async () => {
    const K = await Kernels.create();
    const n = 1000;
    const x = randomF32(rng(9), n, 50);
    x[0] = 65519; x[1] = 65520; x[2] = 1e-7; x[3] = -0; x[4] = 1 + 2 ** -11; x[5] = 1 + 3 * 2 ** -11;
    const [src] = put(K, x);
    const dst = K.alloc(n * 4);
    K.k.round_to_f16(src!, dst, n);
    const got = K.f32(dst, n);
    for (let i = 0; i < n; i++) expect(Object.is(got[i], fr(halfToNumber(numberToHalf(x[i]!)))), `f16 ${x[i]}`).toBe(true);
    expect(got[1]).toBe(Infinity);
    expect(got[4]).toBe(1);
    expect(got[5]).toBe(1 + 2 ** -9);
    K.k.round_to_bf16(src!, dst, n);
    const b = K.f32(dst, n);
    for (let i = 0; i < n; i++) {
      const bits = f32Bits(x[i]!);
      const rounded = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
      expect(b[i], `bf16 ${x[i]}`).toBe(bf16ToNumber(rounded));
    }
  });
});

/** Allocates and fills f32 arrays; returns their pointers. */
function put(K: Kernels, ...arrays: Float32Array[]): number[] {
  return arrays.map((a) => {
    const p = K.alloc(Math.max(4, a.length * 4));
    K.write(p, a);
    return p;
  });
}

describe('ops', () => {
  it('rmsnorm: scalar matches the ggml definition exactly, SIMD within an ulp; in place; no weight', async () => {
    const K = await Kernels.create();
    const r = rng(5);
    for (const dim of [1, 3, 4, 7, 64, 130]) {
      const n = 3, eps = 1e-5;
      const x = randomF32(r, dim * n, 3), w = randomF32(r, dim, 2);
      const want = new Float32Array(dim * n), wantNoW = new Float32Array(dim * n);
      for (let t = 0; t < n; t++) {
        let sum = 0;
        for (let i = 0; i < dim; i++) sum += fr(x[t * dim + i]! * x[t * dim + i]!);
        const mean = fr(sum / dim);
        const sc = fr(1 / fr(Math.sqrt(fr(mean + eps))));
        for (let i = 0; i < dim; i++) {
          wantNoW[t * dim + i] = fr(x[t * dim + i]! * sc);
          want[t * dim + i] = fr(wantNoW[t * dim + i]! * w[i]!);
        }
      }
      const [px, pw, py, px2] = put(K, x, w, new Float32Array(dim * n), x);
      K.k.rmsnorm_scalar(px!, pw!, py!, dim, n, eps);
      expect(K.f32(py!, dim * n)).toEqual(want);
      K.k.rmsnorm(px!, pw!, py!, dim, n, eps);
      const got = K.f32(py!, dim * n);
      for (let i = 0; i < dim * n; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(Math.abs(want[i]!) * 2.4e-7);
      K.k.rmsnorm(px2!, 0, px2!, dim, n, eps); // in place, no weight
      const got2 = K.f32(px2!, dim * n);
      for (let i = 0; i < dim * n; i++) expect(Math.abs(got2[i]! - wantNoW[i]!)).toBeLessThanOrEqual(Math.abs(wantNoW[i]!) * 2.4e-7);
    }
  });

  it('rope: normal and NeoX, SIMD == scalar bit for bit, both vs float64', async () => {
    const K = await Kernels.create();
    const r = rng(6);
    for (const [headDim, neox] of [[8, 0], [64, 0], [8, 1], [64, 1], [6, 0], [12, 1], [4, 1]] as const) {
      const nRows = 3, nHeads = 3, stride = nHeads * headDim + 5;
      const x = randomF32(r, nRows * stride, 2);
      const cs = new Float32Array(nRows * headDim);
      for (let i = 0; i < cs.length / 2; i++) {
        const a = r() * 20;
        cs[2 * i] = Math.cos(a);
        cs[2 * i + 1] = Math.sin(a);
      }
      const [pa, pb, pc] = put(K, x, x, cs);
      K.k.rope(pa!, pc!, nRows, nHeads, headDim, stride, neox);
      K.k.rope_scalar(pb!, pc!, nRows, nHeads, headDim, stride, neox);
      const got = K.f32(pa!, x.length);
      expect(got).toEqual(K.f32(pb!, x.length));
      const half = headDim / 2;
      for (let t = 0; t < nRows; t++) {
        for (let h = 0; h < nHeads; h++) {
          for (let i = 0; i < half; i++) {
            const base = t * stride + h * headDim;
            const ia = base + (neox ? i : 2 * i), ib = base + (neox ? i + half : 2 * i + 1);
            const c = cs[t * headDim + 2 * i]!, s = cs[t * headDim + 2 * i + 1]!;
            const a = x[ia]!, b = x[ib]!;
            expect(Math.abs(got[ia]! - (a * c - b * s))).toBeLessThan(1e-6);
            expect(Math.abs(got[ib]! - (a * s + b * c))).toBeLessThan(1e-6);
          }
        }
        for (let i = nHeads * headDim; i < stride; i++) expect(got[t * stride + i]).toBe(x[t * stride + i]); // padding untouched
      }
    }
  });

  it('silu_mul, add, scale, softmax', async () => {
    const K = await Kernels.create();
    const r = rng(7);
    for (const n of [1, 5, 16, 103]) {
      const g = randomF32(r, n, 8), u = randomF32(r, n, 2);
      const [pg, pu, po, pa, pb] = put(K, g, u, new Float32Array(n), g, g);
      K.k.silu_mul(pg!, pu!, po!, n);
      let o = K.f32(po!, n);
      for (let i = 0; i < n; i++) {
        const want = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
        expect(Math.abs(o[i]! - want)).toBeLessThanOrEqual(Math.abs(want) * 1e-6 + 1e-30);
      }
      K.k.add(pg!, pu!, po!, n);
      o = K.f32(po!, n);
      for (let i = 0; i < n; i++) expect(o[i]).toBe(fr(g[i]! + u[i]!));
      K.k.add_scalar(pg!, pu!, pu!, n); // in place
      expect(K.f32(pu!, n)).toEqual(o);
      K.k.scale(pa!, 0.37, n);
      K.k.scale_scalar(pb!, 0.37, n);
      for (let i = 0; i < n; i++) expect(K.f32(pa!, n)[i]).toBe(fr(g[i]! * fr(0.37)));
      expect(K.f32(pa!, n)).toEqual(K.f32(pb!, n));
      K.k.softmax(pg!, n);
      const p = K.f32(pg!, n);
      const m = Math.max(...g);
      const e = [...g].map((v) => Math.exp(v - m));
      const sum = e.reduce((a, b) => a + b, 0);
      let total = 0;
      for (let i = 0; i < n; i++) {
        expect(Math.abs(p[i]! - e[i]! / sum)).toBeLessThanOrEqual((e[i]! / sum) * 1e-6 + 1e-12);
        total += p[i]!;
      }
      expect(Math.abs(total - 1)).toBeLessThan(1e-5);
    }
    // The scalar twin: same exp values, sums in order.
    for (const n of [1, 7, 64, 301]) {
      const x = randomF32(r, n, 20);
      const [pa2, pb2] = put(K, x, x);
      K.k.softmax(pa2!, n);
      K.k.softmax_scalar(pb2!, n);
      const a = K.f32(pa2!, n), b = K.f32(pb2!, n);
      for (let i = 0; i < n; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(Math.abs(b[i]!) * 2.4e-7 + 1e-30);
    }
    const [pc] = put(K, new Float32Array([1, 2]));
    K.k.copy(pc! + 4, pc!, 4);
    expect([...K.f32(pc!, 2)]).toEqual([1, 1]);
  });
});

describe('exp_f32', () => {
  it('SIMD == scalar bit for bit; within 2 ulp of exp on [-86.6, 88.72]; 0 below, inf above, NaN kept', async () => {
    const K = await Kernels.create();
    const r = rng(11);
    const xs: number[] = [0, -0, 1, -1, 0.5, -0.5, 88.72, 88.73, 1e30, Infinity, -Infinity, -86.6, -86.61, -100, -1e30, 1e-8, -1e-8, NaN, Math.LN2 / 2, -Math.LN2 / 2];
    for (let i = 0; i < 20000; i++) xs.push(fr(-86.6 + r() * (88.72 + 86.6)));
    for (let i = 0; i < 5000; i++) xs.push(fr((r() - 0.5) * 4));
    const x = new Float32Array(xs);
    const n = x.length;
    const [px, pa, pb] = put(K, x, new Float32Array(n), new Float32Array(n));
    K.k.exp_f32_array(px!, pa!, n);
    K.k.exp_f32_array_scalar(px!, pb!, n);
    const a = K.f32(pa!, n).slice(), b = K.f32(pb!, n).slice();
    expect(new Uint32Array(a.buffer)).toEqual(new Uint32Array(b.buffer));
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      if (Number.isNaN(v)) { expect(Number.isNaN(a[i]!)).toBe(true); continue; }
      if (v < fr(-86.6)) { expect(a[i]).toBe(0); continue; }
      if (v > fr(88.72)) { expect(a[i]).toBe(Infinity); continue; }
      const want = Math.exp(v);
      const ulp = 2 ** (Math.floor(Math.log2(want)) - 23);
      worst = Math.max(worst, Math.abs(a[i]! - want) / ulp);
    }
    expect(worst, `worst error ${worst.toFixed(2)} ulp`).toBeLessThanOrEqual(2);
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
