// KV row conversion (wasm/kv_convert.ts) and q4_0 row storage (kv_store_rows): q4 rows match the format's
// definition written here from the text; the SIMD converter matches its scalar twin bit for bit for every pair of
// types and block sizes; expanded values equal the decoded definition; the round trip error is bounded by the format.
import { describe, expect, it } from 'vitest';
import { Kernels } from '../engine/runtime/kernels.js';
import { kvElement, warmElement } from '../engine/kv/element.js';
import type { KVElement, KVStorageType } from '../engine/kv/element.js';
import { fr, halfToNumber, numberToHalf, randomF32, rng, roundHalfEven } from './kernels-ref.js';

const element = (t: KVStorageType, nKv: number, hd: number): KVElement<KVStorageType> =>
  t === 'q4_0' ? warmElement(t, nKv, hd) : kvElement(t, nKv, hd);

/** q4_0 rows from f32 rows, written from the definition in wasm/kv_convert.ts. */
function encodeQ4(el: KVElement<KVStorageType>, rows: Float32Array, rowF: number): Uint8Array {
  const n = rows.length / rowF;
  const qb = el.qBlock;
  const out = new Uint8Array(n * el.rowBytes);
  const dv = new DataView(out.buffer);
  for (let t = 0; t < n; t++) {
    for (let b = 0; b < rowF / qb; b++) {
      const x = rows.subarray(t * rowF + b * qb, t * rowF + (b + 1) * qb);
      let m = 0;
      for (const v of x) if (Math.abs(v) > Math.abs(m)) m = v;
      const d = fr(m / -8);
      const id = d !== 0 ? fr(1 / d) : 0;
      const bo = t * el.rowBytes + b * (qb / 2 + 2);
      dv.setUint16(bo, numberToHalf(d), true);
      const nib = (v: number) => Math.min(15, Math.trunc(fr(fr(v * id) + 8.5)));
      for (let e = 0; e < qb / 2; e++) out[bo + 2 + e] = nib(x[e]!) | (nib(x[e + qb / 2]!) << 4);
    }
  }
  return out;
}

/** The values of stored rows by the formats' definitions. */
function decodeRows(el: KVElement<KVStorageType>, bytes: Uint8Array, rowF: number): Float32Array {
  const n = bytes.length / el.rowBytes;
  const out = new Float32Array(n * rowF);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const qb = el.qBlock;
  for (let t = 0; t < n; t++) {
    const o = t * el.rowBytes;
    for (let i = 0; i < rowF; i++) {
      let v: number;
      if (el.type === 'f32') v = dv.getFloat32(o + 4 * i, true);
      else if (el.type === 'f16') v = halfToNumber(dv.getUint16(o + 2 * i, true));
      else {
        const b = Math.floor(i / qb);
        const e = i % qb;
        const bo = o + b * (el.type === 'q8_0' ? qb + 2 : qb / 2 + 2);
        const d = halfToNumber(dv.getUint16(bo, true));
        let q: number;
        if (el.type === 'q8_0') q = dv.getInt8(bo + 2 + e);
        else q = e < qb / 2 ? (bytes[bo + 2 + e]! & 15) - 8 : (bytes[bo + 2 + e - qb / 2]! >> 4) - 8;
        v = fr(q * d);
      }
      out[t * rowF + i] = v;
    }
  }
  return out;
}

/** Converts n rows at src (type a) to rows of type b through kv_convert_rows (or its scalar twin); returns their bytes. */
function convert(K: Kernels, a: KVElement<KVStorageType>, b: KVElement<KVStorageType>, src: number, n: number, rowF: number, scalar: boolean): Uint8Array {
  const dst = K.alloc(n * b.rowBytes + 16);
  const pairs = K.alloc(8 * n);
  const tmp = K.alloc(4 * rowF);
  // Destinations in reverse order: the pairs, not the positions, decide where each row goes.
  const p = new Uint32Array(K.memory.buffer, pairs, 2 * n);
  for (let t = 0; t < n; t++) { p[2 * t] = src + t * a.rowBytes; p[2 * t + 1] = dst + (n - 1 - t) * b.rowBytes; }
  (scalar ? K.k.kv_convert_rows_scalar : K.k.kv_convert_rows)(a.id, a.qBlock, b.id, b.qBlock, pairs, n, rowF, tmp);
  const out = new Uint8Array(n * b.rowBytes);
  for (let t = 0; t < n; t++) out.set(K.u8(dst + (n - 1 - t) * b.rowBytes, b.rowBytes), t * b.rowBytes);
  for (const x of [dst, pairs, tmp]) K.free(x);
  return out;
}

