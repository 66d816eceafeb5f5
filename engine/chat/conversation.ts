/**
 * A conversation over one Session that keeps its KV cache between turns. Each turn re-renders the whole chat with
 * the template, keeps the tokens the session already holds up to the first one that differs (the template may
 * render the previous reply with other tokens than were generated, or change earlier text), drops the rest
 * (Session.truncate lowers the length, no copy) and evaluates only what is new.
 */
import { OptionError } from '../errors.js';
import type { Model } from '../model.js';
import type { Session } from '../session.js';
import type { GenerateOptions, Generation, GenerationPiece } from '../generate/generate.js';
import type { ChatMessage, ChatTemplate } from './template.js';

export interface TurnStats {
  /** Tokens of the rendered chat already in the KV cache and kept. */
  reused: number;
  /** Tokens of the rendered chat evaluated this turn. */
  evaluated: number;
  generated: number;
  promptMs: number;
  generateMs: number;
  stopReason: string | undefined;
}

export class Conversation {
  readonly messages: ChatMessage[] = [];
  private readonly session: Session;
  /** The tokens in the session's KV cache, in order. */
  private fed: number[] = [];
  lastTurn: TurnStats | undefined;

  constructor(private readonly model: Model, private readonly template: ChatTemplate, system?: string) {
    this.session = model.createSession();
    if (system) this.messages.push({ role: 'system', content: system });
  }

  /** Tokens in the KV cache. */
  get cachedTokens(): number {
    return this.session.length;
  }

  /** Adds the user's message and streams the assistant's reply, which joins the conversation when complete. */
  async *say(text: string, opts: Omit<GenerateOptions, 'session'> = {}): AsyncGenerator<GenerationPiece> {
    const messages = [...this.messages, { role: 'user', content: text }];
    const ids = this.template.encode(this.template.render(messages));
    const room = this.session.contextLength - ids.length;
    if (room < 2) throw new OptionError('contextLength', `the conversation has ${ids.length} tokens, which leaves no room in the context of ${this.session.contextLength} (start over with reset())`);
    let keep = 0;
    while (keep < this.fed.length && keep < ids.length && this.fed[keep] === ids[keep]) keep++;
    if (keep === ids.length) keep--; // at least one token must be evaluated to get the next token's logits
    this.session.truncate(keep);
    this.fed.length = keep;
    const fresh = ids.slice(keep);
    const gen: Generation = this.model.generate(fresh, {
      ...opts, session: this.session, maxTokens: Math.min(opts.maxTokens ?? room - 1, room - 1),
      stop: [...(opts.stop ?? []), ...this.template.stop],
    });
    const tokens: number[] = [];
    let reply = '';
    try {
      for await (const piece of gen) {
        tokens.push(piece.token);
        reply += piece.text;
        yield piece;
      }
    } finally {
      // The session holds the prompt and every generated token but the last (never fed back).
      this.fed = [...this.fed, ...fresh, ...tokens].slice(0, this.session.length);
      this.messages.push({ role: 'user', content: text }, { role: 'assistant', content: reply.trim() });
      const s = gen.stats;
      this.lastTurn = { reused: keep, evaluated: fresh.length, generated: s.generatedTokens, promptMs: s.promptMs, generateMs: s.generateMs, stopReason: s.stopReason };
    }
  }

  /** Forgets every message but the system prompt, and empties the KV cache. */
  reset(): void {
    this.messages.splice(0, this.messages.length, ...this.messages.filter((m) => m.role === 'system').slice(0, 1));
    this.session.truncate(0);
    this.fed = [];
  }

  dispose(): void {
    this.session.dispose();
  }
}
