/**
 * The analytical KV model (engine/kv/analytical.ts): its counts match what real sessions measure, its predictions
 * move the way the model says they must, chooseR honours its clamps, the calibration measures something, and the
 * `plan` command prints every policy and rejects bad flags.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, OutOfMemoryError } from '../engine/index.js';
import type { KVOptions } from '../engine/index.js';
import { attnRowNsAt, autoRule, calibrate, chooseR, copyNs, decodeAttentionNs, kvTokenBytes, optimalR, predict } from '../engine/kv/analytical.js';
import type { CostConstants, ModelShape } from '../engine/kv/analytical.js';
import { Kernels } from '../engine/runtime/kernels.js';
import { MODELS, ROOT } from './shared-paths.js';

const STORIES = join(MODELS, 'stories260K.gguf');

/** Fixed constants (ns) so that the counting and clamping tests do not depend on this machine. */
const C: CostConstants = {
  copyNsPerByte: 0.1, zeroNsPerByte: 0.03, allocFreeNs: 200, attnRowNs: 100, attnCallNs: 500, pagedAttnRowNs: 110,
  pagedAttnCallNs: 500, padRowNs: 0, matmulNsPerByte: { F32: 0.05 }, calibrationMs: 0,
  sizes: { copyBytes: 0, allocBytes: 0, attnRows: 0, matmulBytes: 0, attnBytes: 0 },
};
// stories260K's KV shape.
const SHAPE: ModelShape = { nLayers: 5, nKVHeads: 4, headDim: 8, nHeads: 8, contextLength: 4096, batch: 16, weights: [{ type: 0, bytes: 1_000_000 }] };

describe('predictions', () => {
  it('concat copies grow quadratically with G, bmc:R about G^2/R, static never copies', () => {
    const P = 8;
    const concat = (G: number) => predict(C, SHAPE, P, G, 'concat');
    const a = concat(500);
    const b = concat(1000);
    expect(a.growths).toBe(501); // the prompt's allocation, then one per step
    expect(b.bytesCopied / a.bytesCopied).toBeGreaterThan(3.8);
    expect(b.bytesCopied / a.bytesCopied).toBeLessThan(4.1);
    // Exactly the sum of the live lengths times the bytes of a token.
    expect(a.bytesCopied).toBe(kvTokenBytes(SHAPE) * (500 * P + (499 * 500) / 2));
    for (const R of [8, 32, 128]) {
      const bm = predict(C, SHAPE, P, 1000, `bmc:${R}`);
      const ratio = b.bytesCopied / bm.bytesCopied;
      expect(ratio).toBeGreaterThan(0.8 * (R + 1));
      expect(ratio).toBeLessThan(1.25 * (R + 1));
      expect(bm.growths).toBeLessThanOrEqual(Math.ceil(1000 / (R + 1)) + 1);
    }
    let prev = Infinity;
    for (const R of [1, 4, 16, 64, 256]) {
      const bm = predict(C, SHAPE, P, 1000, { policy: 'bmc', r: R });
      expect(bm.bytesCopied).toBeLessThan(prev);
      prev = bm.bytesCopied;
    }
    for (const G of [1, 100, 2000]) {
      const st = predict(C, SHAPE, P, G, 'static');
      expect(st).toMatchObject({ growths: 0, bytesCopied: 0, peakBytes: SHAPE.contextLength * kvTokenBytes(SHAPE) });
    }
  });

  it('times: static is fastest with c_red = 0, concat slowest, longer generations are slower per token', () => {
    const P = 32;
    const G = 2000;
    const tps = (p: string) => predict(C, SHAPE, P, G, p).tokensPerSecond;
    expect(tps('static')).toBeGreaterThanOrEqual(tps('bmc:64'));
    expect(tps('bmc:64')).toBeGreaterThan(tps('bmc:4'));
    expect(tps('bmc:4')).toBeGreaterThan(tps('concat'));
    expect(predict(C, SHAPE, P, 200, 'bmc:64').msPerToken).toBeLessThan(predict(C, SHAPE, P, 2000, 'bmc:64').msPerToken);
    // Peak memory orders the other way.
    const peak = (p: string) => predict(C, SHAPE, P, G, p).peakBytes;
    expect(peak('concat')).toBeLessThanOrEqual(peak('bmc:64'));
    expect(peak('bmc:64')).toBeLessThan(peak('static'));
    const paged = predict(C, SHAPE, P, G, 'paged:16');
    expect(paged.bytesCopied).toBe(0);
    expect(paged.peakBytes).toBe(Math.ceil((P + G) / 16) * 16 * kvTokenBytes(SHAPE));
  });

  it('rejects lengths past the context', () => {
    expect(() => predict(C, SHAPE, 4000, 200, 'concat')).toThrow(/gen/);
    expect(() => predict(C, SHAPE, 10, 10, 'ring')).toThrow(/--kv/);
  });
});

