/**
 * The generation loop: prefill the prompt in one batched eval, then sample and feed one token at a time,
 * streaming UTF-8-safe text pieces until an end-of-generation token, a stop string, maxTokens, the context
 * limit or an abort.
 */
import { OptionError } from '../errors.js';
import type { Model } from '../model.js';
import { StreamDecoder } from '../tokenizer/index.js';
import { Sampler, resolveSampling } from './sampling.js';
import type { SamplingOptions, TokenDist } from './sampling.js';
import type { KVStats } from '../kv/cache.js';
import type { Session } from '../session.js';
import { maxDrafts, openSpeculation } from '../spec/options.js';
import type { DraftOptions } from '../spec/options.js';
import { acceptOrResample } from '../spec/verify.js';
import { StopMatcher } from './stop.js';

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most. Default 256. */
  maxTokens?: number;
  /** Stop when any of these strings appears in the output (it is not emitted). */
  stop?: string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  /** Speculative decoding: a drafter proposes tokens that the model verifies k + 1 at a time (engine/spec). */
  draft?: DraftOptions;
  signal?: AbortSignal;
  /**
   * Continue this session (its tokens so far stay in its KV cache; the prompt ids are fed after them) instead of a
   * fresh one; it is left open afterwards, holding the prompt and every generated token but the last.
   */
  session?: Session;
  /**
   * Runs each model evaluation (the prompt, then each decode or verify pass): a server passes a turn queue here so
   * that concurrent generations over one model take turns step by step.
   */
  schedule?: <T>(step: () => Promise<T>) => Promise<T>;
}

export interface GenerationPiece {
  token: number;
  /** Text released by this token (may be empty while a multi-byte character or a possible stop string is pending). */
  text: string;
}

export type StopReason = 'eos' | 'length' | 'stop' | 'context' | 'abort';

export interface SpeculationStats {
  drafter: string;
  /**
   * Verify passes: turns of the loop, each one target forward pass over the pending token and its drafts (the first
   * turn reuses the prompt's last row); a turn without drafts is a plain decode step.
   */
  passes: number;
  /** Draft tokens proposed, and of them accepted. */
  drafted: number;
  accepted: number;
  /** accepted / drafted (0 when nothing was drafted): drafts after a rejection count as not accepted. */
  acceptanceRate: number;
  /**
   * Per-token acceptance: accepted / (accepted + rejections), the probability that a draft is kept once the drafts
   * before it were (the rate a controlled drafter sets, and the one adaptive k estimates).
   */
  tokenAcceptance: number;
  /** Passes that ended with a rejected draft. */
  rejections: number;
  /** Generated tokens per target pass (plain decoding: 1). */
  tokensPerPass: number;
  /** Drafts asked for in the last pass (adaptive k moves it). */
  k: number;
  /** Milliseconds spent in the drafter. */
  draftMs: number;
  /** The draft model's KV cache at the end, if the drafter has one (the target's is GenerationStats.kv). */
  draftKV: KVStats | undefined;
}

export interface GenerationStats {
  promptTokens: number;
  promptMs: number;
  generatedTokens: number;
  generateMs: number;
  stopReason: StopReason | undefined;
  /** The KV cache at the end: growths, bytes copied (rollback copies nothing; growth may), peak bytes. */
  kv?: KVStats;
  /** Present when generating with `draft`. */
  speculative?: SpeculationStats;
}

export interface Generation extends AsyncIterable<GenerationPiece> {
  /** Filled in as generation proceeds; complete once iteration ends. */
  readonly stats: GenerationStats;
  /** Collects the whole text. */
  text(): Promise<string>;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/**
 * The loop, plain and speculative alike: each turn asks the drafter for k tokens (k = 0 without one), feeds the
 * last accepted token and the drafts to the model in one batched eval (k + 1 rows; the cache reserves them, in BMC's
 * spare rows), accepts a prefix of the drafts plus one token from the model (verify.ts), rolls the cache back to the
 * accepted length (truncate: no copy), and emits the tokens one by one through the same end checks as plain
 * decoding. The first turn uses the prompt's logits for its first position. Greedy output is token for token that
 * of plain decoding, because a row's logits do not depend on how many rows share the pass (tested).
 */
export function generate(model: Model, promptIds: number[], opts: GenerateOptions): Generation {
  const sampling = resolveSampling(opts);
  const maxTokens = opts.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new OptionError('maxTokens', `${String(opts.maxTokens)} is not a non-negative integer`);
  const stops = opts.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) throw new OptionError('stop', 'expected an array of non-empty strings');
  if (promptIds.length === 0) throw new OptionError('prompt', 'the prompt has no tokens');
  const draftK = opts.draft === undefined ? undefined : maxDrafts(opts.draft);
  const stats: GenerationStats = { promptTokens: promptIds.length, promptMs: 0, generatedTokens: 0, generateMs: 0, stopReason: undefined };

