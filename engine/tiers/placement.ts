/**
 * Online hot/cold placement of one layer's KV rows, per token (not per page).
 *
 * Attention-sink tokens (the first `sinks`) and a recent window (the newest `window`) are pinned hot. Every other
 * token competes for the remaining hot rows by an exponential moving average (EMA) of the attention mass it
 * receives; at each step the hottest cold tokens swap with the coldest hot ones, but only where the candidate's EMA
 * beats the victim's by a margin (hysteresis, so near-ties do not ping-pong) and only for a fraction R of the
 * beneficial swaps (the migration ratio of arXiv 2508.13231), capped per step. The decay is uniform, so tokens that
 * got no mass keep their order; a token whose attention comes back climbs again, which is why nothing is ever
 * evicted for good: it only moves to the slow tier.
 *
 * The engine's tiered KV cache uses one instance per layer:
 *   1. before writing `count` new rows: `d = append(count)`; move the rows in `d.demote` to the cold tier first,
 *      then write the new rows hot, except those listed in `d.cold` (only when a chunk is longer than the hot room);
 *   2. after attention at each decode step: `d = observe(mass)` with the per-token mass of this layer (summed over
 *      heads, any scale, length = rows in the cache); apply `d.demote` then `d.promote`.
 * After every call at most `capacity` rows are hot. `truncate(length)` follows a rollback of the cache.
 */
import { OptionError } from '../errors.js';

export interface EmaPlacementOptions {
  /** Hot rows available to this layer (tokens). Must hold the sinks and the window. */
  capacity: number;
  /** First tokens always hot (attention sinks), default 4. */
  sinks?: number;
  /** Newest tokens always hot, default 32. */
  window?: number;
  /** Weight of the newest step in the EMA, in (0, 1], default 0.5 (a short memory: see the README sweep). */
  alpha?: number;
  /** Fraction R of the beneficial swaps performed per step, in [0, 1], default 1. */
  migrationRatio?: number;
  /** Most promotions per step, default unlimited. */
  maxMigrationsPerStep?: number;
  /** A cold token replaces a hot one only when its EMA is above (1 + hysteresis) times the hot one's, default 0.25. */
  hysteresis?: number;
  /**
   * What the EMA averages, default 'mass': each token's share of the step's attention mass. 'reads': 1 for a token
   * whose share is above `readShare` (read by a sparse reader), else 0; the EMA then estimates how likely a token is
   * to be read, which is what a cold row costs (a read row costs its bytes whatever its mass). A new row starts at 1,
   * as if read at every earlier step: started at 0, every new row would rank below each older row read as often, an
   * age penalty that keeps the oldest rows hot whatever is read. Among equal EMAs the newer row counts as hotter (with
   * 'mass' the older one: first come stays). With alpha > 0.5 the order is that of the most recent read, then the one
   * before, creation counting as a read: least-recently-used eviction.
   */
  signal?: 'mass' | 'reads';
  /** With signal 'reads': the share of the step's mass above which a token counts as read, in [0, 1), default 0. */
  readShare?: number;
}

/** Row moves, to apply in this order: `demote` (hot -> cold), then `promote` (cold -> hot). */
export interface PlacementDecision {
  demote: number[];
  promote: number[];
  /** From append(): new rows that go straight to the cold tier (every other new row is written hot). */
  cold: number[];
}

export interface PlacementStats {
  /** observe() calls. */
  steps: number;
  promotions: number;
  /** Every hot -> cold move, including those append() forces to make room for new rows. */
  demotions: number;
  /** Demotions made by append() for new rows. */
  forcedDemotions: number;
}

const empty = (): PlacementDecision => ({ demote: [], promote: [], cold: [] });

