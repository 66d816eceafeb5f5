/**
 * npm run bench:long: decode speed against generated length for each KV element type (f32, f16, q8_0), at 1 and 2
 * threads, on synthetic stories15M-shaped models (dim 288, hidden 768, 6 layers, 6 heads, Q8_0 weights) with a
 * 512-token vocabulary and with the 32000-token one, beside the bandwidth limit of each figure and llama.cpp's.
 *
 * One greedy run per configuration: a 16-token prompt, then G decode steps of one token each (KV policy `static`, so
 * that no growth copy is timed); tok/s at a length G is G over the time of the first G steps (llama-bench's tg G).
 * The limit beside it: (weight bytes + the KV bytes each step reads, averaged over the G steps) over the read
 * bandwidth measured here (256 MiB buffer, one thread; the same figure is used for 2 threads).
 * Then a profile at the longest length: the attention kernel timed alone at that length for each type (one thread),
 * against the measured step time.
 *
 *   npm run bench:long                       quick, a few minutes: G up to 4096; the 512-vocab model at 1 and 2
 *                                            threads, the 32000-vocab one at 1 thread
 *   npm run bench:long -- --full             G up to 8192, both models at 1 and 2 threads
 *   npm run bench:long -- --lengths 256,1024 --types f16 --threads 1 --models v512
 *   npm run bench:long -- --docs             also write the chart and the JSON to docs/
 * Tables to stdout, progress to stderr, JSON and SVG to bench-results/ (--out DIR).
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { Model } from '../../engine/index.js';
import { argmax } from '../../engine/generate/sampling.js';
import { Kernels } from '../../engine/runtime/kernels.js';
import { measureMachine } from '../../engine/runtime/probe.js';
import { AttentionWorkspace, CONTIGUOUS_BLOCK_ROWS, attend, runHere } from '../../engine/kv/attend.js';
import { KV_TYPES, kvElement } from '../../engine/kv/element.js';
import type { KVType } from '../../engine/kv/element.js';
import { decodeCost, decodeRunCost } from './speed-limits.js';
import type { CostModel } from './speed-limits.js';
import { lineChart } from './svg-chart.js';
import type { Series } from './svg-chart.js';
import { ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const full = argv.includes('--full');
const lengths = (flag('lengths') ?? (full ? '256,1024,2048,4096,8192' : '256,1024,2048,4096')).split(',').map(Number).sort((a, b) => a - b);
const types = (flag('types') ?? KV_TYPES.join(',')).split(',') as KVType[];
const threadList = (flag('threads') ?? '1,2').split(',').map(Number);
const MODELS = { v512: 'stories15m-v512-q8_0', v32000: 'stories15m-q8_0' } as const;
const modelKeys = (flag('models') ?? 'v512,v32000').split(',') as Array<keyof typeof MODELS>;
const toDocs = argv.includes('--docs');
const outDir = flag('out') ?? 'bench-results';
const PROMPT = 16;
const MiB = 1 << 20;

for (const g of lengths) if (!Number.isInteger(g) || g < 1) throw new Error(`--lengths: ${g} is not a positive integer`);
for (const t of types) if (!KV_TYPES.includes(t)) throw new Error(`--types: ${t} is not one of ${KV_TYPES.join(', ')}`);
for (const t of threadList) if (!Number.isInteger(t) || t < 1) throw new Error(`--threads: ${t} is not a positive integer`);
for (const m of modelKeys) if (!MODELS[m]) throw new Error(`--models: ${m} is not one of ${Object.keys(MODELS).join(', ')}`);

/** llama.cpp, 1 and 2 threads, on the 512-vocab model (the figures; its default f16 KV cache). */
const NATIVE: Record<number, Record<number, number>> = { 1: { 256: 1098, 1024: 420, 4096: 130 }, 2: { 1024: 538, 4096: 152 } };
const TARGET = { model: 'v512', threads: 1, length: 4096, tokS: 260 };