describe('chooseR', () => {
  it('follows r* and respects kSpec + 1, the context length, G and the budget', () => {
    const P = 100;
    const G = 1000;
    const R = chooseR(C, SHAPE, P, G);
    const rs = optimalR(C, SHAPE, P + G / 2);
    expect(R).toBeGreaterThanOrEqual(rs);
    expect(R).toBeLessThan(rs + 8 + 1e-9); // rounded up to the tile of 8
    expect(R % 8).toBe(0);
    // With c_red = 0 and memory priced in units of c_copy, r* ~ sqrt(2L / memWeight) whatever c_copy is.
    expect(optimalR({ ...C, allocFreeNs: 0 }, SHAPE, 5000)).toBeCloseTo(100, 6);
    expect(optimalR({ ...C, allocFreeNs: 0, copyNsPerByte: 7 }, SHAPE, 5000, { memWeight: 4 })).toBeCloseTo(50, 6);
    // Expensive memory: r* is tiny, the verify pass of kSpec drafts still fits.
    expect(chooseR(C, SHAPE, P, G, { memWeight: 1e6 })).toBe(9);
    expect(chooseR(C, SHAPE, P, G, { memWeight: 1e6, kSpec: 20 })).toBe(21);
    // Memory is free and padded rows cost nothing: r* = inf, so R is what the context (and G) leave.
    expect(optimalR(C, SHAPE, 500, { memWeight: 0 })).toBe(Infinity);
    expect(chooseR(C, SHAPE, P, G, { memWeight: 0 })).toBe(1000); // no more spare rows than steps
    // The context length beats kSpec + 1: only 5 rows are left after the prompt.
    expect(chooseR(C, { ...SHAPE, contextLength: 105 }, P, 3)).toBe(5);
    expect(chooseR(C, { ...SHAPE, contextLength: 110 }, P, 10)).toBe(10);
    // The budget caps the capacity: P + R rows fit in it.
    const B = kvTokenBytes(SHAPE);
    expect(chooseR(C, SHAPE, P, G, { memWeight: 0, budgetBytes: 300 * B + 7 })).toBe(200);
    expect(chooseR(C, SHAPE, P, G, { budgetBytes: (P + 4) * B })).toBe(4); // budget beats kSpec + 1
    expect(() => chooseR(C, SHAPE, P, G, { budgetBytes: (P - 1) * B })).toThrow(OutOfMemoryError);
  });

  it('the auto rule re-chooses r at each growth, grows like sqrt(L), and never passes the budget', () => {
    const rule = autoRule(C, SHAPE);
    expect(rule.initialCapacity(4096)).toBe(0);
    const spare = (len: number) => rule.nextCapacity(len, len + 1, len, 4096) - (len + 1);
    expect(spare(0)).toBeGreaterThanOrEqual(9);
    expect(spare(3000)).toBeGreaterThan(spare(300));
    expect(spare(3000)).toBeLessThan(4 * spare(300));
    expect(rule.nextCapacity(4000, 4001, 4000, 4096)).toBeLessThanOrEqual(4096);
    const B = kvTokenBytes(SHAPE);
    const capped = autoRule(C, SHAPE, { budgetBytes: 1000 * B });
    expect(capped.nextCapacity(990, 991, 990, 4096)).toBe(1000);
    expect(() => capped.nextCapacity(1000, 1001, 1000, 4096)).toThrow(OutOfMemoryError);
    const auto = predict(C, SHAPE, 32, 900, 'auto', { budgetBytes: 1000 * B });
    expect(auto.peakBytes).toBeLessThanOrEqual(1000 * B);
    expect(() => predict(C, SHAPE, 32, 1000, { policy: 'auto', budgetBytes: 1000 * B })).toThrow(OutOfMemoryError);
  });
});

