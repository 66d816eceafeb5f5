/**
 * Node adapter: finding a model when none is named, and downloading the small public default into a cache folder
 * with a progress bar on stderr. The checksum of what was fetched is recorded beside it.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { SourceError } from '../errors.js';

export const DEFAULT_MODEL = {
  file: 'stories15M.gguf',
  urls: [
    'https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories15M.gguf',
    'https://huggingface.co/ggml-org/models-moved/resolve/main/tinyllamas/stories15M.gguf',
  ],
};

export function cacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'bmc-llm');
}

/** --model, else BMC_LLM_MODEL, else the first .gguf in ./models, else the cached or downloaded default. */
export async function resolveModelPath(explicit: string | undefined, log: (s: string) => void): Promise<string> {
  if (explicit) return explicit;
  const env = process.env.BMC_LLM_MODEL;
  if (env) return env;
  const dir = resolve('models');
  if (existsSync(dir)) {
    const first = readdirSync(dir).filter((f) => f.toLowerCase().endsWith('.gguf')).sort()[0];
    if (first) return join(dir, first);
  }
  const cached = join(cacheDir(), DEFAULT_MODEL.file);
  if (existsSync(cached)) return cached;
  return downloadDefault(cached, log);
}

async function downloadDefault(dest: string, log: (s: string) => void): Promise<string> {
  await mkdir(cacheDir(), { recursive: true });
  const failures: string[] = [];
  // BMC_LLM_DOWNLOAD_URL replaces the public addresses (a mirror, or a test that must not reach the network).
  const urls = process.env.BMC_LLM_DOWNLOAD_URL ? [process.env.BMC_LLM_DOWNLOAD_URL] : DEFAULT_MODEL.urls;
  for (const url of urls) {
    let res: Response;
    try {
      res = await fetch(url, { redirect: 'follow' });
    } catch (e) {
      failures.push(`${url}: ${(e as Error).message}`);
      continue;
    }
    if (!res.ok || !res.body) {
      failures.push(`${url}: HTTP ${res.status}`);
      continue;
    }
    const total = Number(res.headers.get('content-length') ?? 0);
    log(`downloading the default model ${DEFAULT_MODEL.file} from ${url}\n`);
    const tmp = `${dest}.part`;
    const out = createWriteStream(tmp);
    const hash = createHash('sha256');
    let got = 0;
    // The bar is drawn on a terminal (or with BMC_LLM_PROGRESS=1), redrawn once per percent (per MiB without a size).
    const drawBar = process.stderr.isTTY === true || process.env.BMC_LLM_PROGRESS === '1';
    let shown = -1;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        got += chunk.byteLength;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        const step = total ? Math.floor((100 * got) / total) : Math.floor(got / 1048576);
        if (drawBar && step !== shown) { shown = step; log(`\r${progressBar(got, total)}`); }
      }
      await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
    } catch (e) {
      out.destroy();
      await rm(tmp, { force: true });
      failures.push(`${url}: ${(e as Error).message}`);
      continue;
    }
    if (drawBar) log('\n');
    await rename(tmp, dest);
    const sha = hash.digest('hex');
    await writeFile(`${dest}.sha256`, `${sha}  ${DEFAULT_MODEL.file}  ${url}\n`);
    log(`saved ${dest} (sha256 ${sha})\n`);
    return dest;
  }
  throw new SourceError(
    `No model was given and the default model could not be downloaded (${failures.join('; ')}): pass one with -m FILE.gguf or set BMC_LLM_MODEL=FILE.gguf.`,
  );
}

export function progressBar(done: number, total: number, width = 30): string {
  const mib = (n: number) => (n / 1048576).toFixed(1);
  if (!total) return `${mib(done)} MiB`;
  const f = Math.min(1, done / total);
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} MiB`;
}
