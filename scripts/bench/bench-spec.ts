/**
 * npm run bench:spec: speculative decoding in BMC's spare rows against speculation under concat and static and
 * against plain decoding. A synthetic model (stories15M shape, written by the project's GGUF writer) decodes greedily;
 * the drafter is the controlled one (engine/spec/controlled.ts): it proposes the model's own greedy continuation,
 * recorded beforehand, with each token corrupted with probability 1 - acceptance, so acceptance is set exactly and
 * drafting costs nothing. Every speculative run is checked to produce the recorded tokens. Tokens/s is read at each
 * length checkpoint of one run (from the first generated token on). Also measured: what a verify pass of n rows costs
 * against n single decode steps, which bounds the gain (the "ideal" column: tokens per pass / pass cost in steps).
 *
 *   npm run bench:spec                       quick: lengths 256,512; policies auto, concat, static
 *   npm run bench:spec -- --full             lengths 256,1024,2048; policies auto, bmc:64, concat, static, paged:16
 *   npm run bench:spec -- --acceptance 0.7 --k 4 --lengths 512 --policies auto,concat --threads 1 --out build
 *   npm run bench:spec -- --adaptive ...     adds, per acceptance, a run with adaptive k starting at the first --k (greedy:
 *                                            priced by measured pass times, engine/spec/adaptive.ts)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { GenerateOptions, KVOptions, Model } from '../../engine/index.js';
import { ControlledDrafter } from '../../engine/spec/controlled.js';
import { expectedTokens } from '../../engine/spec/adaptive.js';
import { barChart } from './svg-chart.js';
import { ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const full = argv.includes('--full');
const withAdaptive = argv.includes('--adaptive');
const shape = flag('shape') ?? 'stories15m-f32';
const lengths = (flag('lengths') ?? (full ? '256,1024,2048' : '256,512')).split(',').map(Number).sort((a, b) => a - b);
const acceptances = (flag('acceptance') ?? '0.5,0.7,0.9').split(',').map(Number);
const ks = (flag('k') ?? '4,8').split(',').map(Number);
const policies = (flag('policies') ?? (full ? 'auto,bmc:64,concat,static,paged:16' : 'auto,concat,static')).split(',');
const threads = Number(flag('threads') ?? 1);
const promptLen = Number(flag('prompt') ?? 32);
const outDir = flag('out') ?? 'build';
const chartPath = flag('chart') ?? 'docs/bench-spec.svg';
const err = (s: string) => process.stderr.write(s);
const maxLen = lengths[lengths.length - 1]!;
for (const [n, v] of [['lengths', lengths], ['acceptance', acceptances], ['k', ks]] as const) {
  if (v.some((x) => !Number.isFinite(x) || x < 0)) { err(`bench-spec: bad --${n}\n`); process.exit(2); }
}

function kvOption(p: string): KVOptions {
  const [name, arg] = p.split(':');
  if (name === 'bmc') return { policy: 'bmc', r: Number(arg ?? 64) };
  if (name === 'paged') return { policy: 'paged', blockSize: Number(arg ?? 16) };
  return { policy: name as KVOptions['policy'] };
}

interface Run {
  policy: string; acceptance: number | null; k: number | null;
  /** k re-picked after every pass, starting at `k`; `finalK` is where it ended. */
  adaptive: boolean; finalK?: number;
  /** tokens/s at each length (from the first generated token to the G-th). */
  tokensPerSecond: Record<number, number>;
  passes: number; tokensPerPass: number; tokenAcceptance: number;
  growths: number; bytesCopied: number; growthMs: number; peakKVBytes: number;
}

/** Greedy generation of maxLen tokens; returns the tokens and the time at which each checkpoint was reached. */
async function timedRun(model: Model, prompt: number[], draft: GenerateOptions['draft']) {
  const g = model.generate(prompt, { temperature: 0, maxTokens: maxLen, ignoreEos: true, draft });
  const ids: number[] = [];
  let t1 = 0;
  const at: Record<number, number> = {};
  for await (const p of g) {
    ids.push(p.token);
    const t = performance.now();
    if (ids.length === 1) t1 = t;
    if (lengths.includes(ids.length)) at[ids.length] = t - t1;
  }
  const tps: Record<number, number> = {};
  for (const L of lengths) tps[L] = (1000 * (L - 1)) / at[L]!;
  return { ids, tps, stats: g.stats };
}

const file = await ensureModel(join('bench-results', 'models'), shape, err);
const contextLength = promptLen + maxLen + Math.max(...ks) + 1;
const probe = await loadModel(file, { contextLength, threads, kv: { policy: 'static' } });
const V = probe.info.hparams!.nVocab;
const prompt = Array.from({ length: promptLen }, (_, i) => 1 + ((i * 7919) % (V - 1)));

