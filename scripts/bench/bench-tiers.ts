/**
 * npm run bench:tiers [-- --full] [--docs] [--out DIR]: a tiny synthetic model (16 layers, 2 KV heads of 32) fills
 * its context through the tiered KV cache under a budget holding a fraction of all f32 rows, then decodes, beside
 * the untiered cache (bmc:64, f32 and q8_0) for the same tokens. Configurations: no warm tier (cold rows in host
 * memory, or in a temporary file), warm q8_0 and warm q4_0 (half the pools' budget each).
 *   quick (default, a couple of minutes): contexts 2048 and 4096, budget 1/8;
 *   --full: contexts 4096, 8192 and 16384, budgets 1/8 and 1/4.
 * Each configuration prefills alone; then all decode in turns of 8 tokens, the first rotating every round, so that a
 * slow spell of a shared machine falls on all of them alike (sequential runs moved by ~20% between rows).
 * Per run: prefill and decode tokens/s, the arena bytes (within the budget), bytes per tier (hot and warm pools in the
 * arena, the cold store outside), bytes staged (cold -> arena) and expanded (warm -> staging) per decoded token, and
 * the decode logits against bmc f32 (worst relative L2 error, argmax agreement). Placement is first-come here (no
 * attention trace), so the rows each tier holds are the same for every configuration.
 * The physical limit beside the figures: every decode step reads every row of every layer once (the attention), so
 * a cold row costs one host -> arena copy of its bytes and a warm row one expansion pass, on top of that read.
 * Decode steps read q8_0 warm rows in registers (attendSplit; the JSON counts those layer calls), prefill chunks and
 * q4_0 rows expand them. A second table measures the two warm read paths at the kernel level: attention over q8_0
 * rows read in registers against expanding them to f32 (kv_convert_rows) and attending over those.
 * Table on stdout, progress on stderr, JSON and an SVG chart (decode tok/s vs context) in DIR (default bench-results/),
 * and with --docs also in docs/.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { KVOptions } from '../../engine/index.js';
import { makeTinyLlama } from '../../engine/gguf/synth.js';
import { Kernels } from '../../engine/runtime/kernels.js';
import { AttentionWorkspace, CONTIGUOUS_BLOCK_ROWS, attend } from '../../engine/kv/attend.js';
import { kvElement } from '../../engine/kv/element.js';
import { lineChart } from './svg-chart.js';
import type { Series } from './svg-chart.js';

const argv = process.argv.slice(2);
const full = argv.includes('--full');
const toDocs = argv.includes('--docs');
const outIdx = argv.indexOf('--out');
const outDir = outIdx >= 0 ? argv[outIdx + 1]! : 'bench-results';
const err = (s: string) => process.stderr.write(s);

const L = 16;
const ROW_FLOATS = 64;
const CHUNK = 128;
const DECODE = 64;
/** Decode tokens per turn of the interleaved decode. */
const DECODE_TURN = 8;
const contexts = full ? [4096, 8192, 16384] : [2048, 4096];
const fractions = full ? [1 / 8, 1 / 4] : [1 / 8];

interface Config { name: string; kv: (budget: number) => KVOptions; tiered: boolean }
const configs: Config[] = [
  { name: 'bmc f32', kv: () => ({ policy: 'bmc' }), tiered: false },
  { name: 'bmc q8_0', kv: () => ({ policy: 'bmc', type: 'q8_0' }), tiered: false },
  { name: 'tiered', kv: (b) => ({ policy: 'tiered', budgetBytes: b }), tiered: true },
  { name: 'tiered file', kv: (b) => ({ policy: 'tiered', budgetBytes: b, cold: 'file' }), tiered: true },
  { name: 'tiered warm q8_0', kv: (b) => ({ policy: 'tiered', budgetBytes: b, warm: 'q8_0' }), tiered: true },
  { name: 'tiered warm q4_0', kv: (b) => ({ policy: 'tiered', budgetBytes: b, warm: 'q4_0' }), tiered: true },
];

