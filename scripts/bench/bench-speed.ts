/**
 * npm run bench: decode and prompt-processing speed on synthetic models of real shapes, beside the machine's physical
 * limits and llama.cpp's figures on the same shapes.
 *
 * 1. Probes the machine (wasm/probe.ts): read bandwidth of memory (256 MiB) and of smaller working sets, copy
 *    bandwidth, f32 and i16-dot SIMD peaks, on one thread.
 * 2. For each model and thread count: decode tokens/s (greedy, one token per eval after a short prompt, EOS ignored
 *    since nothing samples) and prompt-processing tokens/s (one eval of the whole prompt); best of a few runs after a
 *    warm-up. Beside each figure: bytes and operations per token (scripts/bench/speed-limits.ts), the most tokens/s
 *    the measured bandwidth and peaks allow, the fraction reached, llama.cpp's figure and the goal.
 * 3. A profile of one decode token per model (scripts/bench/profile.ts): every kernel timed in isolation at the
 *    model's shapes, against the measured token time.
 * Tables go to stdout, progress to stderr; JSON and SVG charts to bench-results/ (--docs: the charts also to docs/).
 *
 *   npm run bench                                      quick: 2 minutes on 2 cores (stories15M shape F32, F16, Q8_0, Q4_0,
 *                                                      Q4_K mix; TinyLlama shape Q4_0 with 4 of its 22 layers)
 *   npm run bench -- --full                            5 runs, 256-token prompt, adds TinyLlama 4-layer Q8_0 and Q4_K
 *                                                      (~8 minutes with the models to write)
 *   npm run bench -- --models tinyllama-q4_0           all 22 TinyLlama layers (~4 minutes a run on 2 cores)
 *   npm run bench -- --models stories15m-q4_0,tinyllama-4l-q4_0 --threads 1 --runs 5 --gen 128 --pp 256
 *   npm run bench -- --models stories15m-q4_0,tinyllama-4l-q4_0 --threads 1
 *   npm run bench -- --no-profile --docs               skip the profiles; copy the charts to docs/
 * Other flags: --runs N (timed runs, best kept), --gen N (decoded tokens), --prompt N (prompt before decoding),
 * --pp N (prompt-processing tokens), --out DIR (default bench-results).
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { Model } from '../../engine/index.js';
import type { LlamaHParams } from '../../engine/model/hparams.js';
import { argmax } from '../../engine/generate/sampling.js';
import { Kernels } from '../../engine/runtime/kernels.js';
import { measureMachine, readBandwidth } from '../../engine/runtime/probe.js';
import type { MachineProbe } from '../../engine/runtime/probe.js';
import { profileDecode } from './profile.js';
import type { DecodeProfile } from './profile.js';
import {
  decodeRunCost, goalOfNative, nativeTokS, NATIVE, prefillCost, THREAD_SCALING_GOAL, tokenLimits,
} from './speed-limits.js';
import type { CostModel, MachineLimits, Phase, TokenCost, TokenLimits } from './speed-limits.js';
import { barChart } from './svg-chart.js';
import { SHAPES, ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const full = argv.includes('--full');
const QUICK_MODELS = 'stories15m-f32,stories15m-f16,stories15m-q8_0,stories15m-q4_0,stories15m-q4_k,tinyllama-4l-q4_0';
const modelNames = (flag('models') ?? (full ? `${QUICK_MODELS},tinyllama-4l-q8_0,tinyllama-4l-q4_k` : QUICK_MODELS)).split(',');
const threadList = (flag('threads') ?? '1,2').split(',').map(Number);
const runs = Number(flag('runs') ?? (full ? 5 : 3));
const genTokens = Number(flag('gen') ?? 128);
const promptLen = Number(flag('prompt') ?? 16);
const ppTokens = Number(flag('pp') ?? (full ? 256 : 128));
const profile = !argv.includes('--no-profile');
const toDocs = argv.includes('--docs');
const outDir = flag('out') ?? 'bench-results';
const BATCH = 128;
const MiB = 1 << 20;

for (const n of modelNames) if (!SHAPES[n]) throw new Error(`unknown model ${n} (known: ${Object.keys(SHAPES).join(', ')})`);
for (const t of threadList) if (!Number.isInteger(t) || t < 1) throw new Error(`--threads: ${t} is not a positive integer`);
for (const [k, v] of Object.entries({ runs, gen: genTokens, prompt: promptLen, pp: ppTokens })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k}: ${v} is not a positive integer`);
}

const start = performance.now();
const err = (s: string) => process.stderr.write(`[${((performance.now() - start) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

// ---------------------------------------------------------------------------------------------------------------
// 1. The machine.

err('probing the machine (1 thread)');
const probeKern = await Kernels.create();
const machine: MachineProbe = measureMachine(probeKern, {
  readSizes: [512 * 1024, 4 * MiB, 16 * MiB, 64 * MiB], reps: 9, onProgress: (w) => err(`  ${w}`),
});
// A buffer kept for the read bandwidth at each model's working set (written once: fresh pages read as zeros). A smaller
// buffer cannot be slower to read than the large one, so the memory figure is a floor (a lower reading is noise).
const wsBuf = probeKern.alloc(machine.bandwidthBytes, 4096);
probeKern.u8(wsBuf, machine.bandwidthBytes).fill(1);
const wsBandwidth = (bytes: number) =>
  (bytes >= machine.bandwidthBytes ? machine.readGBs : Math.max(machine.readGBs, readBandwidth(probeKern, wsBuf, Math.max(4096, bytes), 9)));

/**
 * Machine figures at a thread count: measured for 1; for more, an estimate until the worker pool can run the probes
 * on several threads (compute: t x the 1-thread peaks; bandwidth: the 1-thread figure).
 */
