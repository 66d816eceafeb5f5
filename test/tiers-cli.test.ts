/** `bmc-llm simulate-placement` as a user runs it (the built dist/cli.js). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './shared-paths.js';

const CLI = join(ROOT, 'dist/cli.js');
const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, 'simulate-placement', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const SMALL = ['--syn-layers', '2', '--syn-prompt', '128', '--syn-steps', '48'];

describe('bmc-llm simulate-placement', () => {
  it('--synthetic prints the table of every policy; the saved trace replays to the same JSON; --svg writes a chart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-sim-'));
    const trace = join(dir, 'syn.trace');
    const svg = join(dir, 'chart.svg');
    const r = cli(['--synthetic', ...SMALL, '--save-trace', trace, '--svg', svg]);
    expect(r.code).toBe(0);
    for (const p of ['ideal', 'static', 'reactive', 'page', 'online', 'oracle']) expect(r.out).toMatch(new RegExp(`^${p} +[0-9.]+ +[0-9.]+x +[0-9.]+%`, 'm'));
    expect(r.out).toMatch(/^static +[0-9.]+ +1\.00x/m);
    expect(r.err).toMatch(/oracle: W \d+, R [0-9.]+ after \d+ evaluations/);
    expect(readFileSync(svg, 'utf8')).toMatch(/^<svg[\s\S]*oracle[\s\S]*<\/svg>$/);
    const a = JSON.parse(cli(['--synthetic', ...SMALL, '--json']).out);
    const b = JSON.parse(cli(['--trace', trace, '--json']).out);
    expect(b.results).toEqual(a.results);
    expect(b.model.fastBw).toBe(4.9e12);
    // Flags override the preset.
    const c = JSON.parse(cli(['--trace', trace, '--json', '--fast-bytes', '1e6', '--slow-bw', '1e11', '--policies', 'static,online']).out);
    expect(c.model).toMatchObject({ fastBytes: 1e6, slowBw: 1e11 });
    expect(c.results.map((x: { policy: string }) => x.policy)).toEqual(['static', 'online']);
    // A mass threshold reads fewer tokens: every policy's time falls, and the header says how the trace was read.
    const d = cli(['--trace', trace, '--policies', 'static,online', '--min-mass', '0.01']);
    expect(d.out).toMatch(/context up to \d+, mass > 0\.01/);
    const e = JSON.parse(cli(['--trace', trace, '--json', '--policies', 'static', '--min-mass', '0.01']).out);
    expect(e.minMass).toBe(0.01);
    expect(e.results[0].timeS).toBeLessThan(b.results.find((x: { policy: string }) => x.policy === 'static').timeS);
    // An exact reader reads every token at every step: never less than the default reader, said in the header.
    const x = cli(['--trace', trace, '--policies', 'static', '--exact']);
    expect(x.out).toMatch(/context up to \d+, exact reads/);
    const xj = JSON.parse(cli(['--trace', trace, '--json', '--policies', 'static', '--exact']).out);
    expect(xj.exact).toBe(true);
    expect(xj.results[0].timeS).toBeGreaterThanOrEqual(b.results.find((x: { policy: string }) => x.policy === 'static').timeS);
  });

  it('bad flags exit 2 naming the flag; a corrupt trace exits 1 naming the defect', () => {
    const one = cli([]);
    expect(one.code).toBe(2);
    expect(one.err).toMatch(/--trace/);
    const pol = cli(['--synthetic', ...SMALL, '--policies', 'static,lru']);
    expect(pol.code).toBe(2);
    expect(pol.err).toMatch(/--policies: unknown policy "lru"/);
    const sp = cli(['--synthetic', ...SMALL, '--sparsity', '1.5']);
    expect(sp.code).toBe(2);
    expect(sp.err).toMatch(/--sparsity/);
    const mm = cli(['--synthetic', ...SMALL, '--min-mass', '-1']);
    expect(mm.code).toBe(2);
    expect(mm.err).toMatch(/--min-mass/);
    const ex = cli(['--synthetic', ...SMALL, '--exact', '--sparsity', '0.5']);
    expect(ex.code).toBe(2);
    expect(ex.err).toMatch(/--exact: .*--sparsity/);
    expect(cli(['--synthetic', '--preset', 'mi300']).err).toMatch(/--preset/);
    const dir = mkdtempSync(join(tmpdir(), 'bmc-sim-'));
    const bad = join(dir, 'bad.trace');
    writeFileSync(bad, Uint8Array.from([0x42, 0x4d, 0x43, 0x54, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x7b, 0x7d, 1, 4, 0, 0, 0]));
    const c = cli(['--trace', bad]);
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/bad\.trace: step 0 layer 0: sparse header: needs 8 bytes/);
    const missing = cli(['--trace', join(dir, 'nope.trace')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no such file/);
  });
});

describe('bmc-llm run --trace', () => {
  it('writes an engine trace that simulate-placement replays; refuses --trace with speculative decoding', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-trace-'));
    const trace = join(dir, 'run.trace');
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'run', '-m', join(MODELS, 'stories260K.gguf'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    const r = run(['-n', '40', '--temp', '0', '--ignore-eos', '-c', '128', '--trace', trace]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/trace: \d+ steps x 5 layers written/);
    const j = JSON.parse(cli(['--trace', trace, '--json', '--policies', 'static,reactive,online']).out);
    expect(j.steps).toBeGreaterThanOrEqual(40);
    expect(j.layers).toBe(5);
    // --kv-budget: the tiered cache (placed by the kernel's attention mass, with or without a trace) generates the
    // same text and reports its migrations; --json carries them.
    const tiered = run(['-n', '40', '--temp', '0', '--ignore-eos', '-c', '128', '--trace', trace, '--kv-budget', '130000']);
    expect(tiered.status).toBe(0);
    expect(tiered.stdout).toBe(r.stdout);
    expect(tiered.stderr).toMatch(/kv tiers: budget .*hot rows per layer/);
    expect(tiered.stderr).toMatch(/kv migrations: [1-9]\d* promotions \(.+ host -> arena\), \d+ demotions/);
    const js = run(['-n', '40', '--temp', '0', '--ignore-eos', '-c', '128', '--kv-budget', '130000', '--kv-max-migrations', '2', '--json']);
    expect(js.status).toBe(0);
    const out = JSON.parse(js.stdout);
    expect(`${out.prompt}${out.text}\n`).toBe(r.stdout);
    const t = out.stats.kv.tiers;
    expect(t.promotions).toBeGreaterThan(0);
    expect(t.maxPromotionsPerStep).toBeLessThanOrEqual(2);
    expect(t.promotedBytes).toBe(t.promotions * 2 * 4 * 8 * 4); // K and V rows of 4 kv heads x 8 f32 (stories260K)
    for (const [flags, name] of [[['--kv-migration-ratio', '2'], '--kv-migration-ratio'], [['--kv-placement', 'lru'], '--kv-placement']] as const) {
      const e = run(['-n', '4', '--kv-budget', '130000', ...flags]);
      expect(e.status).toBe(2);
      expect(e.stderr).toContain(name);
    }
    expect(run(['-n', '4', '--kv-max-migrations', '3']).stderr).toMatch(/--kv-max-migrations.*--kv-budget/);
    expect(run(['-n', '4', '--kv', 'bmc:8', '--kv-budget', '120000']).stderr).toMatch(/--kv-budget/);
    // A warm q8_0 tier and cold rows in a temporary file (removed at exit).
    const coldDir = mkdtempSync(join(tmpdir(), 'bmc-cold-'));
    const warm = run(['-n', '100', '--temp', '0', '--ignore-eos', '-c', '128', '--trace', trace, '--kv-budget', '200000', '--kv-warm', 'q8_0', '--kv-warm-fraction', '0.3', '--kv-cold', 'file', '--kv-cold-path', coldDir]);
    expect(warm.status).toBe(0);
    expect(warm.stderr).toMatch(/kv tiers: budget .*hot rows per layer, \d+ warm q8_0; \d+ rows hot, [1-9]\d* warm, [1-9]\d* cold \(file .*expanded/);
    expect(readdirSync(coldDir)).toHaveLength(0);
    const noBudget = run(['-n', '4', '--kv-warm', 'q8_0']);
    expect(noBudget.status).toBe(2);
    expect(noBudget.stderr).toMatch(/--kv-warm/);
    expect(run(['-n', '4', '--kv-budget', '150000', '--kv-cold', 'disk']).stderr).toMatch(/--kv-cold/);
    const bad = run(['-n', '4', '--trace', trace, '--lookup']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--trace/);
  });
});
