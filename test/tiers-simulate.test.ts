/**
 * The two-tier placement simulator (engine/tiers/simulate.ts): byte accounting on a hand-worked trace, invariants
 * (capacity, the lower bound, unlimited fast memory = ideal), the policy ordering on synthetic traces, and the
 * simulated annealing over (W, R).
 */
import { describe, expect, it } from 'vitest';
import { OptionError } from '../engine/errors.js';
import { accessTrace, annealWR, gh200Model, lowerBound, simulatePlacement } from '../engine/tiers/simulate.js';
import type { MemoryModel, PolicyName, SimulationReport } from '../engine/tiers/simulate.js';
import { synthTrace } from '../engine/tiers/synth-trace.js';
import type { AttentionTrace } from '../engine/tiers/trace.js';

/** A one-layer trace from explicit reads: step s reads reads[s] (equal masses) with ctx0 + s tokens in the cache. */
function traceOfReads(ctx0: number, reads: number[][], layers = 1): AttentionTrace {
  return {
    nLayers: layers,
    meta: {},
    records: reads.map((r, s) => Array.from({ length: layers }, () => ({
      ctxLen: ctx0 + s, index: Uint32Array.from(r), mass: new Float32Array(r.length).fill(1 / r.length), residual: 0,
    }))),
  };
}

const unit: MemoryModel = { fastBytes: 2, fastBw: 1, slowBw: 1, linkBw: 1, weightBytes: 0, intermediateBytes: 0, kvBytesPerToken: 1 };
const byPolicy = (r: SimulationReport) => Object.fromEntries(r.results.map((x) => [x.policy, x])) as Record<PolicyName, SimulationReport['results'][0]>;