export class EmaPlacement {
  readonly capacity: number;
  readonly sinks: number;
  readonly window: number;
  readonly alpha: number;
  readonly migrationRatio: number;
  readonly maxMigrationsPerStep: number;
  readonly hysteresis: number;
  readonly signal: 'mass' | 'reads';
  readonly readShare: number;
  readonly stats: PlacementStats = { steps: 0, promotions: 0, demotions: 0, forcedDemotions: 0 };
  private ema = new Float64Array(64);
  private hot = new Uint8Array(64);
  private n = 0;
  private nHot = 0;
  /** observe()'s row lists (reused: a decode step calls it once per layer). */
  private scratch = new Int32Array(64);

  constructor(opts: EmaPlacementOptions) {
    const int = (name: string, v: number, min: number) => {
      if (!Number.isInteger(v) || v < min) throw new OptionError(name, `${v} is not an integer >= ${min}`);
      return v;
    };
    this.capacity = int('capacity', opts.capacity, 1);
    this.sinks = int('sinks', opts.sinks ?? 4, 0);
    this.window = int('window', opts.window ?? 32, 1);
    if (this.sinks + this.window > this.capacity) {
      throw new OptionError('capacity', `${this.capacity} hot rows cannot hold ${this.sinks} sinks and a window of ${this.window}`);
    }
    this.alpha = opts.alpha ?? 0.5;
    if (!(this.alpha > 0 && this.alpha <= 1)) throw new OptionError('alpha', `${this.alpha} is not in (0, 1]`);
    this.migrationRatio = opts.migrationRatio ?? 1;
    if (!(this.migrationRatio >= 0 && this.migrationRatio <= 1)) throw new OptionError('migrationRatio', `${this.migrationRatio} is not in [0, 1]`);
    this.maxMigrationsPerStep = opts.maxMigrationsPerStep ?? Infinity;
    if (!(this.maxMigrationsPerStep >= 0)) throw new OptionError('maxMigrationsPerStep', `${this.maxMigrationsPerStep} is not >= 0`);
    this.signal = opts.signal ?? 'mass';
    if (this.signal !== 'mass' && this.signal !== 'reads') throw new OptionError('signal', `"${String(this.signal)}" is not 'mass' or 'reads'`);
    this.readShare = opts.readShare ?? 0;
    if (!(this.readShare >= 0 && this.readShare < 1)) throw new OptionError('readShare', `${this.readShare} is not in [0, 1)`);
    this.hysteresis = opts.hysteresis ?? 0.25;
    if (!(this.hysteresis >= 0 && Number.isFinite(this.hysteresis))) throw new OptionError('hysteresis', `${this.hysteresis} is not a finite number >= 0`);
  }

  /** Rows in the cache. */
  get length(): number {
    return this.n;
  }

  get hotCount(): number {
    return this.nHot;
  }

  isHot(i: number): boolean {
    return i >= 0 && i < this.n && this.hot[i] === 1;
  }

  /** The token's EMA of attention mass (0 for a token never attended). */
  score(i: number): number {
    return i >= 0 && i < this.n ? this.ema[i]! : 0;
  }

  /** Whether, among equal EMAs, the newer row counts as the hotter (see `signal`). */
  private get newerHotter(): boolean {
    return this.signal === 'reads';
  }

  private pinned(i: number): boolean {
    return i < this.sinks || i >= this.n - this.window;
  }

  /** Unpinned hot rows below `end`, coldest first (ties: see `signal`), up to `count`. */
  private victims(end: number, count = Infinity): number[] {
    const v: number[] = [];
    for (let i = 0; i < end; i++) if (this.hot[i] === 1 && !this.pinned(i)) v.push(i);
    const heap = new EmaHeap(this.ema, Int32Array.from(v), false, this.newerHotter);
    const out: number[] = [];
    while (out.length < count && heap.size > 0) out.push(heap.pop());
    return out;
  }

