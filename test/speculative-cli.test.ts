/** bmc-llm run with speculative decoding (the built dist/cli.js): --draft FILE, --lookup, --draft-k K. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './shared-paths.js';

const CLI = join(ROOT, 'dist/cli.js');
const STORIES = join(MODELS, 'stories260K.gguf');
const DRAFT = join(MODELS, 'llama2xs-tok512.gguf');

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, BMC_LLM_MODEL: '' }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('bmc-llm run --draft / --lookup', () => {
  it('prints the greedy text of plain decoding, and the acceptance rate and tokens per verify pass on stderr', () => {
    const base = ['run', '-m', STORIES, '-p', 'Once upon a time', '-n', '64', '--temp', '0', '--threads', '1'];
    const plain = cli(base);
    expect(plain.code).toBe(0);
    expect(plain.err).not.toMatch(/speculation/);
    for (const extra of [['--draft', DRAFT], ['--draft', DRAFT, '--draft-k', '6', '--kv', 'static'], ['--lookup', '--kv', 'auto']]) {
      const r = cli([...base, ...extra]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toBe(plain.out);
      expect(r.err).toMatch(/speculation: .*: \d+ of \d+ drafts accepted \(\d+\.\d%; per token \d+\.\d%\), \d+\.\d\d tokens per verify pass \(\d+ passes\)/);
      if (extra.includes('--draft-k')) expect(r.err).toMatch(/, k 6,/);
    }
  });

  it('bad combinations exit 2 naming the flag; a draft with another vocabulary exits 1 naming both files', () => {
    const base = ['run', '-m', STORIES, '-n', '4'];
    let r = cli([...base, '--draft', DRAFT, '--lookup']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--draft/);
    r = cli([...base, '--draft-k', '3']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--draft-k/);
    r = cli([...base, '--lookup', '--draft-k', '0']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--draft-k/);
    r = cli([...base, '--draft', join(MODELS, 'babyllama-tok105.gguf')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/babyllama-tok105\.gguf.*stories260K\.gguf|stories260K\.gguf.*babyllama-tok105\.gguf/);
  });
});
