/**
 * The one-file CLI (dist/bmc-llm.mjs) away from the project: copied alone into an empty folder, and installed from
 * the `npm pack` tarball with the network off. Both must generate llama.cpp's greedy text, and the worker pool (shipped
 * to its threads as source text) must start from inside the bundle.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS, ROOT, readReference } from './shared-paths.js';

const STORIES = join(MODELS, 'stories260K.gguf');
const ref = readReference('stories260K.p1.json');
const greedy = (n: number) => ref.prompt + Buffer.from(ref.greedy_bytes_hex, 'hex').toString('utf8').slice(0, n);
const tmp = mkdtempSync(join(tmpdir(), 'bmc-bundle-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// No NODE_PATH, no inherited module folders: the file must stand alone.
const env = { ...process.env, NODE_PATH: '', BMC_LLM_MODEL: '' };
function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('dist/bmc-llm.mjs alone', () => {
  const dir = join(tmp, 'alone');
  mkdirSync(dir);
  copyFileSync(join(ROOT, 'dist/bmc-llm.mjs'), join(dir, 'bmc-llm.mjs'));

  it('runs from a folder with nothing else in it and gives the reference greedy text', () => {
    expect(readdirSync(dir)).toEqual(['bmc-llm.mjs']);
    const r = run(process.execPath, ['bmc-llm.mjs', 'run', '-m', STORIES, '-p', ref.prompt, '-n', '64', '--temp', '0', '--threads', '1'], dir);
    expect(r.err).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${greedy(10_000)}\n`);
  });

  it('starts its worker threads from inside the bundle (2 threads, same text as 1)', () => {
    const model = join(MODELS, 'synth-d256-q4_0.gguf');
    const args = (t: string) => ['bmc-llm.mjs', 'run', '-m', model, '-p', 'a b c', '-n', '12', '--temp', '0', '--ignore-eos', '--threads', t];
    const one = run(process.execPath, args('1'), dir);
    const two = run(process.execPath, args('2'), dir);
    expect(two.code).toBe(0);
    expect(two.err).toMatch(/2 threads\)/);
    expect(two.err).not.toMatch(/running on 1 thread/);
    expect(two.out).toBe(one.out);
  });
});

describe('npm pack tarball', () => {
  it('installs offline with no dependencies and runs the bmc-llm bin, also through npx', () => {
    const packDir = join(tmp, 'pack');
    mkdirSync(packDir);
    const cache = join(tmp, 'npm-cache'); // a fresh cache: nothing can come from earlier installs or the network
    const npmEnv = { ...env, npm_config_cache: cache, npm_config_offline: 'true', npm_config_update_notifier: 'false' };
    execFileSync('npm', ['pack', '--silent', '--pack-destination', packDir], { cwd: ROOT, env: npmEnv, stdio: 'pipe' });
    const tarball = join(packDir, readdirSync(packDir).find((f) => f.endsWith('.tgz'))!);
    const prefix = join(tmp, 'prefix');
    execFileSync('npm', ['install', '--global', '--offline', '--prefix', prefix, tarball], { cwd: packDir, env: npmEnv, stdio: 'pipe' });
    const viaBin = run(join(prefix, 'bin/bmc-llm'), ['run', '-m', STORIES, '-p', ref.prompt, '-n', '24', '--temp', '0'], packDir);
    expect(viaBin.code).toBe(0);
    expect(greedy(10_000).startsWith(viaBin.out.trimEnd())).toBe(true);
    expect(viaBin.out.length).toBeGreaterThan(ref.prompt.length + 40);

    // `npx ./file.tgz`: a bare absolute path would be taken as a command to run, not a package.
    const r = spawnSync('npx', ['--yes', '--offline', `./${basename(tarball)}`, 'run', '-m', STORIES, '-p', ref.prompt, '-n', '24', '--temp', '0'],
      { cwd: packDir, env: npmEnv, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(viaBin.out);
  }, 180_000);
});