const start = performance.now();
const err = (s: string) => process.stderr.write(`[${((performance.now() - start) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

err('probing the machine (1 thread)');
const probeKern = await Kernels.create();
const machine = measureMachine(probeKern, { reps: 7 });
probeKern.dispose();
err(`read bandwidth ${machine.readGBs.toFixed(1)} GB/s`);

interface Point { length: number; tokS: number; limitTokS: number; bytesPerStep: number; native?: number }
interface Run {
  model: string; vocab: number; type: KVType; threads: number; points: Point[]; kvBytesPerToken: number;
  /** Mean ms of the last steps before the longest length, and the bytes a step reads there. */
  lastStepMs: number;
  lastStepBytes: number;
}
const runs: Run[] = [];

/** Steps timed at the end of a run for the step time at the longest length. */
const TAIL = 64;

/**
 * Decodes up to the largest of `at` after the prompt; returns the elapsed ms after each step count in `at`, and the
 * mean ms of the last TAIL steps.
 */
async function timedDecode(model: Model, at: number[]): Promise<{ ms: number[]; tailMs: number }> {
  const s = model.createSession();
  try {
    const V = model.info.hparams!.nVocab;
    const prompt = Array.from({ length: PROMPT }, (_, i) => 1 + ((i * 7919) % (V - 1)));
    let logits = await s.eval(prompt);
    const out: number[] = [];
    const last = at[at.length - 1]!;
    const t0 = performance.now();
    let tail0 = t0;
    for (let i = 1, k = 0; k < at.length; i++) {
      if (i === last - TAIL + 1) tail0 = performance.now();
      logits = await s.eval([argmax(logits)]);
      if (i === at[k]) {
        out.push(performance.now() - t0);
        k++;
        err(`    ${i} tokens: ${((1000 * i) / out[k - 1]!).toFixed(1)} tok/s`);
      }
    }
    return { ms: out, tailMs: (performance.now() - tail0) / Math.min(TAIL, last) };
  } finally {
    s.dispose();
  }
}

const files: Record<string, string> = {};
for (const key of modelKeys) files[key] = await ensureModel(join(outDir, 'models'), MODELS[key], (s) => err(s.trimEnd()));

for (const key of modelKeys) {
  // Quick mode: the 32000-vocab model at one thread only.
  const threadsHere = !full && key === 'v32000' && flag('threads') === undefined ? [1] : threadList;
  for (const threads of threadsHere) {
    for (const type of types) {
      const tag = `${MODELS[key]} kv ${type} threads=${threads}`;
      err(`${tag}: loading`);
      const model = await loadModel(files[key]!, {
        threads, contextLength: PROMPT + lengths[lengths.length - 1]! + 1, kv: { policy: 'static', type },
      });
      try {
        const hp = model.info.hparams!;
        await timedDecode(model, [32]); // warm-up (tier-up of the kernels)
        const { ms, tailMs } = await timedDecode(model, lengths);
        const cost: CostModel = { hp, tensors: model.info.tensors, kvType: type };
        runs.push({
          model: MODELS[key], vocab: hp.nVocab, type, threads, kvBytesPerToken: model.info.memory!.kvPerToken, lastStepMs: tailMs,
          lastStepBytes: decodeCost(cost, PROMPT + lengths[lengths.length - 1]!).bytes,
          points: lengths.map((g, i) => {
            const c = decodeRunCost(cost, PROMPT, g);
            return {
              length: g, tokS: (1000 * g) / ms[i]!, bytesPerStep: c.bytes, limitTokS: (machine.readGBs * 1e9) / c.bytes,
              native: key === 'v512' ? NATIVE[threads]?.[g] : undefined,
            };
          }),
        });
      } finally {
        model.dispose();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Profile: the attention kernel alone at the longest length (one thread, 6 layers of rows in memory, as a decode step
// reads them), per type, against the step time measured at that length (512-vocab model, 1 thread).

interface ProfileRow {
  type: KVType; length: number; attentionMs: number; kvMB: number; kvGBs: number;
  /** What the step reads over the measured bandwidth (its bandwidth time), and the measured step. */
  boundMs: number; stepMs?: number;
}
const profile: ProfileRow[] = [];
{
  const L = lengths[lengths.length - 1]! + PROMPT;
  const hp = { nLayers: 6, nHeads: 6, nKVHeads: 6, headDim: 48 };
  const kern = await Kernels.create();
  for (const type of types) {
    const el = kvElement(type, hp.nKVHeads, hp.headDim);
    const rowF = hp.nKVHeads * hp.headDim;
    const src = kern.alloc(L * rowF * 4);
    const a = kern.f32(src, L * rowF);
    for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * 0.37) * 1.5;
    const ptrs: number[] = [src]; // (`a` is detached by the allocations below)
    const tabs: number[] = [];
    for (let l = 0; l < hp.nLayers; l++) {
      const k = kern.alloc(L * el.rowBytes), v = kern.alloc(L * el.rowBytes), tab = kern.alloc(16);
      kern.k.kv_store_rows(el.id, el.qBlock, src, k, L, rowF, el.rowBytes);
      kern.k.kv_store_rows(el.id, el.qBlock, src, v, L, rowF, el.rowBytes);
      kern.i32(tab, 2).set([k, v]);
      tabs.push(tab);
      ptrs.push(k, v, tab);
    }
    const q = kern.alloc(rowF * 4), out = kern.alloc(rowF * 4);
    ptrs.push(q, out);
    const ws = new AttentionWorkspace(kern, { nHeads: hp.nHeads, headDim: hp.headDim, contextLength: L, batch: 1 });
    kern.f32(q, rowF).set(kern.f32(src, rowF)); // fresh views: allocations may have grown the memory
    const here = runHere(kern);
    const step = () => {
      for (const tab of tabs) {
        attend(kern, ws, { kTable: tab, vTable: tab + 4, blockRows: CONTIGUOUS_BLOCK_ROWS, el },
          { q, out, nQ: 1, pos0: L - 1, nHeads: hp.nHeads, nKVHeads: hp.nKVHeads, headDim: hp.headDim, qStride: rowF, outStride: rowF, scale: 0.144 }, here);
      }
    };
    const w0 = performance.now();
    while (performance.now() - w0 < 1000) step(); // past the kernels' tier-up
    let best = Infinity;
    for (let r = 0; r < 15; r++) {
      const t0 = performance.now();
      step();
      best = Math.min(best, performance.now() - t0);
    }
    const kvBytes = 2 * L * el.rowBytes * hp.nLayers;
    const run1 = runs.find((r) => r.type === type && r.threads === 1 && r.vocab === 512);
    profile.push({
      type, length: L, attentionMs: best, kvMB: kvBytes / 1e6, kvGBs: kvBytes / (best * 1e6),
      boundMs: run1 ? (1000 * run1.lastStepBytes) / (machine.readGBs * 1e9) : NaN, stepMs: run1?.lastStepMs,
    });
    ws.dispose();
    for (const x of ptrs) kern.free(x);
  }
  kern.dispose();
}

// ---------------------------------------------------------------------------------------------------------------
// Output.

const f = (v: number | undefined, d = 0) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));

function printTable(head: string[], body: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  for (const r of body) console.log(line(r));
}

console.log(`machine: read bandwidth ${machine.readGBs.toFixed(1)} GB/s (one thread, ${machine.bandwidthBytes / MiB} MiB); limit = that / (weight + KV bytes per step)`);
for (const vocab of [...new Set(runs.map((r) => r.vocab))]) {
  const rs = runs.filter((r) => r.vocab === vocab);
  console.log(`\n${rs[0]!.model} (vocab ${vocab}): decode tok/s averaged over the first G steps (limit in parentheses)`);
  const cols = rs.map((r) => `${r.type} ${r.threads}t`);
  const hasNative = vocab === 512;
  printTable(['G', ...cols, ...(hasNative ? ['llama.cpp 1t', 'llama.cpp 2t'] : [])], lengths.map((g, i) => [
    String(g), ...rs.map((r) => `${f(r.points[i]!.tokS)} (${f(r.points[i]!.limitTokS)})`),
    ...(hasNative ? [f(NATIVE[1]![g]), f(NATIVE[2]![g])] : []),
  ]));
}
console.log(`\nstep at ${profile[0]?.length} rows (512-vocab, 1 thread): attention alone (6 layers, rows in memory), the measured step (mean of the last ${TAIL}), and the step's bandwidth time:`);
printTable(['KV type', 'attention ms', 'KV MB', 'KV read GB/s', 'step ms', 'rest of step ms', 'step bandwidth ms'], profile.map((p) => [
  p.type, f(p.attentionMs, 3), f(p.kvMB, 1), f(p.kvGBs, 1), f(p.stepMs, 3), f(p.stepMs === undefined ? undefined : p.stepMs - p.attentionMs, 3), f(p.boundMs, 3),
]));
const t = runs.filter((r) => r.vocab === 512 && r.threads === TARGET.threads).map((r) => ({ type: r.type, p: r.points.find((x) => x.length === TARGET.length) }));
for (const { type, p } of t) {
  if (p) console.log(`target (512 vocab, 1 thread, G = ${TARGET.length}): kv ${type} ${f(p.tokS, 1)} tok/s ${p.tokS >= TARGET.tokS ? '>=' : '<'} ${TARGET.tokS} (${f(p.tokS / 130, 2)}x llama.cpp's 130)`);
}

mkdirSync(outDir, { recursive: true });
const json = { machine: { readGBs: machine.readGBs, f32Gflops: machine.f32Gflops }, prompt: PROMPT, lengths, runs, profile, native: NATIVE, target: TARGET };
writeFileSync(join(outDir, 'bench-long.json'), `${JSON.stringify(json, null, 2)}\n`);
const series: Series[] = [];
for (const r of runs.filter((x) => x.vocab === 512)) series.push({ name: `${r.type}, ${r.threads} thr`, points: r.points.map((p) => [p.length, p.tokS]) });
for (const th of [1, 2]) {
  const pts = lengths.filter((g) => NATIVE[th]?.[g] !== undefined).map((g) => [g, NATIVE[th]![g]!] as [number, number]);
  if (pts.length > 1 && runs.some((r) => r.threads === th)) series.push({ name: `llama.cpp ${th} thr`, points: pts });
}
const svg = lineChart({ title: 'Decode tok/s vs generated length (stories15M shape, 512 vocab, Q8_0)', xLabel: 'generated tokens G', yLabel: 'tok/s over the first G steps', series, logX: true });
writeFileSync(join(outDir, 'bench-long.svg'), svg);
if (toDocs) {
  mkdirSync('docs', { recursive: true });
  copyFileSync(join(outDir, 'bench-long.svg'), join('docs', 'bench-long.svg'));
  copyFileSync(join(outDir, 'bench-long.json'), join('docs', 'bench-long.json'));
}
err(`wrote ${join(outDir, 'bench-long.json')} and bench-long.svg${toDocs ? ' (and to docs/)' : ''}`);
