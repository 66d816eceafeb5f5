/**
 * The online per-token placement policy (engine/tiers/placement.ts), driven as the engine will drive it: append
 * before writing rows, observe after attention, apply the decisions to a separate record of which rows are hot.
 */
import { describe, expect, it } from 'vitest';
import { OptionError } from '../engine/errors.js';
import { Rng } from '../engine/gguf/synth.js';
import { EmaPlacement } from '../engine/tiers/placement.js';
import type { EmaPlacementOptions, PlacementDecision } from '../engine/tiers/placement.js';

/** The cache's side: which rows are hot, changed only through decisions, each checked for consistency. */
class Cache {
  readonly hot = new Set<number>();
  length = 0;
  constructor(readonly p: EmaPlacement) {}
  private apply(d: PlacementDecision, added: number) {
    for (const i of d.demote) {
      expect(this.hot.has(i)).toBe(true);
      this.hot.delete(i);
    }
    for (const i of d.promote) {
      expect(this.hot.has(i)).toBe(false);
      expect(i).toBeLessThan(this.length);
      this.hot.add(i);
    }
    const cold = new Set(d.cold);
    for (let i = this.length; i < this.length + added; i++) if (!cold.has(i)) this.hot.add(i);
    for (const i of cold) expect(i).toBeGreaterThanOrEqual(this.length);
    this.length += added;
    this.check();
  }
  append(n: number) {
    const d = this.p.append(n);
    this.apply(d, n);
    return d;
  }
  observe(mass: ArrayLike<number>) {
    const d = this.p.observe(mass);
    expect(d.cold).toEqual([]);
    this.apply(d, 0);
    return d;
  }
  check() {
    const p = this.p;
    const bad: string[] = [];
    if (this.hot.size > p.capacity) bad.push(`${this.hot.size} hot rows over ${p.capacity}`);
    if (p.hotCount !== this.hot.size) bad.push(`hotCount ${p.hotCount}, applied ${this.hot.size}`);
    for (let i = 0; i < this.length; i++) if (p.isHot(i) !== this.hot.has(i)) bad.push(`row ${i} disagrees`);
    for (let i = 0; i < Math.min(p.sinks, this.length); i++) if (!this.hot.has(i)) bad.push(`sink ${i} cold`);
    for (let i = Math.max(0, this.length - p.window); i < this.length; i++) if (!this.hot.has(i)) bad.push(`window row ${i} cold`);
    expect(bad).toEqual([]);
  }
}

/**
 * The placement rule written plainly (sorts, no heaps, no shared scratch): the scalar twin of EmaPlacement's
 * append/observe, for the test that the optimized code makes the same decisions.
 */
