/**
 * Two-tier KV memory simulator and the placement bound of arXiv 2508.13231 (papers.md 3 and 4.7).
 *
 * Model. Decode is bandwidth-bound. At every step n and layer l the fast tier serves the layer's weights, its
 * intermediates, the KV rows of the tokens read that are hot, new rows written hot and the fast side of migrations;
 * the slow tier (behind a link, so at min(slow, link) bandwidth) serves the cold rows read, new rows written cold and
 * the slow side of migrations. The tiers work in parallel, so a step takes max(fast bytes / fast bw, slow bytes /
 * slow bw), and the total is the sum over steps and layers. Tokens read at a step are those with mass in the trace
 * (optionally only those above a mass threshold, and only the top (1 - sparsity) of the context), or every token in
 * the cache (an exact reader). Each layer gets an equal share of the fast-tier bytes.
 *
 * Migration costs. KV rows never change once written, so the slow tier keeps its copy of a row once it has one: a
 * demotion costs a fast read and a slow write only the first time (afterwards it just drops the hot copy). A
 * promotion costs a fast write, plus a slow read unless the row was read from the slow tier at this step (it is then
 * already staged; the engine stages cold rows before attending to them). The prompt is placed for free.
 *
 * Policies: `ideal` (unlimited fast memory), `static` (first come fills the fast tier, no migration), `reactive`
 * (promote on miss, least-recently-used eviction), `page` (whole pages of 16 with perfect knowledge of the future),
 * `online` (the engine's EmaPlacement, placement.ts) and `oracle` (per token, perfect knowledge). The look-ahead
 * policy behind `page` and `oracle` ranks rows by how often they are read in the next W steps and performs the
 * fraction R of the beneficial swaps; (W, R) is chosen by simulated annealing as in the paper.
 *
 * Note: because the tiers run in parallel, reading a little from the slow tier can beat reading everything from the
 * fast one, so a policy can finish slightly below `ideal` (at most by the factor fast / (fast + slow)). The true
 * floor is lowerBoundS: every step needs max(fixed fast bytes / fast bw, all its bytes / (fast + slow bw)).
 */
import { OptionError } from '../errors.js';
import { Rng } from '../gguf/synth.js';
import { EmaPlacement } from './placement.js';
import type { EmaPlacementOptions } from './placement.js';
import type { AttentionTrace } from './trace.js';

export interface MemoryModel {
  /** Fast-tier bytes for KV rows, all layers together (weights are extra). */
  fastBytes: number;
  /** Fast-tier bandwidth, bytes/s. */
  fastBw: number;
  /** Slow-tier bandwidth, bytes/s. */
  slowBw: number;
  /** Link between the tiers, bytes/s; the slow tier is served at min(slowBw, linkBw). */
  linkBw: number;
  /** Weight bytes of all layers, read from the fast tier once per step. */
  weightBytes: number;
  /** Other fast-tier bytes per layer and step (activations, scratch). */
  intermediateBytes: number;
  /** One token's K and V in one layer. */
  kvBytesPerToken: number;
}

/** GH200 as the paper configures it: HBM 4.9 TB/s; LPDDR5X 500 GB/s behind NVLink-C2C 900 GB/s. */
export const GH200 = { fastBw: 4.9e12, slowBw: 500e9, linkBw: 900e9 } as const;

/**
 * The paper's GH200 setup scaled to a trace: the fast tier holds `fastFraction` (default 0.25) of the trace's
 * largest KV, and the weights are twice that (16 GB of Llama-3.1-8B weights beside ~8 GB of HBM for KV).
 * Intermediates: 16 token rows per layer and step (small next to the weights, as in the paper).
 */
export function gh200Model(trace: AttentionTrace, opts: { fastFraction?: number; kvBytesPerToken?: number } = {}): MemoryModel {
  const frac = opts.fastFraction ?? 0.25;
  if (!(frac > 0 && frac <= 1)) throw new OptionError('fastFraction', `${frac} is not in (0, 1]`);
  const kv = opts.kvBytesPerToken ?? trace.meta.kvBytesPerToken ?? 4096;
  const last = trace.records[trace.records.length - 1];
  const peak = (last ? last[0]!.ctxLen : 0) * trace.nLayers * kv;
  const fastBytes = Math.round(frac * peak);
  return { ...GH200, fastBytes, weightBytes: 2 * fastBytes, intermediateBytes: 16 * kv, kvBytesPerToken: kv };
}

