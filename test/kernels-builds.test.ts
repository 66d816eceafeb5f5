// The two kernel builds (plain SIMD, relaxed SIMD): start-up detection, the fallback, and that the quantized matmuls
// of both builds and the scalar twins agree bit for bit, also at the extremes of the integer ranges.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { Kernels, relaxedSimdSupported, resolveSimd } from '../engine/runtime/kernels.js';
import { MODELS, requireShared } from './shared-paths.js';
import { BLOCK_BYTES, halfToNumber, numberToHalf, randomBlocks, randomF32, rng } from './kernels-ref.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TYPES = ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'] as const;
type QType = typeof TYPES[number];

describe('kernel build selection', () => {
  it('the test runtime has relaxed SIMD (Node 20: vitest.config.ts passes the V8 flag), and auto picks it', async () => {
    expect(relaxedSimdSupported()).toBe(true);
    expect(resolveSimd('auto')).toBe('relaxed');
    const K = await Kernels.create();
    expect(K.simd).toBe('relaxed');
    expect((await Kernels.create({ simd: 'plain' })).simd).toBe('plain');
    expect(() => resolveSimd('avx' as 'plain')).toThrow(/simd/);
  });

  it('a runtime without relaxed SIMD gets the plain build, and forcing relaxed there fails', () => {
    // A child process without the V8 flag: on Node 20 relaxed SIMD is off there (on Node 22+ it is on by default).
    const code = `const m = await import('./engine/runtime/kernels.ts');
const K = await m.Kernels.create();
const forced = await m.Kernels.create({ simd: 'relaxed' }).then((k) => k.simd, (e) => e.code);
console.log(JSON.stringify({ supported: m.relaxedSimdSupported(), simd: K.simd, forced }));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { supported: boolean; simd: string; forced: string };
    expect(got.simd).toBe(got.supported ? 'relaxed' : 'plain');
    expect(got.forced).toBe(got.supported ? 'relaxed' : 'UNSUPPORTED');
    if (Number(process.versions.node.split('.')[0]) === 20) expect(got.supported).toBe(false);
  });
});

/** Quantizes x (n rows of cols) in K and runs matmul_<type><suffix> over rows [r0, r1) into a NaN-filled Y. */
function run(K: Kernels, type: QType, suffix: '' | '_scalar', w: Uint8Array, x: Float32Array, rows: number, cols: number, n: number,
  r0: number, r1: number): Float32Array {
  const withSum = type === 'q4_1' || type === 'q5_1';
  const pw = K.alloc(w.length);
  K.write(pw, w);
  const px = K.alloc(x.byteLength);
  K.write(px, x);
  const pq = K.alloc(n * (cols / 32) * (withSum ? 36 : 34));
  K.k[withSum ? 'quantize_q8_1' : 'quantize_q8_0'](px, pq, n * cols);
  const py = K.alloc(n * rows * 4);
  K.f32(py, n * rows).fill(NaN);
  K.k[`matmul_${type}${suffix}`](pw, pq, py, rows, cols, n, rows, r0, r1);
  const y = K.f32(py, n * rows).slice();
  for (const p of [pw, px, pq, py]) K.free(p);
  return y;
}

/** Weight blocks with every quant at its largest (maxQ) or smallest magnitude, scale 1. */
function extremeBlocks(type: QType, nBlocks: number, high: boolean, r: () => number): Uint8Array {
  const bs = BLOCK_BYTES[type]!;
  const out = new Uint8Array(nBlocks * bs);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < nBlocks; i++) {
    const b = i * bs;
    dv.setUint16(b, 0x3c00, true); // d = 1
    if (type === 'q8_0') {
      for (let k = 0; k < 32; k++) out[b + 2 + k] = high ? (r() < 0.5 ? 0x80 : 0x7f) : (r() < 0.5 ? 0x81 : 0x7f); // -128/127 or ±127
      continue;
    }
    const hasM = type === 'q4_1' || type === 'q5_1';
    if (hasM) dv.setUint16(b + 2, 0xbc00, true); // m = -1
    const q5 = type === 'q5_0' || type === 'q5_1';
    const qh = b + (hasM ? 4 : 2);
    const qs = q5 ? qh + 4 : b + (hasM ? 4 : 2);
    for (let j = 0; j < 16; j++) out[qs + j] = high ? 0xff : 0x00;
    if (q5) dv.setUint32(qh, high ? 0xffffffff : 0, true);
  }
  return out;
}

describe('quantized matmuls: plain build == relaxed build == scalar twin', () => {
  const SHAPES = [
    { rows: 70, cols: 320, n: 1, r0: 0, r1: 70 },
    { rows: 70, cols: 320, n: 3, r0: 5, r1: 67 },
    { rows: 45, cols: 96, n: 8, r0: 0, r1: 45 },
    { rows: 45, cols: 96, n: 9, r0: 1, r1: 44 },
    { rows: 33, cols: 64, n: 17, r0: 3, r1: 30 },
    { rows: 19, cols: 32, n: 12, r0: 0, r1: 19 },
  ];

  for (const type of TYPES) {
    it(`matmul_${type}: random blocks, tails, row ranges, decode and prefill tiles`, async () => {
      const P = await Kernels.create({ simd: 'plain' });
      const R = await Kernels.create({ simd: 'relaxed' });
      const r = rng(70 + type.charCodeAt(1) * 5 + type.charCodeAt(3));
      for (const s of SHAPES) {
        const w = randomBlocks(r, type, s.rows * (s.cols / 32));
        const x = randomF32(r, s.n * s.cols, 3);
        const a = run(P, type, '', w, x, s.rows, s.cols, s.n, s.r0, s.r1);
        const b = run(R, type, '', w, x, s.rows, s.cols, s.n, s.r0, s.r1);
        const c = run(P, type, '_scalar', w, x, s.rows, s.cols, s.n, s.r0, s.r1);
        const d = run(R, type, '_scalar', w, x, s.rows, s.cols, s.n, s.r0, s.r1);
        expect(b, `${type} ${JSON.stringify(s)} relaxed vs plain`).toEqual(a);
        expect(a, `${type} ${JSON.stringify(s)} plain vs scalar`).toEqual(c);
        expect(d, `${type} ${JSON.stringify(s)} relaxed build's scalar`).toEqual(c);
      }
      expect(P.stats().bytesInUse).toBe(0);
      expect(R.stats().bytesInUse).toBe(0);
    });

    it(`matmul_${type}: extreme quants (largest products and sums of the integer dot products)`, async () => {
      const P = await Kernels.create({ simd: 'plain' });
      const R = await Kernels.create({ simd: 'relaxed' });
      const r = rng(90 + type.charCodeAt(3));
      const rows = 9, cols = 256, nb = cols / 32;
      for (const high of [true, false]) {
        const w = extremeBlocks(type, rows * nb, high, r);
        for (const n of [1, 4, 8]) {
          // Activation rows of all +1 or all -1 (every quant ±127), and mixed signs.
          const x = new Float32Array(n * cols);
          for (let t = 0; t < n; t++) for (let c = 0; c < cols; c++) x[t * cols + c] = t % 3 === 0 ? 1 : t % 3 === 1 ? -1 : (r() < 0.5 ? -1 : 1);
          const a = run(P, type, '', w, x, rows, cols, n, 0, rows);
          const b = run(R, type, '', w, x, rows, cols, n, 0, rows);
          const c = run(P, type, '_scalar', w, x, rows, cols, n, 0, rows);
          expect(a, `${type} high=${high} n=${n} plain`).toEqual(c);
          expect(b, `${type} high=${high} n=${n} relaxed`).toEqual(c);
          // Sanity of the scalar twin itself: q4_0 weights all 15 - 8 = 7 (d = 1) against a row of ones (quants 127).
          if (high && type === 'q4_0') {
            const dx = halfToNumber(numberToHalf(Math.fround(1 / 127)));
            let want = 0;
            for (let b = 0; b < nb; b++) want = Math.fround(want + Math.fround(dx * 7 * 127 * 32));
            expect(c[0]).toBe(want);
          }
        }
      }
    });
  }
});

describe('models on both builds', () => {
  for (const name of ['synth-d256-q4_0', 'synth-d256-q4_1', 'synth-d256-q5_0', 'synth-d256-q5_1', 'synth-d256-q8_0']) {
    it(`${name}: the same logits bit for bit, prefill and decode`, async () => {
      requireShared();
      const logits: Float32Array[][] = [];
      for (const simd of ['plain', 'relaxed'] as const) {
        const model = await loadModel(join(MODELS, `${name}.gguf`), { contextLength: 64, threads: 1, simd });
        expect(model.info.simd).toBe(simd);
        const s = model.createSession();
        const out = [await s.eval([1, 5, 9, 14, 2, 7, 30, 11, 4], { logits: 'all' })]; // 9 rows: prefill tiles and a tail
        for (let g = 0; g < 3; g++) out.push(await s.eval([(g * 37) % 100 + 3]));
        logits.push(out);
        model.dispose();
      }
      for (let i = 0; i < logits[0]!.length; i++) expect(logits[1]![i], `step ${i}`).toEqual(logits[0]![i]);
    });
  }
});