class PlainPlacement {
  ema: number[] = [];
  hot: boolean[] = [];
  constructor(readonly o: Required<Pick<EmaPlacementOptions, 'capacity' | 'sinks' | 'window' | 'alpha' | 'hysteresis' | 'migrationRatio' | 'maxMigrationsPerStep' | 'signal' | 'readShare'>>) {}
  private pinned(i: number) {
    return i < this.o.sinks || i >= this.ema.length - this.o.window;
  }
  private nHot() {
    return this.hot.filter(Boolean).length;
  }
  /** Ties: with 'reads' the newer row is the hotter, with 'mass' the older. */
  private tie(x: number, y: number) {
    return this.o.signal === 'reads' ? y - x : x - y;
  }
  /** Unpinned hot rows below `end`, coldest first. */
  private victims(end: number) {
    const v = [...Array(end).keys()].filter((i) => this.hot[i] && !this.pinned(i));
    return v.sort((x, y) => this.ema[x]! - this.ema[y]! || this.tie(y, x));
  }
  append(count: number): PlacementDecision {
    const d: PlacementDecision = { demote: [], promote: [], cold: [] };
    const old = this.ema.length;
    for (let i = 0; i < count; i++) { this.ema.push(this.o.signal === 'reads' ? 1 : 0); this.hot.push(false); }
    let mustHot = 0;
    for (let i = old; i < old + count; i++) if (this.pinned(i)) mustHot++;
    const need = this.nHot() + mustHot - this.o.capacity;
    if (need > 0) for (const i of this.victims(old).slice(0, need)) { this.hot[i] = false; d.demote.push(i); }
    let room = this.o.capacity - this.nHot() - mustHot;
    for (let i = old; i < old + count; i++) {
      if (this.pinned(i) || room-- > 0) this.hot[i] = true;
      else d.cold.push(i);
    }
    return d;
  }
  observe(mass: number[]): PlacementDecision {
    const d: PlacementDecision = { demote: [], promote: [], cold: [] };
    const n = this.ema.length;
    const sum = mass.reduce((a, b) => a + b, 0);
    if (sum === 0) return d;
    const a = this.o.alpha;
    for (let i = 0; i < n; i++) {
      const x = this.o.signal === 'reads' ? (mass[i]! > this.o.readShare * sum ? a : 0) : (a * mass[i]!) / sum;
      this.ema[i] = (1 - a) * this.ema[i]! + x;
    }
    if (this.o.migrationRatio === 0 || this.o.maxMigrationsPerStep === 0) return d;
    const victims = this.victims(n);
    const h1 = 1 + this.o.hysteresis;
    let free = this.o.capacity - this.nHot();
    const minHot = victims.length ? this.ema[victims[0]!]! : Infinity;
    const cands = [...Array(n).keys()]
      .filter((i) => !this.hot[i] && mass[i]! > 0 && this.ema[i]! > 0 && (free > 0 || this.ema[i]! > h1 * minHot))
      .sort((x, y) => this.ema[y]! - this.ema[x]! || this.tie(x, y));
    const top: number[] = [];
    const out: number[] = [];
    for (let c = 0, v = 0, f = free; c < cands.length; c++) {
      if (f > 0) { f--; top.push(cands[c]!); continue; }
      if (v >= victims.length || !(this.ema[cands[c]!]! > h1 * this.ema[victims[v]!]!)) break;
      top.push(cands[c]!);
      out.push(victims[v++]!);
    }
    const R = this.o.migrationRatio;
    const moves = Math.min(this.o.maxMigrationsPerStep, R >= 1 ? top.length : Math.ceil(R * top.length));
    for (let j = 0, v = 0; j < moves; j++) {
      if (free > 0) free--;
      else { const o = out[v++]!; this.hot[o] = false; d.demote.push(o); }
      this.hot[top[j]!] = true;
      d.promote.push(top[j]!);
    }
    return d;
  }
}

const make = (o: Partial<EmaPlacementOptions> = {}) => new Cache(new EmaPlacement({ capacity: 16, sinks: 2, window: 4, ...o }));

