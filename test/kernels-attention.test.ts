// The attention kernel (wasm/attention.ts) and the KV row store: the SIMD kernel against its scalar twin (bit for
// bit) and both against float64 attention over the exactly decoded rows, for f32, f16 and q8 rows (blocks of 8, 16,
// 32), GQA, contiguous and paged tables of any block size, any split of the work items and any number of query rows
// per call (all bit-identical), and rows past the causal end never read. The optional attention mass of the last row
// (attn_mass): the same bits from both twins, any split, layout and row count; the output unchanged by it; and close to
// the f64 trace path (engine/tiers/attention-mass.ts) over the decoded rows.
import { describe, expect, it } from 'vitest';
import { Kernels } from '../engine/runtime/kernels.js';
import { ATTN_SEQ_BLOCK, CONTIGUOUS_BLOCK_ROWS, attnQueryBytes, attnScratchBytes } from '../engine/kv/attend.js';
import { kvElement } from '../engine/kv/element.js';
import type { KVElement, KVType } from '../engine/kv/element.js';
import { attentionMass } from '../engine/tiers/attention-mass.js';
import { fr, halfToNumber, numberToHalf, randomF32, rng, roundHalfEven } from './kernels-ref.js';

/** Index of the first element whose bits differ, or -1. */
function firstBitDiff(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** Cache rows of `el` from f32 rows, written from the type's definition (not with the kernel). */
function encodeRows(el: KVElement, rows: Float32Array, rowF: number): Uint8Array {
  const n = rows.length / rowF;
  const out = new Uint8Array(n * el.rowBytes);
  const dv = new DataView(out.buffer);
  for (let t = 0; t < n; t++) {
    const o = t * el.rowBytes;
    if (el.type === 'f32') for (let d = 0; d < rowF; d++) dv.setFloat32(o + 4 * d, rows[t * rowF + d]!, true);
    else if (el.type === 'f16') for (let d = 0; d < rowF; d++) dv.setUint16(o + 2 * d, numberToHalf(Math.min(65504, Math.max(-65504, rows[t * rowF + d]!))), true);
    else {
      const qb = el.qBlock;
      for (let b = 0; b < rowF / qb; b++) {
        const x = rows.subarray(t * rowF + b * qb, t * rowF + (b + 1) * qb);
        const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const id = amax !== 0 ? fr(127 / amax) : 0;
        const bo = o + b * (qb + 2);
        dv.setUint16(bo, numberToHalf(fr(amax / 127)), true);
        for (let e = 0; e < qb; e++) dv.setInt8(bo + 2 + e, roundHalfEven(fr(x[e]! * id)));
      }
    }
  }
  return out;
}

/** The values the cache rows hold, decoded exactly. */
function decodeRows(el: KVElement, bytes: Uint8Array, rowF: number): Float64Array {
  const n = bytes.length / el.rowBytes;
  const out = new Float64Array(n * rowF);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let t = 0; t < n; t++) {
    const o = t * el.rowBytes;
    for (let d = 0; d < rowF; d++) {
      if (el.type === 'f32') out[t * rowF + d] = dv.getFloat32(o + 4 * d, true);
      else if (el.type === 'f16') out[t * rowF + d] = halfToNumber(dv.getUint16(o + 2 * d, true));
      else {
        const qb = el.qBlock;
        const bo = o + Math.floor(d / qb) * (qb + 2);
        out[t * rowF + d] = halfToNumber(dv.getUint16(bo, true)) * dv.getInt8(bo + 2 + (d % qb));
      }
    }
  }
  return out;
}

/** The query as q8 K rows see it: each head quantized per block of qb (dq = amax/127 in f32, round half even). */
function quantizedQuery(q: Float32Array, nQ: number, nHeads: number, hd: number, qStride: number, qb: number): Float32Array {
  const out = q.slice();
  for (let i = 0; i < nQ; i++) {
    for (let h = 0; h < nHeads; h++) {
      for (let b = 0; b < hd; b += qb) {
        const at = i * qStride + h * hd + b;
        const x = q.subarray(at, at + qb);
        const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const id = amax !== 0 ? fr(127 / amax) : 0;
        const d = fr(amax / 127);
        for (let e = 0; e < qb; e++) out[at + e] = d * roundHalfEven(fr(x[e]! * id));
      }
    }
  }
  return out;
}