interface Row {
  config: string; context: number; fraction: number | null; budget: number | null; arenaBytes: number;
  prefillTokPerS: number; decodeTokPerS: number;
  hotBytes: number; warmBytes: number; coldBytes: number; hotRowsPerLayer: number | null; warmRowsPerLayer: number | null;
  stagedPerToken: number; expandedPerToken: number; promotedBytes: number;
  /** Share of the decode time spent staging cold rows / expanding warm rows; layer calls reading warm rows in registers. */
  stageShare: number; expandShare: number; splitReads: number;
  worstRelError: number; argmaxAgreement: number;
}
const rows: Row[] = [];

for (const ctx of contexts) {
  const bytes = makeTinyLlama({ dim: 64, heads: 2, kvHeads: 2, layers: L, ffn: 32, vocab: 260, contextLength: ctx });
  const model = await loadModel(bytes, { contextLength: ctx, batchSize: CHUNK });
  const ids = Array.from({ length: ctx }, (_, i) => 1 + ((i * 7919 + 13) % 259));
  const fullBytes = 2 * L * ctx * ROW_FLOATS * 4;
  // Every configuration prefills on its own (timed alone), then all decode in turns of DECODE_TURN tokens, the
  // first session rotating each round, so that a slow spell of a shared machine falls on every configuration alike.
  interface Live {
    c: Config; fraction: number; budget: number; label: string; s: ReturnType<typeof model.createSession>;
    prefillMs: number; decodeMs: number; logits: Float32Array[]; before: ReturnType<ReturnType<typeof model.createSession>['kvStats']>['tiers'];
  }
  const live: Live[] = [];
  const prefill = ctx - DECODE;
  for (const fraction of fractions) {
    for (const c of configs) {
      if (!c.tiered && fraction !== fractions[0]) continue; // the untiered runs do not depend on the budget
      const budget = Math.floor(fullBytes * fraction);
      const s = model.createSession({ kv: c.kv(budget) });
      const label = `${c.name}${c.tiered ? ` 1/${Math.round(1 / fraction)}` : ''} @${ctx}`;
      const t0 = performance.now();
      for (let at = 0; at < prefill; at += CHUNK) {
        await s.eval(ids.slice(at, Math.min(prefill, at + CHUNK)));
        if ((at / CHUNK) % 8 === 0) err(`${label}: prefill ${at}/${prefill}\r`);
      }
      live.push({ c, fraction, budget, label, s, prefillMs: performance.now() - t0, decodeMs: 0, logits: [], before: s.kvStats().tiers });
      err(`${label}: prefilled${' '.repeat(30)}\n`);
    }
  }
  for (let i0 = prefill, round = 0; i0 < ctx; i0 += DECODE_TURN, round++) {
    for (let j = 0; j < live.length; j++) {
      const r = live[(j + round) % live.length]!;
      const t = performance.now();
      for (let i = i0; i < Math.min(ctx, i0 + DECODE_TURN); i++) r.logits.push(await r.s.eval([ids[i]!]));
      r.decodeMs += performance.now() - t;
    }
  }
  const ref = live.find((r) => r.c.name === 'bmc f32')!.logits;
  for (const { c, fraction, budget, label, s, prefillMs, decodeMs, logits, before } of live) {
    const st = s.kvStats();
    const t = st.tiers;
    let worst = 0, agree = 0;
    logits.forEach((b, i) => {
      const a = ref[i]!;
      let num = 0, den = 0, am = 0, bm = 0;
      for (let k = 0; k < a.length; k++) {
        num += (a[k]! - b[k]!) ** 2; den += a[k]! ** 2;
        if (a[k]! > a[am]!) am = k;
        if (b[k]! > b[bm]!) bm = k;
      }
      worst = Math.max(worst, Math.sqrt(num / den));
      if (am === bm) agree++;
    });
    rows.push({
      config: c.name, context: ctx, fraction: c.tiered ? fraction : null, budget: c.tiered ? budget : null,
      arenaBytes: st.bytes + st.overheadBytes,
      prefillTokPerS: Math.round((1000 * prefill) / prefillMs), decodeTokPerS: Math.round((1000 * DECODE) / decodeMs),
      hotBytes: t ? t.hotBytes : st.bytes, warmBytes: t?.warmBytes ?? 0, coldBytes: t?.hostBytes ?? 0,
      hotRowsPerLayer: t?.hotRowsPerLayer ?? null, warmRowsPerLayer: t ? t.warmRowsPerLayer : null,
      stagedPerToken: t && before ? Math.round((t.stagedBytes - before.stagedBytes) / DECODE) : 0,
      expandedPerToken: t && before ? Math.round((t.expandedBytes - before.expandedBytes) / DECODE) : 0,
      promotedBytes: t?.promotedBytes ?? 0,
      stageShare: t && before ? (t.stageMs - before.stageMs) / decodeMs : 0,
      expandShare: t && before ? (t.expandMs - before.expandMs) / decodeMs : 0,
      splitReads: t && before ? t.splitReads - before.splitReads : 0,
      worstRelError: worst, argmaxAgreement: agree / DECODE,
    });
    s.dispose();
    err(`${label}: done${' '.repeat(30)}\n`);
  }
  model.dispose();
}

