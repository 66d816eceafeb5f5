/**
 * Chat prompts: the model's own Jinja template (GGUF key tokenizer.chat_template) rendered with @huggingface/jinja,
 * or a plain "role: text" default for models that have none, and the token ids of the rendered text.
 */
import { Template } from '@huggingface/jinja';
import { OptionError, UnsupportedError } from '../errors.js';
import type { GGUFTokenizer } from '../tokenizer/index.js';
import type { GGUFValue } from '../gguf/reader.js';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Used when the GGUF has no chat template: one "role: text" line per message, then "assistant:". */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

export class ChatTemplate {
  private readonly template: Template;

  private constructor(
    readonly source: string,
    /** Whether this is the plain default (the model has no template of its own). */
    readonly isDefault: boolean,
    private readonly tokenizer: GGUFTokenizer,
    /** Text that ends an assistant turn when the model writes it out rather than emitting an end token. */
    readonly stop: string[],
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new UnsupportedError(`tokenizer.chat_template does not parse: ${(e as Error).message}`);
    }
  }

  /** The model's template, or the default when its metadata has none (or `override` replaces it). */
  static fromModel(meta: ReadonlyMap<string, GGUFValue>, tokenizer: GGUFTokenizer, override?: string): ChatTemplate {
    const own = meta.get('tokenizer.chat_template');
    const source = override ?? (typeof own === 'string' && own.trim() !== '' ? own : undefined);
    return source === undefined
      ? new ChatTemplate(DEFAULT_CHAT_TEMPLATE, true, tokenizer, ['\nuser:', '\nsystem:'])
      : new ChatTemplate(source, false, tokenizer, []);
  }

  /** The prompt text for `messages`, ending with the opening of the assistant's turn when `addGenerationPrompt`. */
  render(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    const tok = this.tokenizer;
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt ?? true,
        bos_token: tok.bos === undefined ? '' : tok.tokenText(tok.bos),
        eos_token: tok.eos === undefined ? '' : tok.tokenText(tok.eos),
      });
    } catch (e) {
      // Templates may raise_exception() on conversations they refuse (e.g. roles that do not alternate).
      throw new OptionError('messages', `the chat template refused them: ${(e as Error).message}`);
    }
  }

  /**
   * Token ids of a rendered prompt: special-token text becomes the token, and BOS is added as the GGUF says unless
   * the template already wrote it (templates usually start with {{ bos_token }}).
   */
  encode(text: string): number[] {
    const tok = this.tokenizer;
    const ids = tok.encode(text, { special: true });
    if (tok.bos !== undefined && ids.length >= 2 && ids[0] === tok.bos && ids[1] === tok.bos) ids.shift();
    return ids;
  }
}
