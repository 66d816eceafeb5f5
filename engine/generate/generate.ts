/**
 * The generation loop: prefill the prompt in one batched eval, then sample and feed one token at a time,
 * streaming UTF-8-safe text pieces until an end-of-generation token, a stop string, maxTokens, the context
 * limit or an abort.
 */
import { OptionError } from '../errors.js';
import type { Model } from '../model.js';
import type { Session } from '../session.js';
import { StreamDecoder } from '../tokenizer/index.js';
import { Sampler, resolveSampling } from './sampling.js';
import type { SamplingOptions } from './sampling.js';
import { StopMatcher } from './stop.js';

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most. Default 256. */
  maxTokens?: number;
  /** Stop when any of these strings appears in the output (it is not emitted). */
  stop?: string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /**
   * Continue this session (its tokens so far stay in its KV cache; the prompt ids are fed after them) instead of a
   * fresh one; it is left open afterwards, holding the prompt and every generated token but the last.
   */
  session?: Session;
  /**
   * Runs each model evaluation (the prompt, then one token at a time): a server passes a turn queue here so that
   * concurrent generations over one model take turns step by step.
   */
  schedule?: <T>(step: () => Promise<T>) => Promise<T>;
}

export interface GenerationPiece {
  token: number;
  /** Text released by this token (may be empty while a multi-byte character or a possible stop string is pending). */
  text: string;
}

export type StopReason = 'eos' | 'length' | 'stop' | 'context' | 'abort';

export interface GenerationStats {
  promptTokens: number;
  promptMs: number;
  generatedTokens: number;
  generateMs: number;
  stopReason: StopReason | undefined;
}

export interface Generation extends AsyncIterable<GenerationPiece> {
  /** Filled in as generation proceeds; complete once iteration ends. */
  readonly stats: GenerationStats;
  /** Collects the whole text. */
  text(): Promise<string>;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export function generate(model: Model, promptIds: number[], opts: GenerateOptions): Generation {
  const sampling = resolveSampling(opts);
  const maxTokens = opts.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new OptionError('maxTokens', `${String(opts.maxTokens)} is not a non-negative integer`);
  const stops = opts.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) throw new OptionError('stop', 'expected an array of non-empty strings');
  if (promptIds.length === 0) throw new OptionError('prompt', 'the prompt has no tokens');
  const stats: GenerationStats = { promptTokens: promptIds.length, promptMs: 0, generatedTokens: 0, generateMs: 0, stopReason: undefined };

  async function* run(): AsyncGenerator<GenerationPiece> {
    const tok = model.tokenizer;
    const session = opts.session ?? model.createSession();
    const step = opts.schedule ?? (<T>(f: () => Promise<T>) => f());
    const sampler = new Sampler(sampling);
    const decoder = new StreamDecoder(tok);
    const stopper = new StopMatcher(stops);
    const context = [...promptIds];
    try {
      if (session.length + promptIds.length >= session.contextLength) {
        throw new OptionError('contextLength', `the prompt has ${session.length + promptIds.length} tokens, which leaves no room in the context of ${session.contextLength}`);
      }
      opts.signal?.throwIfAborted();
      const t0 = now();
      let logits = await step(() => session.eval(promptIds, { logits: 'last' }));
      stats.promptMs = now() - t0;
      const t1 = now();
      for (let i = 0; ; i++) {
        if (i >= maxTokens) { stats.stopReason = 'length'; break; }
        if (opts.signal?.aborted) { stats.stopReason = 'abort'; break; }
        const token = sampler.sample(logits, context);
        if (!opts.ignoreEos && tok.isEog(token)) {
          stats.stopReason = 'eos';
          const rest = stopper.push(decoder.flush()).text + stopper.flush();
          if (rest) yield { token, text: rest };
          break;
        }
        context.push(token);
        stats.generatedTokens++;
        const { text, stopped } = stopper.push(decoder.push(token));
        if (stopped) {
          stats.stopReason = 'stop';
          yield { token, text };
          break;
        }
        const last = i + 1 >= maxTokens || session.length + 1 >= session.contextLength;
        yield { token, text: last ? text + stopper.push(decoder.flush()).text + stopper.flush() : text };
        if (session.length + 1 >= session.contextLength) { stats.stopReason = 'context'; break; }
        if (i + 1 >= maxTokens) { stats.stopReason = 'length'; break; }
        // Yield to the event loop so that aborts and other work can run between tokens.
        await yieldToEventLoop();
        logits = await step(() => session.eval([token], { logits: 'last' }));
      }
      stats.generateMs = now() - t1;
    } finally {
      if (!opts.session) session.dispose();
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

/** A macrotask turn (setImmediate where it exists: setTimeout(0) costs about a millisecond per token). */
function yieldToEventLoop(): Promise<void> {
  const si = (globalThis as { setImmediate?: (f: () => void) => void }).setImmediate;
  return new Promise((r) => (si ? si(r) : setTimeout(r, 0)));
}