/** Float64 causal GQA attention over decoded rows. */
function attentionRef(q: Float32Array, k: Float64Array, v: Float64Array, nQ: number, nHeads: number, nKv: number, hd: number,
  pos0: number, qStride: number, scale: number): Float64Array {
  const rowF = nKv * hd;
  const out = new Float64Array(nQ * nHeads * hd);
  const group = nHeads / nKv;
  for (let i = 0; i < nQ; i++) {
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const len = pos0 + i + 1;
      const s = new Float64Array(len);
      for (let j = 0; j < len; j++) {
        let d = 0;
        for (let c = 0; c < hd; c++) d += q[i * qStride + h * hd + c]! * k[j * rowF + g * hd + c]!;
        s[j] = d * scale;
      }
      const m = Math.max(...s);
      let sum = 0;
      for (let j = 0; j < len; j++) sum += (s[j] = Math.exp(s[j]! - m));
      for (let j = 0; j < len; j++) {
        for (let c = 0; c < hd; c++) {
          const o = (i * nHeads + h) * hd + c;
          out[o] = out[o]! + (s[j]! / sum) * v[j * rowF + g * hd + c]!;
        }
      }
    }
  }
  return out;
}

interface Case { nQ: number; nHeads: number; nKv: number; hd: number; pos0: number; type: KVType }

/** A KV layout in the arena: the rows of `bytes` in blocks of B rows (shuffled, with gaps) or one contiguous block. */
function placeRows(K: Kernels, r: () => number, el: KVElement, bytes: Uint8Array, total: number, B: number | undefined): { table: number; blockRows: number } {
  if (B === undefined) {
    const p = K.alloc((total + 3) * el.rowBytes);
    K.u8(p, (total + 3) * el.rowBytes).fill(0xff); // past the end: NaN in every type
    K.write(p, bytes);
    const table = K.alloc(16);
    K.i32(table, 1)[0] = p;
    return { table, blockRows: CONTIGUOUS_BLOCK_ROWS };
  }
  const nBlocks = Math.ceil(total / B);
  const ptrs = new Array<number>(nBlocks);
  for (const b of Array.from({ length: nBlocks }, (_, i) => i).sort(() => r() - 0.5)) {
    ptrs[b] = K.alloc(B * el.rowBytes);
    K.alloc(16 + Math.floor(r() * 200)); // a gap
    K.u8(ptrs[b]!, B * el.rowBytes).fill(0xff);
    const rows = Math.min(B, total - b * B);
    K.write(ptrs[b]!, bytes.subarray(b * B * el.rowBytes, (b * B + rows) * el.rowBytes));
  }
  const table = K.alloc(4 * nBlocks + 16);
  K.i32(table, nBlocks + 4).set([...ptrs, -1, -1, -1, -1]); // entries past the blocks in use point out of memory
  return { table, blockRows: B };
}

type Variant = 'simd' | 'scalar';

/**
 * Runs the kernel: partials of the work items in the given split points (each part a separate call, as threads do),
 * then the merge. Rows are processed `rowsPerCall` at a time, like engine/kv/attend.ts.
 */