  async function* run(): AsyncGenerator<GenerationPiece> {
    const tok = model.tokenizer;
    const spec = opts.draft === undefined ? undefined : await openSpeculation(model, opts.draft, sampling, opts.signal);
    let session: Session | undefined;
    // Rows of a continued session that hold emitted tokens (the prompt and every generated token but the last).
    let keepRows = Infinity;
    const sp: SpeculationStats | undefined = spec && {
      drafter: spec.drafter.name, passes: 0, drafted: 0, accepted: 0, acceptanceRate: 0, tokenAcceptance: 0, rejections: 0, tokensPerPass: 0, k: spec.control.k,
      draftMs: 0, draftKV: undefined,
    };
    if (sp) stats.speculative = sp;
    try {
      session = opts.session ?? model.createSession(draftK === undefined ? {} : { draftK });
      const s = session;
      const step = opts.schedule ?? (<T>(f: () => Promise<T>) => f());
      // Tokens the session held before this generation (a continued conversation); the context below excludes them.
      const offset = s.length;
      const sampler = new Sampler(sampling);
      // Greedy output does not depend on k, so adaptive k may follow measured pass times there (adaptive.ts).
      if (spec && sampler.greedy) spec.control.enableTiming();
      const decoder = new StreamDecoder(tok);
      const stopper = new StopMatcher(stops);
      const context = [...promptIds];
      // Room for the context's tokens: the context length less what the session held before.
      const ctx = s.contextLength - offset;
      if (promptIds.length >= ctx) {
        throw new OptionError('contextLength', `the prompt has ${offset + promptIds.length} tokens, which leaves no room in the context of ${s.contextLength}`);
      }
      opts.signal?.throwIfAborted();
      const t0 = now();
      // Logits for the next position, when the model has already seen every token of the context (after the prompt).
      let carry: Float32Array | undefined = await step(() => s.eval(promptIds, { logits: 'last' }));
      // The last accepted token, not yet fed to the model (every turn after the first).
      let pending: number | undefined;
      keepRows = offset + promptIds.length;
      stats.promptMs = now() - t0;
      const t1 = now();
      const V = carry.length;

      /** Emits one token through the end checks; returns the piece (if any) and whether generation ends here. */
      const emit = (token: number): { piece?: GenerationPiece; done: boolean } => {
        if (!opts.ignoreEos && tok.isEog(token)) {
          stats.stopReason = 'eos';
          const rest = stopper.push(decoder.flush()).text + stopper.flush();
          return { piece: rest ? { token, text: rest } : undefined, done: true };
        }
        context.push(token);
        keepRows = offset + context.length - 1;
        stats.generatedTokens++;
        const { text, stopped } = stopper.push(decoder.push(token));
        if (stopped) {
          stats.stopReason = 'stop';
          return { piece: { token, text }, done: true };
        }
        const atContext = context.length >= ctx;
        const atLength = stats.generatedTokens >= maxTokens;
        const last = atContext || atLength;
        const piece = { token, text: last ? text + stopper.push(decoder.flush()).text + stopper.flush() : text };
        if (atContext) stats.stopReason = 'context';
        else if (atLength) stats.stopReason = 'length';
        return { piece, done: last };
      };

      for (let turn = 0; ; turn++) {
        if (stats.generatedTokens >= maxTokens) { stats.stopReason = 'length'; break; }
        if (opts.signal?.aborted) { stats.stopReason = 'abort'; break; }
        if (turn > 0) await yieldToEventLoop();
        // Drafts: at most what maxTokens leaves after the model's own token, and what the context holds (the pass
        // writes the pending token and k drafts: the cache reaches context.length + k rows).
        let drafts: number[] = [];
        let dists: Array<TokenDist | undefined> | undefined;
        if (spec) {
          const k = Math.min(spec.control.k, maxTokens - stats.generatedTokens - 1, ctx - context.length);
          sp!.k = spec.control.k;
          if (k > 0) {
            const td = now();
            const d = await spec.drafter.propose(context, k);
            const dms = now() - td;
            sp!.draftMs += dms;
            spec.control.observeDraft(k, dms);
            if (!Array.isArray(d?.tokens) || d.tokens.length > k || d.tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= V)) {
              throw new OptionError('draft.drafter', `propose returned invalid tokens for k = ${k}`);
            }
            drafts = d.tokens;
            dists = d.dists;
          }
        }
        const feed = pending === undefined ? drafts : [pending, ...drafts];
        const base = offset + context.length; // rows the model keeps whatever is rejected: the context, pending included
        let all: Float32Array | undefined;
        if (feed.length > 0) {
          all = await step(async () => {
            const tp = now();
            const r = await s.eval(feed, { logits: 'all' });
            spec?.control.observePass(feed.length, now() - tp);
            return r;
          });
        }
        if (sp) sp.passes++;
        // Row j: the model's logits for the position of drafts[j] (j = drafts.length: the token after them).
        const first = carry;
        const off = first ? 1 : 0;
        const row = (j: number) => (first && j === 0 ? first : all!.subarray((j - off) * V, (j - off + 1) * V));
        const recent = context.slice();
        const out: number[] = [];
        let a = 0;
        for (; a < drafts.length; a++) {
          const x = drafts[a]!;
          let t: number;
          if (sampler.greedy) t = sampler.sample(row(a), recent);
          else t = acceptOrResample(sampler.distribution(row(a), recent), x, dists?.[a], () => sampler.uniform()).token;
          out.push(t);
          if (t !== x) break;
          recent.push(x);
        }
        if (a === drafts.length) out.push(sampler.sample(row(a), recent));
        if (sp) {
          sp.drafted += drafts.length;
          sp.accepted += a;
          if (a < drafts.length) sp.rejections++;
          spec!.control.update(drafts.length, a);
        }
        // Keep the context and the accepted drafts; the model's own token becomes the next pending one.
        if (session.length > base + a) session.truncate(base + a);
        carry = undefined;
        pending = out[out.length - 1];
        let done = false;
        for (const token of out) {
          const r = emit(token);
          if (r.piece) yield r.piece;
          if (r.done) { done = true; break; }
        }
        if (done) break;
      }
      stats.generateMs = now() - t1;
    } finally {
      if (sp) {
        sp.acceptanceRate = sp.drafted > 0 ? sp.accepted / sp.drafted : 0;
        sp.tokenAcceptance = sp.accepted + sp.rejections > 0 ? sp.accepted / (sp.accepted + sp.rejections) : 0;
        sp.tokensPerPass = sp.passes > 0 ? stats.generatedTokens / sp.passes : 0;
        const dk = (spec!.drafter as { kvStats?: () => KVStats }).kvStats;
        sp.draftKV = typeof dk === 'function' ? dk.call(spec!.drafter) : undefined;
      }
      if (session) stats.kv = session.kvStats();
      if (opts.session) {
        // Drafts accepted past where generation stopped were never emitted: the session keeps the emitted prefix.
        if (!opts.session.isDisposed && opts.session.length > keepRows) opts.session.truncate(keepRows);
      } else session?.dispose();
      spec?.drafter.dispose();
    }
  }

  const gen: Generation = {
    stats,
    [Symbol.asyncIterator]: () => run(),
    async text() {
      let s = '';
      for await (const p of gen) s += p.text;
      return s;
    },
  };
  return gen;
}

/**
 * A macrotask turn: setImmediate where it exists, else a MessageChannel message (browsers, Workers). setTimeout(0)
 * would cost about a millisecond per token in Node and 4 ms in browsers, which clamp nested timers.
 */
function yieldToEventLoop(): Promise<void> {
  const si = (globalThis as { setImmediate?: (f: () => void) => void }).setImmediate;
  if (si) return new Promise((r) => si(r));
  if (typeof MessageChannel === 'undefined') return new Promise((r) => setTimeout(r, 0));
  return new Promise((r) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      r();
    };
    port2.postMessage(null);
  });
}
