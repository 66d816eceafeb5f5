// The browser: examples/web in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; no browser
// download), served cross-origin isolated from 127.0.0.1. The test works the page as a person would: load
// stories260K.gguf from a URL, send a prompt, read the streamed reply.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { MODELS, readReference, ROOT } from './shared-paths.js';
import { openBrowser } from './browser/chromium.js';
import type { BrowserRig } from './browser/chromium.js';
// @ts-expect-error: a plain JavaScript example module
import { startServer } from '../examples/web/serve.mjs';
/** Where the screenshot goes: docs/ (committed, in the README) with BMC_LLM_SCREENSHOT=docs, else build/. */
const SHOT = join(ROOT, process.env.BMC_LLM_SCREENSHOT === 'docs' ? 'docs' : 'build', 'web-chat.png');

let rig: BrowserRig;
let server: BrowserRig['server'];
let browser: Browser;

async function nodeGreedy(prompt: string, n: number): Promise<string> {
  const model = await loadModel(join(MODELS, 'stories260K.gguf'), { threads: 1 });
  try {
    return await model.generate(prompt, { maxTokens: n, temperature: 0 }).text();
  } finally {
    model.dispose();
  }
}

async function openPage(path = '/examples/web/'): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}${path}`);
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}

async function loadByUrl(page: Page, threads: number): Promise<void> {
  await page.fill('#threads', String(threads));
  await page.fill('#url', '/models/stories260K.gguf');
  await page.click('#load-url');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''));
}

/** Sends a prompt greedily; returns the reply and how many times the reply grew while streaming. */
async function chat(page: Page, prompt: string, maxTokens: number): Promise<{ text: string; updates: number }> {
  await page.fill('#temp', '0');
  await page.fill('#max', String(maxTokens));
  await page.fill('#prompt', prompt);
  const before = await page.locator('.msg.model').count();
  // Count the reply's text changes as they happen (a MutationObserver installed before sending).
  await page.evaluate(() => {
    const w = window as unknown as { updates: number };
    w.updates = 0;
    new MutationObserver(() => { w.updates++; }).observe(document.getElementById('chat')!, { subtree: true, characterData: true, childList: true });
  });
  await page.click('#send');
  await page.waitForFunction((n) => document.body.dataset.state !== 'generating' && document.querySelectorAll('.stats').length > n, before);
  const text = await page.locator('.msg.model').nth(before).textContent();
  return { text: text ?? '', updates: await page.evaluate(() => (window as unknown as { updates: number }).updates) };
}

describe('the browser (examples/web in headless Chromium)', () => {
  beforeAll(async () => {
    rig = await openBrowser();
    ({ server, browser } = rig);
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('cross-origin isolated: loads from a URL with progress, runs 2 threads in module workers, streams Node\'s greedy text', async () => {
    const ref = readReference('stories260K.p2.json');
    const page = await openPage();
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    await page.evaluate(() => {
      const w = window as unknown as { progress: number[] };
      w.progress = [];
      new MutationObserver(() => w.progress.push((document.getElementById('progress') as HTMLProgressElement).value))
        .observe(document.getElementById('status')!, { childList: true, characterData: true, subtree: true });
    });
    await loadByUrl(page, 2);
    expect(await page.textContent('#status')).toMatch(/stories260K\.gguf: llama, 5 layers.*2 threads \(cross-origin isolated\)/);
    expect(await page.evaluate(() => document.body.dataset.threads)).toBe('2');
    expect(page.workers().length).toBe(1); // the kernel worker: the pool's second thread
    const progress = await page.evaluate(() => (window as unknown as { progress: number[] }).progress);
    expect(progress.some((p) => p > 0 && p < 100)).toBe(true);

    const { text, updates } = await chat(page, ref.prompt, 64);
    expect(text).toBe(Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8'));
    expect(text).toBe(await nodeGreedy(ref.prompt, 64));
    expect(updates).toBeGreaterThan(8); // streamed token by token
    // A 95-token prompt: its prefill jobs are large, and the worker computes part of them.
    const long = readReference('stories260K.p3.json').prompt;
    expect((await chat(page, long, 24)).text).toBe(await nodeGreedy(long, 24));
    expect(Number(await page.evaluate(() => document.body.dataset.workerParts))).toBeGreaterThan(0);
    expect(await page.locator('.stats').last().textContent()).toMatch(/workers took [1-9]\d* of \d+ parallel parts/);
    expect((page as Page & { errors: string[] }).errors).toEqual([]);
    mkdirSync(join(SHOT, '..'), { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: true });
    await page.close();
  });

  it('from the file picker, and on one thread where the page is not cross-origin isolated', async () => {
    const plain = await startServer({ port: 0, models: MODELS, isolate: false });
    try {
      const page = await browser.newPage();
      await page.goto(`${plain.url}/examples/web/`);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
      await page.setInputFiles('#file', join(MODELS, 'stories260K.gguf'));
      await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''));
      expect(await page.textContent('#status')).toMatch(/^stories260K\.gguf: .*1 thread;/);
      expect(page.workers().length).toBe(0);
      expect((await chat(page, 'Once upon a time', 24)).text).toBe(await nodeGreedy('Once upon a time', 24));
      await page.close();
    } finally {
      await plain.close();
    }
  });
});
