/**
 * `bmc-llm simulate-placement`: replays an attention trace (engine/tiers/trace.ts) against the two-tier memory
 * model of engine/tiers/simulate.ts and prints, per placement policy, the modelled decode time, throughput relative
 * to static placement, fast-tier hit rate, how often the fast tier is the bottleneck and bytes migrated (a table, or
 * JSON with --json), and with --svg a bar chart. --synthetic generates a trace instead of reading one. Results to
 * stdout, progress to stderr.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { OptionError, SourceError, formatBytes } from '../errors.js';
import { placementChart } from '../tiers/chart.js';
import { POLICY_NAMES, gh200Model, readerNote, simulatePlacement } from '../tiers/simulate.js';
import type { MemoryModel, PolicyName } from '../tiers/simulate.js';
import { synthTrace } from '../tiers/synth-trace.js';
import { readTrace, writeTrace } from '../tiers/trace.js';
import type { AttentionTrace } from '../tiers/trace.js';
import { helpText, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';

export const SIMULATE_FLAGS: FlagSpec[] = [
  { name: 'trace', type: 'string', help: 'attention trace file to replay' },
  { name: 'synthetic', type: 'bool', help: 'generate a synthetic trace instead (see the syn- flags)' },
  { name: 'preset', type: 'string', help: 'memory model: gh200 (default; HBM 4.9 TB/s, DRAM 500 GB/s, link 900 GB/s)' },
  { name: 'fast-bytes', type: 'number', help: 'fast-tier bytes for KV, all layers (default: --fast-fraction of the largest KV)' },
  { name: 'fast-fraction', type: 'number', help: 'fast-tier share of the trace\'s largest KV (default 0.25)' },
  { name: 'fast-bw', type: 'number', help: 'fast-tier bandwidth, bytes/s' },
  { name: 'slow-bw', type: 'number', help: 'slow-tier bandwidth, bytes/s' },
  { name: 'link-bw', type: 'number', help: 'link bandwidth between the tiers, bytes/s' },
  { name: 'weight-bytes', type: 'number', help: 'weight bytes, all layers, read from the fast tier every step (default 2 x fast bytes)' },
  { name: 'kv-bytes', type: 'int', help: 'bytes of one token\'s K and V in one layer (default: from the trace, else 4096)' },
  { name: 'sparsity', type: 'number', help: 'read only the top (1 - S) of the context at each step (default 0: all tokens with mass)' },
  { name: 'min-mass', type: 'number', help: 'read only tokens whose attention mass at the step is above M (default 0)' },
  { name: 'exact', type: 'bool', help: 'read every token at every step, whatever its mass (exact attention, as the engine reads)' },
  { name: 'policies', type: 'string', help: `comma-separated subset of ${POLICY_NAMES.join(',')} (default all)` },
  { name: 'sinks', type: 'int', help: 'attention sinks kept hot by the online policy (and generated with --synthetic), default 4' },
  { name: 'window', type: 'int', help: 'recent window kept hot by the online policy (and generated), default 32' },
  { name: 'alpha', type: 'number', help: 'online policy: EMA weight of the newest step (default 0.5)' },
  { name: 'ratio', type: 'number', help: 'online policy: migration ratio R (default 1)' },
  { name: 'hysteresis', type: 'number', help: 'online policy: a cold token must beat a hot one by this factor (default 0.25)' },
  { name: 'signal', type: 'string', help: 'online policy: what the EMA averages: mass (default) | reads (1 for a token read at the step)' },
  { name: 'sa-seed', type: 'int', help: 'seed of the simulated annealing (default 1)' },
  { name: 'sa-evals', type: 'int', help: 'most (W, R) evaluations per annealed policy: coarse scan, annealing and descent (default 120)' },
  { name: 'syn-layers', type: 'int', help: 'synthetic: layers (default 4)' },
  { name: 'syn-prompt', type: 'int', help: 'synthetic: prompt tokens (default 512)' },
  { name: 'syn-steps', type: 'int', help: 'synthetic: decode steps (default 256)' },
  { name: 'syn-sparsity', type: 'number', help: 'synthetic: share of the context not attended per step (default 0.6)' },
  { name: 'syn-variation', type: 'number', help: 'synthetic: importance variation over time, 0..1 (default 0.5)' },
  { name: 'seed', type: 'int', help: 'synthetic: seed (default 1)' },
  { name: 'save-trace', type: 'string', help: 'write the trace (e.g. the synthetic one) to this file' },
  { name: 'svg', type: 'string', help: 'write a bar chart to this SVG file' },
  { name: 'json', type: 'bool', help: 'print JSON instead of a table' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

const USAGE = `usage: bmc-llm simulate-placement (--trace FILE | --synthetic [--syn-...]) [--preset gh200]
         [--fast-bytes N] [--fast-bw X] [--slow-bw Y] [--link-bw Z] [--sparsity S | --min-mass M | --exact] [--svg FILE] [--json]

${helpText(SIMULATE_FLAGS)}
`;

/** Traces are read whole; this keeps a mistaken path (a model file, say) from being loaded into memory. */
const MAX_TRACE_BYTES = 1 << 30;

