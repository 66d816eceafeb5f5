// attendSplit (engine/kv/attend.ts) and attn_merge_split (wasm/attention_split.ts): one query row over two disjoint
// row sets, each read at its own type, merged in a fixed order. Against float64 attention over the union (f32 sets),
// SIMD merge = scalar twin bit for bit, and q8_0 rows in set B within q8_0's error of the f32 result. The attention
// mass of the split row (attn_mass_split, for the tiered cache's placement), mapped back from the sets' table order to
// positions, against float64 softmax weights summed over the heads.
import { describe, expect, it } from 'vitest';
import { Kernels } from '../engine/runtime/kernels.js';
import { AttentionWorkspace, attendSplit, runHere, splitFits } from '../engine/kv/attend.js';
import { kvElement } from '../engine/kv/element.js';
import type { KVElement } from '../engine/kv/element.js';
import { randomF32, rng } from './kernels-ref.js';

/**
 * The rows of both sets in the arena: K then V of all n rows stored at f32 (set A) and at `bel`'s type (set B), the
 * query, and the tables of each set in position order (A's K at 0, V at n; B's K at 2n, V at 3n, in u32 entries).
 * Returns the sets' sizes, their views for attendSplit, and what to free.
 */
function splitRows(K: Kernels, kf: Float32Array, vf: Float32Array, q: Float32Array, n: number, nKV: number, hd: number, bel: KVElement, inB: (j: number) => boolean) {
  const rowF = nKV * hd;
  const f32 = kvElement('f32', nKV, hd);
  const src = K.alloc(2 * n * rowF * 4);
  K.write(src, kf);
  K.write(src + n * rowF * 4, vf);
  const rowsA = K.alloc(2 * n * f32.rowBytes);
  const rowsB = K.alloc(2 * n * bel.rowBytes);
  K.k.kv_store_rows(f32.id, 0, src, rowsA, 2 * n, rowF, f32.rowBytes);
  K.k.kv_store_rows(bel.id, bel.qBlock, src, rowsB, 2 * n, rowF, bel.rowBytes);
  const tabs = K.alloc(4 * 4 * n);
  const qp = K.alloc(q.byteLength);
  K.write(qp, q);
  const t = new Uint32Array(K.memory.buffer, tabs, 4 * n);
  let a = 0, b = 0;
  for (let j = 0; j < n; j++) {
    if (inB(j)) { t[2 * n + b] = rowsB + j * bel.rowBytes; t[3 * n + b] = rowsB + (n + j) * bel.rowBytes; b++; }
    else { t[a] = rowsA + j * f32.rowBytes; t[n + a] = rowsA + (n + j) * f32.rowBytes; a++; }
  }
  const view = (k: number, v: number, el: KVElement) => ({ kTable: tabs + 4 * k, vTable: tabs + 4 * v, blockRows: 1, el });
  return { a, b, qp, viewA: view(0, n, f32), viewB: view(2 * n, 3 * n, bel), free: () => { for (const p of [src, rowsA, rowsB, tabs, qp]) K.free(p); } };
}

/** float64 softmax probabilities of head h of one query row over n rows (K rows of nKV * hd floats, GQA groups). */
function headProbs(q: Float32Array, k: Float32Array, n: number, h: number, nHeads: number, nKV: number, hd: number, scale: number): Float64Array {
  const g = Math.floor(h / (nHeads / nKV));
  const rowF = nKV * hd;
  const s = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let d = 0;
    for (let e = 0; e < hd; e++) d += q[h * hd + e]! * k[j * rowF + g * hd + e]!;
    s[j] = d * scale;
  }
  const m = Math.max(...s);
  let sum = 0;
  for (let j = 0; j < n; j++) sum += (s[j] = Math.exp(s[j]! - m));
  for (let j = 0; j < n; j++) s[j]! /= sum;
  return s;
}

/** float64 attention of one query row (nHeads heads) over rows (K and V, rowF floats each, GQA groups). */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, n: number, nHeads: number, nKV: number, hd: number, scale: number): Float64Array {
  const out = new Float64Array(nHeads * hd);
  const rowF = nKV * hd;
  for (let h = 0; h < nHeads; h++) {
    const g = Math.floor(h / (nHeads / nKV));
    const p = headProbs(q, k, n, h, nHeads, nKV, hd, scale);
    for (let j = 0; j < n; j++) for (let e = 0; e < hd; e++) out[h * hd + e] += p[j]! * v[j * rowF + g * hd + e]!;
  }
  return out;
}

/** float64 attention mass of one query row: per position, its softmax probability summed over the heads. */
function referenceMass(q: Float32Array, k: Float32Array, n: number, nHeads: number, nKV: number, hd: number, scale: number): Float64Array {
  const mass = new Float64Array(n);
  for (let h = 0; h < nHeads; h++) {
    const p = headProbs(q, k, n, h, nHeads, nKV, hd, scale);
    for (let j = 0; j < n; j++) mass[j] += p[j]!;
  }
  return mass;
}