describe('two-tier simulator', () => {
  it('counts the bytes of each tier by hand on a small trace (static and reactive)', () => {
    // 4 prompt tokens, 2 hot rows; step 0 reads 0 and 3, step 1 reads 3 and 4, step 2 reads 3, 4, 5.
    const tr = traceOfReads(4, [[0, 3], [3, 4], [3, 4, 5]]);
    const r = byPolicy(simulatePlacement(tr, unit, { policies: ['static', 'reactive'] }));
    // Static: rows 0, 1 hot. Step 0: fast 1 (row 0), slow 1 (row 3). Step 1: row 4 written cold, rows 3, 4 read cold:
    // slow 3. Step 2: row 5 written cold, rows 3, 4, 5 read cold: slow 4. Total 1 + 3 + 4.
    expect(r.static.timeS).toBe(8);
    expect(r.static.hitRate).toBeCloseTo(1 / 7, 12);
    expect(r.static.migratedBytes).toBe(0);
    expect(r.static.fastBound).toBe(0); // step 0 ties (1 and 1); steps 1 and 2 wait on the slow tier
    // Reactive (LRU; the prompt leaves rows 2, 3 hot). Step 0: read 0 cold (slow 1), 3 hot (fast 1); evict 2 (first
    // demotion: fast 1 + slow 1), promote the staged 0 (fast 1): max(3, 2) = 3. Step 1: evict 3 (fast 1 + slow 1),
    // write 4 hot (fast 1), read 3 cold (slow 1), 4 hot (fast 1); evict 0 (already in the slow tier: free), promote
    // the staged 3 (fast 1): max(4, 2) = 4. Step 2: evict 4 (fast 1 + slow 1), write 5 hot (fast 1), read 3, 5 hot
    // (fast 2), 4 cold (slow 1); every hot row was read at this step, so 4 is not promoted: max(4, 2) = 4.
    expect(r.reactive.timeS).toBe(11);
    expect(r.reactive.hitRate).toBeCloseTo(4 / 7, 12);
    expect(r.reactive.promotions).toBe(2);
    expect(r.reactive.demotions).toBe(4);
    expect(r.reactive.migratedBytes).toBe(2 + 3); // two promotions, three first demotions (0's was free)
    expect(r.reactive.fastBound).toBe(1); // 3 > 2, 4 > 2, 4 > 2
  });

  it('sparsity reads only the top share of the context', () => {
    const tr: AttentionTrace = {
      nLayers: 1, meta: {},
      records: [[{ ctxLen: 10, index: null, mass: new Float32Array([0.3, 0, 0.05, 0.1, 0.05, 0.2, 0.1, 0.1, 0.05, 0.05]), residual: 0 }]],
    };
    expect(Array.from(accessTrace(tr).idx[0]!)).toEqual([0, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(accessTrace(tr, 0.7).idx[0]!)).toEqual([0, 3, 5]); // ties at 0.1: the lower index
    expect(() => accessTrace(tr, 1)).toThrow(OptionError);
    // A mass threshold drops the tokens at or below it (with a top share too: both go by mass).
    expect(Array.from(accessTrace(tr, 0, 0.06).idx[0]!)).toEqual([0, 3, 5, 6, 7]);
    expect(Array.from(accessTrace(tr, 0.7, 0.15).idx[0]!)).toEqual([0, 5]);
    expect(() => accessTrace(tr, 0, -0.1)).toThrow(/minMass/);
    expect(() => accessTrace(tr, 0, 1)).toThrow(/minMass/);
    // An exact reader reads every token, the one stored as 0 too, and takes no threshold or share.
    const ex = accessTrace(tr, 0, 0, true);
    expect(Array.from(ex.idx[0]!)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ex.mass[0]![1]).toBe(0);
    expect(ex.mass[0]![5]).toBeCloseTo(0.2, 6);
    expect(() => accessTrace(tr, 0.5, 0, true)).toThrow(/exact/);
    expect(() => accessTrace(tr, 0, 0.01, true)).toThrow(/exact/);
  });

  it('an exact reader reads the tokens a top-k record left out, and every policy that moves rows trails static', () => {
    // Sparse records keep the top 2 tokens; an exact reader still reads all 8 (with mass 0 for the rest).
    const rec = (ctxLen: number, keep: number[]) => ({ ctxLen, index: Uint32Array.from(keep), mass: Float32Array.from(keep, () => 0.4), residual: 0.2 });
    const records = Array.from({ length: 24 }, (_, s) => [rec(8 + s, [0, 7 + s])]);
    const tr: AttentionTrace = { nLayers: 1, meta: { kvBytesPerToken: 64 }, records };
    const acc = accessTrace(tr, 0, 0, true);
    expect(acc.idx.map((x) => x.length)).toEqual(records.map((r) => r[0]!.ctxLen));
    expect(accessTrace(tr).idx.every((x) => x.length === 2)).toBe(true);
    // Every row is read at every step, so no move saves a read: static (no moves) is the floor the oracle finds, and
    // writing each new row hot makes reactive and the online policy pay a fast-tier read for the row pushed out.
    const model = gh200Model(tr, { fastFraction: 0.25 });
    const rep = simulatePlacement(tr, model, { exact: true, policies: ['static', 'reactive', 'online', 'oracle'] });
    expect(rep.exact).toBe(true);
    const t = Object.fromEntries(rep.results.map((r) => [r.policy, r]));
    expect(t.oracle!.timeS).toBeCloseTo(t.static!.timeS, 15);
    expect(t.reactive!.timeS).toBeGreaterThan(t.static!.timeS);
    expect(t.online!.timeS).toBeGreaterThan(t.static!.timeS);
    expect(t.reactive!.hitRate).toBeCloseTo(t.static!.hitRate, 12);
  });

  const traces = [
    { sparsity: 0.6, variation: 0.3, seed: 21 },
    { sparsity: 0.6, variation: 0.8, seed: 22 },
    { sparsity: 0.8, variation: 0.5, seed: 23 },
    { sparsity: 0.4, variation: 0.2, seed: 24 },
  ].map((o) => ({ o, tr: synthTrace({ layers: 2, prompt: 192, steps: 96, ...o }) }));

  it('invariants: every policy stays within capacity (the replay throws otherwise) and above the lower bound; ideal is all-fast', () => {
    for (const { tr } of traces) {
      const model = gh200Model(tr);
      const rep = simulatePlacement(tr, model);
      const acc = accessTrace(tr);
      // Ideal from first principles: every read and every new row from the fast tier, prompt placement free.
      let ideal = 0;
      for (let s = 0; s < acc.nSteps; s++) {
        for (let l = 0; l < acc.nLayers; l++) {
          const bytes = model.weightBytes / acc.nLayers + model.intermediateBytes + (acc.idx[s * acc.nLayers + l]!.length + (s > 0 ? 1 : 0)) * model.kvBytesPerToken;
          ideal += bytes / model.fastBw;
        }
      }
      const r = byPolicy(rep);
      expect(r.ideal.timeS).toBeCloseTo(ideal, 15);
      expect(r.ideal.hitRate).toBe(1);
      expect(rep.lowerBoundS).toBe(lowerBound(acc, model));
      for (const x of rep.results) {
        expect(x.timeS).toBeGreaterThanOrEqual(rep.lowerBoundS * (1 - 1e-12));
        expect(x.hitRate).toBeGreaterThanOrEqual(0);
        expect(x.hitRate).toBeLessThanOrEqual(1);
      }
      // Parallel tiers: the floor is below the ideal by at most slow / (fast + slow).
      expect(rep.lowerBoundS).toBeLessThanOrEqual(r.ideal.timeS);
      expect(rep.lowerBoundS).toBeGreaterThanOrEqual(r.ideal.timeS * model.fastBw / (model.fastBw + model.slowBw) * (1 - 1e-12));
    }
  });

  it('with fast memory for the whole trace every policy equals the ideal, with no migration', () => {
    const { tr } = traces[0]!;
    const model = { ...gh200Model(tr), fastBytes: 1e12 };
    const rep = simulatePlacement(tr, model);
    const ideal = byPolicy(rep).ideal.timeS;
    for (const x of rep.results) {
      expect(x.timeS).toBeCloseTo(ideal, 15);
      expect(x.hitRate).toBe(1);
      expect(x.migratedBytes).toBe(0);
    }
  });

  it('ordering: oracle >= online >= reactive >= static in throughput; per-token beats page-granular', () => {
    for (const { o, tr } of traces) {
      const r = byPolicy(simulatePlacement(tr, gh200Model(tr)));
      const label = JSON.stringify(o);
      expect(r.oracle.throughputVsStatic, label).toBeGreaterThanOrEqual(r.online.throughputVsStatic);
      expect(r.online.throughputVsStatic, label).toBeGreaterThanOrEqual(r.reactive.throughputVsStatic);
      expect(r.reactive.throughputVsStatic, label).toBeGreaterThan(1);
      expect(r.oracle.throughputVsStatic, label).toBeGreaterThan(r.page.throughputVsStatic);
      expect(r.oracle.hitRate, label).toBeGreaterThan(r.static.hitRate);
    }
  });

  it('the annealed oracle reaches the best (W, R) of its family on a small trace, and beats the online policy there', () => {
    // Low sparsity and high variation: before the descent after the annealing, the paper's stop left the oracle 0.5%
    // behind the online policy on this trace (W 7, R 0.5); the best of the grid is W 3, R 0.9.
    const tr = synthTrace({ layers: 2, prompt: 256, steps: 128, sparsity: 0.4, variation: 1, seed: 11 });
    const model = gh200Model(tr);
    const r = byPolicy(simulatePlacement(tr, model, { policies: ['static', 'online', 'oracle'] }));
    let grid = Infinity;
    for (let w = 1; w <= 8; w++) {
      for (let r10 = 0; r10 <= 10; r10++) {
        const at = simulatePlacement(tr, model, { policies: ['oracle'], anneal: { w0: w, r0: r10 / 10, maxEvals: 1 } });
        grid = Math.min(grid, byPolicy(at).oracle.timeS);
      }
    }
    expect(r.oracle.timeS).toBeLessThanOrEqual(grid);
    expect(r.oracle.timeS).toBeLessThan(r.online.timeS);
  });

  it('the coarse scan before the annealing finds the valley the walk alone misses: the grid minimum on two traces', () => {
    // On these traces the surface has two valleys (a short window migrating much, a longer one migrating little or
    // nothing); started at W 8, R 0.5, the annealing alone ended 0.7-4% above the grid's minimum for some seeds (for
    // the first trace, all of these five but seed 2), settling in the valley it started near.
    for (const opts of [{ sparsity: 0.8, variation: 0.2, seed: 2 }, { sparsity: 0.6, variation: 0.8, seed: 3 }]) {
      const tr = synthTrace({ layers: 1, prompt: 192, steps: 96, ...opts });
      const model = gh200Model(tr);
      const grid = new Map<number, number>();
      for (let w = 1; w <= 64; w++) {
        for (let r10 = 0; r10 <= 10; r10++) {
          const at = simulatePlacement(tr, model, { policies: ['oracle'], anneal: { w0: w, r0: r10 / 10, maxEvals: 1 } });
          grid.set(w * 16 + r10, byPolicy(at).oracle.timeS);
        }
      }
      const min = Math.min(...grid.values());
      for (const seed of [1, 2, 3, 4, 5]) {
        const a = annealWR((w, r) => grid.get(w * 16 + Math.round(r * 10))!, { seed, wMax: 64 });
        expect(a.cost, `sparsity ${opts.sparsity}, variation ${opts.variation}, annealing seed ${seed}`).toBe(min);
      }
      // The simulator's own search (seed 1) lands there too.
      expect(byPolicy(simulatePlacement(tr, model, { policies: ['oracle'] })).oracle.timeS).toBe(min);
    }
  });

  it('the annealing ends at the minimum of a surface flatter than its stopping tolerance', () => {
    // The whole surface spans 0.35% of the cost, so the annealing stops after a few levels of < 0.01% gain, wherever
    // its walk is (W 12-20 for these seeds; 12-21 with the paper's 0.1%); the descent then walks down to the minimum
    // (W 40, R 0.9).
    const f = (w: number, r: number) => 1 + 0.003 * (((w - 40) / 64) ** 2 + (r - 0.9) ** 2);
    for (const seed of [1, 2, 3, 4, 5]) {
      const a = annealWR(f, { seed });
      expect([a.w, a.r], `seed ${seed}`).toEqual([40, 0.9]);
      expect(a.evals).toBeLessThanOrEqual(120);
    }
  });

  it('the annealing is reproducible, finds the minimum of a known function, and respects its budget', () => {
    const f = (w: number, r: number) => (w - 23) ** 2 + 400 * (r - 0.7) ** 2 + 5;
    const a = annealWR(f, { seed: 3, wMax: 64, maxEvals: 400 });
    const b = annealWR(f, { seed: 3, wMax: 64, maxEvals: 400 });
    expect(a).toEqual(b);
    expect(Math.abs(a.w - 23)).toBeLessThanOrEqual(1);
    expect(Math.abs(a.r - 0.7)).toBeLessThanOrEqual(0.1 + 1e-9);
    let calls = 0;
    const c = annealWR((w, r) => (calls++, f(w, r)), { seed: 4, maxEvals: 12 });
    expect(calls).toBe(12);
    expect(c.evals).toBe(12);
    expect(c.stoppedBy).toBe('budget');
    // Within a simulation: same seed, same (W, R) and time.
    const { tr } = traces[0]!;
    const x = byPolicy(simulatePlacement(tr, gh200Model(tr), { policies: ['oracle'], anneal: { seed: 9 } })).oracle;
    const y = byPolicy(simulatePlacement(tr, gh200Model(tr), { policies: ['oracle'], anneal: { seed: 9 } })).oracle;
    expect([x.w, x.r, x.timeS]).toEqual([y.w, y.r, y.timeS]);
  });

  it('the GH200 preset and bad inputs', () => {
    const { tr } = traces[0]!;
    const m = gh200Model(tr);
    expect([m.fastBw, m.slowBw, m.linkBw]).toEqual([4.9e12, 500e9, 900e9]);
    expect(m.kvBytesPerToken).toBe(4096);
    expect(m.fastBytes).toBe(Math.round(0.25 * (192 + 96) * 2 * 4096));
    expect(m.weightBytes).toBe(2 * m.fastBytes);
    expect(() => simulatePlacement(tr, { ...m, fastBytes: 100 })).toThrow(/fastBytes/);
    expect(() => simulatePlacement(tr, { ...m, slowBw: 0 })).toThrow(/slowBw/);
    expect(() => simulatePlacement({ ...tr, records: [] }, m)).toThrow(/no decode steps/);
    expect(() => simulatePlacement(tr, m, { policies: ['lru' as PolicyName] })).toThrow(/unknown policy/);
    expect(() => gh200Model(tr, { fastFraction: 0 })).toThrow(/fastFraction/);
  });
});
