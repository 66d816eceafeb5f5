/**
 * Prompt lookup decoding: no model. Find the most recent earlier occurrence of the longest suffix n-gram of the
 * context (n from maxNgram down to minNgram) and propose the tokens that followed it. Works where the output repeats
 * the input (summaries, code edits, extraction) and costs only a scan of the context.
 */
import { OptionError } from '../errors.js';
import type { Draft, Drafter } from './drafter.js';

export interface LookupOptions {
  /** Longest suffix n-gram searched for (default 3). */
  maxNgram?: number;
  /** Shortest (default 1). */
  minNgram?: number;
}

export class PromptLookupDrafter implements Drafter {
  readonly name = 'prompt lookup';
  readonly relativeCost = 0.1;
  readonly maxNgram: number;
  readonly minNgram: number;

  constructor(o: LookupOptions = {}) {
    const maxN = o.maxNgram ?? 3;
    const minN = o.minNgram ?? 1;
    if (!Number.isInteger(maxN) || maxN < 1 || maxN > 64) throw new OptionError('draft.lookup.maxNgram', `${String(maxN)} is not an integer in [1, 64]`);
    if (!Number.isInteger(minN) || minN < 1 || minN > maxN) throw new OptionError('draft.lookup.minNgram', `${String(minN)} is not an integer in [1, maxNgram = ${maxN}]`);
    this.maxNgram = maxN;
    this.minNgram = minN;
  }

  propose(context: readonly number[], k: number): Draft {
    const L = context.length;
    for (let n = Math.min(this.maxNgram, L - 1); n >= this.minNgram; n--) {
      // Most recent start i < L - n whose n tokens equal the suffix; the continuation starts at i + n (< L).
      for (let i = L - n - 1; i >= 0; i--) {
        let j = 0;
        while (j < n && context[i + j] === context[L - n + j]) j++;
        if (j < n) continue;
        const from = i + n;
        return { tokens: context.slice(from, Math.min(from + k, L)) };
      }
    }
    return { tokens: [] };
  }

  dispose(): void {}
}