const err = (s: string) => process.stderr.write(s);

async function loadTrace(path: string): Promise<AttentionTrace> {
  let bytes: Uint8Array;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new SourceError(`${path}: not a regular file`);
    if (st.size > MAX_TRACE_BYTES) throw new SourceError(`${path}: ${formatBytes(st.size)} is over the ${formatBytes(MAX_TRACE_BYTES)} a trace may have`);
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    if (e instanceof SourceError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new SourceError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read (${(e as Error).message})`);
  }
  return readTrace(bytes, path);
}

function num(flags: Record<string, string | number | boolean>, name: string, lo: number, hi: number, loOpen = false): number | undefined {
  const v = flags[name] as number | undefined;
  if (v === undefined) return undefined;
  if (!(loOpen ? v > lo : v >= lo) || !(v <= hi)) throw new OptionError(`--${name}`, `${v} is not in ${loOpen ? '(' : '['}${lo}, ${hi}]`);
  return v;
}

function signalFlag(v: unknown): 'mass' | 'reads' | undefined {
  if (v === undefined) return undefined;
  if (v !== 'mass' && v !== 'reads') throw new OptionError('--signal', `"${String(v)}" is not mass or reads`);
  return v;
}

export async function cmdSimulatePlacement(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, SIMULATE_FLAGS);
  if (flags.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (positional.length > 0) throw new OptionError(positional[0]!, 'unexpected argument (the trace goes after --trace)');
  const path = flags.trace as string | undefined;
  if ((path === undefined) === !flags.synthetic) throw new OptionError('--trace', 'give a trace file or --synthetic (one of the two)');
  const preset = (flags.preset as string | undefined) ?? 'gh200';
  if (preset !== 'gh200') throw new OptionError('--preset', `unknown preset "${preset}" (gh200)`);
  const sinks = num(flags, 'sinks', 0, 1 << 20);
  const window = num(flags, 'window', 1, 1 << 20);

  let trace: AttentionTrace;
  if (path !== undefined) {
    err(`reading ${path}\n`);
    trace = await loadTrace(path);
  } else {
    err('generating a synthetic trace\n');
    trace = synthTrace({
      layers: flags['syn-layers'] as number | undefined, prompt: flags['syn-prompt'] as number | undefined,
      steps: flags['syn-steps'] as number | undefined, sinks, window,
      sparsity: flags['syn-sparsity'] as number | undefined, variation: flags['syn-variation'] as number | undefined,
      seed: flags.seed as number | undefined,
    });
  }
  if (flags['save-trace'] !== undefined) {
    await writeFile(flags['save-trace'] as string, writeTrace(trace));
    err(`wrote ${flags['save-trace']}\n`);
  }

  const base = gh200Model(trace, {
    fastFraction: num(flags, 'fast-fraction', 0, 1, true), kvBytesPerToken: num(flags, 'kv-bytes', 1, 2 ** 32),
  });
  const fastBytes = num(flags, 'fast-bytes', 0, Number.MAX_SAFE_INTEGER, true) ?? base.fastBytes;
  const model: MemoryModel = {
    ...base,
    fastBytes,
    fastBw: num(flags, 'fast-bw', 0, Infinity, true) ?? base.fastBw,
    slowBw: num(flags, 'slow-bw', 0, Infinity, true) ?? base.slowBw,
    linkBw: num(flags, 'link-bw', 0, Infinity, true) ?? base.linkBw,
    weightBytes: num(flags, 'weight-bytes', 0, Number.MAX_SAFE_INTEGER) ?? 2 * fastBytes,
  };
  const policies = flags.policies === undefined ? undefined : String(flags.policies).split(',').map((s) => s.trim() as PolicyName);
  for (const p of policies ?? []) if (!POLICY_NAMES.includes(p)) throw new OptionError('--policies', `unknown policy "${p}" (${POLICY_NAMES.join(', ')})`);
  if (flags.exact && (flags.sparsity !== undefined || flags['min-mass'] !== undefined)) {
    throw new OptionError('--exact', 'an exact reader reads every token: it takes no --sparsity or --min-mass');
  }
  const rep = simulatePlacement(trace, model, {
    sparsity: num(flags, 'sparsity', 0, 0.999),
    minMass: num(flags, 'min-mass', 0, 0.999),
    exact: flags.exact === true,
    policies,
    online: {
      sinks, window, alpha: num(flags, 'alpha', 0, 1, true), migrationRatio: num(flags, 'ratio', 0, 1),
      hysteresis: num(flags, 'hysteresis', 0, 1e6), signal: signalFlag(flags.signal),
    },
    anneal: { seed: flags['sa-seed'] as number | undefined, maxEvals: num(flags, 'sa-evals', 1, 10000) },
    onProgress: (m) => err(`${m}\n`),
  });
  const name = path ?? String(trace.meta.model ?? 'synthetic');

  if (flags.svg !== undefined) {
    await writeFile(flags.svg as string, placementChart(rep, `KV placement: ${name}`));
    err(`wrote ${flags.svg}\n`);
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ trace: name, meta: trace.meta, ...rep }, null, 2)}\n`);
    return;
  }
  const gb = (v: number) => `${(v / 1e9).toFixed(v < 1e10 ? 2 : 0)} GB/s`;
  const lines: string[] = [];
  lines.push(`trace: ${name}: ${rep.layers} layers, ${rep.steps} decode steps, context up to ${rep.maxContext}${readerNote(rep)}`);
  lines.push(`memory: fast ${formatBytes(model.fastBytes)} for KV (${rep.hotTokensPerLayer} rows per layer) at ${gb(model.fastBw)}; slow ${gb(model.slowBw)} behind a ${gb(model.linkBw)} link; ` +
    `weights ${formatBytes(model.weightBytes)}; KV row ${formatBytes(model.kvBytesPerToken)}`);
  lines.push('');
  // Four significant digits: a tiny fixture trace takes microseconds, a long one seconds.
  const ms = (t: number) => (t * 1e3 >= 1e4 ? (t * 1e3).toFixed(0) : (t * 1e3).toPrecision(4));
  const head = ['policy', 'time (ms)', 'vs static', 'hit rate', 'fast-bound', 'migrated', 'W', 'R'];
  const rows = rep.results.map((r) => [
    r.policy, ms(r.timeS), `${r.throughputVsStatic.toFixed(2)}x`, `${(100 * r.hitRate).toFixed(1)}%`,
    `${(100 * r.fastBound).toFixed(1)}%`, formatBytes(r.migratedBytes), r.w === undefined ? '' : String(r.w), r.r === undefined ? '' : String(r.r),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  lines.push(fmt(head), ...rows.map(fmt));
  lines.push('');
  lines.push(`fast-bound: share of (step, layer) pairs where the fast tier takes longer than the slow one`);
  lines.push(`floor (both tiers busy every step): ${ms(rep.lowerBoundS)} ms`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
