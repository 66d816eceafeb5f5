/**
 * The `draft` option of generate: which drafter, how many drafts per verify pass, and whether that number adapts.
 *
 *   draft: { model: 'draft.gguf' | loadedModel }   a draft model with the target's vocabulary
 *   draft: { lookup: true | { maxNgram, minNgram } }   prompt lookup, no model
 *   draft: { drafter }                              any object implementing Drafter (benchmarks, custom drafters)
 *   plus k (drafts per pass, default 4), adaptive (default true), maxK (adaptive upper bound, default 16)
 */
import { OptionError } from '../errors.js';
import { Model, loadModel } from '../model.js';
import type { ModelSource } from '../model.js';
import type { ResolvedSampling } from '../generate/sampling.js';
import { AdaptiveK } from './adaptive.js';
import { DraftModelDrafter } from './draft-model.js';
import type { Drafter } from './drafter.js';
import { PromptLookupDrafter } from './lookup.js';
import type { LookupOptions } from './lookup.js';

export interface DraftOptions {
  /** A draft model: a loaded Model (kept open) or a source loadModel takes (loaded for the generation, then freed). */
  model?: Model | ModelSource;
  /** Prompt lookup: true, or its n-gram bounds. */
  lookup?: boolean | LookupOptions;
  /** A drafter object (for benchmarks and custom drafters). */
  drafter?: Drafter;
  /** Drafts per verify pass (the starting value when adaptive). Default 4. */
  k?: number;
  /** Adjust k from the running acceptance rate, within [1, maxK]. Default true. */
  adaptive?: boolean;
  /** Upper bound of adaptive k. Default max(16, k). */
  maxK?: number;
}

export const DEFAULT_DRAFT_K = 4;
const MAX_K = 64;

export interface Speculation {
  drafter: Drafter;
  control: AdaptiveK;
}

function intIn(name: string, v: unknown, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new OptionError(name, `${String(v)} is not an integer in [${lo}, ${hi}]`);
  return v;
}

/** Validates `draft` (synchronously: errors surface when generate is called). */
export function validateDraftOptions(o: DraftOptions): { k: number; maxK: number; adaptive: boolean } {
  if (o === null || typeof o !== 'object') throw new OptionError('draft', 'expected an object');
  const kinds = (['model', 'lookup', 'drafter'] as const).filter((f) => o[f] !== undefined && o[f] !== false);
  if (kinds.length !== 1) throw new OptionError('draft', kinds.length === 0 ? 'give one of model, lookup or drafter' : `give only one of ${kinds.join(', ')}`);
  if (o.lookup !== undefined && typeof o.lookup !== 'boolean' && (o.lookup === null || typeof o.lookup !== 'object')) throw new OptionError('draft.lookup', 'expected true or { maxNgram, minNgram }');
  if (o.lookup !== undefined && typeof o.lookup === 'object') new PromptLookupDrafter(o.lookup);
  if (o.drafter !== undefined && (typeof o.drafter !== 'object' || typeof o.drafter.propose !== 'function')) throw new OptionError('draft.drafter', 'expected an object with propose(context, k)');
  const k = intIn('draft.k', o.k, 1, MAX_K) ?? DEFAULT_DRAFT_K;
  const maxK = intIn('draft.maxK', o.maxK, k, MAX_K) ?? Math.max(16, k);
  if (o.adaptive !== undefined && typeof o.adaptive !== 'boolean') throw new OptionError('draft.adaptive', 'expected a boolean');
  return { k, maxK, adaptive: o.adaptive ?? true };
}

/** The most drafts a verify pass will carry with these options (what the target's KV cache must leave room for). */
export function maxDrafts(o: DraftOptions): number {
  const v = validateDraftOptions(o);
  return v.adaptive ? v.maxK : v.k;
}

/** Builds the drafter (loading a draft model from a source with the target's context, threads and KV policy). */
export async function openSpeculation(target: Model, o: DraftOptions, sampling: ResolvedSampling, signal?: AbortSignal): Promise<Speculation> {
  const v = validateDraftOptions(o);
  let drafter: Drafter;
  if (o.drafter) drafter = o.drafter;
  else if (o.lookup) drafter = new PromptLookupDrafter(typeof o.lookup === 'object' ? o.lookup : {});
  else if (o.model instanceof Model) drafter = new DraftModelDrafter(o.model, target, false, sampling);
  else {
    const m = await loadModel(o.model as ModelSource, {
      contextLength: target.info.contextLength, threads: target.info.threads, kv: target.kvOptions, signal,
    });
    try {
      drafter = new DraftModelDrafter(m, target, true, sampling);
    } catch (e) {
      m.dispose();
      throw e;
    }
  }
  const cost = typeof drafter.relativeCost === 'number' && drafter.relativeCost >= 0 ? drafter.relativeCost : 0.1;
  return { drafter, control: new AdaptiveK(v.k, 1, v.adaptive ? v.maxK : v.k, cost, v.adaptive) };
}
