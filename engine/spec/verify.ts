/**
 * The acceptance rule of speculative sampling (Leviathan et al. 2023, Chen et al. 2023): a draft token x drawn from
 * the drafter's distribution q is kept with probability min(1, p(x) / q(x)), where p is the target's distribution at
 * that position; on rejection the token is drawn from normalize(max(p - q, 0)). The emitted token is then distributed
 * exactly as p, whatever q is. A drafter that proposes x deterministically has q = a point mass on x: x is kept with
 * probability p(x), and a rejection draws from p with x removed. With greedy sampling p is a point mass on the
 * argmax, and the rule reduces to "keep x if it is the argmax, else emit the argmax".
 */
import { drawFrom, probOf } from '../generate/sampling.js';
import type { TokenDist } from '../generate/sampling.js';

/**
 * Decides one draft position. `p`: the target's distribution (after the sampler's processing); `x`: the draft token;
 * `q`: the distribution x was drawn from (undefined: a point mass on x); `uniform`: a source of independent uniforms
 * in [0, 1). Returns x if accepted, else the replacement token.
 */
export function acceptOrResample(p: TokenDist, x: number, q: TokenDist | undefined, uniform: () => number): { token: number; accepted: boolean } {
  const px = probOf(p, x);
  const qx = q === undefined ? 1 : probOf(q, x);
  if (px >= qx || uniform() * qx < px) return { token: x, accepted: true };
  // Residual max(p - q, 0) over p's support (outside it p = 0, so the residual is 0 too).
  const qOf = new Map<number, number>();
  if (q === undefined) qOf.set(x, 1);
  else q.ids.forEach((id, i) => qOf.set(id, q.probs[i]!));
  const probs = p.ids.map((id, i) => Math.max(p.probs[i]! - (qOf.get(id) ?? 0), 0));
  const sum = probs.reduce((a, b) => a + b, 0);
  // sum = 0 only when p = q, where rejection has probability 0: fall back to p against rounding.
  if (!(sum > 0)) return { token: drawFrom(p, uniform()), accepted: false };
  return { token: drawFrom({ ids: p.ids, probs: probs.map((v) => v / sum) }, uniform()), accepted: false };
}