function sample(hd: number, nKv: number, n: number): Float32Array {
  const x = randomF32(rng(hd * 31 + nKv), n * nKv * hd, 3);
  x[3] = 0;
  x.fill(0, nKv * hd, nKv * hd + 8); // a block of zeros
  x[2 * nKv * hd + 1] = -7.5; // a negative extreme
  return x;
}

describe('q4_0 KV rows', () => {
  it.each([[2, 64], [6, 48], [4, 8], [1, 16]] as const)('%i heads x %i: kv_store_rows matches the definition', async (nKv, hd) => {
    const K = await Kernels.create();
    const el = warmElement('q4_0', nKv, hd);
    expect(el.rowBytes).toBe(nKv * (hd / el.qBlock) * (el.qBlock / 2 + 2));
    const rowF = nKv * hd;
    const n = 5;
    const x = sample(hd, nKv, n);
    const src = K.alloc(x.byteLength);
    K.write(src, x);
    const dst = K.alloc(n * el.rowBytes);
    K.k.kv_store_rows(el.id, el.qBlock, src, dst, n, rowF, el.rowBytes);
    expect([...K.u8(dst, n * el.rowBytes)]).toEqual([...encodeQ4(el, x, rowF)]);
  });
});

describe('kv_convert_rows', () => {
  const types: KVStorageType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
  const shapes = [[2, 64], [6, 48], [4, 8]] as const;
  for (const [nKv, hd] of shapes) {
    it(`${nKv} heads x ${hd}: SIMD = scalar twin for every pair of types, values as defined`, async () => {
      const K = await Kernels.create();
      const rowF = nKv * hd;
      const n = 6;
      const x = sample(hd, nKv, n);
      const f = K.alloc(x.byteLength);
      K.write(f, x);
      for (const ta of types) {
        const a = element(ta, nKv, hd);
        const src = K.alloc(n * a.rowBytes);
        K.k.kv_store_rows(a.id, a.qBlock, f, src, n, rowF, a.rowBytes);
        const srcBytes = K.u8(src, n * a.rowBytes).slice();
        const values = decodeRows(a, srcBytes, rowF);
        for (const tb of types) {
          const b = element(tb, nKv, hd);
          const simd = convert(K, a, b, src, n, rowF, false);
          const scalar = convert(K, a, b, src, n, rowF, true);
          expect([...simd], `${ta} -> ${tb}`).toEqual([...scalar]);
          if (tb === 'f32') {
            // Expansion: exactly the decoded values.
            expect([...new Float32Array(simd.buffer)], `${ta} -> f32`).toEqual([...values]);
          } else {
            // Any other destination: the destination's encoding of those values.
            const v = K.alloc(values.byteLength);
            K.write(v, values);
            const ref = K.alloc(n * b.rowBytes);
            K.k.kv_store_rows(b.id, b.qBlock, v, ref, n, rowF, b.rowBytes);
            expect([...simd], `${ta} -> ${tb}`).toEqual([...K.u8(ref, n * b.rowBytes)]);
            K.free(v); K.free(ref);
          }
        }
        K.free(src);
      }
    });
  }

  it('round trips f32 -> q8_0 / q4_0 -> f32 within a quantization step of each block (q8_0: half)', async () => {
    const K = await Kernels.create();
    const nKv = 2, hd = 64, rowF = nKv * hd, n = 8;
    const x = sample(hd, nKv, n);
    const f = K.alloc(x.byteLength);
    K.write(f, x);
    const f32 = kvElement('f32', nKv, hd);
    for (const t of ['q8_0', 'q4_0'] as const) {
      const el = warmElement(t, nKv, hd);
      const q = convert(K, f32, el, f, n, rowF, false);
      const qp = K.alloc(q.length);
      K.write(qp, q);
      const back = new Float32Array(convert(K, el, f32, qp, n, rowF, false).buffer);
      let worst = 0;
      let nonzero = 0;
      for (let i = 0; i < x.length; i += el.qBlock) {
        const blk = x.subarray(i, i + el.qBlock);
        const amax = blk.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const step = t === 'q8_0' ? amax / 127 : amax / 8;
        for (let e = 0; e < el.qBlock; e++) {
          const err = Math.abs(back[i + e]! - blk[e]!);
          if (err > 0) nonzero++;
          // q8_0: half a step; q4_0: a whole step (the value opposite the block's extreme clamps from 8 to 7 steps);
          // plus the f16 rounding of the scale (2^-11 relative) times the largest quant (127 or 8).
          const half = t === 'q8_0' ? 0.5 + 127 * 2 ** -11 : 1 + 8 * 2 ** -11;
          worst = Math.max(worst, err / (step * half + 1e-30));
        }
      }
      expect(worst, t).toBeLessThanOrEqual(1);
      expect(nonzero, t).toBeGreaterThan(x.length / 4);
    }
  });
});
