// The OPFS cold store in a browser: headless Chromium (Debian's /usr/bin/chromium through playwright-core, as in
// test/runtime-browser.test.ts) runs test/browser/opfs-cold-worker.mjs in a dedicated worker, where
// FileSystemSyncAccessHandle exists: the tiered cache with cold rows in an OPFS file gives the untiered cache's logits
// bit for bit, and disposing the session removes the file; KVPR restore (l = 16) with another OPFS file, bit for bit too.
// On the page's main thread opening one is an OptionError.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBrowser } from './browser/chromium.js';
import type { BrowserRig } from './browser/chromium.js';

let rig: BrowserRig;

describe('tiered KV cache: OPFS cold store (headless Chromium, dedicated worker)', () => {
  beforeAll(async () => {
    rig = await openBrowser();
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('logits equal the untiered cache\'s with cold rows in OPFS; the file is removed on dispose; the main thread is refused', async () => {
    const page = await rig.browser.newPage();
    await page.goto(`${rig.server.url}/examples/web/`);
    const r = await page.evaluate(() => new Promise<Record<string, unknown>>((done) => {
      const w = new Worker('/test/browser/opfs-cold-worker.mjs', { type: 'module' });
      w.onmessage = (e) => done(e.data);
      w.onerror = (e) => done({ ok: false, error: e.message });
      w.postMessage('go');
    }));
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.equal).toBe(true);
    expect(r.steps).toBe(60);
    expect(r.coldStore).toBe('opfs');
    expect(r.coldRows as number).toBeGreaterThan((r.rows as number) / 2);
    expect(r.stagedBytes as number).toBeGreaterThan(0);
    expect(r.budget).toBe(170000 + 4 * 9 * 256);
    expect(r.arena as number).toBeLessThanOrEqual(r.budget as number);
    expect(r.during).toEqual(['bmc-llm-kv-test.bin']);
    expect(r.after).toEqual([]);
    // KVPR restore (l = 16, the rest read from an OPFS file): the untiered logits bit for bit.
    expect(r.kvprEqual).toBe(true);
    expect(r.kvprSteps).toBe(30);
    expect(r.recomputedRows as number).toBeGreaterThan(0);
    expect(r.readRows as number).toBeGreaterThan(0);
    expect(r.afterKvpr).toEqual([]);
    // A string, so that vitest does not rewrite the page's dynamic import.
    const main = await page.evaluate(`import('/dist/index.js').then((m) => m.openOpfsColdFile('x.bin')).then(() => 'opened', (e) => e.message)`);
    expect(main).toMatch(/kv\.cold.*dedicated workers/);
    await page.close();
  });
});
