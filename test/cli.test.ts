/** The bmc-llm command as a user runs it (the built dist/cli.js): output streams, exit codes, messages. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './shared-paths.js';
import { iq4nlTinyLlama } from './retype.js';

const CLI = join(ROOT, 'dist/cli.js');
const STORIES = join(MODELS, 'stories260K.gguf');

function cli(args: string[], env: Record<string, string> = {}, cwd = ROOT) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { ...process.env, BMC_LLM_MODEL: '', ...env }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('bmc-llm run', () => {
  it('streams a greedy continuation to stdout and speeds to stderr', () => {
    const r = cli(['run', '-m', STORIES, '-p', 'Once upon a time', '-n', '24', '--temp', '0']);
    expect(r.code).toBe(0);
    expect(r.out.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
    expect(r.err).toMatch(/prompt: 5 tokens in .* tok\/s/);
    expect(r.err).toMatch(/generation: 24 tokens in .* tok\/s/);
  });

  it('accepts every sampling flag and is reproducible with --seed', () => {
    const args = ['run', '-m', STORIES, '-p', 'The dog', '-n', '16', '--temp', '0.9', '--top-k', '20', '--top-p', '0.9',
      '--min-p', '0.02', '--repeat-penalty', '1.2', '--seed', '5', '--threads', '1', '--ignore-eos'];
    const a = cli(args);
    const b = cli(args);
    expect(a.code).toBe(0);
    expect(a.out).toBe(b.out);
  });

  it('BMC_LLM_MODEL names the model when -m is absent', () => {
    const r = cli(['run', '-n', '4', '--temp', '0'], { BMC_LLM_MODEL: STORIES });
    expect(r.code).toBe(0);
    expect(r.out.startsWith('Once upon a time,')).toBe(true);
  });

  it('bad option values exit 2 with a message naming the option', () => {
    const r = cli(['run', '-m', STORIES, '--temp', 'warm']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--temp/);
    expect(r.out).toBe('');
    const u = cli(['run', '--frobnicate']);
    expect(u.code).toBe(2);
    expect(u.err).toMatch(/--frobnicate/);
    const t = cli(['run', '-m', STORIES, '--top-p', '3']);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/topP/);
  });

  it('--kv picks the KV policy: paged:16 and concat give the greedy text of static; bad forms exit 2 naming --kv', () => {
    const args = ['run', '-m', STORIES, '-p', 'Once upon a time', '-n', '40', '--temp', '0', '--ignore-eos'];
    const st = cli([...args, '--kv', 'static']);
    const pg = cli([...args, '--kv', 'paged:16']);
    const cc = cli([...args, '--kv=concat']);
    expect(st.code).toBe(0);
    expect(pg.code).toBe(0);
    expect(st.out.length).toBeGreaterThan('Once upon a time'.length + 40);
    expect(pg.out).toBe(st.out);
    expect(cc.out).toBe(st.out);
    for (const bad of ['bmc:x', 'paged:0', 'ring']) {
      const r = cli(['run', '-m', STORIES, '--kv', bad]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--kv/);
      expect(r.out).toBe('');
    }
  });

  it('--kv-type stores K/V as f16 or q8_0 (with any policy); bad types exit 2 naming --kv-type', () => {
    const args = ['run', '-m', STORIES, '-p', 'Once upon a time', '-n', '24', '--temp', '0'];
    const f32 = cli(args);
    const f16 = cli([...args, '--kv-type', 'f16']);
    const q8 = cli([...args, '--kv-type=q8_0', '--kv', 'paged:16']);
    expect(f16.code).toBe(0);
    expect(q8.code).toBe(0);
    // stories260K's greedy text survives f16 rows unchanged; q8_0 rows give text too (not necessarily the same).
    expect(f16.out).toBe(f32.out);
    expect(q8.out.startsWith('Once upon a time')).toBe(true);
    expect(q8.out.length).toBeGreaterThan('Once upon a time'.length + 20);
    for (const bad of ['f8', 'Q8_0', '']) {
      const r = cli([...args, '--kv-type', bad]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--kv-type/);
      expect(r.out).toBe('');
    }
  });

  it('a missing, truncated or unsupported model is one clear line on stderr and exit 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-cli-'));
    const missing = cli(['run', '-m', join(dir, 'nope.gguf')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nope\.gguf: no such file/);
    const trunc = join(dir, 'trunc.gguf');
    writeFileSync(trunc, readFileSync(STORIES).subarray(0, 100_000));
    const t = cli(['run', '-m', trunc]);
    expect(t.code).toBe(1);
    expect(t.err).toMatch(/trunc\.gguf/);
    expect(t.err.trim().split('\n').length).toBe(1);
    const iq = join(dir, 'iq4nl.gguf');
    writeFileSync(iq, iq4nlTinyLlama());
    const q = cli(['run', '-m', iq]);
    expect(q.code).toBe(1);
    expect(q.err).toMatch(/IQ4_NL/);
    expect(q.err.trim().split('\n').length).toBe(1);
  });

  it('with no model and no network it says how to pass one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-cli-'));
    const r = cli(['run'], { XDG_CACHE_HOME: join(dir, 'cache'), BMC_LLM_DOWNLOAD_URL: 'http://127.0.0.1:9/stories15M.gguf' }, dir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/pass one with -m FILE\.gguf or set BMC_LLM_MODEL/);
    expect(r.err.trim().split('\n').length).toBe(1);
  });
});

describe('bmc-llm info', () => {
  it('prints architecture, hyperparameters, tokenizer, every tensor and the memory plan', () => {
    const r = cli(['info', STORIES]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/architecture: llama/);
    expect(r.out).toMatch(/nKVHeads\s+4/);
    expect(r.out).toMatch(/tokenizer: spm, 512 tokens/);
    expect(r.out).toMatch(/blk\.4\.ffn_down\.weight\s+F32\s+\[172, 64\]/);
    expect(r.out.match(/^ {2}(token_embd|output|blk\.)\S*\s+F32/gm)?.length).toBe(48);
    expect(r.out).toMatch(/weights\s+\d/);
  });
  it('--json is machine-readable', () => {
    const r = cli(['info', STORIES, '--json']);
    const j = JSON.parse(r.out);
    expect(j.tensors.length).toBe(48);
    expect(j.hparams.dim).toBe(64);
  });
  it('describes a vocab-only file', () => {
    const r = cli(['info', join(MODELS, 'vocab/ggml-vocab-gpt-2.gguf')]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/tokenizer: bpe \(pre gpt-2\), 50257 tokens/);
  });
});
