// Cloudflare Workers: examples/worker bundled as wrangler would, served by workerd (the Workers runtime, from npm) on
// 127.0.0.1 with the model behind a service binding, and a client reading the streamed text.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { MODELS, readReference, ROOT } from './shared-paths.js';

const EXAMPLE = join(ROOT, 'examples/worker');
let server: ChildProcess | undefined;
let base = '';
let stderr = '';

/** Starts workerd on a free port; its control descriptor (fd 3) says which port it listens on. */
async function startWorkerd(): Promise<string> {
  const bin = (createRequire(import.meta.url)('workerd') as { default: string }).default; // the platform binary
  server = spawn(bin, ['serve', join(EXAMPLE, 'workerd.capnp'), '--directory-path', `models=${MODELS}`,
    '--socket-addr', 'http=127.0.0.1:0', '--control-fd=3'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  server.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`workerd did not start in 30 s: ${stderr}`)), 30_000);
    server!.once('exit', (code) => reject(new Error(`workerd exited (${code}): ${stderr}`)));
    let lines = '';
    (server!.stdio[3] as Readable).on('data', (d: Buffer) => {
      lines += d.toString();
      for (const line of lines.split('\n').slice(0, -1)) {
        const msg = JSON.parse(line) as { event?: string; socket?: string; port?: number };
        if (msg.event === 'listen' && msg.socket === 'http') {
          clearTimeout(timer);
          resolve(`http://127.0.0.1:${msg.port}`);
        }
      }
    });
  });
}

/** The response body as the chunks that arrived, decoded. */
async function readChunks(res: Response): Promise<string[]> {
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(decoder.decode(value, { stream: true }));
  }
}

async function nodeGreedy(prompt: string, n: number): Promise<string> {
  const model = await loadModel(join(MODELS, 'stories260K.gguf'), { threads: 1 });
  try {
    return await model.generate(prompt, { maxTokens: n, temperature: 0 }).text();
  } finally {
    model.dispose();
  }
}

describe('Cloudflare Workers (workerd serving examples/worker)', () => {
  beforeAll(async () => {
    const built = spawnSync(process.execPath, [join(EXAMPLE, 'build.mjs')], { cwd: ROOT, encoding: 'utf8' });
    expect(built.status, built.stderr).toBe(0);
    base = await startWorkerd();
  });
  afterAll(() => {
    server?.kill();
  });

  it('streams the greedy continuation that Node and llama.cpp produce', async () => {
    const ref = readReference('stories260K.p1.json');
    const res = await fetch(`${base}/?prompt=${encodeURIComponent(ref.prompt)}&n=${ref.greedy_ids.length}&temp=0`);
    expect(res.status, stderr).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const chunks = await readChunks(res);
    const text = chunks.join('');
    expect(text).toBe(Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8'));
    expect(text).toBe(await nodeGreedy(ref.prompt, ref.greedy_ids.length));
    expect(chunks.length).toBeGreaterThan(2); // streamed piece by piece (a busy client may read several at once)
  });

  it('takes a JSON POST, and runs the imported relaxed-SIMD module on one thread inside the memory limit', async () => {
    const ref = readReference('stories260K.p2.json');
    const res = await fetch(base, { method: 'POST', body: JSON.stringify({ prompt: ref.prompt, maxTokens: 40, temperature: 0 }) });
    expect(res.status).toBe(200);
    expect((await readChunks(res)).join('')).toBe(await nodeGreedy(ref.prompt, 40));
    const info = await (await fetch(`${base}/info`)).json() as {
      simd: string; threads: number; memoryLimit: number; arena: { bytesPeak: number; bytesReserved: number };
    };
    expect(info).toMatchObject({ simd: 'relaxed', threads: 1 });
    expect(info.memoryLimit).toBeLessThanOrEqual(128 << 20);
    expect(info.arena.bytesReserved).toBeLessThanOrEqual(info.memoryLimit);
  });

  it('answers a bad option with 400 naming it, and keeps serving after a client disconnects', async () => {
    const bad = await fetch(`${base}/?prompt=Hi&n=-1`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/maxTokens/);
    const cut = await fetch(`${base}/?prompt=Once&n=400&temp=0.8&seed=3`);
    const reader = cut.body!.getReader();
    await reader.read();
    await reader.cancel();
    const after = await fetch(`${base}/?prompt=Once%20upon%20a%20time&n=8&temp=0`);
    expect((await readChunks(after)).join('')).toBe(await nodeGreedy('Once upon a time', 8));
  });
});