describe('counts match real sessions on stories260K', () => {
  it('growths, bytes copied, capacity and peak equal session.kvStats() for every policy', async () => {
    const ctx = 256;
    const batch = 16;
    const baseShape: ModelShape = { nLayers: 5, nKVHeads: 4, headDim: 8, contextLength: ctx, batch };
    const cases: Array<[number, number, KVOptions]> = [
      [37, 60, { policy: 'concat' }], [37, 60, { policy: 'static' }], [37, 100, { policy: 'bmc', r: 5 }],
      [5, 120, { policy: 'bmc', r: 16 }], [40, 100, { policy: 'bmc', r: 64 }], [33, 90, { policy: 'paged', blockSize: 16 }],
      [20, 80, { policy: 'paged', blockSize: 7 }],
      // Other element types: rows of fewer bytes, f32 staging rows.
      [37, 60, { policy: 'concat', type: 'f16' }], [40, 100, { policy: 'bmc', r: 64, type: 'q8_0' }],
      [33, 90, { policy: 'paged', blockSize: 16, type: 'q8_0' }],
    ];
    for (const [P, G, kv] of cases) {
      const m = await loadModel(STORIES, { kv, contextLength: ctx, batchSize: batch });
      const shape: ModelShape = { ...baseShape, kvType: kv.type };
      expect(kvTokenBytes(shape)).toBe(m.info.memory!.kvPerToken);
      const s = m.createSession();
      await s.eval(Array.from({ length: P }, (_, i) => 1 + ((i * 7) % 500)));
      for (let i = 0; i < G; i++) await s.eval([1 + ((i * 13) % 500)]);
      const st = s.kvStats();
      const p = predict(C, shape, P, G, kv);
      const label = `${kv.policy} P=${P} G=${G}`;
      expect({ label, growths: st.growths, bytesCopied: st.bytesCopied, capacity: st.capacity, peak: st.peakBytes, over: st.overheadBytes })
        .toEqual({ label, growths: p.growths, bytesCopied: p.bytesCopied, capacity: p.capacity, peak: p.peakBytes, over: p.overheadBytes });
      expect(st.length).toBe(P + G);
      m.dispose();
    }
  });

  it("kv: { policy: 'auto', budgetBytes } runs, keeps kSpec + 1 spare rows after a growth and stays in the budget", async () => {
    const ctx = 512;
    const B = 2 * 5 * 4 * 8 * 4;
    const m = await loadModel(STORIES, { kv: { policy: 'auto', budgetBytes: 300 * B }, contextLength: ctx, batchSize: 16 });
    const ref = await loadModel(STORIES, { kv: { policy: 'static' }, contextLength: ctx, batchSize: 16 });
    const s = m.createSession();
    const r = ref.createSession();
    const ids = Array.from({ length: 20 }, (_, i) => 1 + i * 11);
    expect(Array.from(await s.eval(ids))).toEqual(Array.from(await r.eval(ids)));
    let st = s.kvStats();
    expect(st.policy).toBe('auto');
    expect(st.capacity - st.length).toBeGreaterThanOrEqual(9);
    for (let i = 0; i < 260; i++) {
      const before = s.kvStats();
      const a = await s.eval([1 + i]);
      expect(Array.from(a)).toEqual(Array.from(await r.eval([1 + i])));
      st = s.kvStats();
      if (st.growths > before.growths && st.capacity < 300) expect(st.capacity - st.length).toBeGreaterThanOrEqual(8);
      expect(st.bytes).toBeLessThanOrEqual(300 * B);
    }
    expect(st.growths).toBeGreaterThan(1);
    expect(st.growths).toBeLessThan(60);
    await expect(s.eval(Array.from({ length: 30 }, () => 5))).rejects.toThrow(OutOfMemoryError);
    m.dispose();
    ref.dispose();
  });
});

