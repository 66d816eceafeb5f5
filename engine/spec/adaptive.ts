/**
 * Adaptive draft length. Each verify pass of k drafts accepts a prefix of them; with a per-token acceptance rate a
 * (each draft kept with probability a once the ones before it were), a pass yields (1 - a^(k+1)) / (1 - a) tokens
 * and costs about 1 + c k target decode steps (c: the drafter's relative cost of one more draft, drafting and its
 * verify row). k is the integer in [minK, maxK] that maximises tokens per cost at the running estimate of a, which is
 * the maximum-likelihood estimate for that model over recent passes (accepted tokens / (accepted + rejections)),
 * with older passes decayed and a weak prior. It depends only on acceptance counts, so runs stay reproducible.
 *
 * Greedy decoding may instead price passes by their measured time (`enableTiming`): its output does not depend on
 * k, so timing cannot change what is generated. A pass of n rows is modelled as T(n) = T(1) + t (n - 1), fitted to
 * the passes seen (decayed least squares; with one row count seen, the drafter's relative cost stands in for the
 * slope), plus the measured drafting time per draft, and k in [0, maxK] maximises tokens per millisecond. k = 0 is
 * plain decoding, chosen where a verify row costs about a step (compute-bound kernels with the weights in cache);
 * every PROBE_EVERY plain passes one pass drafts again, so that the acceptance rate and the costs stay current.
 */
const PROBE_EVERY = 32;

export class AdaptiveK {
  private acc = 0;
  private rej = 0;
  private cur: number;

  constructor(
    readonly initialK: number,
    readonly minK: number,
    readonly maxK: number,
    readonly relativeCost: number,
    readonly adaptive: boolean,
    /** Weight of the previous passes at each update (recent passes count most). */
    private readonly decay = 0.9,
  ) {
    this.cur = initialK;
  }

  /** Drafts to ask for in the next pass. */
  get k(): number {
    return this.cur;
  }

  /** Running per-token acceptance estimate (prior: the rate at which initialK would be chosen, weight of ~2 drafts). */
  get rate(): number {
    const prior = 0.7;
    return (this.acc + 2 * prior) / (this.acc + this.rej + 2);
  }

  /** Records a pass that drafted `drafted` tokens and kept `accepted` of them. */
  update(drafted: number, accepted: number): void {
    if (drafted > 0) {
      this.acc = this.decay * this.acc + accepted;
      this.rej = this.decay * this.rej + (accepted < drafted ? 1 : 0);
    }
    if (!this.adaptive) return;
    if (!this.timed) {
      if (drafted > 0) this.cur = bestK(this.rate, this.minK, this.maxK, this.relativeCost);
      return;
    }
    const k = this.timedK();
    if (k > 0) {
      this.lastPositive = k;
      this.plainPasses = 0;
      this.cur = k;
    } else if (++this.plainPasses >= PROBE_EVERY) {
      this.plainPasses = 0;
      this.cur = this.lastPositive; // a probe: drafts once more
    } else this.cur = 0;
  }

  // Timed mode (greedy only): decayed least-squares sums of (rows - 1, ms) over passes, and the drafting time.
  private timed = false;
  private sw = 0;
  private sx = 0;
  private sy = 0;
  private sxx = 0;
  private sxy = 0;
  private draftMsPerToken = 0;
  private draftWeight = 0;
  private plainPasses = 0;
  private lastPositive = 1;

  /** Prices passes by measured time from now on (greedy decoding only: see the class comment). */
  enableTiming(): void {
    if (this.adaptive) this.timed = true;
    this.lastPositive = Math.max(1, this.cur);
  }

  get timing(): boolean {
    return this.timed;
  }

  /** A verify pass of `rows` rows (the pending token and its drafts) took `ms`. */
  observePass(rows: number, ms: number): void {
    if (!this.timed || !(rows >= 1) || !(ms >= 0) || !Number.isFinite(ms)) return;
    const d = this.decay;
    const x = rows - 1;
    this.sw = d * this.sw + 1;
    this.sx = d * this.sx + x;
    this.sy = d * this.sy + ms;
    this.sxx = d * this.sxx + x * x;
    this.sxy = d * this.sxy + x * ms;
  }

  /** Drafting `k` tokens took `ms`. */
  observeDraft(k: number, ms: number): void {
    if (!this.timed || !(k >= 1) || !(ms >= 0) || !Number.isFinite(ms)) return;
    this.draftMsPerToken = (this.decay * this.draftWeight * this.draftMsPerToken + ms) / (this.decay * this.draftWeight + k);
    this.draftWeight = this.decay * this.draftWeight + k;
  }

  /** The modelled time of a pass of n rows (ms), from the passes seen; undefined before the first. */
  passMs(n: number): number | undefined {
    if (this.sw === 0) return undefined;
    const mx = this.sx / this.sw;
    const my = this.sy / this.sw;
    const vx = this.sxx / this.sw - mx * mx;
    // One row count seen so far: the drafter's relative cost per row, scaled to the time seen, stands in.
    const slope = vx > 0.25 ? Math.max(0, (this.sxy / this.sw - mx * my) / vx) : (this.relativeCost * my) / (1 + this.relativeCost * mx);
    return Math.max(0, my + slope * (n - 1 - mx));
  }

  private timedK(): number {
    const a = this.rate;
    let best = 0;
    let bv = -Infinity;
    for (let k = 0; k <= this.maxK; k++) {
      const t = this.passMs(k + 1);
      if (t === undefined) return this.cur;
      const v = expectedTokens(a, k) / (t + this.draftMsPerToken * k);
      if (v > bv * (1 + 1e-9)) { bv = v; best = k; }
    }
    return best;
  }
}

/** Expected tokens of a pass with k drafts at acceptance a: 1 + a + ... + a^k. */
export function expectedTokens(a: number, k: number): number {
  return a >= 1 ? k + 1 : (1 - a ** (k + 1)) / (1 - a);
}

/** The k in [minK, maxK] maximising expectedTokens(a, k) / (1 + cost k). */
export function bestK(a: number, minK: number, maxK: number, cost: number): number {
  let best = minK;
  let bv = -Infinity;
  for (let k = minK; k <= maxK; k++) {
    const v = expectedTokens(a, k) / (1 + cost * k);
    if (v > bv + 1e-12) { bv = v; best = k; }
  }
  return best;
}