// The warm read paths: attention over N warm q8_0 rows read in registers by the attention kernel (decode steps)
// against expanding them into f32 staging rows (kv_convert_rows) and attending over those (prefill chunks, q4_0), and
// over f32 rows alone (hot rows). One query row, this model's heads, one thread, median of runs.
const warmPath: { rows: number; inRegisterUs: number; expandUs: number; expandAttendUs: number; f32AttendUs: number }[] = [];
{
  const kern = await Kernels.create({ threads: 1 });
  const nHeads = 2, nKV = 2, hd = 32, rowF = nKV * hd;
  const q8 = kvElement('q8_0', nKV, hd);
  const f32 = kvElement('f32', nKV, hd);
  for (const n of full ? [2048, 8192, 16384] : [2048, 4096]) {
    const x = new Float32Array(n * rowF).map((_, i) => Math.sin(i * 0.7) * 2);
    const ws = new AttentionWorkspace(kern, { nHeads, headDim: hd, contextLength: n, batch: 1 });
    const src = kern.alloc(x.byteLength);
    kern.write(src, x);
    const [kq, vq, kf, vf] = [q8, q8, f32, f32].map((el) => kern.alloc(n * el.rowBytes));
    kern.k.kv_store_rows(q8.id, q8.qBlock, src, kq!, n, rowF, q8.rowBytes);
    kern.k.kv_store_rows(q8.id, q8.qBlock, src, vq!, n, rowF, q8.rowBytes);
    const tab = kern.alloc(16);
    const pairs = kern.alloc(16 * n);
    const tmp = kern.alloc(4 * rowF);
    const q = kern.alloc(4 * nHeads * hd);
    const out = kern.alloc(4 * nHeads * hd);
    kern.write(q, new Float32Array(nHeads * hd).map((_, i) => Math.cos(i)));
    const p = new Uint32Array(kern.memory.buffer, pairs, 4 * n);
    for (let j = 0; j < n; j++) {
      p[4 * j] = kq! + j * q8.rowBytes; p[4 * j + 1] = kf! + j * f32.rowBytes;
      p[4 * j + 2] = vq! + j * q8.rowBytes; p[4 * j + 3] = vf! + j * f32.rowBytes;
    }
    const args = { q, out, nQ: 1, pos0: n - 1, nHeads, nKVHeads: nKV, headDim: hd, qStride: nHeads * hd, outStride: nHeads * hd, scale: 1 / Math.sqrt(hd) };
    const view = (k: number, v: number, el: typeof q8) => {
      const t = new Uint32Array(kern.memory.buffer, tab, 4);
      t[0] = k; t[2] = v;
      return { kTable: tab, vTable: tab + 8, blockRows: CONTIGUOUS_BLOCK_ROWS, el };
    };
    const median = (f: () => void) => {
      const ts: number[] = [];
      for (let r = 0; r < 41; r++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); }
      return 1000 * ts.sort((a, b) => a - b)[20]!;
    };
    const expand = () => kern.k.kv_convert_rows(q8.id, q8.qBlock, f32.id, 0, pairs, 2 * n, rowF, tmp);
    const inRegisterUs = median(() => attend(kern, ws, view(kq!, vq!, q8), args));
    const f32AttendUs = median(() => attend(kern, ws, view(kf!, vf!, f32), args));
    const expandUs = median(expand);
    const expandAttendUs = median(() => { expand(); attend(kern, ws, view(kf!, vf!, f32), args); });
    warmPath.push({ rows: n, inRegisterUs, expandUs, expandAttendUs, f32AttendUs });
    for (const ptr of [src, kq!, vq!, kf!, vf!, tab, pairs, tmp, q, out]) kern.free(ptr);
    ws.dispose();
  }
  kern.dispose();
}