function machineAt(threads: number, readGBs: number): MachineLimits & { estimated: boolean } {
  return { readGBs, f32Gflops: machine.f32Gflops * threads, dotGops: machine.dotGops * threads, estimated: threads !== 1 };
}

// ---------------------------------------------------------------------------------------------------------------
// 2. The models.

interface PhaseResult {
  /** Best of the runs, and the median. */
  tokS: number;
  medianTokS: number;
  runsTokS: number[];
  tokens: number;
  cost: TokenCost;
  /** Limits with the memory (256 MiB) read bandwidth, and with the read bandwidth over the working set per token. */
  memory: TokenLimits;
  workingSet: TokenLimits;
  workingSetGBs: number;
  /** tok/s over the tighter of the working-set bandwidth limit and the compute limit. */
  ofRoof: number;
  limitsEstimated: boolean;
  native: number | undefined;
  ofNative: number | undefined;
  goal: number | undefined;
  goalMet: boolean | undefined;
}

interface Row {
  model: string; family: string; quant: string; note: string;
  threads: number; effectiveThreads: number | undefined;
  kvPolicy?: string;
  skipped?: string;
  decode?: PhaseResult;
  prefill?: PhaseResult;
}

const rows: Row[] = [];
const profiles: Record<string, DecodeProfile & { measuredMsPerToken: number }> = {};
const idsFor = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919) % (vocab - 1)));

async function decodeMs(model: Model, prompt: number[], steps: number): Promise<number> {
  const s = model.createSession();
  try {
    let logits = await s.eval(prompt);
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) logits = await s.eval([argmax(logits)]);
    return performance.now() - t0;
  } finally {
    s.dispose();
  }
}

async function prefillMs(model: Model, ids: number[]): Promise<number> {
  const s = model.createSession();
  try {
    const t0 = performance.now();
    await s.eval(ids);
    return performance.now() - t0;
  } finally {
    s.dispose();
  }
}

function phaseResult(phase: Phase, family: string, quant: string, threads: number, runsTokS: number[], tokens: number, cost: TokenCost, wsGBs: number): PhaseResult {
  const sorted = [...runsTokS].sort((a, b) => a - b);
  const tokS = sorted[sorted.length - 1]!;
  const m = machineAt(threads, machine.readGBs);
  const memory = tokenLimits(cost, m);
  const workingSet = tokenLimits(cost, { ...m, readGBs: wsGBs });
  const native = nativeTokS(family, phase, threads, quant);
  const goal = goalOfNative(phase, threads, quant);
  const ofNative = native ? tokS / native : undefined;
  return {
    tokS, medianTokS: sorted[sorted.length >> 1]!, runsTokS, tokens, cost, memory, workingSet, workingSetGBs: wsGBs,
    ofRoof: tokS / workingSet.tokS, limitsEstimated: m.estimated, native, ofNative,
    goal: native ? goal : undefined, goalMet: native && goal !== undefined ? ofNative! >= goal : undefined,
  };
}

