/**
 * Token sampling, llama.cpp's default chain order: repetition penalty -> top-k -> top-p -> min-p -> temperature ->
 * draw. temperature <= 0 is greedy (argmax). A seeded PRNG makes sampling reproducible.
 */
import { OptionError } from '../errors.js';

export interface SamplingOptions {
  /** 0 = greedy. Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). Default 40. */
  topK?: number;
  /** Keep the smallest set of tokens with cumulative probability >= p (1 = off). Default 0.95. */
  topP?: number;
  /** Drop tokens whose probability is below minP times the top one (0 = off). Default 0.05. */
  minP?: number;
  /** Divide positive (multiply negative) logits of recently seen tokens (1 = off, the default, as in llama.cpp). */
  repeatPenalty?: number;
  /** How many recent tokens the penalty looks at. Default 64. */
  repeatLastN?: number;
  /** PRNG seed; default random. */
  seed?: number;
}

export type ResolvedSampling = Required<Omit<SamplingOptions, 'seed'>> & { seed: number };

function check(name: string, v: unknown, ok: (x: number) => boolean, what: string): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new OptionError(name, `${String(v)} is not ${what}`);
}

export function resolveSampling(o: SamplingOptions = {}): ResolvedSampling {
  check('temperature', o.temperature, (x) => x >= 0 && x <= 100, 'a number in [0, 100]');
  check('topK', o.topK, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer');
  check('topP', o.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  check('minP', o.minP, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  check('repeatPenalty', o.repeatPenalty, (x) => x > 0 && x <= 100, 'a number in (0, 100]');
  check('repeatLastN', o.repeatLastN, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer');
  check('seed', o.seed, (x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff, 'an integer in [0, 4294967295]');
  return {
    temperature: o.temperature ?? 0.8,
    topK: o.topK ?? 40,
    topP: o.topP ?? 0.95,
    minP: o.minP ?? 0.05,
    repeatPenalty: o.repeatPenalty ?? 1,
    repeatLastN: o.repeatLastN ?? 64,
    seed: o.seed ?? ((Math.random() * 0x100000000) >>> 0),
  };
}

/** xoshiro128**: small, fast, good enough for sampling; seeded through splitmix32. */
export class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!; s[3]! ^= s[1]!; s[1]! ^= s[2]!; s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return r / 0x100000000;
  }
}
const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

export function argmax(logits: ArrayLike<number>, at = 0, n = logits.length - at): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[at + i]!;
    if (v > bv) { bv = v; best = i; }
  }
  return best;
}

/**
 * A distribution over tokens after the sampler's processing: distinct `ids` with `probs` summing to 1, most likely
 * first. Tokens not listed have probability 0.
 */
export interface TokenDist {
  ids: number[];
  probs: number[];
}

/** Probability of `token` in `d` (0 when it is not listed). */
export function probOf(d: TokenDist, token: number): number {
  const i = d.ids.indexOf(token);
  return i < 0 ? 0 : d.probs[i]!;
}

export class Sampler {
  private readonly rng: Rng;
  constructor(readonly opts: ResolvedSampling) {
    this.rng = new Rng(opts.seed);
  }

  get greedy(): boolean {
    return this.opts.temperature <= 0;
  }

  /** Uniform in [0, 1) from this sampler's stream. */
  uniform(): number {
    return this.rng.next();
  }

  /** Picks the next token from one row of logits; `recent` holds the context for the repetition penalty. */
  sample(logits: Float32Array, recent: readonly number[]): number {
    if (this.greedy) return argmax(this.penalized(logits, recent));
    return this.draw(this.distribution(logits, recent));
  }

  /**
   * The distribution `sample` draws from for this row: repetition penalty, top-k, top-p, min-p, temperature.
   * Greedy sampling gives a point mass on the argmax. Speculative decoding compares drafts against it.
   */
  distribution(logits: Float32Array, recent: readonly number[]): TokenDist {
    const o = this.opts;
    const l = this.penalized(logits, recent);
    if (this.greedy) return { ids: [argmax(l)], probs: [1] };

    // Candidates sorted by logit; top-k selects first so that only k ids are sorted.
    let ids = o.topK > 0 && o.topK < l.length ? topKIds(l, o.topK) : Array.from({ length: l.length }, (_, i) => i);
    ids.sort((a, b) => l[b]! - l[a]! || a - b);
    const softmax = (cands: number[], temp: number): number[] => {
      const m = l[cands[0]!]!;
      const e = cands.map((i) => Math.exp((l[i]! - m) / temp));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / s);
    };
    if (o.topP < 1) {
      const p = softmax(ids, 1);
      let cum = 0;
      let keep = ids.length;
      for (let i = 0; i < ids.length; i++) {
        cum += p[i]!;
        if (cum >= o.topP) { keep = i + 1; break; }
      }
      ids = ids.slice(0, keep);
    }
    if (o.minP > 0) {
      const p = softmax(ids, 1);
      const cut = p[0]! * o.minP;
      let keep = 1;
      while (keep < ids.length && p[keep]! >= cut) keep++;
      ids = ids.slice(0, keep);
    }
    return { ids, probs: softmax(ids, o.temperature) };
  }

  /** Draws a token from `d` with one uniform from this sampler's stream. */
  draw(d: TokenDist): number {
    return drawFrom(d, this.rng.next());
  }

  private penalized(logits: Float32Array, recent: readonly number[]): Float32Array {
    const o = this.opts;
    if (o.repeatPenalty === 1 || o.repeatLastN <= 0 || recent.length === 0) return logits;
    const l = logits.slice();
    const seen = new Set(recent.slice(-o.repeatLastN));
    for (const t of seen) {
      if (t < 0 || t >= l.length) continue;
      l[t] = l[t]! > 0 ? l[t]! / o.repeatPenalty : l[t]! * o.repeatPenalty;
    }
    return l;
  }
}

/** The token of `d` where the cumulative probability first passes `u` (u uniform in [0, 1)). */
export function drawFrom(d: TokenDist, u: number): number {
  for (let i = 0; i < d.ids.length; i++) {
    u -= d.probs[i]!;
    if (u < 0) return d.ids[i]!;
  }
  return d.ids[d.ids.length - 1]!;
}

/** Ids of the k largest values (unordered), by a size-k min-heap: O(n log k). Ties keep the lower id. */
export function topKIds(l: ArrayLike<number>, k: number): number[] {
  const heap: number[] = [];
  const less = (a: number, b: number) => l[a]! < l[b]! || (l[a] === l[b] && a > b);
  const down = (i: number) => {
    for (;;) {
      const a = 2 * i + 1, b = a + 1;
      let m = i;
      if (a < heap.length && less(heap[a]!, heap[m]!)) m = a;
      if (b < heap.length && less(heap[b]!, heap[m]!)) m = b;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };
  for (let i = 0; i < l.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let c = heap.length - 1; c > 0;) {
        const p = (c - 1) >> 1;
        if (!less(heap[c]!, heap[p]!)) break;
        [heap[c], heap[p]] = [heap[p]!, heap[c]!];
        c = p;
      }
    } else if (less(heap[0]!, i)) {
      heap[0] = i;
      down(0);
    }
  }
  return heap;
}
