/**
 * Multi-turn chat keeps its KV cache: `bmc-llm chat` driven through stdin/stdout, and the Conversation class. A
 * later turn evaluates only the tokens after the common prefix, and its reply is exactly what evaluating the whole
 * rendered conversation from scratch gives.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate, loadModel } from '../engine/index.js';
import type { ChatMessage, Model } from '../engine/index.js';
import { Conversation } from '../engine/chat/conversation.js';
import { MODELS, ROOT } from './shared-paths.js';

const STORIES = join(MODELS, 'stories260K.gguf');
let model: Model;
beforeAll(async () => { model = await loadModel(STORIES, { threads: 1 }); });
afterAll(() => model.dispose());

/** The greedy reply to `messages` computed from scratch in a fresh session. */
async function fresh(template: ChatTemplate, messages: ChatMessage[], maxTokens: number): Promise<{ text: string; promptTokens: number }> {
  const ids = template.encode(template.render(messages));
  const text = await model.generate(ids, { temperature: 0, maxTokens, stop: template.stop }).text();
  return { text, promptTokens: ids.length };
}

describe('bmc-llm chat over stdin/stdout', () => {
  it('answers turn by turn, reusing the cached conversation, and each reply equals a from-scratch evaluation', async () => {
    const p = spawn(process.execPath, [join(ROOT, 'dist/bmc-llm.mjs'), 'chat', '-m', STORIES, '-n', '24', '--temp', '0', '--threads', '1'],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    p.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const stats = () => [...err.matchAll(/\[reused (\d+) tokens, evaluated (\d+) in .*? generated (\d+) at/g)].map((m) => m.slice(1, 4).map(Number));
    const turn = async (line: string) => {
      const n = stats().length;
      p.stdin.write(`${line}\n`);
      const end = Date.now() + 30_000;
      while (stats().length === n) {
        if (Date.now() > end || p.exitCode !== null) throw new Error(`no reply to ${line}: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await turn('Hi there');
    await turn('Tell me a story');
    p.stdin.end();
    const code = await new Promise<number | null>((r) => p.once('exit', r));
    expect(code).toBe(0);
    const [[r1, e1, g1], [r2, e2]] = stats() as [number[], number[]];
    expect(r1).toBe(0);
    expect(g1).toBe(24);
    // Replies may span lines: each is checked against the from-scratch reply, turn 1 first.
    const template = ChatTemplate.fromModel(model.info.metadata, model.tokenizer);
    const first = await fresh(template, [{ role: 'user', content: 'Hi there' }], 24);
    expect(out.startsWith(`${first.text}\n`)).toBe(true);
    const history: ChatMessage[] = [{ role: 'user', content: 'Hi there' }, { role: 'assistant', content: first.text.trim() }, { role: 'user', content: 'Tell me a story' }];
    const second = await fresh(template, history, 24);
    expect(out).toBe(`${first.text}\n${second.text}\n`);
    // Turn 2 keeps turn 1's prompt and reply from the cache and evaluates only the rest of the re-rendered chat.
    expect(r2).toBeGreaterThanOrEqual(e1! + 20);
    expect(r2! + e2!).toBe(second.promptTokens);
    expect(e2).toBeLessThan(second.promptTokens / 2);
  });
});

describe('Conversation', () => {
  it('truncates to the common prefix when the template renders an earlier part differently', async () => {
    // A template whose first line counts the messages: every turn changes the start of the prompt.
    const source = '{{ messages|length }} messages\n' + ChatTemplate.fromModel(new Map(), model.tokenizer).source;
    const template = ChatTemplate.fromModel(new Map(), model.tokenizer, source);
    const chat = new Conversation(model, template);
    try {
      let a = '';
      for await (const piece of chat.say('Hi', { temperature: 0, maxTokens: 16 })) a += piece.text;
      const cached = chat.cachedTokens;
      let b = '';
      for await (const piece of chat.say('Go on', { temperature: 0, maxTokens: 16 })) b += piece.text;
      const t = chat.lastTurn!;
      expect(cached).toBeGreaterThan(10);
      expect(t.reused).toBeLessThan(4); // only BOS and the digit's neighbourhood can survive a changed first line
      const expected = await fresh(template, [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: a.trim() }, { role: 'user', content: 'Go on' }], 16);
      expect(t.reused + t.evaluated).toBe(expected.promptTokens);
      expect(b).toBe(expected.text);
      expect(chat.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
      chat.reset();
      expect(chat.cachedTokens).toBe(0);
      expect(chat.messages).toEqual([]);
    } finally {
      chat.dispose();
    }
  });
});