function run(K: Kernels, c: Case, el: KVElement, kt: { table: number; blockRows: number }, vt: { table: number; blockRows: number },
  pq: number, variant: Variant, opts: { splits?: number[]; rowsPerCall?: number; mass?: (m: Float32Array) => void } = {}): Float32Array {
  const { nQ, nHeads, nKv, hd, pos0 } = c;
  const qStride = nHeads * hd + 1, outStride = nHeads * hd + 2;
  const scale = Math.fround(1 / Math.sqrt(hd));
  const per = opts.rowsPerCall ?? nQ;
  const nSbMax = Math.ceil((pos0 + nQ) / ATTN_SEQ_BLOCK);
  const part = K.alloc(per * nHeads * nSbMax * (hd + 4) * 4);
  const scratch = K.alloc(attnScratchBytes(hd));
  const qq = K.alloc(per * nHeads * attnQueryBytes(hd));
  const po = K.alloc(nQ * outStride * 4);
  K.f32(po, nQ * outStride).fill(NaN);
  const P = variant === 'simd' ? K.k.attn_partials : K.k.attn_partials_scalar;
  const M = variant === 'simd' ? K.k.attn_merge : K.k.attn_merge_scalar;
  const total = pos0 + nQ;
  const massExp = opts.mass ? K.alloc(nHeads * total * 4) : 0;
  const massOut = opts.mass ? K.alloc(total * 4 + 16) : 0;
  if (opts.mass) K.f32(massOut, total + 4).fill(NaN);
  for (let r0 = 0; r0 < nQ; r0 += per) {
    const n = Math.min(per, nQ - r0);
    const items = nKv * Math.ceil((pos0 + r0 + n) / ATTN_SEQ_BLOCK);
    const cuts = [0, ...(opts.splits ?? []).filter((s) => s < items), items];
    K.k.attn_queries(el.id, el.qBlock, pq + r0 * qStride * 4, qq, nHeads, hd, qStride, 0, n);
    for (let s = 0; s + 1 < cuts.length; s++) {
      P(pq + r0 * qStride * 4, qq, kt.table, vt.table, kt.blockRows, el.id, el.qBlock, part, scratch, n, nHeads, nKv, hd, pos0 + r0,
        el.rowBytes, qStride, scale, cuts[s]!, cuts[s + 1]!, r0 + n === nQ ? massExp : 0);
    }
    M(part, po + r0 * outStride * 4, n, nHeads, hd, pos0 + r0, outStride, 0, n);
    if (opts.mass && r0 + n === nQ) {
      // Positions split in uneven parts, as threads would.
      const A = variant === 'simd' ? K.k.attn_mass : K.k.attn_mass_scalar;
      const cut = Math.min(total, 5);
      A(part, massExp, massOut, n, nHeads, hd, pos0 + r0, 0, cut);
      A(part, massExp, massOut, n, nHeads, hd, pos0 + r0, cut, total);
    }
  }
  if (opts.mass) {
    const m = K.f32(massOut, total + 4).slice();
    for (let x = total; x < total + 4; x++) expect(Number.isNaN(m[x]!)).toBe(true); // nothing past the positions
    opts.mass(m.subarray(0, total));
    K.free(massExp);
    K.free(massOut);
  }
  const got = K.f32(po, nQ * outStride).slice();
  K.free(po);
  K.free(scratch);
  K.free(part);
  K.free(qq);
  // Only the heads' values are written (the padding between rows stays NaN).
  const out = new Float32Array(nQ * nHeads * hd);
  for (let i = 0; i < nQ; i++) out.set(got.subarray(i * outStride, i * outStride + nHeads * hd), i * nHeads * hd);
  for (let i = 0; i < nQ; i++) for (let x = nHeads * hd; x < outStride; x++) expect(Number.isNaN(got[i * outStride + x]!)).toBe(true);
  return out;
}

