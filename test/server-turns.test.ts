/**
 * Scheduling inside the server, in-process through its web-standard handler: the turn queue alternates token steps
 * between generations, and --parallel slots make extra requests wait in line (and leave it when they give up).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpenAIServer, loadModel } from '../engine/index.js';
import type { Model } from '../engine/index.js';
import { Slots, TurnQueue } from '../engine/server/turns.js';
import { MODELS } from './shared-paths.js';

let model: Model;
beforeAll(async () => { model = await loadModel(join(MODELS, 'stories260K.gguf'), { threads: 1 }); });
afterAll(() => model.dispose());

describe('TurnQueue', () => {
  it('two generations sharing it alternate step by step, and each gives its solo text', async () => {
    const turns = new TurnQueue();
    const order: string[] = [];
    const tagged = (tag: string) => <T>(step: () => Promise<T>) => turns.run(() => { order.push(tag); return step(); });
    const opts = { maxTokens: 40, temperature: 0, ignoreEos: true };
    const [a, b] = await Promise.all([
      model.generate('Once upon a time', { ...opts, schedule: tagged('A') }).text(),
      model.generate('The dog ran', { ...opts, schedule: tagged('B') }).text(),
    ]);
    expect(order.filter((t) => t === 'A')).toHaveLength(40); // the prompt, then 39 single tokens
    expect(order.filter((t) => t === 'B')).toHaveLength(40);
    // Strict alternation: no generation takes two steps in a row while the other one is waiting.
    for (let i = 1; i < order.length; i++) expect(order[i], `step ${i}`).not.toBe(order[i - 1]);
    expect(a).toBe(await model.generate('Once upon a time', opts).text());
    expect(b).toBe(await model.generate('The dog ran', opts).text());
  });
});

describe('Slots', () => {
  it('grants in arrival order up to the limit and drops waiters whose signal aborts', async () => {
    const s = new Slots(1);
    const r1 = await s.acquire();
    const got: string[] = [];
    const ac = new AbortController();
    const p2 = s.acquire().then((r) => { got.push('2'); return r; });
    const p3 = s.acquire(ac.signal).then(() => got.push('3'), () => got.push('3 gave up'));
    const p4 = s.acquire().then((r) => { got.push('4'); return r; });
    expect(s.waiting).toBe(3);
    ac.abort();
    await p3;
    expect(s.waiting).toBe(2);
    r1();
    const r2 = await p2;
    expect(got).toEqual(['3 gave up', '2']);
    r2();
    (await p4)();
    expect(got).toEqual(['3 gave up', '2', '4']);
    expect(s.waiting).toBe(0);
    (await s.acquire())(); // the slot is free again
  });
});

describe('createOpenAIServer({ parallel: 1 })', () => {
  it('runs one request at a time; the next waits for its slot and then streams', async () => {
    const api = createOpenAIServer(model, { parallel: 1 });
    const post = (prompt: string) => api.fetch(new Request('http://local/v1/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: 30, temperature: 0, stream: true, ignore_eos: true }),
    }));
    const health = async () => (await (await api.fetch(new Request('http://local/health'))).json()) as { waiting: number; sessions: number };
    const first = await post('Once upon a time');
    const second = post('The dog ran');
    await new Promise((r) => setTimeout(r, 0));
    expect((await health()).waiting).toBe(1);
    const readAll = async (res: Response) => {
      const text = await res.text();
      return text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => (JSON.parse(e.slice(6)) as { choices: Array<{ text: string }> }).choices[0]?.text ?? '').join('');
    };
    const a = await readAll(first);
    const b = await readAll(await second);
    expect(a.length).toBeGreaterThan(20);
    expect(b.length).toBeGreaterThan(20);
    expect(await health()).toMatchObject({ waiting: 0, sessions: 0 });
    expect(() => createOpenAIServer(model, { parallel: 0 })).toThrow(/parallel/);
  });
});
