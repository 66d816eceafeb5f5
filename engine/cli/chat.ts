/**
 * `bmc-llm chat`: an interactive chat on the terminal. Lines from stdin are the user's turns; replies stream to
 * stdout; per-turn statistics (tokens reused from the KV cache, evaluated, generated) go to stderr. /reset starts
 * over, /exit or end of input quits, Ctrl-C stops a reply (and quits at the prompt).
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { OptionError } from '../errors.js';
import { ChatTemplate } from '../chat/template.js';
import { Conversation } from '../chat/conversation.js';
import { helpText, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';
import { MODEL_FLAGS, loadForCommand } from './load.js';

export const CHAT_FLAGS: FlagSpec[] = [
  ...MODEL_FLAGS,
  { name: 'system', short: 's', type: 'string', help: 'system prompt' },
  { name: 'n-predict', short: 'n', type: 'int', help: 'most tokens per reply (default: the room left in the context)' },
  { name: 'temp', type: 'number', help: 'temperature, 0 = greedy (default 0.8)' },
  { name: 'top-k', type: 'int', help: 'top-k (default 40)' },
  { name: 'top-p', type: 'number', help: 'top-p (default 0.95)' },
  { name: 'min-p', type: 'number', help: 'min-p (default 0.05)' },
  { name: 'repeat-penalty', type: 'number', help: 'repetition penalty (default 1)' },
  { name: 'seed', type: 'int', help: 'sampling seed' },
  { name: 'chat-template', type: 'string', help: 'Jinja file to use instead of the model\'s chat template' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

export async function cmdChat(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, CHAT_FLAGS);
  if (flags.help) {
    process.stdout.write(`usage: bmc-llm chat [-m FILE] [--system TEXT]   (type /reset to start over, /exit to quit)\n\n${helpText(CHAT_FLAGS)}\n`);
    return;
  }
  if (positional.length > 0) throw new OptionError(positional[0]!, 'unexpected argument (the model goes after -m)');
  let override: string | undefined;
  if (flags['chat-template'] !== undefined) {
    try {
      override = await readFile(flags['chat-template'] as string, 'utf8');
    } catch (e) {
      throw new OptionError('--chat-template', `cannot read ${String(flags['chat-template'])}: ${(e as Error).message}`);
    }
  }
  const { model } = await loadForCommand(flags);
  const template = ChatTemplate.fromModel(model.info.metadata, model.tokenizer, override);
  if (template.isDefault) process.stderr.write('note: the model has no chat template; using plain "role: text" lines\n');
  const chat = new Conversation(model, template, flags.system as string | undefined);
  const interactive = process.stdin.isTTY === true;
  const rl = createInterface({ input: process.stdin, terminal: interactive });
  let turn: AbortController | undefined;
  const onSigint = () => { if (turn) turn.abort(); else rl.close(); };
  process.on('SIGINT', onSigint);
  rl.on('SIGINT', onSigint);
  const prompt = () => { if (interactive) process.stdout.write('> '); };
  try {
    prompt();
    for await (const line of rl) {
      const text = line.trim();
      if (text === '/exit' || text === '/quit') break;
      if (text === '/reset') { chat.reset(); process.stderr.write('[conversation reset]\n'); prompt(); continue; }
      if (text === '') { prompt(); continue; }
      turn = new AbortController();
      try {
        for await (const piece of chat.say(text, {
          maxTokens: flags['n-predict'] as number | undefined,
          temperature: flags.temp as number | undefined,
          topK: flags['top-k'] as number | undefined,
          topP: flags['top-p'] as number | undefined,
          minP: flags['min-p'] as number | undefined,
          repeatPenalty: flags['repeat-penalty'] as number | undefined,
          seed: flags.seed as number | undefined,
          signal: turn.signal,
        })) {
          process.stdout.write(piece.text);
        }
      } catch (e) {
        if (!(e instanceof OptionError && e.option === 'contextLength')) throw e;
        process.stderr.write(`[${e.message}]\n`);
        chat.reset();
        process.stderr.write('[conversation reset]\n');
      } finally {
        turn = undefined;
      }
      process.stdout.write('\n');
      const t = chat.lastTurn;
      if (t) {
        const tps = t.generateMs > 0 ? ((1000 * t.generated) / t.generateMs).toFixed(1) : '-';
        process.stderr.write(`[reused ${t.reused} tokens, evaluated ${t.evaluated} in ${t.promptMs.toFixed(1)} ms, generated ${t.generated} at ${tps} tok/s, stopped by ${t.stopReason}]\n`);
      }
      prompt();
    }
  } finally {
    process.off('SIGINT', onSigint);
    rl.close();
    chat.dispose();
    model.dispose();
  }
}