function checkModel(m: MemoryModel): void {
  for (const k of ['fastBw', 'slowBw', 'linkBw', 'kvBytesPerToken'] as const) {
    if (!(m[k] > 0 && Number.isFinite(m[k]))) throw new OptionError(k, `${m[k]} is not a positive number`);
  }
  for (const k of ['fastBytes', 'weightBytes', 'intermediateBytes'] as const) {
    if (!(m[k] >= 0 && Number.isFinite(m[k]))) throw new OptionError(k, `${m[k]} is not a number >= 0`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The reads of a trace.

/** Which tokens each (step, layer) reads, ascending, with their masses. */
export interface AccessTrace {
  readonly nLayers: number;
  readonly nSteps: number;
  readonly maxCtx: number;
  /** Tokens in the cache at each step. */
  readonly ctxLen: Int32Array;
  /** idx[step * nLayers + layer]. */
  readonly idx: Uint32Array[];
  readonly mass: Float32Array[];
}

/**
 * The reads of a trace: tokens with stored mass above `minMass` (default 0: any mass; a dense record stores masses
 * below f16's smallest step, ~6e-8, as 0, so even then a token the model all but ignores is not read), and with
 * sparsity > 0 only the top ceil((1 - sparsity) * ctxLen) of those. `exact`: every token in the cache at every step,
 * whatever its stored mass (exact attention, as the engine's own kernel reads); no threshold or sparsity then.
 */
export function accessTrace(trace: AttentionTrace, sparsity = 0, minMass = 0, exact = false): AccessTrace {
  if (!(sparsity >= 0 && sparsity < 1)) throw new OptionError('sparsity', `${sparsity} is not in [0, 1)`);
  if (!(minMass >= 0 && minMass < 1)) throw new OptionError('minMass', `${minMass} is not in [0, 1)`);
  if (exact && (sparsity > 0 || minMass > 0)) throw new OptionError('exact', 'an exact reader reads every token: it takes no sparsity or minMass');
  const L = trace.nLayers;
  const nSteps = trace.records.length;
  const ctxLen = new Int32Array(nSteps);
  const idx: Uint32Array[] = [];
  const mass: Float32Array[] = [];
  for (let s = 0; s < nSteps; s++) {
    ctxLen[s] = trace.records[s]![0]!.ctxLen;
    // The exact reader's tokens at this step: the same for every layer (the arrays are only read), so built once.
    const every = exact ? Uint32Array.from({ length: ctxLen[s]! }, (_, j) => j) : undefined;
    for (let l = 0; l < L; l++) {
      const r = trace.records[s]![l]!;
      if (every) {
        const m = new Float32Array(r.ctxLen);
        for (let j = 0; j < r.mass.length; j++) m[r.index ? r.index[j]! : j] = r.mass[j]!;
        idx.push(every);
        mass.push(m);
        continue;
      }
      // Tokens come ascending (dense records by position, sparse ones by their sorted index).
      const tok: number[] = [];
      const ms: number[] = [];
      for (let j = 0; j < r.mass.length; j++) {
        if (r.mass[j]! <= minMass) continue;
        tok.push(r.index ? r.index[j]! : j);
        ms.push(r.mass[j]!);
      }
      const cap = Math.ceil((1 - sparsity) * r.ctxLen - 1e-9); // 1e-9: (1 - 0.7) * 210 is 63.00000000000001
      if (tok.length > cap) {
        const keep = tok.map((_, k) => k).sort((a, b) => ms[b]! - ms[a]! || a - b).slice(0, cap).sort((a, b) => a - b);
        idx.push(Uint32Array.from(keep, (k) => tok[k]!));
        mass.push(Float32Array.from(keep, (k) => ms[k]!));
      } else {
        idx.push(Uint32Array.from(tok));
        mass.push(Float32Array.from(ms));
      }
    }
  }
  return { nLayers: L, nSteps, maxCtx: nSteps ? ctxLen[nSteps - 1]! : 0, ctxLen, idx, mass };
}

// ---------------------------------------------------------------------------------------------------------------
// One layer's two tiers: where every row is, and the bytes each tier moves in the current step.

export class LayerTier {
  readonly hot: Uint8Array;
  private readonly inSlow: Uint8Array;
  private readonly readAt: Int32Array;
  hotCount = 0;
  step = 0;
  /** False while the prompt is placed (prefill is not modelled): no bytes are counted. */
  charge = true;
  fast = 0;
  slow = 0;
  hits = 0;
  misses = 0;
  promotions = 0;
  demotions = 0;
  migrated = 0;

  constructor(readonly capacity: number, maxCtx: number, readonly kv: number) {
    this.hot = new Uint8Array(maxCtx);
    this.inSlow = new Uint8Array(maxCtx);
    this.readAt = new Int32Array(maxCtx).fill(-1);
  }

  /** Whether promoting row i now costs no slow read (it was read from the slow tier at this step). */
  staged(i: number): boolean {
    return this.readAt[i] === this.step;
  }

  /** Whether the slow tier already holds row i (so demoting it costs nothing). */
  inSlowTier(i: number): boolean {
    return this.inSlow[i] === 1;
  }

  begin(step: number): void {
    this.step = step;
    this.fast = 0;
    this.slow = 0;
  }

  /** A new row, written to the fast tier (hot) or the slow one. */
  add(i: number, hot: boolean): void {
    if (hot) {
      if (this.hotCount >= this.capacity) throw new Error(`simulator: fast tier full (${this.capacity} rows) writing row ${i}`);
      this.hot[i] = 1;
      this.hotCount++;
      if (this.charge) this.fast += this.kv;
    } else {
      this.inSlow[i] = 1;
      if (this.charge) this.slow += this.kv;
    }
  }

  read(i: number): void {
    if (this.hot[i] === 1) {
      this.fast += this.kv;
      this.hits++;
    } else {
      this.slow += this.kv;
      this.misses++;
      this.readAt[i] = this.step;
    }
  }

  promote(i: number): void {
    if (this.hot[i] === 1) throw new Error(`simulator: row ${i} promoted twice`);
    if (this.hotCount >= this.capacity) throw new Error(`simulator: fast tier full (${this.capacity} rows) promoting row ${i}`);
    this.hot[i] = 1;
    this.hotCount++;
    if (!this.charge) return;
    this.fast += this.kv;
    if (this.readAt[i] !== this.step) this.slow += this.kv;
    this.migrated += this.kv;
    this.promotions++;
  }

  demote(i: number): void {
    if (this.hot[i] !== 1) throw new Error(`simulator: row ${i} demoted but not hot`);
    this.hot[i] = 0;
    this.hotCount--;
    if (this.inSlow[i] === 0) {
      this.inSlow[i] = 1;
      if (this.charge) {
        this.fast += this.kv;
        this.slow += this.kv;
        this.migrated += this.kv;
      }
    }
    if (this.charge) this.demotions++;
  }
}

/** What a placement policy does for one layer in the simulator. */
interface SimPolicy {
  /** Rows [from, to) are new at this step (at step 0, the prompt): place each with tier.add. */
  append(t: LayerTier, from: number, to: number): void;
  /** After the step's reads of rows `idx` (ascending) with masses `mass`: migrate. */
  after(t: LayerTier, step: number, idx: Uint32Array, mass: Float32Array): void;
}

export type PolicyName = 'ideal' | 'static' | 'reactive' | 'page' | 'online' | 'oracle';
export const POLICY_NAMES: readonly PolicyName[] = ['ideal', 'static', 'reactive', 'page', 'online', 'oracle'];

export interface PolicyResult {
  policy: PolicyName;
  /** Modelled decode time of the trace, seconds. */
  timeS: number;
  /** Static's time over this one's (> 1: faster than static). */
  throughputVsStatic: number;
  /** Fraction of KV rows read that were hot. */
  hitRate: number;
  /**
   * Fraction of the (step, layer) pairs whose time the fast tier sets alone (its bytes take longer than the slow
   * tier's). Where it is near 1, moving reads to the fast tier only lengthens the steps.
   */
  fastBound: number;
  /** Bytes moved between the tiers by promotions and first demotions. */
  migratedBytes: number;
  promotions: number;
  demotions: number;
  /** Look-ahead window and migration ratio (page, oracle), and the annealing's distinct evaluations. */
  w?: number;
  r?: number;
  evals?: number;
}

interface Run {
  timeS: number;
  /** (step, layer) pairs where the fast tier took longer than the slow one. */
  fastBound: number;
  pairs: number;
  hits: number;
  misses: number;
  migrated: number;
  promotions: number;
  demotions: number;
}

function replay(acc: AccessTrace, model: MemoryModel, capacity: number, make: (layer: number) => SimPolicy): Run {
  const wpl = model.weightBytes / acc.nLayers + model.intermediateBytes;
  const slowBw = Math.min(model.slowBw, model.linkBw);
  const run: Run = { timeS: 0, fastBound: 0, pairs: 0, hits: 0, misses: 0, migrated: 0, promotions: 0, demotions: 0 };
  for (let l = 0; l < acc.nLayers; l++) {
    const t = new LayerTier(capacity, acc.maxCtx, model.kvBytesPerToken);
    const p = make(l);
    let len = 0;
    for (let s = 0; s < acc.nSteps; s++) {
      t.begin(s);
      t.charge = s > 0;
      p.append(t, len, acc.ctxLen[s]!);
      t.charge = true;
      len = acc.ctxLen[s]!;
      const idx = acc.idx[s * acc.nLayers + l]!;
      for (let j = 0; j < idx.length; j++) t.read(idx[j]!);
      p.after(t, s, idx, acc.mass[s * acc.nLayers + l]!);
      if (t.hotCount > capacity) throw new Error(`simulator: ${t.hotCount} hot rows over the capacity ${capacity}`);
      const fast = (wpl + t.fast) / model.fastBw;
      const slow = t.slow / slowBw;
      run.timeS += Math.max(fast, slow);
      if (fast > slow) run.fastBound++;
      run.pairs++;
    }
    run.hits += t.hits;
    run.misses += t.misses;
    run.migrated += t.migrated;
    run.promotions += t.promotions;
    run.demotions += t.demotions;
  }
  return run;
}

/** The floor no placement can beat in this model (see the file comment). */
export function lowerBound(acc: AccessTrace, model: MemoryModel): number {
  const fixed = model.weightBytes / acc.nLayers + model.intermediateBytes;
  const both = model.fastBw + Math.min(model.slowBw, model.linkBw);
  let total = 0;
  let len = 0;
  for (let s = 0; s < acc.nSteps; s++) {
    const fresh = s === 0 ? 0 : acc.ctxLen[s]! - len;
    len = acc.ctxLen[s]!;
    for (let l = 0; l < acc.nLayers; l++) {
      const bytes = fixed + (acc.idx[s * acc.nLayers + l]!.length + fresh) * model.kvBytesPerToken;
      total += Math.max(fixed / model.fastBw, bytes / both);
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// Baselines.

function staticPolicy(): SimPolicy {
  return {
    append(t, from, to) {
      for (let i = from; i < to; i++) t.add(i, t.hotCount < t.capacity);
    },
    after() {},
  };
}

/** Promote every row read from the slow tier; evict the least recently used row not read at this step. */
function reactivePolicy(maxCtx: number): SimPolicy {
  const S = maxCtx; // sentinel of the circular list; next[S] is the least recently used
  const next = new Int32Array(maxCtx + 1);
  const prev = new Int32Array(maxCtx + 1);
  const lastUse = new Int32Array(maxCtx).fill(-1);
  next[S] = prev[S] = S;
  const unlink = (i: number) => {
    next[prev[i]!] = next[i]!;
    prev[next[i]!] = prev[i]!;
  };
  const pushMru = (i: number) => {
    prev[i] = prev[S]!;
    next[i] = S;
    next[prev[S]!] = i;
    prev[S] = i;
  };
  const evict = (t: LayerTier) => {
    const v = next[S]!;
    unlink(v);
    t.demote(v);
  };
  return {
    append(t, from, to) {
      for (let i = from; i < to; i++) {
        if (t.hotCount >= t.capacity) evict(t);
        t.add(i, true);
        pushMru(i);
        lastUse[i] = t.step - 1; // written, not yet read: evictable at this step
      }
    },
    after(t, step, idx) {
      for (let j = 0; j < idx.length; j++) {
        const i = idx[j]!;
        lastUse[i] = step;
        if (t.hot[i] === 1) {
          unlink(i);
          pushMru(i);
        }
      }
      for (let j = 0; j < idx.length; j++) {
        const i = idx[j]!;
        if (t.hot[i] === 1) continue;
        if (t.hotCount >= t.capacity) {
          if (lastUse[next[S]!] === step) break; // every hot row is in use at this step
          evict(t);
        }
        t.promote(i);
        pushMru(i);
      }
    },
  };
}

/** Items (tokens or pages) in buckets by key, one doubly linked list per key value. */
class Buckets {
  private readonly head: Int32Array;
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  size = 0;
  constructor(readonly maxKey: number, nItems: number) {
    this.head = new Int32Array(maxKey + 1).fill(-1);
    this.next = new Int32Array(nItems);
    this.prev = new Int32Array(nItems);
  }
  insert(j: number, k: number): void {
    const h = this.head[k]!;
    this.next[j] = h;
    this.prev[j] = -1;
    if (h >= 0) this.prev[h] = j;
    this.head[k] = j;
    this.size++;
  }
  remove(j: number, k: number): void {
    const p = this.prev[j]!;
    const n = this.next[j]!;
    if (p >= 0) this.next[p] = n;
    else this.head[k] = n;
    if (n >= 0) this.prev[n] = p;
    this.size--;
  }
  has(k: number): boolean {
    return this.head[k]! >= 0;
  }
  /** The items with key k. */
  *bucket(k: number): Generator<number> {
    for (let j = this.head[k]!; j >= 0; j = this.next[j]!) yield j;
  }
  /** Items by descending key, keys >= minKey, lazily. */
  *descending(minKey = 0): Generator<number> {
    for (let k = this.maxKey; k >= minKey; k--) yield* this.bucket(k);
  }
}

/**
 * Perfect-knowledge look-ahead for one layer: items of `g` tokens ranked by their reads in the next W steps; at each
 * step the fraction R of the beneficial swaps is made. A swap is beneficial when the reads it brings to the fast
 * tier exceed those it sends away plus the slow-tier rows the move itself costs (the promoted item's rows not
 * already staged, the demoted item's rows not yet in the slow tier), so prefetching never costs more than it saves.
 * A new item written hot also saves its rows' slow-tier write, and among victims with equal reads ahead those the
 * slow tier already holds go first, since demoting them is free.
 */
function lookaheadPolicy(acc: AccessTrace, layer: number, capacity: number, g: number, W: number, R: number): SimPolicy {
  const L = acc.nLayers;
  const nItems = Math.ceil(acc.maxCtx / g);
  const capItems = Math.floor(capacity / g);
  const key = new Int32Array(nItems);
  const where = new Uint8Array(nItems); // 0: not yet created, 1: hot, 2: cold
  const hot = new Buckets(g * W, nItems);
  const cold = new Buckets(g * W, nItems);
  let len = 0;
  const bump = (j: number, d: number) => {
    const k = key[j]!;
    const w = where[j];
    if (w === 1) hot.remove(j, k);
    else if (w === 2) cold.remove(j, k);
    key[j] = k + d;
    if (w === 1) hot.insert(j, k + d);
    else if (w === 2) cold.insert(j, k + d);
  };
  const reads = (s: number) => acc.idx[s * L + layer]!;
  for (let s = 0; s < Math.min(W, acc.nSteps); s++) for (const i of reads(s)) key[Math.floor(i / g)]!++;
  /** Slow-tier rows that moving item j costs: to promote, rows not staged; to demote, rows not yet in the slow tier. */
  const moveCost = (t: LayerTier, j: number, toHot: boolean) => {
    let c = 0;
    const end = Math.min(len, (j + 1) * g);
    for (let i = j * g; i < end; i++) if (toHot ? !t.staged(i) : !t.inSlowTier(i)) c++;
    return c;
  };
  const moveItem = (t: LayerTier, j: number, toHot: boolean) => {
    const end = Math.min(len, (j + 1) * g);
    for (let i = j * g; i < end; i++) {
      if (toHot) t.promote(i);
      else t.demote(i);
    }
    (toHot ? cold : hot).remove(j, key[j]!);
    (toHot ? hot : cold).insert(j, key[j]!);
    where[j] = toHot ? 1 : 2;
  };
  /** Hot items, fewest reads ahead first; among equal reads, those the slow tier already holds (free to demote). */
  function* victimsOf(t: LayerTier): Generator<number> {
    for (let k = 0; k <= hot.maxKey; k++) {
      if (!hot.has(k)) continue;
      for (const j of hot.bucket(k)) if (moveCost(t, j, false) === 0) yield j;
      for (const j of hot.bucket(k)) if (moveCost(t, j, false) > 0) yield j;
    }
  }
  const pairs: number[] = [];
  return {
    append(t, from, to) {
      for (let i = from; i < to; i++) {
        len = i; // rows [0, i) exist
        const j = Math.floor(i / g);
        if (where[j] === 0) {
          let toHot = hot.size < capItems;
          if (!toHot && capItems > 0) {
            // Written hot, the new rows also skip their slow-tier write (up to g of them): part of the gain.
            const m = victimsOf(t).next().value;
            if (m !== undefined && key[j]! + g > key[m]! + moveCost(t, m, false)) {
              moveItem(t, m, false);
              toHot = true;
            }
          }
          where[j] = toHot ? 1 : 2;
          (toHot ? hot : cold).insert(j, key[j]!);
        }
        t.add(i, where[j] === 1);
      }
      len = to;
    },
    after(t, step) {
      // Slide the window from [step, step + W) to [step + 1, step + W].
      for (const i of reads(step)) bump(Math.floor(i / g), -1);
      if (step + W < acc.nSteps) for (const i of reads(step + W)) bump(Math.floor(i / g), +1);
      if (R <= 0 || cold.size === 0 || capItems === 0) return;
      // Beneficial moves, best first: (candidate, victim or -1 for a free slot).
      pairs.length = 0;
      let free = capItems - hot.size;
      const victims = victimsOf(t);
      for (const c of cold.descending(1)) {
        const gain = key[c]! - moveCost(t, c, true);
        if (free > 0) {
          if (gain <= 0) break;
          free--;
          pairs.push(c, -1);
          continue;
        }
        const v = victims.next();
        if (v.done || gain <= key[v.value]! + moveCost(t, v.value, false)) break;
        pairs.push(c, v.value);
      }
      const k = pairs.length / 2;
      const moves = R >= 1 ? k : Math.ceil(R * k);
      for (let m = 0; m < moves; m++) {
        if (pairs[2 * m + 1]! >= 0) moveItem(t, pairs[2 * m + 1]!, false);
        moveItem(t, pairs[2 * m]!, true);
      }
    },
  };
}

/**
 * Online settings for the simulator's reader, which reads only tokens with mass at a step and charges a full row for
 * each: rank by how often a token is read (signal 'reads'), promote only rows read now (staged), no pinned window
 * beyond the newest token. Chosen by a grid over signal, alpha, hysteresis, window and sinks on held-out traces
 * (the fixture models sampling at temperature 0.8 from another prompt; geometric mean of the time ratio to reactive
 * over three models x fast tiers of 1/8, 1/4, 1/2 x dense and 60% sparse reads: 1.017x, worst cell 0.99997x;
 * scripts/bench/tune-online.ts), not on the traces the tests replay.
 */
export const READS_ONLINE: Omit<EmaPlacementOptions, 'capacity'> = { signal: 'reads', alpha: 0.3, hysteresis: 0.25, window: 1, sinks: 0 };

/** The engine's online policy (EmaPlacement) driven through its public interface. */
function onlinePolicy(maxCtx: number, capacity: number, opts: Omit<EmaPlacementOptions, 'capacity'>): SimPolicy {
  const sinks = Math.min(opts.sinks ?? 4, Math.floor(capacity / 4));
  const window = Math.max(1, Math.min(opts.window ?? 32, capacity - sinks));
  const p = new EmaPlacement({ ...opts, capacity, sinks, window });
  const dense = new Float32Array(maxCtx);
  return {
    append(t, from, to) {
      const d = p.append(to - from);
      for (const i of d.demote) t.demote(i);
      let c = 0;
      for (let i = from; i < to; i++) {
        const isCold = c < d.cold.length && d.cold[c] === i;
        if (isCold) c++;
        t.add(i, !isCold);
      }
    },
    after(t, _step, idx, mass) {
      const n = p.length;
      dense.fill(0, 0, n);
      // A row the reader read counts as read for the EMA even where the trace stores its mass as 0 (an exact reader
      // reads those too, and the engine's kernel hands the policy their true, tiny mass).
      for (let j = 0; j < idx.length; j++) dense[idx[j]!] = Math.max(mass[j]!, 1e-30);
      const d = p.observe(dense.subarray(0, n));
      for (const i of d.demote) t.demote(i);
      for (const i of d.promote) t.promote(i);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Simulated annealing over (W, R).

export interface AnnealOptions {
  seed?: number;
  /** Starting window (default 8) and ratio (default 0.5): the first point evaluated. */
  w0?: number;
  r0?: number;
  /**
   * Coarse scan before the annealing, which then starts from the best point seen (default: windows 1, 2, 3, 4, 6, 8,
   * 12, 16, 24, 32, 48, 64 up to wMax, at ratios 0, 0.3, 0.7 and 1; [] for none). The surface can hold separate
   * valleys (a short window migrating everything, a long one migrating little) that moves of +-2 in W rarely cross.
   */
  scanW?: readonly number[];
  scanR?: readonly number[];
  /** Largest window tried (default 64, and at most the trace's steps). */
  wMax?: number;
  /** Most distinct (W, R) evaluations: the coarse scan, the annealing and the descent together (default 120). */
  maxEvals?: number;
  /** Moves per temperature level (default 10). */
  itersPerLevel?: number;
  /** Temperature factor per level (default 0.9, as in the paper). */
  cooling?: number;
  /**
   * Stop after `patience` (default 3) consecutive levels improving the best by less than this fraction (default 1e-4;
   * the paper's 0.1% is coarser than the gaps between policies on near-dense traces: there it left the oracle behind
   * the online policy in 3 of the 216 cells of scripts/bench/ordering-sweep.ts, 2 with the descent; 1e-4 in none).
   */
  minGain?: number;
  patience?: number;
  /** Stop when the temperature falls below this fraction of the initial one (default 1e-3). */
  floor?: number;
}

export interface AnnealResult {
  w: number;
  r: number;
  cost: number;
  evals: number;
  levels: number;
  stoppedBy: 'converged' | 'floor' | 'budget';
}

/** annealWR's default coarse scan (see AnnealOptions.scanW). */
const SCAN_W = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];
const SCAN_R = [0, 0.3, 0.7, 1];

/**
 * Minimises cost(W, R) over W in [1, wMax] and R in {0, 0.1, ..., 1}. First the start point and a coarse scan
 * (`scanW` x `scanR`); the annealing starts from the best of them: moves change W by +-1 or +-2 (probability 0.4), R
 * by +-0.1 (0.4) or both (0.2); Metropolis acceptance exp(-dCost / T); T starts where ~80% of uphill moves are
 * accepted and is multiplied by `cooling` per level. Then a descent from the best point: move to the first neighbour
 * (W +-1 or +-2, R +-0.1, or both by one step) that costs less, until none does or the budget ends. The stop (the
 * best gaining less than `minGain` over `patience` levels) can come while T is still high, far from any minimum when
 * the whole surface spans little more than that, as on near-dense traces; the descent only adds evaluations, so it
 * never loses the annealing's best. Evaluations are memoised; seeded, so it is reproducible.
 *
 * Measured on 239 exhaustive (W 1-64 x R) surfaces (the 18 test cells, 216 of scripts/bench/ordering-sweep.ts, the
 * README's 5 synthetic traces): the search ends at the grid's minimum in 201, at most 0.048% above it, after 67
 * evaluations on average; without the scan, in 139, up to 2.4% above (the annealing stays in the valley it starts in).
 */
export function annealWR(cost: (w: number, r: number) => number, opts: AnnealOptions = {}): AnnealResult {
  const rng = new Rng(opts.seed ?? 1);
  const wMax = Math.max(1, Math.floor(opts.wMax ?? 64));
  const maxEvals = opts.maxEvals ?? 120;
  const iters = opts.itersPerLevel ?? 10;
  const cooling = opts.cooling ?? 0.9;
  const minGain = opts.minGain ?? 1e-4;
  const patience = opts.patience ?? 3;
  const floor = opts.floor ?? 1e-3;
  const memo = new Map<number, number>();
  const clampW = (w: number) => Math.min(wMax, Math.max(1, w));
  const clampR = (r: number) => Math.min(10, Math.max(0, r));
  const f = (w: number, r10: number) => {
    const k = w * 16 + r10;
    let v = memo.get(k);
    if (v === undefined) {
      v = cost(w, r10 / 10);
      memo.set(k, v);
    }
    return v;
  };
  const neighbour = (w: number, r10: number): [number, number] => {
    const u = rng.next();
    const dw = [-2, -1, 1, 2][rng.int(4)]!;
    const dr = rng.next() < 0.5 ? -1 : 1;
    if (u < 0.4) return [clampW(w + dw), r10];
    if (u < 0.8) return [w, clampR(r10 + dr)];
    return [clampW(w + dw), clampR(r10 + dr)];
  };
  let w = clampW(Math.round(opts.w0 ?? 8));
  let r10 = clampR(Math.round((opts.r0 ?? 0.5) * 10));
  let cur = f(w, r10);
  let best = { w, r10, cost: cur };
  for (const sr of opts.scanR ?? SCAN_R) {
    for (const sw of opts.scanW ?? SCAN_W) {
      if (sw > wMax || memo.size >= maxEvals) continue;
      const w2 = clampW(Math.round(sw));
      const r2 = clampR(Math.round(sr * 10));
      const c = f(w2, r2);
      if (c < best.cost) best = { w: w2, r10: r2, cost: c };
    }
  }
  w = best.w;
  r10 = best.r10;
  cur = best.cost;
  // Initial temperature: mean uphill step among a few probes, for an acceptance of ~0.8.
  let up = 0;
  let nUp = 0;
  for (let i = 0; i < 6 && memo.size < maxEvals; i++) {
    const [w2, r2] = neighbour(w, r10);
    const d = f(w2, r2) - cur;
    if (d > 0) {
      up += d;
      nUp++;
    }
  }
  const T0 = nUp > 0 ? up / nUp / Math.log(1 / 0.8) : Math.max(1e-12, 0.01 * cur);
  let T = T0;
  let levels = 0;
  let stall = 0;
  let stoppedBy: AnnealResult['stoppedBy'] = 'floor';
  for (let guard = 0; guard < 10000; guard++) {
    const before = best.cost;
    for (let i = 0; i < iters; i++) {
      if (memo.size >= maxEvals) break;
      const [w2, r2] = neighbour(w, r10);
      const c = f(w2, r2);
      if (c <= cur || rng.next() < Math.exp(-(c - cur) / T)) {
        w = w2;
        r10 = r2;
        cur = c;
        if (c < best.cost) best = { w, r10, cost: c };
      }
    }
    levels++;
    T *= cooling;
    if (memo.size >= maxEvals) {
      stoppedBy = 'budget';
      break;
    }
    stall = (before - best.cost) / before < minGain ? stall + 1 : 0;
    if (stall >= patience) {
      stoppedBy = 'converged';
      break;
    }
    if (T < floor * T0) break;
  }
  const moves = [[1, 0], [-1, 0], [2, 0], [-2, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]] as const;
  for (let moved = true; moved && memo.size < maxEvals; ) {
    moved = false;
    for (const [dw, dr] of moves) {
      if (memo.size >= maxEvals) break;
      const w2 = clampW(best.w + dw);
      const r2 = clampR(best.r10 + dr);
      const c = f(w2, r2);
      if (c < best.cost) {
        best = { w: w2, r10: r2, cost: c };
        moved = true;
        break;
      }
    }
  }
  return { w: best.w, r: best.r10 / 10, cost: best.cost, evals: memo.size, levels, stoppedBy };
}

// ---------------------------------------------------------------------------------------------------------------

export interface SimulateOptions {
  /** Read only the top (1 - sparsity) of the context at each step (default 0: every token with mass). */
  sparsity?: number;
  /** Read only tokens whose stored mass at the step is above this (default 0), as a threshold-sparse reader would. */
  minMass?: number;
  /** Read every token at every step, whatever its stored mass (exact attention, the engine's own reader). */
  exact?: boolean;
  /** The online policy's settings (capacity comes from the model). */
  online?: Omit<EmaPlacementOptions, 'capacity'>;
  /** Annealing for `oracle` and `page` (each gets its own seed stream from `seed`). */
  anneal?: AnnealOptions;
  /** Page size of the page-granular policy, default 16. */
  pageSize?: number;
  /** Policies to run, default all. `static` always runs (the others are reported relative to it). */
  policies?: readonly PolicyName[];
  onProgress?: (message: string) => void;
}

export interface SimulationReport {
  model: MemoryModel;
  layers: number;
  steps: number;
  maxContext: number;
  hotTokensPerLayer: number;
  sparsity: number;
  minMass: number;
  exact: boolean;
  /** Seconds no placement can beat (see the file comment). */
  lowerBoundS: number;
  results: PolicyResult[];
}

/** A reader named as the tests and benches sweep them: every token, every token with mass, or a sparsity in (0, 1). */
export type ReaderSpec = 'exact' | 'dense' | number;

/** The SimulateOptions that make `reader` the replay's reader. */
export function readerOptions(reader: ReaderSpec): Pick<SimulateOptions, 'sparsity' | 'exact'> {
  return reader === 'exact' ? { exact: true } : { sparsity: reader === 'dense' ? 0 : reader };
}

/**
 * How the report's reader read the trace, for titles: '' for every token with mass, else ', sparsity S, mass > M', or
 * ', exact reads'.
 */
export function readerNote(rep: Pick<SimulationReport, 'sparsity' | 'minMass' | 'exact'>): string {
  if (rep.exact) return ', exact reads';
  return `${rep.sparsity ? `, sparsity ${rep.sparsity}` : ''}${rep.minMass ? `, mass > ${rep.minMass}` : ''}`;
}

/** The reads of the trace and the hot rows per layer, after checking the model and the trace. */
function prepare(trace: AttentionTrace, model: MemoryModel, opts: SimulateOptions): { acc: AccessTrace; capacity: number } {
  checkModel(model);
  if (trace.records.length === 0) throw new OptionError('trace', 'has no decode steps');
  const acc = accessTrace(trace, opts.sparsity ?? 0, opts.minMass ?? 0, opts.exact ?? false);
  if (acc.maxCtx * acc.nLayers > 1 << 28) throw new OptionError('trace', `${acc.nLayers} layers x ${acc.maxCtx} tokens is too large to simulate`);
  const capacity = Math.min(acc.maxCtx, Math.floor(model.fastBytes / acc.nLayers / model.kvBytesPerToken));
  if (capacity < 1) throw new OptionError('fastBytes', `${model.fastBytes} bytes hold less than one KV row per layer (${acc.nLayers} layers x ${model.kvBytesPerToken} bytes)`);
  return { acc, capacity };
}

/**
 * The oracle's search space: the per-token look-ahead's time at any (W, R), W in [1, wMax], for probing the surface
 * the annealing walks (scripts/bench/ordering-sweep.ts --surfaces scans all of it). Same checks as simulatePlacement.
 */
export function lookaheadSurface(trace: AttentionTrace, model: MemoryModel, opts: Pick<SimulateOptions, 'sparsity' | 'minMass' | 'exact'> = {}): { wMax: number; cost: (w: number, r: number) => number } {
  const { acc, capacity } = prepare(trace, model, opts);
  return { wMax: Math.min(64, acc.nSteps), cost: (w, r) => replay(acc, model, capacity, (l) => lookaheadPolicy(acc, l, capacity, 1, w, r)).timeS };
}

/** Replays the trace under every policy. Throws OptionError for an empty trace or a fast tier under one row per layer. */
export function simulatePlacement(trace: AttentionTrace, model: MemoryModel, opts: SimulateOptions = {}): SimulationReport {
  const { acc, capacity } = prepare(trace, model, opts);
  const g = opts.pageSize ?? 16;
  if (!Number.isInteger(g) || g < 1 || g > 4096) throw new OptionError('pageSize', `${g} is not an integer in [1, 4096]`);
  const want = new Set<PolicyName>(opts.policies ?? POLICY_NAMES);
  want.add('static');
  for (const p of want) if (!POLICY_NAMES.includes(p)) throw new OptionError('policies', `unknown policy "${p}" (${POLICY_NAMES.join(', ')})`);
  const progress = opts.onProgress ?? (() => {});
  const results: PolicyResult[] = [];
  const add = (policy: PolicyName, run: Run, extra: Partial<PolicyResult> = {}) => {
    const reads = run.hits + run.misses;
    results.push({
      policy, timeS: run.timeS, throughputVsStatic: 0, hitRate: reads ? run.hits / reads : 1, fastBound: run.fastBound / run.pairs,
      migratedBytes: run.migrated, promotions: run.promotions, demotions: run.demotions, ...extra,
    });
  };
  const seed = opts.anneal?.seed ?? 1;
  const wMax = Math.min(opts.anneal?.wMax ?? 64, acc.nSteps);
  const annealed = (policy: 'oracle' | 'page', gran: number, seedOffset: number) => {
    progress(`${policy}: annealing W and R`);
    const at = (w: number, r: number) => replay(acc, model, capacity, (l) => lookaheadPolicy(acc, l, capacity, gran, w, r));
    const sa = annealWR((w, r) => at(w, r).timeS, { ...opts.anneal, wMax, seed: seed + seedOffset });
    progress(`${policy}: W ${sa.w}, R ${sa.r} after ${sa.evals} evaluations (${sa.stoppedBy})`);
    add(policy, at(sa.w, sa.r), { w: sa.w, r: sa.r, evals: sa.evals });
  };
  for (const p of POLICY_NAMES) {
    if (!want.has(p)) continue;
    if (p === 'ideal') add(p, replay(acc, model, acc.maxCtx, () => staticPolicy()));
    else if (p === 'static') add(p, replay(acc, model, capacity, () => staticPolicy()));
    else if (p === 'reactive') add(p, replay(acc, model, capacity, () => reactivePolicy(acc.maxCtx)));
    else if (p === 'online') add(p, replay(acc, model, capacity, () => onlinePolicy(acc.maxCtx, capacity, opts.online ?? {})));
    else if (p === 'page') annealed('page', g, 7919);
    else annealed('oracle', 1, 0);
  }
  const tStatic = results.find((r) => r.policy === 'static')!.timeS;
  for (const r of results) r.throughputVsStatic = tStatic / r.timeS;
  return {
    model, layers: acc.nLayers, steps: acc.nSteps, maxContext: acc.maxCtx, hotTokensPerLayer: capacity,
    sparsity: opts.sparsity ?? 0, minMass: opts.minMass ?? 0, exact: opts.exact ?? false, lowerBoundS: lowerBound(acc, model), results,
  };
}