describe('copy cost by size', () => {
  const CL: CostConstants = { ...C, copyNsPerByteLarge: 0.3, sizes: { ...C.sizes, copyBytes: 1000, copyBytesLarge: 3000 } };
  it('growths copy at the memory rate when it was measured (whatever the size), else at the in-cache rate', () => {
    expect(copyNs(CL, 500)).toBeCloseTo(150, 9);
    expect(copyNs(CL, 1e6)).toBeCloseTo(3e5, 6);
    expect(copyNs(C, 500)).toBeCloseTo(50, 9);
    expect(copyNs(C, 1e6)).toBeCloseTo(1e5, 6);
  });
  it('a concat prediction pays the memory rate; bmc, copying rarely, hardly moves', () => {
    const big: CostConstants = { ...C, copyNsPerByteLarge: 0.3, sizes: { ...C.sizes, copyBytes: 1 << 16, copyBytesLarge: 1 << 20 } };
    const concat = (c: CostConstants) => predict(c, SHAPE, 8, 2000, 'concat');
    expect(concat(big).bytesCopied).toBe(concat(C).bytesCopied);
    expect(concat(big).decodeOverheadNs / concat(C).decodeOverheadNs).toBeGreaterThan(2);
    const bmc = (c: CostConstants) => predict(c, SHAPE, 8, 2000, 'bmc:256');
    expect(bmc(big).msPerToken / bmc(C).msPerToken).toBeLessThan(1.05);
  });
});

describe('attention cost by cache size', () => {
  // In cache 100 ns per row (paged 110) up to 1 KiB of KV, from memory 300 (paged 400) from 16 KiB on.
  const CA: CostConstants = { ...C, attnRowNsLarge: 300, pagedAttnRowNsLarge: 400, sizes: { ...C.sizes, attnBytes: 1024, attnBytesLarge: 16384 } };
  it('in-cache rate up to the small size, memory rate from the large one, linear in log bytes between', () => {
    expect(attnRowNsAt(CA, 512)).toBe(100);
    expect(attnRowNsAt(CA, 1024)).toBe(100);
    expect(attnRowNsAt(CA, 4096)).toBeCloseTo(200, 9); // two of the four doublings
    expect(attnRowNsAt(CA, 2048)).toBeCloseTo(150, 9);
    expect(attnRowNsAt(CA, 16384)).toBe(300);
    expect(attnRowNsAt(CA, 1e9)).toBe(300);
    expect(attnRowNsAt(CA, 4096, true)).toBeCloseTo(110 + (400 - 110) / 2, 9);
    expect(attnRowNsAt(C, 1e9)).toBe(100); // not measured: one rate
    expect(attnRowNsAt(C, 1e9, true)).toBe(110);
  });
  it('a prediction sums every step at its own rate; without a memory rate it is the closed form', () => {
    const B = kvTokenBytes(SHAPE);
    expect(decodeAttentionNs(C, SHAPE, 8, 108)).toBeCloseTo(SHAPE.nLayers * (100 * 500 + 100 * (100 * 8 + (100 * 101) / 2)), 3);
    let sum = 0;
    for (let len = 9; len <= 108; len++) sum += 500 + len * attnRowNsAt(CA, len * B);
    expect(decodeAttentionNs(CA, SHAPE, 8, 108)).toBeCloseTo(SHAPE.nLayers * sum, 3);
    const slower = predict(CA, SHAPE, 8, 100, 'static').msPerToken - predict(C, SHAPE, 8, 100, 'static').msPerToken;
    expect(slower * 1e6 * 100).toBeCloseTo(decodeAttentionNs(CA, SHAPE, 8, 108) - decodeAttentionNs(C, SHAPE, 8, 108), 3);
  });
});