// What a pass of n rows costs against one decode step, at a mid length: rounds over every n interleaved (noise hits
// them alike), each pass rolled back, lower quartile of the rounds.
const passCost: Record<number, number> = {};
{
  const s = probe.createSession();
  await s.eval(prompt);
  await s.eval(Array.from({ length: Math.min(256, contextLength - promptLen - 10) }, (_, i) => 5 + i));
  const L = s.length;
  const ns = [1, 2, 3, 5, 9];
  const times: Record<number, number[]> = Object.fromEntries(ns.map((n) => [n, []]));
  for (let r = 0; r < 24; r++) {
    for (const n of ns) {
      const a = performance.now();
      await s.eval(Array.from({ length: n }, (_, i) => 7 + i), { logits: 'all' });
      if (r >= 4) times[n]!.push(performance.now() - a); // the first rounds warm up
      s.truncate(L);
    }
  }
  for (const n of ns) passCost[n] = times[n]!.sort((x, y) => x - y)[times[n]!.length >> 2]!;
  s.dispose();
}
err(`${shape}: one decode step ${passCost[1]!.toFixed(2)} ms; a pass of n rows costs ` +
  [2, 3, 5, 9].map((n) => `${n}: ${(passCost[n]! / passCost[1]!).toFixed(2)}x`).join(', ') + ' of a step\n');

// The reference: the model's own greedy continuation (what the controlled drafter proposes, corrupted).
err('recording the greedy continuation\n');
const ref = await timedRun(probe, prompt, undefined);
probe.dispose();
const reference = [...prompt, ...ref.ids];

// Every configuration (policy x plain/acceptance/k) runs at once, in lockstep: one generator step of each in turn,
// each timed on its own, so that load from other processes falls on all of them alike (this machine is shared).
interface Live {
  run: Run; it: AsyncIterator<{ token: number }>; gen: ReturnType<Model['generate']>; ids: number[]; ms: number; done: boolean;
}
const models: Model[] = [];
const live: Live[] = [];
for (const policy of policies) {
  const model = await loadModel(file, { contextLength, threads, kv: kvOption(policy) });
  models.push(model);
  const configs: Array<[number | null, number | null, boolean]> = [[null, null, false],
    ...acceptances.flatMap((a) => [...ks.map((k) => [a, k, false] as [number, number, boolean]), ...(withAdaptive ? [[a, ks[0]!, true] as [number, number, boolean]] : [])])];
  for (const [a, k, adaptive] of configs) {
    const draft = a === null ? undefined : { drafter: new ControlledDrafter(reference, a, V, 17), k: k!, adaptive };
    const gen = model.generate(prompt, { temperature: 0, maxTokens: maxLen, ignoreEos: true, draft });
    const run: Run = {
      policy, acceptance: a, k, adaptive, tokensPerSecond: {}, passes: 0, tokensPerPass: 1, tokenAcceptance: 0,
      growths: 0, bytesCopied: 0, growthMs: 0, peakKVBytes: 0,
    };
    live.push({ run, it: gen[Symbol.asyncIterator](), gen, ids: [], ms: 0, done: false });
  }
}
const label = (r: Run) => `${r.policy} ${r.acceptance === null ? 'plain' : `a=${r.acceptance} k=${r.adaptive ? `adaptive from ${r.k}` : r.k}`}`;
let remaining = live.length;
let lastReport = performance.now();
while (remaining > 0) {
  for (const c of live) {
    if (c.done) continue;
    // Advance by one verify pass: a pass yields its tokens one next() at a time.
    const before = c.ids.length;
    const t0 = performance.now();
    do {
      const n = await c.it.next();
      if (n.done) { c.done = true; break; }
      c.ids.push(n.value.token);
    } while (c.ids.length - before < 1);
    // The first token comes from the prefill: time from it on.
    if (before === 0) c.ms = 0;
    else c.ms += performance.now() - t0;
    for (const L of lengths) if (c.ids.length >= L && c.run.tokensPerSecond[L] === undefined) c.run.tokensPerSecond[L] = (1000 * (L - 1)) / c.ms;
    if (c.done) {
      remaining--;
      const r = c.run;
      if (c.ids.some((t, i) => t !== ref.ids[i])) throw new Error(`${label(r)}: output differs from plain greedy decoding`);
      const sp = c.gen.stats.speculative;
      const kvSt = c.gen.stats.kv!;
      Object.assign(r, {
        finalK: r.adaptive ? sp?.k : undefined, passes: sp?.passes ?? maxLen, tokensPerPass: sp?.tokensPerPass ?? 1, tokenAcceptance: sp?.tokenAcceptance ?? 0,
        growths: kvSt.growths, bytesCopied: kvSt.bytesCopied, growthMs: kvSt.growthMs, peakKVBytes: kvSt.peakBytes,
      });
      err(`${label(r).padEnd(22)} ${lengths.map((L) => `G=${L}: ${r.tokensPerSecond[L]!.toFixed(1)} tok/s`).join(', ')}, ${r.tokensPerPass.toFixed(2)} tok/pass\n`);
    }
  }
  if (performance.now() - lastReport > 15000) {
    lastReport = performance.now();
    err(`  ... ${live.filter((c) => !c.done).map((c) => c.ids.length).reduce((a, b) => Math.min(a, b), maxLen)} of ${maxLen} tokens in the slowest configuration\n`);
  }
}
for (const m of models) m.dispose();
const runs = live.map((c) => c.run);