const reason = (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)).split('\n')[0]!;

for (const [mi, name] of modelNames.entries()) {
  const shape = SHAPES[name]!;
  const family = name.split('-')[0]!;
  const quant = name.split('-').pop()!.toUpperCase();
  const base = { model: name, family, quant, note: shape.note };
  let file: string;
  try {
    file = await ensureModel(join(outDir, 'models'), name, (s) => err(s.trimEnd()));
  } catch (e) {
    const why = `writing the model failed: ${reason(e)}`;
    err(`${name}: skipped: ${why}`);
    for (const t of threadList) rows.push({ ...base, threads: t, effectiveThreads: undefined, skipped: why });
    continue;
  }
  let measured1: number | undefined;
  let costModel: CostModel | undefined;
  let hparams: LlamaHParams | undefined;
  for (const threads of threadList) {
    const tag = `[${mi + 1}/${modelNames.length}] ${name} threads=${threads}`;
    let model: Model | undefined;
    try {
      err(`${tag}: loading`);
      model = await loadModel(file, { threads, batchSize: BATCH, contextLength: Math.max(promptLen + genTokens, ppTokens) + 8 });
      const hp = model.info.hparams!;
      hparams = hp;
      costModel = { hp, tensors: model.info.tensors };
      const prompt = idsFor(promptLen, hp.nVocab);
      const pp = idsFor(ppTokens, hp.nVocab);
      err(`${tag}: warm-up`);
      await decodeMs(model, prompt, Math.min(16, genTokens));
      await prefillMs(model, pp);
      const dec: number[] = [];
      const pre: number[] = [];
      for (let r = 0; r < runs; r++) {
        dec.push((1000 * genTokens) / (await decodeMs(model, prompt, genTokens)));
        pre.push((1000 * ppTokens) / (await prefillMs(model, pp)));
        err(`${tag}: run ${r + 1}/${runs}: decode ${dec[r]!.toFixed(1)} tok/s, prompt ${pre[r]!.toFixed(1)} tok/s`);
      }
      const dCost = decodeRunCost(costModel, promptLen, genTokens);
      const pCost = prefillCost(costModel, ppTokens, BATCH);
      const s = model.createSession();
      const kvPolicy = s.kvStats().layout;
      s.dispose();
      const row: Row = {
        ...base, threads, effectiveThreads: model.info.threads, kvPolicy,
        decode: phaseResult('decode', family, quant, threads, dec, genTokens, dCost, wsBandwidth(dCost.bytes)),
        prefill: phaseResult('prefill', family, quant, threads, pre, ppTokens, pCost, wsBandwidth(pCost.bytes)),
      };
      rows.push(row);
      if (threads === 1) measured1 = 1000 / row.decode!.tokS;
    } catch (e) {
      const why = `${model ? 'running' : 'loading'} failed: ${reason(e)}`;
      err(`${tag}: skipped: ${why}`);
      rows.push({ ...base, threads, effectiveThreads: undefined, skipped: why });
    } finally {
      model?.dispose();
    }
  }
  if (profile && costModel && hparams && measured1 !== undefined) {
    try {
      const dCost = decodeRunCost(costModel, promptLen, genTokens);
      const p = await profileDecode(file, hparams, {
        kvRows: promptLen + (genTokens + 1) / 2, workingSetBytes: dCost.bytes, log: (s) => err(`${name}: ${s}`),
      });
      profiles[name] = { ...p, measuredMsPerToken: measured1 };
    } catch (e) {
      err(`${name}: profile failed: ${reason(e)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Tables.

const f = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const pct = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : `${(100 * v).toFixed(v < 0.1 ? 1 : 0)}%`);
const x = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(2)}x`);

function printTable(head: string[], body: string[][], left = 1): void {
  // Rows of two cells (a name and a remark, e.g. a skipped model) span the table and do not widen its columns.
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r.length === head.length || i === 0 ? r[i]!.length : 0))));
  const line = (cells: string[]) => cells.map((c, i) => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  for (const r of body) console.log(r.length === 2 ? `${r[0]!.padEnd(widths[0]!)}  ${r[1]}` : line(r));
}