describe('calibrate', () => {
  it('measures a second copy rate past the cache when asked, and none with largeCopyBytes 0', async () => {
    const kern = await Kernels.create();
    const before = kern.stats().bytesInUse;
    const c = calibrate(kern, { ...SHAPE, contextLength: 256 }, { copyBytes: 1 << 20, largeCopyBytes: 4 << 20, attnRows: 64, reps: 3 });
    expect(c.sizes.copyBytesLarge).toBe(4 << 20);
    expect(Number.isFinite(c.copyNsPerByteLarge)).toBe(true);
    expect(c.copyNsPerByteLarge).toBeGreaterThan(0);
    const d = calibrate(kern, { ...SHAPE, contextLength: 256 }, { copyBytes: 1 << 20, largeCopyBytes: 0, attnRows: 64, reps: 3 });
    expect(d.copyNsPerByteLarge).toBeUndefined();
    expect(d.sizes.copyBytesLarge).toBeUndefined();
    expect(kern.stats().bytesInUse).toBe(before);
  });

  it('times attention past the cache on the kernel threads when they are the model threads, and not otherwise', async () => {
    const kern = await Kernels.create({ threads: 2 });
    try {
      const before = kern.stats().bytesInUse;
      const shape = { ...SHAPE, contextLength: 256 };
      const c = calibrate(kern, shape, { copyBytes: 1 << 20, largeCopyBytes: 0, attnRows: 64, largeAttnBytes: 4 << 20, threads: kern.threads, reps: 3 });
      expect(c.sizes.attnBytesLarge).toBe(4 << 20);
      expect(c.sizes.attnBytes).toBe(2 * 64 * kvTokenBytes(shape) / (2 * SHAPE.nLayers));
      for (const v of [c.attnRowNsLarge!, c.pagedAttnRowNsLarge!]) {
        expect(Number.isFinite(v)).toBe(true);
        expect(v).toBeGreaterThan(0);
      }
      expect(kern.stats().bytesInUse).toBe(before);
      // One thread asked for on a two-thread instance, or 0 bytes: no measurement.
      expect(calibrate(kern, shape, { copyBytes: 1 << 20, largeCopyBytes: 0, attnRows: 64, largeAttnBytes: 4 << 20, threads: 1, reps: 3 }).attnRowNsLarge).toBeUndefined();
      expect(calibrate(kern, shape, { copyBytes: 1 << 20, largeCopyBytes: 0, attnRows: 64, largeAttnBytes: 0, threads: kern.threads, reps: 3 }).attnRowNsLarge).toBeUndefined();
    } finally {
      kern.dispose();
    }
  });

  it('measures positive, finite constants on this machine (reduced sizes)', async () => {
    const kern = await Kernels.create();
    const before = kern.stats().bytesInUse;
    const weights = [{ type: 8, bytes: 1 << 20 }, { type: 12, bytes: 1 << 20 }, { type: 14, bytes: 1 << 20 }]; // Q8_0, Q4_K, Q6_K
    const c = calibrate(kern, { ...SHAPE, contextLength: 256, weights }, { copyBytes: 1 << 20, attnRows: 128, matmulBytes: 1 << 18, reps: 3 });
    const m = c.matmulNsPerByte;
    for (const v of [c.copyNsPerByte, c.zeroNsPerByte, c.allocFreeNs, c.attnRowNs, c.pagedAttnRowNs, m.Q8_0!, m.Q4_K!, m.Q6_K!]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    expect(c.padRowNs).toBe(0);
    expect(c.copyNsPerByte).toBeLessThan(10); // more than 0.1 GB/s
    expect(c.calibrationMs).toBeLessThan(2000);
    expect(kern.stats().bytesInUse).toBe(before); // everything freed
    expect(kern.stats().bytesCopied).toBe(0); // not counted as KV growth traffic
  });
});

describe('bmc-llm plan', () => {
  const CLI = join(ROOT, 'dist/cli.js');
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, BMC_LLM_MODEL: '' }, timeout: 60_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  it('prints a table with every policy and the chosen R; --json gives the same as data', () => {
    const r = cli(['plan', '-m', STORIES, '--prompt', '32', '--gen', '200']);
    expect(r.code).toBe(0);
    for (const p of ['concat', 'static', 'bmc:16', 'bmc:64', 'bmc:256', 'paged:16', 'auto']) expect(r.out).toMatch(new RegExp(`^${p}\\s`, 'm'));
    expect(r.out).toMatch(/tok\/s/);
    expect(r.out).toMatch(/chosen R: \d+/);
    expect(r.out).toMatch(/copy\s+[0-9.]+ ns\/B/);
    const j = cli(['plan', '-m', STORIES, '--prompt', '32', '--gen', '200', '--budget', '1000000', '--json']);
    expect(j.code).toBe(0);
    const data = JSON.parse(j.out) as { predictions: Array<{ policy: string; growths: number; peakBytes: number }>; chosenR: number; constants: CostConstants };
    expect(data.predictions.map((p) => p.policy)).toEqual(['concat', 'static', 'bmc:16', 'bmc:64', 'bmc:256', 'paged:16', 'auto']);
    expect(data.predictions[0]!.growths).toBe(201);
    expect(data.predictions.find((p) => p.policy === 'auto')!.peakBytes).toBeLessThanOrEqual(1000000);
    expect(data.chosenR).toBeGreaterThanOrEqual(9);
    expect(data.constants.copyNsPerByte).toBeGreaterThan(0);
  });

  it('--kv-type prices rows of that type: half the KV bytes per token for f16, and fewer bytes copied', () => {
    const run = (t: string) => JSON.parse(cli(['plan', '-m', STORIES, '--prompt', '32', '--gen', '200', '--kv-type', t, '--json']).out) as
      { shape: { kvTokenBytes: number }; predictions: Array<{ policy: string; bytesCopied: number }> };
    const f32 = run('f32'), f16 = run('f16'), q8 = run('q8_0');
    expect(f16.shape.kvTokenBytes * 2).toBe(f32.shape.kvTokenBytes);
    expect(q8.shape.kvTokenBytes).toBe((f32.shape.kvTokenBytes / 4) * (10 / 8)); // head size 8: blocks of 8 values in 10 bytes
    const concat = (x: typeof f32) => x.predictions.find((p) => p.policy === 'concat')!.bytesCopied;
    expect(concat(f16) * 2).toBe(concat(f32));
  });

  it('--measure times real decode steps: a larger base step than the weight-bytes estimate on a call-bound model', () => {
    const est = JSON.parse(cli(['plan', '-m', STORIES, '--prompt', '32', '--gen', '64', '--json']).out) as { baseTokenNs: number };
    const r = cli(['plan', '-m', STORIES, '--prompt', '32', '--gen', '64', '--measure', '16', '--json']);
    expect(r.code).toBe(0);
    const m = JSON.parse(r.out) as { baseTokenNs: number };
    expect(m.baseTokenNs).toBeGreaterThan(est.baseTokenNs);
    expect(cli(['plan', '-m', STORIES, '--measure', '0']).code).toBe(2);
  });

  it('bad flags exit 2 naming the flag', () => {
    for (const [args, flag] of [
      [['--gen', 'lots'], '--gen'], [['--prompt', '0'], '--prompt'], [['--gen', '100000'], '--gen'],
      [['--budget', '1000'], '--budget'], [['--policies', 'concat,ring'], '--policies'], [['--frobnicate'], '--frobnicate'],
      [['--kv-type', 'f8'], '--kv-type'],
    ] as const) {
      const r = cli(['plan', '-m', STORIES, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain(flag);
      expect(r.out).toBe('');
    }
  });
});