describe('attendSplit', () => {
  it.each([[300, 2, 2, 32], [200, 4, 2, 16], [129, 2, 1, 8]] as const)('%i rows, %i heads over %i KV heads of %i: f32 and q8_0 B sets against float64', async (n, nHeads, nKV, hd) => {
    const K = await Kernels.create();
    const r = rng(n + hd);
    const rowF = nKV * hd;
    const kf = randomF32(r, n * rowF, 1);
    const vf = randomF32(r, n * rowF, 1);
    const q = randomF32(r, nHeads * hd, 1);
    const scale = 1 / Math.sqrt(hd);
    const ref = reference(q, kf, vf, n, nHeads, nKV, hd, scale);
    const ws = new AttentionWorkspace(K, { nHeads, headDim: hd, contextLength: n, batch: 2 });
    // B: every third row before the last; A: the others (the last row, the query's own, is A's last).
    const inB = (j: number) => j < n - 1 && j % 3 === 1;
    for (const bType of ['f32', 'q8_0'] as const) {
      const bel = kvElement(bType, nKV, hd);
      const { a, b, qp, viewA, viewB, free } = splitRows(K, kf, vf, q, n, nKV, hd, bel, inB);
      const outs = [K.alloc(4 * nHeads * hd), K.alloc(4 * nHeads * hd)];
      expect(splitFits(ws, nHeads, hd, a, b)).toBe(true);
      const args = (out: number) => ({ q: qp, out, nHeads, nKVHeads: nKV, headDim: hd, qStride: nHeads * hd, scale });
      attendSplit(K, ws, viewA, a, viewB, b, args(outs[0]!), runHere(K));
      // The same partials merged by the scalar twin.
      const sbA = Math.ceil(a / 128);
      const partB = ws.part + nHeads * sbA * (hd + 4) * 4;
      K.k.attn_merge_split_scalar(ws.part, sbA, partB, Math.ceil(b / 128), outs[1]!, nHeads, hd);
      const got = K.f32(outs[0]!, nHeads * hd).slice();
      expect([...K.f32(outs[1]!, nHeads * hd)]).toEqual([...got]);
      const tol = bType === 'f32' ? 2e-6 : 0.03;
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!));
      expect(worst, bType).toBeLessThanOrEqual(tol);
      if (bType === 'q8_0') expect(worst).toBeGreaterThan(0);
      for (const p of outs) K.free(p);
      free();
    }
    ws.dispose();
  });

  it.each([[300, 2, 2, 32], [200, 4, 2, 16], [129, 2, 1, 8], [700, 4, 1, 16]] as const)('attention mass of %i rows, %i heads over %i KV heads of %i: per position against float64, SIMD = scalar twin', async (n, nHeads, nKV, hd) => {
    const K = await Kernels.create();
    const r = rng(3 * n + hd);
    const rowF = nKV * hd;
    // Scores spread wide enough that the blocks' maxima differ (the mass must rescale each block by its own).
    const kf = randomF32(r, n * rowF, 3);
    const vf = randomF32(r, n * rowF, 1);
    const q = randomF32(r, nHeads * hd, 1);
    const scale = 1 / Math.sqrt(hd);
    const ref = referenceMass(q, kf, n, nHeads, nKV, hd, scale);
    const ws = new AttentionWorkspace(K, { nHeads, headDim: hd, contextLength: n, batch: 2 });
    const inB = (j: number) => j < n - 1 && (j % 3 === 1 || (j > 150 && j < 400));
    for (const bType of ['f32', 'q8_0'] as const) {
      const bel = kvElement(bType, nKV, hd);
      const { a, b, qp, viewA, viewB, free } = splitRows(K, kf, vf, q, n, nKV, hd, bel, inB);
      const out = K.alloc(4 * nHeads * hd);
      const exp = K.alloc(4 * nHeads * n);
      const massOut = [K.alloc(4 * n), K.alloc(4 * n)];
      expect(splitFits(ws, nHeads, hd, a, b)).toBe(true);
      attendSplit(K, ws, viewA, a, viewB, b,
        { q: qp, out, nHeads, nKVHeads: nKV, headDim: hd, qStride: nHeads * hd, scale, mass: { exp, out: massOut[0]! } }, runHere(K));
      const sbA = Math.ceil(a / 128);
      const partB = ws.part + nHeads * sbA * (hd + 4) * 4;
      K.k.attn_mass_split_scalar(ws.part, sbA, exp, a, partB, Math.ceil(b / 128), exp + 4 * nHeads * a, b, massOut[1]!, massOut[1]! + 4 * a, nHeads, hd);
      const got = K.f32(massOut[0]!, n).slice();
      expect([...K.f32(massOut[1]!, n)]).toEqual([...got]);
      // Back to positions: A's rows then B's, each in ascending positions.
      const byPos = new Float64Array(n);
      let ia = 0, ib = a;
      for (let j = 0; j < n; j++) byPos[j] = inB(j) ? got[ib++]! : got[ia++]!;
      const tol = bType === 'f32' ? 1e-6 : 0.02;
      let worst = 0, total = 0;
      for (let j = 0; j < n; j++) {
        worst = Math.max(worst, Math.abs(byPos[j]! - ref[j]!));
        total += byPos[j]!;
      }
      expect(worst, bType).toBeLessThanOrEqual(tol);
      expect(total).toBeCloseTo(nHeads, 4);
      for (const p of [out, exp, ...massOut]) K.free(p);
      free();
    }
    ws.dispose();
  });
});