const curve = machine.readCurve.map((p) => `${p.bytes >= MiB ? `${p.bytes / MiB} MiB` : `${p.bytes / 1024} KiB`} ${p.gbPerS.toFixed(1)}`).join(', ');
console.log(`machine, 1 thread: read ${machine.readGBs.toFixed(1)} GB/s (${machine.bandwidthBytes / MiB} MiB), copy ${machine.copyGBs.toFixed(1)} GB/s (read + write), ` +
  `f32 ${machine.f32Gflops.toFixed(1)} GFLOP/s, i16 dot ${machine.dotGops.toFixed(1)} GOP/s`);
console.log(`read GB/s by working set: ${curve}`);
if (threadList.some((t) => t > 1)) console.log('limits at 2+ threads are estimates (*): compute t x the 1-thread peaks, bandwidth the 1-thread figure, until the worker pool runs the probes');
const policies = [...new Set(rows.map((r) => r.kvPolicy).filter(Boolean))].join(', ');
console.log(`decode: ${genTokens} tokens after a ${promptLen}-token prompt; prompt: ${ppTokens} tokens in chunks of ${BATCH}; best of ${runs} runs after a warm-up; KV cache ${policies || '-'}`);
console.log('');

const thr = (r: Row) => (r.effectiveThreads === undefined || r.effectiveThreads === r.threads ? `${r.threads}` : `${r.threads}(${r.effectiveThreads})`);
for (const phase of ['decode', 'prefill'] as const) {
  console.log(phase === 'decode' ? 'DECODE (tokens/s)' : 'PROMPT PROCESSING (tokens/s)');
  const head = ['model', 'thr', 'tok/s', 'ms/tok', 'MB/tok', 'MOP/tok', 'GB/s', 'mem max', 'ws max', 'compute max', 'of roof', 'llama.cpp', 'ours/ref', 'goal'];
  const body = rows.map((r) => {
    const p = r[phase];
    if (!p) return [r.model, `${r.threads}  skipped: ${r.skipped}`];
    const est = p.limitsEstimated ? '*' : '';
    const goal = p.goal === undefined ? '-' : `>=${p.goal}x ${p.goalMet ? 'met' : 'MISSED'}`;
    return [r.model, thr(r), f(p.tokS), f(1000 / p.tokS, 3), f(p.cost.bytes / 1e6, 2), f((p.cost.floatOps + p.cost.intOps) / 1e6, 1),
      f((p.cost.bytes * p.tokS) / 1e9, 1), f(p.memory.bandwidthTokS, 0), f(p.workingSet.bandwidthTokS, 0), f(p.workingSet.computeTokS, 0) + est,
      pct(p.ofRoof) + est, p.native === undefined ? '-' : String(p.native), x(p.ofNative), goal];
  });
  printTable(head, body);
  console.log('');
}
console.log('thr: threads asked for, and in parentheses the threads loadModel reports using when they differ.');
console.log('MB/tok: bytes read per token: weights once, embedding row, KV rows (prompt: layer weights once per chunk, the output projection');
console.log('  once per prompt, for the last token\'s logits). MOP/tok: 2 per weight (f32 or integer by weight type) plus attention. GB/s: MB/tok x tok/s.');
console.log('mem max: read bandwidth of memory / MB/tok. ws max: read bandwidth over a buffer of MB/tok (cache-resident working sets read faster).');
console.log('compute max: 1 / (f32 ops / f32 peak + int ops / i16-dot peak), the peaks of wasm SIMD (128-bit, no FMA) on this core: native');
console.log('  AVX2 code has wider vectors and FMA and can pass it (llama.cpp\'s F32 prompt figure does). of roof: tok/s / min(ws max, compute max).');
console.log('');

// Thread scaling (goal: 2 threads >= 1.6x 1 thread).
const scaling: Array<{ model: string; threads: number; effectiveThreads: number | undefined; decodeSpeedup: number; prefillSpeedup: number; goalMet: boolean }> = [];
for (const name of modelNames) {
  const one = rows.find((r) => r.model === name && r.threads === 1 && r.decode);
  for (const r of rows.filter((q) => q.model === name && q.threads > 1 && q.decode)) {
    if (!one) continue;
    const d = r.decode!.tokS / one.decode!.tokS;
    const p = r.prefill!.tokS / one.prefill!.tokS;
    scaling.push({ model: name, threads: r.threads, effectiveThreads: r.effectiveThreads, decodeSpeedup: d, prefillSpeedup: p, goalMet: d >= THREAD_SCALING_GOAL });
  }
}
if (scaling.length) {
  console.log(`THREAD SCALING (goal: 2 threads >= ${THREAD_SCALING_GOAL}x 1 thread, decode)`);
  for (const s of scaling) {
    console.log(`${s.model.padEnd(20)} ${s.threads} threads (loadModel reports ${s.effectiveThreads}): decode ${x(s.decodeSpeedup)}, prompt ${x(s.prefillSpeedup)}  ${s.goalMet ? 'met' : 'MISSED'}`);
  }
  console.log('');
}