  /** `count` new rows are about to be written; see the class comment. */
  append(count: number): PlacementDecision {
    if (!Number.isInteger(count) || count < 0) throw new OptionError('count', `${count} is not an integer >= 0`);
    const d = empty();
    if (count === 0) return d;
    const old = this.n;
    if (old + count > this.ema.length) {
      let cap = this.ema.length;
      while (cap < old + count) cap *= 2;
      const e = new Float64Array(cap);
      e.set(this.ema.subarray(0, old));
      const h = new Uint8Array(cap);
      h.set(this.hot.subarray(0, old));
      this.ema = e;
      this.hot = h;
    }
    this.n = old + count;
    let mustHot = 0;
    for (let i = old; i < this.n; i++) if (this.pinned(i)) mustHot++;
    const need = this.nHot + mustHot - this.capacity;
    if (need > 0) {
      // Enough unpinned hot rows always exist: every pinned row fits the capacity (checked in the constructor).
      for (const i of this.victims(old, need).slice(0, need)) {
        this.hot[i] = 0;
        d.demote.push(i);
      }
      this.nHot -= need;
      this.stats.demotions += need;
      this.stats.forcedDemotions += need;
    }
    let room = this.capacity - this.nHot - mustHot;
    const prior = this.signal === 'reads' ? 1 : 0;
    for (let i = old; i < this.n; i++) {
      this.ema[i] = prior;
      if (this.pinned(i) || room-- > 0) {
        this.hot[i] = 1;
        this.nHot++;
      } else {
        this.hot[i] = 0;
        d.cold.push(i);
      }
    }
    return d;
  }

  /** One decode step's attention mass per row (length = `length`); see the class comment. */
  observe(mass: ArrayLike<number>): PlacementDecision {
    const n = this.n;
    if (mass.length !== n) throw new OptionError('mass', `${mass.length} values for ${n} rows`);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const m = mass[i]!;
      if (!(m >= 0) || m === Infinity) throw new OptionError('mass', `row ${i} has mass ${m} (must be finite and >= 0)`);
      sum += m;
    }
    this.stats.steps++;
    const d = empty();
    if (sum === 0) return d;
    const e = this.ema;
    const a = this.alpha;
    const hot = this.hot;
    const sinks = this.sinks;
    const pinEnd = n - this.window;
    // The EMA update, and the coldest unpinned hot row (the bar a candidate must clear when no row is free).
    let minHot = Infinity;
    if (this.signal === 'reads') {
      const cut = this.readShare * sum;
      for (let i = 0; i < n; i++) {
        const ei = (e[i] = (1 - a) * e[i]! + (mass[i]! > cut ? a : 0));
        if (hot[i] === 1 && ei < minHot && i >= sinks && i < pinEnd) minHot = ei;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const ei = (e[i] = (1 - a) * e[i]! + (a * mass[i]!) / sum);
        if (hot[i] === 1 && ei < minHot && i >= sinks && i < pinEnd) minHot = ei;
      }
    }
    if (this.migrationRatio === 0 || this.maxMigrationsPerStep === 0) return d;