describe('attention kernel', () => {
  // [nQ, nHeads, nKv, headDim, pos0, type]: short and long (several sequence blocks), GQA, odd head sizes (scalar path).
  const cases: Case[] = ([
    [1, 4, 2, 16, 0, 'f32'], [1, 4, 2, 16, 37, 'f16'], [1, 6, 6, 48, 300, 'f16'], [1, 6, 6, 48, 300, 'q8_0'],
    [1, 8, 2, 32, 130, 'q8_0'], [5, 6, 2, 12, 7, 'f32'], [3, 2, 2, 6, 140, 'f16'], [4, 8, 8, 32, 0, 'f32'],
    [16, 8, 4, 8, 120, 'q8_0'], [9, 8, 4, 8, 23, 'f16'], [2, 4, 4, 20, 260, 'f32'], [1, 2, 1, 5, 12, 'f32'],
    [7, 4, 1, 64, 250, 'q8_0'], [20, 6, 6, 48, 100, 'f32'], [1, 6, 6, 48, 511, 'f32'], [3, 4, 2, 16, 127, 'q8_0'],
  ] as const).map(([nQ, nHeads, nKv, hd, pos0, type]) => ({ nQ, nHeads, nKv, hd, pos0, type }));

  it.each(cases)('$nQ rows x $nHeads/$nKv heads x $hd at $pos0, $type: twins, layouts, splits and row counts agree bit for bit', async (c) => {
    const K = await Kernels.create();
    const r = rng(c.nQ * 1000 + c.pos0 + c.hd);
    const el = kvElement(c.type, c.nKv, c.hd);
    const rowF = c.nKv * c.hd;
    const total = c.pos0 + c.nQ;
    const qStride = c.nHeads * c.hd + 1;
    const q = randomF32(r, c.nQ * qStride, 1.5);
    const kBytes = encodeRows(el, randomF32(r, total * rowF, 1.5), rowF);
    const vBytes = encodeRows(el, randomF32(r, total * rowF, 1), rowF);
    const pq = K.alloc(q.byteLength);
    K.write(pq, q);

    const contiguous = [placeRows(K, r, el, kBytes, total, undefined), placeRows(K, r, el, vBytes, total, undefined)] as const;
    const want = run(K, c, el, contiguous[0], contiguous[1], pq, 'scalar');
    expect(want.every(Number.isFinite)).toBe(true);

    // Against float64 over the decoded rows.
    const qRef = c.type === 'q8_0' ? quantizedQuery(q, c.nQ, c.nHeads, c.hd, qStride, el.qBlock) : q;
    const ref = attentionRef(qRef, decodeRows(el, kBytes, rowF), decodeRows(el, vBytes, rowF), c.nQ, c.nHeads, c.nKv, c.hd, c.pos0, qStride, Math.fround(1 / Math.sqrt(c.hd)));
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(want[i]! - ref[i]!));
    expect(worst).toBeLessThan(3e-6);

    const check = (got: Float32Array, what: string) => {
      const at = firstBitDiff(want, got);
      if (at >= 0) expect.fail(`${what}: element ${at} is ${got[at]}, the scalar twin gives ${want[at]}`);
    };
    check(run(K, c, el, contiguous[0], contiguous[1], pq, 'simd'), 'simd');
    check(run(K, c, el, contiguous[0], contiguous[1], pq, 'simd', { splits: [1, 2, 5] }), 'simd, work split in 4 parts');
    check(run(K, c, el, contiguous[0], contiguous[1], pq, 'simd', { rowsPerCall: 1 }), 'simd, one row per call');
    check(run(K, c, el, contiguous[0], contiguous[1], pq, 'scalar', { rowsPerCall: 3, splits: [3] }), 'scalar, 3 rows per call');
    for (const B of [1, 3, 16, 128]) {
      const paged = [placeRows(K, r, el, kBytes, total, B), placeRows(K, r, el, vBytes, total, B)] as const;
      check(run(K, c, el, paged[0], paged[1], pq, 'simd', { splits: [2] }), `paged:${B} simd`);
      check(run(K, c, el, paged[0], paged[1], pq, 'scalar'), `paged:${B} scalar`);
    }
    // The last row's attention mass: the twins and every split, layout and row count give the same bits, the
    // output is unchanged by computing it, and it matches the f64 trace path over the decoded rows.
    let mass0: Float32Array | undefined;
    const checkMass = (what: string, opts: { splits?: number[]; rowsPerCall?: number }, variant: Variant, kt = contiguous[0], vt = contiguous[1]) => {
      let m: Float32Array | undefined;
      check(run(K, c, el, kt, vt, pq, variant, { ...opts, mass: (x) => { m = x.slice(); } }), `${what} with mass`);
      if (!mass0) { mass0 = m; return; }
      const at = firstBitDiff(mass0, m!);
      if (at >= 0) expect.fail(`${what}: mass of position ${at} is ${m![at]}, the scalar twin gives ${mass0[at]}`);
    };
    checkMass('scalar', {}, 'scalar');
    checkMass('simd', {}, 'simd');
    checkMass('simd, split', { splits: [1, 2, 5] }, 'simd');
    checkMass('scalar, 3 rows per call', { rowsPerCall: 3, splits: [3] }, 'scalar');
    const paged3 = [placeRows(K, r, el, kBytes, total, 3), placeRows(K, r, el, vBytes, total, 3)] as const;
    checkMass('paged:3 simd', { splits: [2] }, 'simd', paged3[0], paged3[1]);
    const last = qRef.subarray((c.nQ - 1) * qStride, (c.nQ - 1) * qStride + c.nHeads * c.hd);
    const refMass = attentionMass(last, decodeRows(el, kBytes, rowF), total, { nLayers: 1, nHeads: c.nHeads, nKVHeads: c.nKv, headDim: c.hd }, Math.fround(1 / Math.sqrt(c.hd)));
    let worstMass = 0;
    let sum = 0;
    for (let j = 0; j < total; j++) {
      worstMass = Math.max(worstMass, Math.abs(mass0![j]! - refMass[j]!));
      sum += mass0![j]!;
    }
    expect(worstMass).toBeLessThan(2e-6 * c.nHeads);
    expect(Math.abs(sum - c.nHeads)).toBeLessThan(1e-4 * c.nHeads);

    // Each row alone, as a decode step at its own position, gives its row of the batched result.
    for (let i = 0; i < c.nQ; i += Math.max(1, Math.floor(c.nQ / 3))) {
      const one = run(K, { ...c, nQ: 1, pos0: c.pos0 + i }, el, contiguous[0], contiguous[1], pq + i * qStride * 4, 'simd');
      const at = firstBitDiff(want.subarray(i * c.nHeads * c.hd, (i + 1) * c.nHeads * c.hd), one);
      if (at >= 0) expect.fail(`row ${i} alone differs at ${at}`);
    }
  });

  it('f16 rows with queries too large to prescale take the exact path, still bit-identical to the twin', async () => {
    const K = await Kernels.create();
    const r = rng(3);
    const c: Case = { nQ: 1, nHeads: 2, nKv: 2, hd: 16, pos0: 40, type: 'f16' };
    const el = kvElement('f16', 2, 16);
    const rows = randomF32(r, 41 * 32, 1e-3);
    const bytes = encodeRows(el, rows, 32);
    const q = randomF32(r, 33, 1);
    q[3] = 40000; // |q| >= 2^15 in head 0
    const pq = K.alloc(q.byteLength);
    K.write(pq, q);
    const t = placeRows(K, r, el, bytes, 41, undefined);
    const want = run(K, c, el, t, t, pq, 'scalar');
    expect(firstBitDiff(want, run(K, c, el, t, t, pq, 'simd'))).toBe(-1);
    expect(want.every(Number.isFinite)).toBe(true);
  });

  it('the engine mirrors the kernel constants', async () => {
    const K = await Kernels.create();
    expect(K.k.attn_seq_block()).toBe(ATTN_SEQ_BLOCK);
    expect(K.k.attn_contiguous_rows()).toBe(CONTIGUOUS_BLOCK_ROWS);
    for (const hd of [5, 8, 48, 64, 128]) {
      expect(K.k.attn_scratch_bytes(hd)).toBe(attnScratchBytes(hd));
      expect(K.k.attn_query_bytes(hd)).toBe(attnQueryBytes(hd));
    }
  });
});

describe('kv_store_rows', () => {
  it.each([['f32', 6, 48], ['f16', 6, 48], ['q8_0', 6, 48], ['q8_0', 2, 64], ['q8_0', 4, 8], ['f16', 3, 5]] as const)(
    '%s rows of %i heads x %i match the format definition', async (type, nKv, hd) => {
      const K = await Kernels.create();
      const r = rng(hd);
      const el = kvElement(type, nKv, hd);
      const rowF = nKv * hd;
      const n = 7;
      const x = randomF32(r, n * rowF, 3);
      x[5] = 0; // a zero, a block of zeros, a tie, a tiny value, a value past the f16 range
      x.fill(0, rowF, rowF + Math.min(8, hd));
      x[2 * rowF + 1] = 2.5;
      x[3 * rowF] = 1e-7;
      x[4 * rowF + 2] = 70000;
      const src = K.alloc(x.byteLength);
      K.write(src, x);
      const dst = K.alloc(n * el.rowBytes + 16);
      K.k.kv_store_rows(el.id, el.qBlock, src, dst, n, rowF, el.rowBytes);
      expect([...K.u8(dst, n * el.rowBytes)]).toEqual([...encodeRows(el, x, rowF)]);
    });
});
