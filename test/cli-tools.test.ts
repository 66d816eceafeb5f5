/**
 * The CLI's terminal tools: `bench` (table and --json), progress bars for loading and for the default-model download
 * (drawn on a terminal or when asked, absent otherwise), and help for the new commands.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './shared-paths.js';

const CLI = join(ROOT, 'dist/bmc-llm.mjs');
const STORIES = join(MODELS, 'stories260K.gguf');

function cli(args: string[], env: Record<string, string> = {}, cwd = ROOT) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { ...process.env, BMC_LLM_MODEL: '', BMC_LLM_PROGRESS: '', ...env }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Async twin of cli() for commands that need this process's event loop (a local HTTP server) meanwhile. */
function cliAsync(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, BMC_LLM_MODEL: '', BMC_LLM_PROGRESS: '', ...env } });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    p.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    p.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('bmc-llm bench', () => {
  it('prints a table of prompt and decode speeds', () => {
    const r = cli(['bench', '-m', STORIES, '-p', '16,32', '-n', '8', '-r', '2', '--threads', '1']);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[1]).toMatch(/threads 1, (plain|relaxed) SIMD kernels, 2 reps/);
    expect(lines[2]).toMatch(/^test\s+tokens\s+ms\s+tok\/s$/);
    expect(lines.slice(3).map((l) => l.split(/\s+/)[0])).toEqual(['pp16', 'pp32', 'tg8']);
    for (const l of lines.slice(3)) expect(Number(l.split(/\s+/)[3])).toBeGreaterThan(0);
    expect(r.err).not.toMatch(/\r/); // no progress drawing when stderr is not a terminal
  });

  it('--json gives every repetition, and the rates agree with the times', () => {
    const r = cli(['bench', '-m', STORIES, '-p', '24', '-n', '6', '-r', '3', '--threads', '1', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { threads: number; results: Array<{ test: string; tokens: number; ms: number[]; tokPerSec: number }> };
    expect(j.threads).toBe(1);
    expect(j.results.map((x) => x.test)).toEqual(['pp24', 'tg6']);
    for (const x of j.results) {
      expect(x.ms).toHaveLength(3);
      const rates = x.ms.map((ms) => (1000 * x.tokens) / ms);
      expect(x.tokPerSec).toBeCloseTo(rates.reduce((a, b) => a + b) / 3, 6);
    }
  });

  it('rejects bad lengths naming the flag', () => {
    const r = cli(['bench', '-m', STORIES, '-p', '12,x']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--prompt/);
    expect(cli(['bench', '-m', STORIES, '-p', '0', '-n', '0']).code).toBe(2);
  });
});

describe('progress bars', () => {
  it('loading: drawn with --progress or BMC_LLM_PROGRESS=1, absent otherwise', () => {
    const asked = cli(['bench', '-m', STORIES, '-p', '8', '-n', '0', '-r', '1', '--threads', '1', '--progress']);
    expect(asked.code).toBe(0);
    expect(asked.err).toMatch(/loading \[#{30}\] 100%/);
    const env = cli(['run', '-m', STORIES, '-n', '2', '--temp', '0', '--threads', '1'], { BMC_LLM_PROGRESS: '1' });
    expect(env.err).toMatch(/loading \[#{30}\] 100%/);
    const quiet = cli(['run', '-m', STORIES, '-n', '2', '--temp', '0', '--threads', '1']);
    expect(quiet.err).not.toMatch(/loading \[/);
  });

  it('download of the default model: a bar up to 100%, the file and its sha256 saved', async () => {
    const size = statSync(STORIES).size;
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(size) });
      createReadStream(STORIES, { highWaterMark: 64 << 10 }).pipe(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const dir = mkdtempSync(join(tmpdir(), 'bmc-dl-'));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/stories15M.gguf`;
      const r = await cliAsync(['run', '-n', '4', '--temp', '0', '--threads', '1'],
        { XDG_CACHE_HOME: join(dir, 'cache'), BMC_LLM_DOWNLOAD_URL: url, BMC_LLM_PROGRESS: '1' }, dir);
      expect(r.err).not.toMatch(/internal error/);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^Once upon a time/);
      expect(r.err).toMatch(/downloading the default model/);
      expect(r.err).toMatch(/\[#{30}\] 100% /);
      const saved = join(dir, 'cache/bmc-llm/stories15M.gguf');
      const sha = createHash('sha256').update(readFileSync(saved)).digest('hex');
      expect(readFileSync(saved).equals(readFileSync(STORIES))).toBe(true);
      expect(readFileSync(`${saved}.sha256`, 'utf8')).toMatch(new RegExp(`^${sha} `));
    } finally {
      server.closeAllConnections();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('help', () => {
  it('lists serve, chat and bench, each with its own --help', () => {
    const r = cli(['--help']);
    for (const c of ['serve', 'chat', 'bench']) expect(r.out).toMatch(new RegExp(`bmc-llm ${c} `));
    expect(cli(['serve', '--help']).out).toMatch(/--port/);
    expect(cli(['chat', '--help']).out).toMatch(/--system/);
    expect(cli(['bench', '--help']).out).toMatch(/--reps/);
    expect(cli(['serve', '-m', STORIES, '--port', '70000']).code).toBe(2);
  });
});