for (const [name, p] of Object.entries(profiles)) {
  console.log(`PROFILE ${name}: one decode token at ${p.kvRows.toFixed(0)} KV rows, 1 thread, kernels timed in isolation (working set ${(p.workingSetBytes / 1e6).toFixed(1)} MB cycled)`);
  const m = p.measuredMsPerToken;
  const body = [...p.rows].sort((a, b) => (b.msPerToken || 0) - (a.msPerToken || 0)).map((r) =>
    [r.kernel, r.shape, String(r.callsPerToken), f(r.usPerCall, 2), f(r.msPerToken, 4), pct(r.msPerToken / m)]);
  body.push(['sum of the kernels', '', '', '', f(p.kernelMsPerToken, 4), pct(p.kernelMsPerToken / m)]);
  body.push(['measured token (best run)', '', '', '', f(m, 4), '100%']);
  body.push(['outside the kernels (JS, dispatch)', '', '', '', f(m - p.kernelMsPerToken, 4), pct((m - p.kernelMsPerToken) / m)]);
  printTable(['kernel', 'shape', 'calls/tok', 'us/call', 'ms/tok', 'share'], body);
  console.log('');
}

// ---------------------------------------------------------------------------------------------------------------
// 4. JSON and charts.

mkdirSync(outDir, { recursive: true });
const json = {
  date: new Date().toISOString(), node: process.version, argv,
  settings: { full, models: modelNames, threads: threadList, runs, genTokens, promptLen, ppTokens, batch: BATCH },
  machine: { ...machine, estimateAtMoreThreads: 'compute: t x the 1-thread peaks; bandwidth: the 1-thread figure' },
  rows, scaling, profiles, native: NATIVE,
};
writeFileSync(join(outDir, 'bench-speed.json'), `${JSON.stringify(json, null, 2)}\n`);

const shown = modelNames.filter((n) => rows.some((r) => r.model === n && r.decode));
const charts: Array<[string, Phase, string]> = [['bench-speed.svg', 'decode', 'decode tokens/s'], ['bench-speed-prefill.svg', 'prefill', `prompt processing tokens/s (${ppTokens} tokens)`]];
for (const [file, phase, title] of charts) {
  const val = (n: string, t: number) => rows.find((r) => r.model === n && r.threads === t)?.[phase]?.tokS;
  const ours = ['#1f77b4', '#6baed6', '#9ecae1'];
  const ref = ['#636363', '#bdbdbd'];
  const series = threadList.map((t, i) => ({ name: `bmc-llm, ${t} thread${t > 1 ? 's' : ''}`, values: shown.map((n) => val(n, t)), color: ours[i] }));
  for (const t of [1, 2]) {
    const v = shown.map((n) => nativeTokS(n.split('-')[0]!, phase, t, n.split('-').pop()!.toUpperCase()));
    if (v.some((a) => a !== undefined)) series.push({ name: `llama.cpp, ${t} thread${t > 1 ? 's' : ''}`, values: v, color: ref[t - 1] });
  }
  const roof = shown.map((n) => rows.find((r) => r.model === n && r.threads === 1)?.[phase]?.workingSet.tokS);
  const svg = barChart({
    title: `${title} by model (synthetic weights)`, yLabel: 'tokens/s', categories: shown, series,
    marks: [{ name: 'limit, 1 thread', values: roof, color: '#d62728' }], logY: true,
  });
  writeFileSync(join(outDir, file), svg);
  if (toDocs) copyFileSync(join(outDir, file), join('docs', file));
}
err(`wrote ${join(outDir, 'bench-speed.json')}, ${charts.map((c) => join(outDir, c[0])).join(', ')}${toDocs ? ' and copies in docs/' : ''}`);
