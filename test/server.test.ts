/**
 * `bmc-llm serve` (the one-file CLI) on 127.0.0.1, driven by the official `openai` npm client: completions and chat,
 * streamed and not, usage and finish_reason, 400s naming the field, two concurrent streams interleaving, and a client
 * that disconnects mid-stream stopping its generation and freeing its session.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, ROOT, readReference } from './shared-paths.js';

const STORIES = join(MODELS, 'stories260K.gguf');
const ref = readReference('stories260K.p1.json');
const refText = Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8');

let proc: ChildProcess;
let url = '';
let log = '';
let client: OpenAI;

beforeAll(async () => {
  proc = spawn(process.execPath, [join(ROOT, 'dist/bmc-llm.mjs'), 'serve', '-m', STORIES, '--port', '0', '--threads', '1', '--alias', 'stories'],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => {
      log += d;
      const m = /listening on (http:\/\/\S+)/.exec(log);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`server exited (${code}): ${log}`)));
  });
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(() => { proc?.kill('SIGTERM'); });

const health = async () => (await (await fetch(`${url}/health`)).json()) as { status: string; activeRequests: number; sessions: number };

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bmc-llm serve with the openai client', () => {
  it('lists the model and reports health', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['stories']);
    expect(await health()).toMatchObject({ status: 'ok', activeRequests: 0, sessions: 0 });
  });

  it('completions: greedy text is llama.cpp\'s, with usage and finish_reason; streaming gives the same text', async () => {
    const r = await client.completions.create({ model: 'stories', prompt: ref.prompt, max_tokens: 24, temperature: 0 });
    const text = r.choices[0]!.text;
    expect(text.length).toBeGreaterThan(40);
    expect(refText.startsWith(text)).toBe(true);
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: ref.prompt_ids.length, completion_tokens: 24, total_tokens: ref.prompt_ids.length + 24 });
    expect(r.object).toBe('text_completion');

    const stream = await client.completions.create({ model: 'stories', prompt: ref.prompt, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let streamed = '';
    let finish: string | null = null;
    let usage: unknown;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.choices[0]) { streamed += c.choices[0].text; finish = c.choices[0].finish_reason ?? finish; }
      if (c.usage) usage = c.usage;
    }
    expect(chunks).toBeGreaterThan(10); // token by token, not one block
    expect(streamed).toBe(text);
    expect(finish).toBe('length');
    expect(usage).toEqual(r.usage);
  });

  it('chat: the default template\'s prompt, same text streamed or not, equal to a completion of the rendered prompt', async () => {
    const messages = [{ role: 'system' as const, content: 'You tell stories.' }, { role: 'user' as const, content: 'Tell me about a cat.' }];
    const r = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0 });
    const reply = r.choices[0]!.message;
    expect(reply.role).toBe('assistant');
    expect(reply.content!.length).toBeGreaterThan(10);
    expect(['stop', 'length']).toContain(r.choices[0]!.finish_reason);
    // The model has no chat template, so the default one renders "role: text" lines and opens the assistant's turn.
    const rendered = 'system: You tell stories.\nuser: Tell me about a cat.\nassistant:';
    const plain = await client.completions.create({ model: 'stories', prompt: rendered, max_tokens: 40, temperature: 0, stop: ['\nuser:', '\nsystem:'] });
    expect(reply.content).toBe(plain.choices[0]!.text);
    expect(r.usage!.prompt_tokens).toBe(plain.usage!.prompt_tokens);
    expect(r.usage!.completion_tokens).toBe(plain.usage!.completion_tokens);

    const stream = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0, stream: true });
    let text = '';
    let role: string | undefined;
    let finish: string | null = null;
    for await (const c of stream) {
      role ??= c.choices[0]?.delta.role;
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(role).toBe('assistant');
    expect(text).toBe(reply.content);
    expect(finish).toBe(r.choices[0]!.finish_reason);
  });

  it('rejects bad requests with 400 and the field in error.param', async () => {
    const bad = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        return e as InstanceType<typeof OpenAI.BadRequestError>;
      }
      throw new Error('expected a 400');
    };
    const t = await bad(client.completions.create({ model: 'stories', prompt: 'x', temperature: 5 }));
    expect(t).toBeInstanceOf(OpenAI.BadRequestError);
    expect(t.status).toBe(400);
    expect(t.param).toBe('temperature');
    expect(t.message).toMatch(/temperature/);
    const m = await bad(client.chat.completions.create({ model: 'stories', messages: [{ role: 'robot', content: 'hi' }] as never }));
    expect(m.status).toBe(400);
    expect(m.param).toBe('messages[0].role');
    const n = await bad(client.completions.create({ model: 'stories', prompt: 'x', max_tokens: -1 }));
    expect(n.param).toBe('max_tokens');
    const s = await bad(client.completions.create({ model: 'stories', prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }));
    expect(s.param).toBe('stop');
    expect((await bad(client.completions.create({ model: 'stories', prompt: 'x', seed: -1 }))).param).toBe('seed');
    expect((await bad(client.chat.completions.create({ model: 'stories', messages: [{ role: 'user', content: 'x' }], top_p: 0, stream: true }))).param).toBe('top_p');
    expect((await bad(client.chat.completions.create({ model: 'stories', messages: [] }))).param).toBe('messages');
    const raw = await fetch(`${url}/v1/completions`, { method: 'POST', body: '{not json' });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    expect((await fetch(`${url}/v1/nothing`)).status).toBe(404);
    expect(await health()).toMatchObject({ activeRequests: 0, sessions: 0 });
  });

  it('two concurrent streams both progress (their tokens interleave) and each gets its own session', async () => {
    const order: string[] = [];
    let peakSessions = 0;
    const go = async (name: string, prompt: string) => {
      const stream = await client.completions.create({ model: 'stories', prompt, max_tokens: 300, temperature: 0, stream: true, ignore_eos: true } as never) as unknown as AsyncIterable<{ choices: Array<{ text: string }> }>;
      let text = '';
      for await (const c of stream) {
        if (c.choices[0]?.text) {
          order.push(name);
          text += c.choices[0].text;
          if (order.length % 50 === 0) peakSessions = Math.max(peakSessions, (await health()).sessions);
        }
      }
      return text;
    };
    const [a, b] = await Promise.all([go('A', 'Once upon a time'), go('B', 'The little dog')]);
    expect(a).not.toBe(b);
    const lastA = order.lastIndexOf('A');
    const lastB = order.lastIndexOf('B');
    // Each stream received tokens while the other was still running.
    expect(order.indexOf('B')).toBeLessThan(lastA);
    expect(order.indexOf('A')).toBeLessThan(lastB);
    expect(peakSessions).toBe(2);
    // And each is what it would be alone.
    const alone = await client.completions.create({ model: 'stories', prompt: 'The little dog', max_tokens: 300, temperature: 0, ignore_eos: true } as never) as unknown as { choices: Array<{ text: string }> };
    expect(b).toBe(alone.choices[0]!.text);
    expect(await health()).toMatchObject({ activeRequests: 0, sessions: 0 });
  });

  it('a client that disconnects mid-stream stops its generation and frees its session', async () => {
    const before = log.length;
    const stream = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 2000, temperature: 0, stream: true, ignore_eos: true } as never) as unknown as AsyncIterable<unknown> & { controller: AbortController };
    let n = 0;
    for await (const _ of stream) {
      if (++n === 5) break; // leaving the loop aborts the HTTP request
    }
    await until(async () => (await health()).sessions === 0 && (await health()).activeRequests === 0);
    await until(async () => /completion stream: .* stopped by abort/.test(log.slice(before)));
    const m = /completion (\d+) tokens, stopped by abort/.exec(log.slice(before))!;
    expect(Number(m[1])).toBeLessThan(2000);
  });
});
