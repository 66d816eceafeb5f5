// Headless Chromium for the browser tests: Debian's /usr/bin/chromium (or $BMC_LLM_CHROMIUM) driven by
// playwright-core, with no browser download, against examples/web/serve.mjs on 127.0.0.1 serving the fixture models.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { MODELS } from '../shared-paths.js';
// @ts-expect-error: a plain JavaScript example module
import { startServer } from '../../examples/web/serve.mjs';

const CHROMIUM = process.env.BMC_LLM_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface BrowserRig {
  browser: Browser;
  server: { url: string; close(): Promise<void> };
  close(): Promise<void>;
}

/** Starts the example server and the browser; a missing chromium is an error naming how to install it. */
export async function openBrowser(): Promise<BrowserRig> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set BMC_LLM_CHROMIUM)`);
  const server = (await startServer({ port: 0, models: MODELS })) as BrowserRig['server'];
  try {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    return { browser, server, close: async () => { await browser.close(); await server.close(); } };
  } catch (e) {
    await server.close();
    throw e;
  }
}