// Table: every speculative configuration, its speed-up over plain decoding under the same policy and under auto,
// and BMC (auto) against concat with the same speculation.
const plainOf = (p: string) => runs.find((r) => r.policy === p && r.acceptance === null)!;
const specOf = (p: string, a: number, k: number) => runs.find((r) => r.policy === p && r.acceptance === a && r.k === k && !r.adaptive);
const bmcName = policies.includes('auto') ? 'auto' : policies.find((p) => p.startsWith('bmc'));
const head = ['policy', 'accept', 'k', 'tok/pass', 'ideal', ...lengths.map((L) => `tok/s G=${L}`), `vs plain (same policy)`, `vs plain ${bmcName ?? ''}`, 'KV growths', 'copied MiB', 'growth ms'];
const rowsOut: string[][] = [];
const G = maxLen;
for (const r of runs) {
  const plainSame = plainOf(r.policy).tokensPerSecond[G]!;
  const plainBmc = bmcName ? plainOf(bmcName).tokensPerSecond[G]! : NaN;
  const ideal = r.k === null || r.adaptive ? undefined : expectedTokens(r.acceptance!, r.k) / (passCost[r.k + 1] ?? passCost[9]! * (r.k + 1) / 9) * passCost[1]!;
  rowsOut.push([r.policy, r.acceptance === null ? 'plain' : String(r.acceptance), r.k === null ? '-' : r.adaptive ? `adaptive ${r.k}->${r.finalK}` : String(r.k), r.tokensPerPass.toFixed(2),
    ideal === undefined ? '-' : `${ideal.toFixed(2)}x`, ...lengths.map((L) => r.tokensPerSecond[L]!.toFixed(1)), `${(r.tokensPerSecond[G]! / plainSame).toFixed(2)}x`,
    `${(r.tokensPerSecond[G]! / plainBmc).toFixed(2)}x`, String(r.growths), (r.bytesCopied / 1048576).toFixed(1), r.growthMs.toFixed(1)]);
}
const widths = head.map((h, i) => Math.max(h.length, ...rowsOut.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
console.log(`${shape}, prompt ${promptLen}, ${threads} thread(s); decode step ${passCost[1]!.toFixed(2)} ms, pass of 5 rows ${(passCost[5]! / passCost[1]!).toFixed(2)} steps, of 9 rows ${(passCost[9]! / passCost[1]!).toFixed(2)} steps`);
console.log(line(head));
for (const r of rowsOut) console.log(line(r));

const summary: Array<Record<string, number | string>> = [];
if (bmcName) {
  console.log('');
  for (const a of acceptances) {
    for (const k of ks) {
      const b = specOf(bmcName, a, k);
      const c = specOf('concat', a, k);
      const s = specOf('static', a, k);
      const p = plainOf(bmcName).tokensPerSecond[G]!;
      if (!b) continue;
      const x = {
        acceptance: a, k, length: G,
        specOverPlain: b.tokensPerSecond[G]! / p,
        bmcOverConcat: c ? b.tokensPerSecond[G]! / c.tokensPerSecond[G]! : NaN,
        bmcOverStatic: s ? b.tokensPerSecond[G]! / s.tokensPerSecond[G]! : NaN,
      };
      summary.push(x);
      console.log(`a=${a} k=${k} G=${G}: speculation under ${bmcName} ${x.specOverPlain.toFixed(2)}x plain ${bmcName}; ` +
        `${x.bmcOverConcat.toFixed(2)}x speculation under concat; ${x.bmcOverStatic.toFixed(2)}x under static`);
    }
  }
}

mkdirSync(outDir, { recursive: true });
const jsonPath = join(outDir, 'bench-spec.json');
writeFileSync(jsonPath, `${JSON.stringify({ date: new Date().toISOString(), shape, promptLen, threads, lengths, passCostMs: passCost, runs, summary }, null, 2)}\n`);
// Chart: tokens/s at the longest length, one group per configuration, one bar per policy.
const cats = ['plain', ...acceptances.flatMap((a) => ks.map((k) => `a=${a} k=${k}`))];
const chart = barChart({
  title: `greedy decode tokens/s at ${G} tokens, controlled drafter (${shape}, ${threads} thread${threads === 1 ? '' : 's'})`,
  yLabel: 'tokens/s', categories: cats,
  series: policies.map((p) => ({
    name: p,
    values: cats.map((c) => {
      if (c === 'plain') return plainOf(p).tokensPerSecond[G];
      const m = /^a=([\d.]+) k=(\d+)$/.exec(c)!;
      return specOf(p, Number(m[1]), Number(m[2]))?.tokensPerSecond[G];
    }),
  })),
});
mkdirSync(join(chartPath, '..'), { recursive: true });
writeFileSync(chartPath, chart);
err(`wrote ${jsonPath} and ${chartPath}\n`);
process.exit(0);
