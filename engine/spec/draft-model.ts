/**
 * A draft model: a smaller GGUF with the target's vocabulary proposes k tokens, one decode step each, in its own
 * session (its own KV cache, under the target's KV policy). Its cache is rolled back like the target's: at the next
 * proposal it truncates to the longest prefix it shares with the accepted context (a length change, no copy) and
 * feeds only the tokens past it.
 */
import { VocabMismatchError } from '../errors.js';
import type { Model } from '../model.js';
import type { Session } from '../session.js';
import { Sampler } from '../generate/sampling.js';
import type { ResolvedSampling, TokenDist } from '../generate/sampling.js';
import type { Draft, Drafter } from './drafter.js';

/**
 * Throws VocabMismatchError unless `draft` and `target` have the same tokenizer model, the same token texts and the
 * same token types (from their GGUF metadata), and embeddings of the same size.
 */
export function checkSameVocabulary(draft: Model, target: Model): void {
  const meta = (m: Model, key: string) => m.info.metadata.get(key);
  const fail = (detail: string): never => {
    throw new VocabMismatchError(draft.info.file, target.info.file, detail);
  };
  const dm = meta(draft, 'tokenizer.ggml.model');
  const tm = meta(target, 'tokenizer.ggml.model');
  if (dm !== tm) fail(`tokenizer ${String(dm)} against ${String(tm)}`);
  const dt = (meta(draft, 'tokenizer.ggml.tokens') ?? []) as ArrayLike<unknown>;
  const tt = (meta(target, 'tokenizer.ggml.tokens') ?? []) as ArrayLike<unknown>;
  if (dt.length !== tt.length) fail(`${dt.length} tokens against ${tt.length}`);
  for (let i = 0; i < tt.length; i++) {
    if (dt[i] !== tt[i]) fail(`token ${i} is ${JSON.stringify(dt[i])} in the draft and ${JSON.stringify(tt[i])} in the target`);
  }
  const dy = meta(draft, 'tokenizer.ggml.token_type') as ArrayLike<unknown> | undefined;
  const ty = meta(target, 'tokenizer.ggml.token_type') as ArrayLike<unknown> | undefined;
  if ((dy === undefined) !== (ty === undefined)) fail('one file has token types and the other has none');
  if (dy && ty) {
    for (let i = 0; i < ty.length; i++) {
      if (Number(dy[i]) !== Number(ty[i])) fail(`token ${i} has type ${String(dy[i])} in the draft and ${String(ty[i])} in the target`);
    }
  }
  const dv = draft.info.hparams?.nVocab;
  const tv = target.info.hparams?.nVocab;
  if (dv !== tv) fail(`embeddings of ${String(dv)} rows against ${String(tv)}`);
}

export class DraftModelDrafter implements Drafter {
  readonly name: string;
  readonly relativeCost: number;
  private readonly session: Session;
  private readonly sampler: Sampler;
  /** Tokens in the draft session's KV cache (mirrors it). */
  private fed: number[] = [];

  /**
   * `owned`: the drafter loaded the model and disposes it. `sampling`: the target's sampling options; the drafter
   * samples from the same processed distribution of its own logits, on a separate random stream.
   */
  constructor(readonly model: Model, target: Model, private readonly owned: boolean, sampling: ResolvedSampling) {
    checkSameVocabulary(model, target);
    this.name = `draft model ${model.info.name ?? model.info.file}`;
    // Drafting one token costs about a decode step of the draft model, which reads its weights once: weigh by bytes.
    const bytes = (m: Model) => m.info.memory?.weights ?? 1;
    this.relativeCost = 0.1 + bytes(model) / bytes(target);
    this.session = model.createSession({ kv: target.kvOptions });
    this.sampler = new Sampler({ ...sampling, seed: (sampling.seed ^ 0x5bd1e995) >>> 0 });
  }

  async propose(context: readonly number[], k: number): Promise<Draft> {
    // Roll back to the common prefix (keeping at least the last context token to feed, whose logits we need).
    let c = 0;
    const lim = Math.min(this.fed.length, context.length - 1);
    while (c < lim && this.fed[c] === context[c]) c++;
    this.session.truncate(c);
    this.fed.length = c;
    // Its cache ends at context + k - 1 tokens (the last draft is never fed).
    k = Math.min(k, this.session.contextLength - context.length + 1);
    if (k <= 0) return { tokens: [] };
    const rest = context.slice(c);
    let logits = await this.session.eval(rest);
    this.fed.push(...rest);
    const tokens: number[] = [];
    const dists: TokenDist[] = [];
    const recent = [...context];
    for (let j = 0; j < k; j++) {
      let t: number;
      if (this.sampler.greedy) t = this.sampler.sample(logits, recent);
      else {
        const q = this.sampler.distribution(logits, recent);
        t = this.sampler.draw(q);
        dists.push(q);
      }
      tokens.push(t);
      recent.push(t);
      if (j + 1 < k) {
        logits = await this.session.eval([t]);
        this.fed.push(t);
      }
    }
    return this.sampler.greedy ? { tokens } : { tokens, dists };
  }

  /** KV statistics of the draft session. */
  kvStats() {
    return this.session.kvStats();
  }

  dispose(): void {
    this.session.dispose();
    if (this.owned) this.model.dispose();
  }
}
