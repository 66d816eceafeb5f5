/**
 * The same checks for every JavaScript runtime other than Node (Deno, Bun): the one-file CLI copied alone into an
 * empty folder, and a library import of dist/index.js, each compared with what Node prints for the same greedy run.
 * The runtimes come from the npm registry as devDependencies (`deno`, `bun`), so a missing one fails, never skips.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS, ROOT, readReference } from '../shared-paths.js';

export interface Runtime {
  name: string;
  /** Command and leading arguments that run a script file. */
  command: string[];
}

/** The runtime's binary from node_modules; when a package's postinstall did not link it, its platform package's. */
export function findRuntime(name: 'deno' | 'bun'): Runtime {
  const candidates = name === 'deno'
    ? [join(ROOT, 'node_modules/.bin/deno'), ...platformBinaries('@deno', 'deno')]
    : [join(ROOT, 'node_modules/.bin/bun'), ...platformBinaries('@oven', 'bin/bun')];
  for (const c of candidates) {
    if (existsSync(c) && spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0) {
      return { name, command: name === 'deno' ? [c, 'run', '--allow-read', '--allow-env', '--allow-net'] : [c] };
    }
  }
  throw new Error(`${name} not found in node_modules (it is a devDependency: run npm ci)`);
}

function platformBinaries(scope: string, file: string): string[] {
  const dir = join(ROOT, 'node_modules', scope);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((d) => d.includes(process.platform)).map((d) => join(dir, d, file));
}

