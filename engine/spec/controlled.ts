/**
 * A drafter for benchmarks whose acceptance rate is set: it proposes the target's own greedy continuation, recorded
 * beforehand, with each token replaced by another (uniformly chosen) with probability 1 - acceptance. Under greedy
 * verification every draft token is then accepted with probability `acceptance`, independently, so a pass of k
 * drafts yields on average (1 - a^(k+1)) / (1 - a) tokens. It reads the recorded sequence at the context's length,
 * so it is only meaningful for the greedy generation it was recorded from.
 */
import { OptionError } from '../errors.js';
import { Rng } from '../generate/sampling.js';
import type { Draft, Drafter } from './drafter.js';

export class ControlledDrafter implements Drafter {
  readonly name: string;
  readonly relativeCost = 0.1;
  private readonly rng: Rng;

  /** `reference`: prompt ids followed by the target's greedy continuation. */
  constructor(private readonly reference: readonly number[], readonly acceptance: number, private readonly vocabSize: number, seed = 1) {
    if (typeof acceptance !== 'number' || !(acceptance >= 0 && acceptance <= 1)) throw new OptionError('acceptance', `${String(acceptance)} is not a number in [0, 1]`);
    if (!Number.isInteger(vocabSize) || vocabSize < 2) throw new OptionError('vocabSize', `${String(vocabSize)} is not an integer >= 2`);
    this.name = `controlled (acceptance ${acceptance})`;
    this.rng = new Rng(seed);
  }

  propose(context: readonly number[], k: number): Draft {
    const tokens: number[] = [];
    for (let j = 0; j < k && context.length + j < this.reference.length; j++) {
      let t = this.reference[context.length + j]!;
      if (this.rng.next() >= this.acceptance) t = (t + 1 + Math.floor(this.rng.next() * (this.vocabSize - 1))) % this.vocabSize;
      tokens.push(t);
    }
    return { tokens };
  }

  dispose(): void {}
}