    // One pass for the unpinned hot rows (the possible victims) and the cold rows read at this step that could move
    // up. Only rows read now move up: the reader has just staged them, so promoting one costs no extra read from the
    // slow tier (promoting a row nobody reads now would). Without a free row a candidate must beat the coldest hot row.
    if (this.scratch.length < n) this.scratch = new Int32Array(Math.max(n, 2 * this.scratch.length));
    const rows = this.scratch; // victims fill it from the front, candidates from the back
    let free = this.capacity - this.nHot;
    const h1 = 1 + this.hysteresis;
    const bar = free > 0 ? 0 : h1 * minHot;
    let nv = 0;
    let nc = 0;
    for (let i = 0; i < n; i++) {
      if (hot[i] === 1) {
        if (i >= sinks && i < pinEnd) rows[nv++] = i;
      } else if (mass[i]! > 0 && e[i]! > bar) rows[n - 1 - nc++] = i;
    }
    if (nc === 0) return d;
    // Beneficial moves, taken in order from two heaps (built in linear time; only the moves made are sorted): fill
    // free rows first, then swap while the best candidate left clearly beats the coldest hot row left.
    const candHeap = new EmaHeap(e, rows.subarray(n - nc, n), true, this.newerHotter);
    let victimHeap: EmaHeap | undefined;
    const top: number[] = [];
    const out: number[] = [];
    for (let f = free; candHeap.size > 0; ) {
      if (f > 0) {
        f--;
        top.push(candHeap.pop());
        continue;
      }
      victimHeap ??= new EmaHeap(e, rows.subarray(0, nv), false, this.newerHotter);
      if (victimHeap.size === 0 || !(e[candHeap.peek()]! > h1 * e[victimHeap.peek()]!)) break;
      top.push(candHeap.pop());
      out.push(victimHeap.pop());
    }
    const k = top.length;
    const R = this.migrationRatio;
    const moves = Math.min(this.maxMigrationsPerStep, R >= 1 ? k : Math.ceil(R * k));
    for (let j = 0, v = 0; j < moves; j++) {
      if (free > 0) free--;
      else {
        const o = out[v++]!;
        this.hot[o] = 0;
        d.demote.push(o);
      }
      const c = top[j]!;
      this.hot[c] = 1;
      d.promote.push(c);
    }
    this.nHot += d.promote.length - d.demote.length;
    this.stats.promotions += d.promote.length;
    this.stats.demotions += d.demote.length;
    return d;
  }

  /**
   * The cache was rolled back to `length` rows (rejected speculative tokens): forget the rows past it. Rows that
   * fall back into the recent window are pinned again, so the decision may promote them (and demote to make room).
   */
  truncate(length: number): PlacementDecision {
    if (!Number.isInteger(length) || length < 0 || length > this.n) throw new OptionError('length', `${length} is not in [0, ${this.n}]`);
    for (let i = length; i < this.n; i++) if (this.hot[i] === 1) this.nHot--;
    this.hot.fill(0, length, this.n);
    this.ema.fill(0, length, this.n);
    this.n = length;
    const d = empty();
    const back: number[] = [];
    for (let i = 0; i < length; i++) if (this.hot[i] === 0 && this.pinned(i)) back.push(i);
    if (back.length === 0) return d;
    const victims = this.victims(length);
    for (const i of back) {
      if (this.nHot >= this.capacity) {
        const out = victims.shift()!;
        this.hot[out] = 0;
        d.demote.push(out);
        this.nHot--;
      }
      this.hot[i] = 1;
      this.nHot++;
      d.promote.push(i);
    }
    this.stats.promotions += d.promote.length;
    this.stats.demotions += d.demote.length;
    return d;
  }
}

/**
 * A binary heap of row indices over typed storage: `hottest` pops the hottest row first (the candidate order), else
 * the coldest (the victim order). Hotter: a higher EMA; among equal EMAs the newer row if `newerHotter`, else the
 * older. Built in place over `h` (which it reorders) in linear time.
 */
class EmaHeap {
  size: number;

  constructor(
    private readonly e: Float64Array,
    private readonly h: Int32Array,
    private readonly hottest: boolean,
    private readonly newerHotter: boolean,
  ) {
    this.size = h.length;
    for (let i = (this.size >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** Whether row x is hotter than row y. */
  private hotter(x: number, y: number): boolean {
    const ex = this.e[x]!;
    const ey = this.e[y]!;
    return ex > ey || (ex === ey && (this.newerHotter ? x > y : x < y));
  }

  /** Whether row x comes out before row y. */
  private first(x: number, y: number): boolean {
    return this.hottest ? this.hotter(x, y) : this.hotter(y, x);
  }

  peek(): number {
    return this.h[0]!;
  }

  pop(): number {
    const h = this.h;
    const top = h[0]!;
    const last = h[--this.size]!;
    if (this.size > 0) {
      h[0] = last;
      this.down(0);
    }
    return top;
  }

  private down(i: number): void {
    const h = this.h;
    const n = this.size;
    const x = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.first(h[c + 1]!, h[c]!)) c++;
      if (!this.first(h[c]!, x)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = x;
  }
}
