/** `bmc-llm run --kv-budget N --kv-restore ...` as a user runs it (the built dist/cli.js): same greedy text as the
 *  untiered run, the restore line on stderr, and bad values refused naming the flag. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './shared-paths.js';

const CLI = join(ROOT, 'dist/cli.js');
const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'run', '-m', join(MODELS, 'stories260K.gguf'), '-n', '100', '--temp', '0', '--ignore-eos', '-c', '128', '-t', '1', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });

describe('bmc-llm run --kv-restore', () => {
  it('recomputes cold rows and generates the untiered text; refuses bad values', () => {
    const plain = run([]);
    expect(plain.status).toBe(0);
    const r = run(['--kv-budget', '164000', '--kv-restore', '16', '--kv-cold-bandwidth', '50000000']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(plain.stdout);
    expect(r.stderr).toMatch(/kv restore: l=16 \(cold tier 47\.7 MiB\/s, simulated\): [1-9]\d* rows recomputed, [1-9]\d* read/);
    const auto = run(['--kv-budget', '164000', '--kv-restore', 'auto']);
    expect(auto.status, auto.stderr).toBe(0);
    expect(auto.stdout).toBe(plain.stdout);
    expect(auto.stderr).toMatch(/kv restore: auto: .*rates: read .*\/s, recompute [\d.]+ GFLOP\/s/);
    const only = run(['--kv-budget', '164000', '--kv-cold-keep', 'activations']);
    expect(only.status, only.stderr).toBe(0);
    expect(only.stdout).toBe(plain.stdout);
    expect(only.stderr).toMatch(/kv restore: recompute: [1-9]\d* rows recomputed, 0 read/);
    for (const [args, flag] of [
      [['--kv-budget', '164000', '--kv-cold-keep', 'disk'], '--kv-cold-keep'],
      [['--kv-budget', '164000', '--kv-cold-keep', 'activations', '--kv-restore', 'read'], '--kv-restore'],
      [['--kv-budget', '164000', '--kv-restore', 'sometimes'], '--kv-restore'],
      [['--kv-budget', '164000', '--kv-cold-bandwidth', '-5'], '--kv-cold-bandwidth'],
      [['--kv-budget', '164000', '--kv-restore', 'auto', '--kv-activations', 'q4'], '--kv-activations'],
      [['--kv-restore', 'auto'], '--kv-restore'],
      [['--kv-budget', '300000', '--kv-cold-keep', 'activations', '--kv-warm', 'q8_0'], '--kv-cold-keep'],
      [['--kv-budget', '300000', '--kv-cold-keep', 'activations', '--kv-cold', 'file'], '--kv-cold'],
      [['--kv-budget', '300000', '--kv-warm', 'q8_0', '--kv-warm-fraction', '1.5'], '--kv-warm-fraction'],
    ] as const) {
      const bad = run([...args]);
      expect(bad.status, bad.stderr).toBe(2);
      expect(bad.stderr).toContain(flag);
    }
  }, 60_000);
});
