/**
 * Adaptive draft length. Each verify pass of k drafts accepts a prefix of them; with a per-token acceptance rate a
 * (each draft kept with probability a once the ones before it were), a pass yields (1 - a^(k+1)) / (1 - a) tokens
 * and costs about 1 + c k target decode steps (c: the drafter's relative cost of one more draft, drafting and its
 * verify row). k is the integer in [minK, maxK] that maximises tokens per cost at the running estimate of a, which is
 * the maximum-likelihood estimate for that model over recent passes (accepted tokens / (accepted + rejections)),
 * with older passes decayed and a weak prior. It depends only on acceptance counts, so runs stay reproducible.
 */
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
    if (drafted === 0) return;
    this.acc = this.decay * this.acc + accepted;
    this.rej = this.decay * this.rej + (accepted < drafted ? 1 : 0);
    if (this.adaptive) this.cur = bestK(this.rate, this.minK, this.maxK, this.relativeCost);
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