function exec(cmd: string[], args: string[], cwd: string) {
  const r = spawnSync(cmd[0]!, [...cmd.slice(1), ...args], {
    cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, BMC_LLM_MODEL: '', NODE_PATH: '', NO_COLOR: '1' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const STORIES = join(MODELS, 'stories260K.gguf');
const Q4 = join(MODELS, 'synth-d256-q4_0.gguf');
const LIB_SCRIPT = join(ROOT, 'test/runtimes/generate-lib.mjs');

export function runtimeSuite(name: 'deno' | 'bun'): void {
  const rt = findRuntime(name);
  const node: Runtime = { name: 'node', command: [process.execPath] };
  const ref = readReference('stories260K.p1.json');
  const tmp = mkdtempSync(join(tmpdir(), `bmc-${name}-`));
  copyFileSync(join(ROOT, 'dist/bmc-llm.mjs'), join(tmp, 'bmc-llm.mjs'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  describe(`${name}: the one-file CLI`, () => {
    it('prints the greedy stories260K text of Node and llama.cpp from a folder holding only the bundle', () => {
      const args = ['bmc-llm.mjs', 'run', '-m', STORIES, '-p', ref.prompt, '-n', '64', '--temp', '0', '--threads', '1'];
      const r = exec(rt.command, args, tmp);
      expect(r.err).not.toMatch(/internal error/);
      expect(r.code).toBe(0);
      expect(r.out).toBe(exec(node.command, args, tmp).out);
      expect(r.out).toBe(`${ref.prompt}${Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8')}\n`);
    });

    it('runs on 2 threads (workers over shared memory) with the same text as 1', () => {
      const args = (t: string) => ['bmc-llm.mjs', 'run', '-m', Q4, '-p', 'a b c', '-n', '12', '--temp', '0', '--ignore-eos', '--threads', t];
      const two = exec(rt.command, args('2'), tmp);
      expect(two.code).toBe(0);
      expect(two.err).toMatch(/2 threads\)/);
      expect(two.err).not.toMatch(/running on 1 thread/);
      expect(two.out).toBe(exec(node.command, args('1'), tmp).out);
    });
  });

  describe(`${name}: the tiered KV cache with cold rows in a file`, () => {
    it('--kv-cold file: the untiered greedy text; the temporary file is removed at exit', () => {
      const dir = mkdtempSync(join(tmpdir(), `bmc-${name}-cold-`));
      try {
        const base = ['bmc-llm.mjs', 'run', '-m', STORIES, '-p', ref.prompt, '-n', '64', '--temp', '0', '--threads', '1', '-c', '128'];
        const tiers = ['--kv-budget', '150000', '--kv-cold', 'file', '--kv-cold-path', dir];
        // Deno asks for write permission to create the file.
        const cmd = name === 'deno' ? [...rt.command.slice(0, 2), '--allow-write', ...rt.command.slice(2)] : rt.command;
        const r = exec(cmd, [...base, ...tiers], tmp);
        expect(r.err).not.toMatch(/internal error/);
        expect(r.code).toBe(0);
        expect(r.err).toMatch(/kv tiers: .* [1-9]\d* cold \(file /);
        expect(r.out).toBe(exec(node.command, base, tmp).out);
        expect(readdirSync(dir)).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe(`${name}: KVPR restore of cold rows`, () => {
    it('--kv-restore 16 and auto, on 2 threads with a file cold tier: the untiered greedy text', () => {
      const dir = mkdtempSync(join(tmpdir(), `bmc-${name}-kvpr-`));
      try {
        const base = ['bmc-llm.mjs', 'run', '-m', STORIES, '-p', ref.prompt, '-n', '64', '--temp', '0', '-c', '128'];
        const cmd = name === 'deno' ? [...rt.command.slice(0, 2), '--allow-write', ...rt.command.slice(2)] : rt.command;
        const expected = exec(node.command, [...base, '--threads', '1'], tmp).out;
        // l = 16 recomputes the first 16 cold rows of every layer from their saved inputs, on the workers, while the
        // main thread reads the rest from the file: recomputed rows are bit-identical, so the text is too.
        const fixed = exec(cmd, [...base, '--threads', '2', '--kv-budget', '164000', '--kv-cold', 'file', '--kv-cold-path', dir, '--kv-restore', '16'], tmp);
        expect(fixed.err).not.toMatch(/internal error/);
        expect(fixed.code).toBe(0);
        expect(fixed.err).toMatch(/2 threads\)/);
        expect(fixed.err).toMatch(/kv restore: l=16\b.*: [1-9]\d* rows recomputed, [1-9]\d* read/);
        expect(fixed.out).toBe(expected);
        const auto = exec(cmd, [...base, '--threads', '2', '--kv-budget', '164000', '--kv-restore', 'auto'], tmp);
        expect(auto.code).toBe(0);
        expect(auto.err).toMatch(/kv restore: auto: .*rates: read .*\/s, recompute [\d.]+ GFLOP\/s/);
        expect(auto.out).toBe(expected);
        expect(readdirSync(dir)).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe(`${name}: import { loadModel } from dist/index.js`, () => {
    const lib = (r: Runtime, file: string, threads: number) => {
      const res = exec(r.command, [LIB_SCRIPT, file, 'Once upon a time', '32', String(threads)], ROOT);
      expect(res.err, `${r.name} stderr`).not.toMatch(/Error/);
      expect(res.code).toBe(0);
      return JSON.parse(res.out.trim().split('\n').pop()!) as { text: string; threads: number; fallback: string | null; stop: string };
    };

    it('generates the same greedy text as Node (stories260K, 1 thread; Q4_0, 2 threads)', () => {
      const a = lib(rt, STORIES, 1);
      expect(a.text.length).toBeGreaterThan(50);
      expect(a.text).toBe(lib(node, STORIES, 1).text);
      const b = lib(rt, Q4, 2);
      expect(b.threads).toBe(2);
      expect(b.fallback).toBeNull();
      expect(b.text).toBe(lib(node, Q4, 1).text);
    });
  });

  describe(`${name}: serving the OpenAI API`, () => {
    /** Starts a server process, asks for a greedy completion, stops it; returns the text. */
    async function complete(args: string[]): Promise<{ text: string; model: string }> {
      const p = spawn(rt.command[0]!, [...rt.command.slice(1), ...args], { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'] });
      try {
        let log = '';
        const url = await new Promise<string>((resolve, reject) => {
          p.stderr!.setEncoding('utf8');
          p.stderr!.on('data', (d: string) => {
            log += d;
            const m = /listening on (http:\/\/[\d.:]+)[ \n]/.exec(log);
            if (m) resolve(m[1]!);
          });
          p.once('exit', (code) => reject(new Error(`${name} server exited (${code}): ${log}`)));
        });
        const r = await fetch(`${url}/v1/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: ref.prompt, max_tokens: 24, temperature: 0 }),
        });
        expect(r.status).toBe(200);
        const j = (await r.json()) as { model: string; choices: Array<{ text: string }> };
        return { text: j.choices[0]!.text, model: j.model };
      } finally {
        p.kill('SIGTERM');
      }
    }
    const expected = Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8');

    it('bmc-llm serve (node:http adapter) answers a completion with the greedy text', async () => {
      const r = await complete(['bmc-llm.mjs', 'serve', '-m', STORIES, '--port', '0', '--threads', '1']);
      expect(r.text.length).toBeGreaterThan(40);
      expect(expected.startsWith(r.text)).toBe(true);
    });

    it(`the same handler under ${name === 'deno' ? 'Deno.serve' : 'Bun.serve'} answers it too`, async () => {
      const r = await complete([join(ROOT, 'test/runtimes/serve-native.mjs'), STORIES]);
      expect(r.model).toBe('native');
      expect(r.text.length).toBeGreaterThan(40);
      expect(expected.startsWith(r.text)).toBe(true);
    });
  });
}