describe('EmaPlacement', () => {
  it('random runs: never over capacity, sinks and the window always hot, decisions consistent', () => {
    const rng = new Rng(7);
    for (const opts of [{}, { migrationRatio: 0.3 }, { maxMigrationsPerStep: 1, hysteresis: 0 }, { alpha: 1, capacity: 9, sinks: 3, window: 4 }]) {
      const c = make(opts);
      c.append(40); // a prompt longer than the hot rows
      for (let s = 0; s < 200; s++) {
        const mass = Array.from({ length: c.length }, () => (rng.next() < 0.3 ? Math.exp(2 * rng.normal()) : 0));
        c.observe(mass);
        c.append(rng.next() < 0.1 ? 3 : 1);
      }
      expect(c.p.stats.steps).toBe(200);
      expect(c.p.stats.promotions).toBeGreaterThan(0);
    }
  });

  it('makes the same decisions as the rule written plainly (sorts instead of heaps), on random runs', () => {
    const rng = new Rng(11);
    const settings: Partial<EmaPlacementOptions>[] = [
      {}, { migrationRatio: 0.3 }, { maxMigrationsPerStep: 2, hysteresis: 0 }, { alpha: 1, capacity: 9, sinks: 3, window: 4 },
      { signal: 'reads', alpha: 0.3, hysteresis: 0.25, window: 1, sinks: 0 }, { signal: 'reads', readShare: 0.02, capacity: 30 },
    ];
    let compared = 0;
    for (const opts of settings) {
      const full = { capacity: 16, sinks: 2, window: 4, alpha: 0.5, hysteresis: 0.25, migrationRatio: 1, maxMigrationsPerStep: Infinity, signal: 'mass' as const, readShare: 0, ...opts };
      const p = new EmaPlacement(full);
      const q = new PlainPlacement(full);
      expect(p.append(60)).toEqual(q.append(60));
      for (let s = 0; s < 300; s++) {
        // Masses with ties (a few discrete levels) as well as spread values, dense and sparse steps.
        const dense = rng.next() < 0.5;
        const mass = Array.from({ length: p.length }, () => (dense || rng.next() < 0.3 ? (rng.next() < 0.3 ? 0.25 * Math.floor(4 * rng.next()) : Math.exp(2 * rng.normal())) : 0));
        const dp = p.observe(mass);
        const dq = q.observe(mass);
        expect(dp, `step ${s} ${JSON.stringify(opts)}`).toEqual(dq);
        compared += dp.promote.length;
        const k = rng.next() < 0.1 ? 3 : 1;
        expect(p.append(k)).toEqual(q.append(k));
      }
    }
    expect(compared).toBeGreaterThan(500);
  });

  it('a long prompt keeps the sinks, the first rows that fit and the window hot; the rest go straight cold', () => {
    const c = make();
    const d = c.append(30);
    expect(d.demote).toEqual([]);
    expect(d.cold).toEqual(Array.from({ length: 30 - 16 }, (_, i) => 12 + i)); // hot: 0..11 (sinks, first come), 26..29
    // Two more rows: with no attention seen yet every unpinned row ties, and the newest (just out of the window) go.
    const e = c.append(2);
    expect(e.demote).toEqual([27, 26]);
  });

  it('promotes the token whose attention rises and demotes the one whose attention faded', () => {
    const c = make({ capacity: 8, sinks: 1, window: 2, alpha: 0.5, hysteresis: 0.25 });
    c.append(12); // hot: 0..5 (sink + first come), 10, 11 (window)
    expect([...c.hot].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 10, 11]);
    const mass = (hi: number[]) => Array.from({ length: 12 }, (_, i) => (hi.includes(i) ? 10 : 1));
    // Rows 1..4 and 8 are attended; 5 never is: 8 replaces 5 at the first step (EMA 10/23 * 0.5 vs 1/23 * 0.5).
    let d = c.observe(mass([1, 2, 3, 4, 8]));
    expect(d.promote).toEqual([8]);
    expect(d.demote).toEqual([5]);
    // Attention moves from 1 to 7: 7 replaces 1 once, and stays.
    const steps: number[] = [];
    for (let s = 0; s < 6; s++) {
      d = c.observe(mass([2, 3, 4, 7, 8]));
      if (d.promote.includes(7)) steps.push(s);
    }
    expect(steps.length).toBe(1);
    expect(c.hot.has(7)).toBe(true);
    expect(c.p.score(7)).toBeGreaterThan(c.p.score(1));
  });

  it('the migration ratio and the per-step cap bound the promotions; R = 0 never migrates', () => {
    const run = (o: Partial<EmaPlacementOptions>) => {
      const c = make({ capacity: 12, sinks: 0, window: 2, hysteresis: 0, ...o });
      c.append(30); // hot: 0..9 and 28, 29
      const mass = Array.from({ length: 30 }, (_, i) => (i >= 12 && i < 22 ? 5 : 0.1)); // 10 cold rows clearly better
      return c.observe(mass).promote.length;
    };
    expect(run({})).toBe(10);
    expect(run({ migrationRatio: 0.5 })).toBe(5);
    expect(run({ migrationRatio: 0.25 })).toBe(3); // ceil(2.5)
    expect(run({ maxMigrationsPerStep: 2 })).toBe(2);
    expect(run({ migrationRatio: 0 })).toBe(0);
  });

  it('hysteresis: a candidate only slightly better than the coldest hot row stays cold', () => {
    const c = make({ capacity: 4, sinks: 0, window: 1, alpha: 1, hysteresis: 0.5 });
    c.append(6); // hot 0, 1, 2 and 5
    expect(c.observe([1, 1, 1, 1.4, 0, 1]).promote).toEqual([]);
    expect(c.observe([1, 1, 1, 1.6, 0, 1]).promote).toEqual([3]);
  });

  it('only rows read at this step are promoted (they are staged; another would cost a slow-tier read)', () => {
    const c = make({ capacity: 4, sinks: 0, window: 1, alpha: 0.5, hysteresis: 0, maxMigrationsPerStep: 1 });
    c.append(6); // hot 0, 1, 2 and 5
    const at = (hi: Record<number, number>) => Array.from({ length: 6 }, (_, i) => hi[i] ?? 0);
    // Rows 3 and 4 both beat the hot rows; the cap lets one move.
    expect(c.observe(at({ 0: 1, 1: 1, 3: 8, 4: 6, 5: 1 })).promote).toEqual([3]);
    // Row 4 is not read now: its EMA still beats the coldest hot row's, but it stays cold.
    const d = c.observe(at({ 0: 0.1, 1: 0.1, 3: 0.1, 5: 10 }));
    expect(c.p.score(4)).toBeGreaterThan(Math.min(...[0, 1, 3].map((i) => c.p.score(i))));
    expect(d.promote).toEqual([]);
    // Read again, even weakly, it moves up.
    expect(c.observe(at({ 0: 0.1, 1: 0.1, 3: 0.1, 4: 0.5, 5: 10 })).promote).toEqual([4]);
  });

  it("signal 'reads': every token read counts the same, whatever its mass; readShare sets what counts as read", () => {
    const mass = [5, 1e-6, 0, 0.5, 1];
    const p = new EmaPlacement({ capacity: 5, sinks: 0, window: 1, alpha: 0.5, signal: 'reads' });
    p.append(5);
    // A new row starts at 1, as if read at every earlier step.
    expect([0, 1, 2, 3, 4].map((i) => p.score(i))).toEqual([1, 1, 1, 1, 1]);
    p.observe(mass);
    expect([0, 1, 2, 3, 4].map((i) => p.score(i))).toEqual([1, 1, 0.5, 1, 1]);
    const q = new EmaPlacement({ capacity: 5, sinks: 0, window: 1, alpha: 0.5, signal: 'reads', readShare: 0.05 });
    q.append(5);
    q.observe(mass); // shares 5/6.5, ~0, 0, 0.5/6.5, 1/6.5: rows 0, 3 and 4 are above 5%
    expect([0, 1, 2, 3, 4].map((i) => q.score(i))).toEqual([1, 0.5, 0.5, 1, 1]);
    // With alpha > 0.5 the order is the most recent read first (least-recently-read eviction).
    const r = new EmaPlacement({ capacity: 5, sinks: 0, window: 1, alpha: 0.6, signal: 'reads' });
    r.append(5);
    r.observe([0, 0, 0, 1, 1]);
    r.observe([0, 0, 0, 0, 1]);
    r.observe([1, 0, 0, 0, 1]);
    expect(r.score(0)).toBeGreaterThan(r.score(3));
    expect(r.score(3)).toBeGreaterThan(r.score(2));
    const m = new EmaPlacement({ capacity: 5, sinks: 0, window: 1, alpha: 0.5 });
    m.append(5);
    m.observe(mass);
    expect(m.score(0)).toBeGreaterThan(m.score(3)); // by mass, the default
  });

  it("signal 'reads' on dense reads: new rows stay hot and the oldest unpinned row goes, as least-recently-used would", () => {
    const p = new EmaPlacement({ capacity: 6, sinks: 0, window: 1, alpha: 0.3, hysteresis: 0.25, signal: 'reads' });
    expect(p.append(6).cold).toEqual([]);
    for (let s = 0; s < 20; s++) {
      const d = p.observe(new Array(p.length).fill(1));
      expect(d.promote).toEqual([]); // every row is read: nothing to gain from a swap
      const a = p.append(1);
      expect(a.demote).toEqual([p.length - 7]); // the oldest hot row, not the one written at the step before
    }
    const hot = [...Array(p.length).keys()].filter((i) => p.isHot(i));
    expect(hot).toEqual([20, 21, 22, 23, 24, 25]);
  });

  it('truncate forgets rows past the new length and re-pins the window', () => {
    const c = make({ capacity: 6, sinks: 1, window: 2 });
    c.append(10); // hot 0..3, 8, 9
    c.observe(Array.from({ length: 10 }, (_, i) => (i === 5 ? 0 : 1)));
    const d = c.p.truncate(7); // rows 5 and 6 are the window again
    expect(d.promote.sort()).toEqual([5, 6]);
    expect(c.p.hotCount).toBeLessThanOrEqual(6);
    for (const i of [0, 5, 6]) expect(c.p.isHot(i)).toBe(true);
    expect(c.p.length).toBe(7);
    expect(() => c.p.truncate(8)).toThrow(OptionError);
  });

  it('options and inputs are checked', () => {
    expect(() => new EmaPlacement({ capacity: 10, sinks: 4, window: 8 })).toThrow(/capacity/);
    expect(() => new EmaPlacement({ capacity: 40, alpha: 0 })).toThrow(/alpha/);
    expect(() => new EmaPlacement({ capacity: 40, migrationRatio: 2 })).toThrow(/migrationRatio/);
    expect(() => new EmaPlacement({ capacity: 40, signal: 'sum' as never })).toThrow(/signal/);
    expect(() => new EmaPlacement({ capacity: 40, readShare: 1 })).toThrow(/readShare/);
    const p = new EmaPlacement({ capacity: 40 });
    p.append(3);
    expect(() => p.observe([1, 2])).toThrow(/2 values for 3 rows/);
    expect(() => p.observe([1, NaN, 2])).toThrow(/row 1/);
    expect(() => p.append(-1)).toThrow(OptionError);
    expect(p.observe([0, 0, 0])).toEqual({ demote: [], promote: [], cold: [] });
  });
});
