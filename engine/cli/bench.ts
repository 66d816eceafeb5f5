/**
 * `bmc-llm bench`: prompt (prefill) and decode speed of one model file, in the manner of llama-bench. pp<N> feeds N
 * prompt tokens in one eval (chunks of the batch size) to an empty session; tg<N> feeds N tokens one eval at a time
 * after a one-token start, without sampling. Token ids are fixed and spread over the vocabulary (speed does not
 * depend on which tokens). Each test runs once to warm up, then --reps times; the table gives mean and spread
 * (sample standard deviation of the per-repetition rates).
 */
import { OptionError, formatBytes } from '../errors.js';
import type { Model } from '../model.js';
import { helpText, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';
import { MODEL_FLAGS, loadForCommand, showProgress } from './load.js';

export const BENCH_FLAGS: FlagSpec[] = [
  ...MODEL_FLAGS.filter((f) => f.name !== 'ctx-size'),
  { name: 'prompt', short: 'p', type: 'string', help: 'prompt lengths, comma-separated (default 128; 0 = none)' },
  { name: 'gen', short: 'n', type: 'string', help: 'decode lengths, comma-separated (default 32; 0 = none)' },
  { name: 'reps', short: 'r', type: 'int', help: 'timed repetitions per test (default 3)' },
  { name: 'batch-size', type: 'int', help: 'prompt tokens per forward chunk (default 128)' },
  { name: 'json', type: 'bool', help: 'print JSON instead of a table' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

export interface BenchResult {
  test: string;
  kind: 'prompt' | 'decode';
  tokens: number;
  /** Milliseconds of each timed repetition. */
  ms: number[];
  tokPerSec: number;
  tokPerSecSd: number;
}

function lengths(raw: unknown, flag: string, def: number): number[] {
  if (raw === undefined) return [def];
  const list = String(raw).split(',').map((s) => s.trim());
  const out = list.map((s) => {
    const v = Number(s);
    if (s === '' || !Number.isInteger(v) || v < 0 || v > 1 << 20) throw new OptionError(flag, `"${s}" is not a token count in [0, ${1 << 20}]`);
    return v;
  });
  return out.filter((v) => v > 0);
}

/** Fixed ids spread over the vocabulary, skipping none: speed does not depend on which tokens they are. */
function tokens(model: Model, n: number): number[] {
  const V = model.tokenizer.vocabSize;
  return Array.from({ length: n }, (_, i) => (i * 7919 + 13) % V);
}

async function timeOnce(model: Model, kind: 'prompt' | 'decode', n: number): Promise<number> {
  const s = model.createSession();
  try {
    const ids = tokens(model, n + 1);
    if (kind === 'prompt') {
      const t0 = performance.now();
      await s.eval(ids.slice(0, n));
      return performance.now() - t0;
    }
    await s.eval([ids[0]!]);
    const t0 = performance.now();
    for (let i = 1; i <= n; i++) await s.eval([ids[i]!]);
    return performance.now() - t0;
  } finally {
    s.dispose();
  }
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const sd = (a: number[]) => (a.length < 2 ? 0 : Math.sqrt(a.reduce((x, y) => x + (y - mean(a)) ** 2, 0) / (a.length - 1)));

export async function cmdBench(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, BENCH_FLAGS);
  if (flags.help) {
    process.stdout.write(`usage: bmc-llm bench [-m FILE] [-p 128,512] [-n 32,128] [-r 3] [--threads N] [--json]\n\n${helpText(BENCH_FLAGS)}\n`);
    return;
  }
  if (positional.length > 0) throw new OptionError(positional[0]!, 'unexpected argument (the model goes after -m)');
  const pp = lengths(flags.prompt, '--prompt', 128);
  const tg = lengths(flags.gen, '--gen', 32);
  if (pp.length + tg.length === 0) throw new OptionError('--prompt', 'nothing to measure (every length is 0)');
  const reps = (flags.reps as number | undefined) ?? 3;
  if (reps < 1 || reps > 1000) throw new OptionError('--reps', `${reps} is not in [1, 1000]`);
  const contextLength = Math.max(...pp, ...tg.map((n) => n + 1)) + 1;
  const { model, path } = await loadForCommand(flags, { contextLength, batchSize: flags['batch-size'] as number | undefined });
  try {
    const tests: Array<{ kind: 'prompt' | 'decode'; n: number }> = [...pp.map((n) => ({ kind: 'prompt' as const, n })), ...tg.map((n) => ({ kind: 'decode' as const, n }))];
    const results: BenchResult[] = [];
    const progress = showProgress(flags.progress === true);
    for (const t of tests) {
      const name = `${t.kind === 'prompt' ? 'pp' : 'tg'}${t.n}`;
      const status = (s: string) => { if (progress) process.stderr.write(`\r\x1b[K${s}`); };
      status(`${name}: warm-up`);
      await timeOnce(model, t.kind, t.n);
      const ms: number[] = [];
      for (let r = 0; r < reps; r++) {
        status(`${name}: ${r + 1}/${reps}`);
        ms.push(await timeOnce(model, t.kind, t.n));
      }
      status('');
      const rates = ms.map((m) => (1000 * t.n) / m);
      results.push({ test: name, kind: t.kind, tokens: t.n, ms, tokPerSec: mean(rates), tokPerSecSd: sd(rates) });
    }
    const i = model.info;
    const weights = i.memory?.weights ?? 0;
    const types = [...new Set(i.tensors.filter((x) => x.shape.length === 2).map((x) => x.type))].join('/');
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({
        model: path, name: i.name ?? null, architecture: i.architecture, types, weightBytes: weights,
        layers: i.hparams!.nLayers, dim: i.hparams!.dim, vocab: i.hparams!.nVocab,
        threads: i.threads, simd: i.simd, reps, results,
      }, null, 2)}\n`);
      return;
    }
    const out: string[] = [];
    out.push(`model: ${path} (${i.name ?? i.architecture}, ${i.hparams!.nLayers} layers, dim ${i.hparams!.dim}, ${types}, weights ${formatBytes(weights)})`);
    out.push(`threads ${i.threads}, ${i.simd} SIMD kernels, ${reps} reps after a warm-up; tg feeds tokens without sampling`);
    const head = ['test', 'tokens', 'ms', 'tok/s'];
    const rows = results.map((r) => [r.test, String(r.tokens), mean(r.ms).toFixed(2), `${r.tokPerSec.toFixed(1)} ± ${r.tokPerSecSd.toFixed(1)}`]);
    const w = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
    const line = (cells: string[]) => cells.map((s, c) => (c === 0 ? s.padEnd(w[c]!) : s.padStart(w[c]!))).join('  ');
    out.push(line(head), ...rows.map(line));
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    model.dispose();
  }
}
