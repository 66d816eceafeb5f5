/**
 * Drafters for speculative decoding: something cheap that guesses the next k tokens, which the target model then
 * checks in one batched forward pass (engine/spec/verify.ts). Three kinds share this interface: a draft model
 * (draft-model.ts), prompt lookup (lookup.ts) and, for benchmarks, a drafter with a set acceptance rate
 * (controlled.ts).
 */
import type { TokenDist } from '../generate/sampling.js';

export interface Draft {
  /** Proposed continuation, at most the k asked for (may be empty: the step is then a plain decode step). */
  tokens: number[];
  /**
   * For each token, the distribution the drafter drew it from (q in the rejection-sampling rule). Absent (or an
   * entry undefined) means a point mass on the token: the drafter proposes it deterministically.
   */
  dists?: Array<TokenDist | undefined>;
}

export interface Drafter {
  /** Short description for stats and logs ('lookup', 'draft model NAME', ...). */
  readonly name: string;
  /**
   * Proposes up to k tokens to follow `context` (the whole sequence so far: prompt and accepted tokens). Called
   * once per verify pass; the next call's context tells the drafter which of its tokens were accepted, so a drafter
   * with state rolls back there (the draft model truncates its KV cache to the common prefix).
   */
  propose(context: readonly number[], k: number): Promise<Draft> | Draft;
  /**
   * Cost of one drafted token relative to one decode step of the target (drafting plus the extra verify row), used
   * by adaptive k. Model-free drafters cost about one verify row.
   */
  readonly relativeCost: number;
  /** Frees what the drafter owns (a draft model it loaded, its session). */
  dispose(): void;
}