const mb = (b: number) => (b / 1e6).toFixed(2);
const kb = (b: number) => (b / 1e3).toFixed(0);
console.log('config               ctx  budget  arena MB  hot MB  warm MB  cold MB  hot/warm rows  prefill tok/s  decode tok/s  staged kB/tok  expanded kB/tok  stage%  expand%  worst rel err  argmax');
for (const r of rows) {
  console.log(`${r.config.padEnd(18)} ${String(r.context).padStart(6)} ${(r.fraction ? `1/${Math.round(1 / r.fraction)}` : '-').padStart(7)} ${mb(r.arenaBytes).padStart(9)} ${mb(r.hotBytes).padStart(7)} ${mb(r.warmBytes).padStart(8)} ${mb(r.coldBytes).padStart(8)} ${(r.hotRowsPerLayer === null ? '-' : `${r.hotRowsPerLayer}/${r.warmRowsPerLayer}`).padStart(14)} ${String(r.prefillTokPerS).padStart(14)} ${String(r.decodeTokPerS).padStart(13)} ${kb(r.stagedPerToken).padStart(14)} ${kb(r.expandedPerToken).padStart(16)} ${(100 * r.stageShare).toFixed(0).padStart(6)}% ${(100 * r.expandShare).toFixed(0).padStart(7)}% ${r.worstRelError.toExponential(2).padStart(14)} ${(100 * r.argmaxAgreement).toFixed(0).padStart(6)}%`);
}

console.log('\nwarm read path (one query row, 2 heads x 32, one thread; median us per layer call)');
console.log('rows   q8_0 in registers   expand q8_0->f32   expand + f32 attention   f32 attention   (expand + f32) / in registers');
for (const w of warmPath) {
  console.log(`${String(w.rows).padStart(5)} ${w.inRegisterUs.toFixed(1).padStart(19)} ${w.expandUs.toFixed(1).padStart(18)} ${w.expandAttendUs.toFixed(1).padStart(24)} ${w.f32AttendUs.toFixed(1).padStart(15)} ${(w.expandAttendUs / w.inRegisterUs).toFixed(2).padStart(30)}x`);
}

mkdirSync(outDir, { recursive: true });
const json = join(outDir, 'bench-tiers.json');
writeFileSync(json, `${JSON.stringify({ full, layers: L, rowFloats: ROW_FLOATS, chunk: CHUNK, decode: DECODE, contexts, fractions, rows, warmPath }, null, 2)}\n`);
const series: Series[] = [];
for (const r of rows) {
  const name = r.fraction === null ? r.config : `${r.config} 1/${Math.round(1 / r.fraction)}`;
  let s = series.find((x) => x.name === name);
  if (!s) series.push(s = { name, points: [] });
  s.points.push([r.context, r.decodeTokPerS]);
}
const svg = join(outDir, 'bench-tiers.svg');
writeFileSync(svg, lineChart({ title: 'Decode tok/s vs context, tiered KV cache (synthetic 16 layers)', xLabel: 'context (tokens)', yLabel: 'decode tok/s', series, logX: true }));
if (toDocs) {
  mkdirSync('docs', { recursive: true });
  copyFileSync(json, join('docs', 'bench-tiers.json'));
  copyFileSync(svg, join('docs', 'bench-tiers.svg'));
}
err(`wrote ${json} and ${svg}${toDocs ? ' (and to docs/)' : ''}\n`);
