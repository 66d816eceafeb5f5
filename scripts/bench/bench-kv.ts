/**
 * npm run bench:kv: the BMC paper's comparison on this engine. For each synthetic model shape, one session per KV
 * policy prefills a short prompt and then decodes token by token up to the longest generation length, the sessions
 * taking turns by chunks of 16 tokens (--chunk) so that all policies share the machine's slow and fast spells; the
 * decode time is read at every length checkpoint, so one pass gives every length. Prints a table, writes JSON and
 * one SVG chart per shape (tokens/s against generation length, one line per policy) to bench-results/.
 *
 *   npm run bench:kv                          quick: stories15M shape with Q4_0 weights, lengths 256 1024 2048 4096
 *   npm run bench:kv -- --full                also F32 weights and a TinyLlama-1.1B-shaped model (4 layers, Q8_0)
 *   npm run bench:kv -- --shapes stories15m-f32 --lengths 256,4096 --policies concat,bmc:64
 *   (--docs also writes docs/bench-kv.json and the charts docs/bench-kv-<shape>.svg; --chunk N sets the interleaving;
 *   --repeat N the passes over lengths up to 1024, default 5)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { KVOptions, KVStats } from '../../engine/index.js';
import { argmax } from '../../engine/generate/sampling.js';
import { calibrate, decodeAttentionNs, predict } from '../../engine/kv/analytical.js';
import type { CostConstants, ModelShape } from '../../engine/kv/analytical.js';
import { Kernels } from '../../engine/runtime/kernels.js';
import { lineChart } from './svg-chart.js';
import { ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const full = argv.includes('--full');
const shapes = (flag('shapes') ?? (full ? 'stories15m-q4_0,stories15m-f32,tinyllama-4l-q8_0' : 'stories15m-q4_0')).split(',');
const lengths = (flag('lengths') ?? '256,1024,2048,4096').split(',').map(Number).sort((a, b) => a - b);
const policyNames = (flag('policies') ?? 'concat,static,bmc:16,bmc:64,bmc:256,paged:16,auto').split(',');
const promptLen = Number(flag('prompt') ?? 32);
const outDir = flag('out') ?? 'bench-results';
const CHUNK = Number(flag('chunk') ?? 16);
const RANK_GAP = Number(flag('rank-gap') ?? 0.1);
/** Lengths up to SHORT_MAX are measured in REPEAT passes (--repeat), longer ones in one. */
const SHORT_MAX = 1024;
const REPEAT = Number(flag('repeat') ?? 5);
/** Rounds between the probe's turns and between calibrations (see below). */
const PROBE_EVERY = 2;
const CAL_EVERY = 8;
if (!(Number.isInteger(REPEAT) && REPEAT >= 1)) throw new Error(`bench:kv: --repeat ${flag('repeat')} is not an integer >= 1`);
if (!(Number.isInteger(CHUNK) && CHUNK > 0) || lengths.some((g) => !(g > 0 && g % CHUNK === 0))) {
  throw new Error(`bench:kv: every length must be a positive multiple of --chunk ${CHUNK} (lengths ${lengths.join(',')})`);
}
const err = (s: string) => process.stderr.write(s);

function kvOption(p: string): KVOptions {
  const [name, arg] = p.split(':');
  if (name === 'bmc') return { policy: 'bmc', r: Number(arg) };
  if (name === 'paged') return { policy: 'paged', blockSize: Number(arg) } as KVOptions;
  return { policy: name } as KVOptions;
}

interface Row {
  /** tokensPerSecond is the median over this many passes. */
  shape: string; policy: string; length: number; passes: number; tokensPerSecond: number; msPerToken: number;
  predictedTokensPerSecond: number; predictionError: number; predictedBytesCopied: number;
  growths: number; bytesCopied: number; growthMs: number; peakKVBytes: number; capacity: number;
}

const rows: Row[] = [];
const maxLen = lengths[lengths.length - 1]!;
const calibrations: Record<string, { constants: CostConstants; baseTokenMs: number; calibrations: number; probeTurns: number }> = {};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Each constant's median over the calibrations of a run (sizes are the same in all). */
function medianConstants(cs: CostConstants[]): CostConstants {
  const out = { ...cs[0]! } as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(cs[0]!)) {
    if (typeof v === 'number') out[k] = median(cs.map((c) => (c as unknown as Record<string, number>)[k]!));
  }
  return out as unknown as CostConstants;
}

for (const shape of shapes) {
  const file = await ensureModel(join(outDir, 'models'), shape, err);
  const contextLength = promptLen + maxLen + 1;
  const model = await loadModel(file, { contextLength, kv: { policy: 'auto' } });
  const hp = model.info.hparams!;
  const mshape: ModelShape = { nLayers: hp.nLayers, nKVHeads: hp.nKVHeads, headDim: hp.headDim, nHeads: hp.nHeads, contextLength };

  // The analytical model's inputs are measured during the run, in turns of their own between the sessions' turns, so
  // that they see the machine's spells as the sessions do (here a quick start-up calibration once read 2.3 ms for a
  // step of ~1.5 ms and 5.6 GB/s for a copy of ~10): the machine constants by `calibrate` on a kernel instance with
  // the model's threads (attention past the cache is timed on them), every CAL_EVERY rounds; and the base step by a
  // probe session (static) that decodes a chunk of CHUNK tokens from the prompt every PROBE_EVERY rounds, its mean
  // step less its attention. The model uses the median of each.
  const calKern = await Kernels.create({ threads: model.info.threads });
  const cals: CostConstants[] = [];
  const calibrateTurn = () => cals.push(calibrate(calKern, mshape, { threads: calKern.threads, reps: 3 }));
  calibrateTurn(); // also compiles and warms the kernels
  const prompt = Array.from({ length: promptLen }, (_, i) => 1 + ((i * 7919) % (hp.nVocab - 1)));
  const probe = model.createSession({ kv: { policy: 'static' } });
  const probeLogits = await probe.eval(prompt);
  const probeStepNs: number[] = [];
  const probeTurn = async () => {
    probe.truncate(promptLen);
    let logits = probeLogits;
    const t0 = performance.now();
    for (let j = 0; j < CHUNK; j++) logits = await probe.eval([argmax(logits)]); // as the sessions do (argmax is ~0.05 ms here)
    probeStepNs.push(((performance.now() - t0) * 1e6) / CHUNK);
  };

  // Every policy decodes in one interleaved run: each session in turn decodes a chunk of CHUNK tokens (the first
  // session rotates every round), so a slow spell of a shared machine hits all policies alike and the ratios hold.
  // A chunk of 16 tokens mixes well; a session's weights and short caches may have to be fetched again after another's
  // turn. Lengths up to SHORT_MAX are short enough for a spell to tilt them, so they are decoded in REPEAT passes (fresh
  // sessions each) and reported as the median; the last pass goes on to the longest length.
  // Warm-up, untimed: every policy decodes two chunks in a session of its own, so that no timed pass pays for the
  // engine's first calls (JIT of each policy's JavaScript paths); without it a single pass of 64 tokens measured
  // every policy a quarter slower than later passes.
  // auto takes the model's own calibrated rule, which a session-level kv option would replace.
  const openSession = (policy: string) => (policy === 'auto' ? model.createSession() : model.createSession({ kv: kvOption(policy) }));
  for (const policy of policyNames) {
    const s = openSession(policy);
    let logits = await s.eval(prompt);
    for (let j = 0; j < 2 * CHUNK; j++) logits = await s.eval([argmax(logits)]);
    s.dispose();
  }
  for (let i = 0; i < 4; i++) await probeTurn();
  probeStepNs.length = 0;

  const shortTo = Math.max(0, ...lengths.filter((g) => g <= SHORT_MAX));
  const passes = shortTo > 0 && shortTo < maxLen ? REPEAT : 1;
  const measured = new Map<string, { tps: number[]; stats?: KVStats }>(); // by `${policy} ${g}`
  for (let pass = 0; pass < passes; pass++) {
    const upTo = pass === passes - 1 ? maxLen : shortTo;
    const runs = [];
    for (const policy of policyNames) {
      const session = openSession(policy);
      runs.push({ policy, session, logits: await session.eval(prompt), ms: 0 });
    }
    for (let g0 = 0, round = pass; g0 < upTo; g0 += CHUNK, round++) {
      const n = Math.min(CHUNK, upTo - g0);
      for (let i = 0; i < runs.length; i++) {
        const run = runs[(i + round) % runs.length]!;
        const t0 = performance.now();
        for (let j = 0; j < n; j++) run.logits = await run.session.eval([argmax(run.logits)]);
        run.ms += performance.now() - t0;
      }
      if (round % PROBE_EVERY === 0) await probeTurn();
      if (round % CAL_EVERY === 0) calibrateTurn();
      const g = g0 + n;
      if (!lengths.includes(g)) continue;
      for (const run of runs) {
        const m = measured.get(`${run.policy} ${g}`) ?? { tps: [] };
        m.tps.push((1000 * g) / run.ms);
        m.stats = run.session.kvStats();
        measured.set(`${run.policy} ${g}`, m);
      }
      err(`${shape} pass ${pass + 1}/${passes} G=${String(g).padStart(5)}: ${runs.map((r) => `${r.policy} ${((1000 * g) / r.ms).toFixed(1)}`).join(', ')} tok/s\n`);
    }
    for (const run of runs) run.session.dispose();
  }
  probe.dispose();
  model.dispose();
  calKern.dispose();
  const constants = medianConstants(cals);
  mshape.baseTokenNs = median(probeStepNs) - decodeAttentionNs(constants, mshape, promptLen, promptLen + CHUNK) / CHUNK;
  calibrations[shape] = { constants, baseTokenMs: mshape.baseTokenNs / 1e6, calibrations: cals.length, probeTurns: probeStepNs.length };
  const q = (xs: number[], f: (x: number) => string) => `${f(Math.min(...xs))}-${f(Math.max(...xs))}`;
  err(`${shape}: ${cals.length} calibrations, medians: copy ${(1 / constants.copyNsPerByte).toFixed(1)} GB/s ` +
    `(${q(cals.map((c) => 1 / c.copyNsPerByte), (x) => x.toFixed(1))}), large copy ${constants.copyNsPerByteLarge ? (1 / constants.copyNsPerByteLarge).toFixed(1) : '-'} GB/s, ` +
    `attention ${constants.attnRowNs.toFixed(0)} ns/row/layer (${q(cals.map((c) => c.attnRowNs), (x) => x.toFixed(0))}) in cache, ` +
    `${constants.attnRowNsLarge?.toFixed(0) ?? '-'} (${q(cals.map((c) => c.attnRowNsLarge ?? 0), (x) => x.toFixed(0))}) past it; ` +
    `base step ${(mshape.baseTokenNs / 1e6).toFixed(2)} ms (${probeStepNs.length} probe turns)\n`);
  for (const g of lengths) {
    for (const policy of policyNames) {
      const m = measured.get(`${policy} ${g}`)!;
      const st = m.stats!;
      const tps = median(m.tps);
      const pred = predict(constants, mshape, promptLen, g, policy);
      rows.push({
        shape, policy, length: g, passes: m.tps.length, tokensPerSecond: tps, msPerToken: 1000 / tps,
        predictedTokensPerSecond: pred.tokensPerSecond, predictionError: pred.tokensPerSecond / tps - 1,
        predictedBytesCopied: pred.bytesCopied, growths: st.growths,
        bytesCopied: st.bytesCopied, growthMs: st.growthMs, peakKVBytes: st.peakBytes, capacity: st.capacity,
      });
    }
  }
}

const mib = (b: number) => (b / 1048576).toFixed(1);
const head = ['shape', 'policy', 'G', 'tok/s', 'predicted', 'error', 'ms/tok', 'growths', 'copied MiB', 'growth ms', 'peak KV MiB'];
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;
const table = rows.map((r) => [r.shape, r.policy, String(r.length), r.tokensPerSecond.toFixed(1), r.predictedTokensPerSecond.toFixed(1), pct(r.predictionError), r.msPerToken.toFixed(3),
  String(r.growths), mib(r.bytesCopied), r.growthMs.toFixed(1), mib(r.peakKVBytes)]);
const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
console.log(line(head));
for (const r of table) console.log(line(r));

// The paper's comparison, measured in this run: auto against concat, the best fixed R and static, at each length;
// and whether the model ranks the policies as the measurements do.
const summary: Array<Record<string, unknown>> = [];
for (const shape of shapes) {
  for (const g of lengths) {
    const at = rows.filter((r) => r.shape === shape && r.length === g);
    const get = (p: string) => at.find((r) => r.policy === p);
    const auto = get('auto');
    const bmcs = at.filter((r) => r.policy.startsWith('bmc:'));
    const bestBmc = bmcs.sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0];
    const measuredRank = [...at].sort((a, b) => b.tokensPerSecond - a.tokensPerSecond).map((r) => r.policy);
    // A full ranking of near-ties is noise; what the model must get right is the order of every pair of policies
    // it predicts to differ by more than RANK_GAP (pairs closer than that count as ties on both sides).
    const pairs: Array<[string, string, boolean]> = [];
    for (const a of at) {
      for (const b of at) {
        if (a.predictedTokensPerSecond <= b.predictedTokensPerSecond * (1 + RANK_GAP)) continue;
        pairs.push([a.policy, b.policy, a.tokensPerSecond > b.tokensPerSecond]);
      }
    }
    const predictedRank = [...at].sort((a, b) => b.predictedTokensPerSecond - a.predictedTokensPerSecond).map((r) => r.policy);
    summary.push({
      shape, length: g,
      autoOverConcat: auto && get('concat') ? auto.tokensPerSecond / get('concat')!.tokensPerSecond : undefined,
      autoOverBestFixedR: auto && bestBmc ? auto.tokensPerSecond / bestBmc.tokensPerSecond : undefined,
      bestFixedR: bestBmc?.policy,
      autoOverStatic: auto && get('static') ? auto.tokensPerSecond / get('static')!.tokensPerSecond : undefined,
      maxAbsPredictionError: Math.max(...at.map((r) => Math.abs(r.predictionError))),
      measuredRank, predictedRank,
      autoSpareRows: auto ? auto.capacity - (promptLen + g) : undefined,
      staticPeakOverAuto: auto && get('static') ? get('static')!.peakKVBytes / auto.peakKVBytes : undefined,
      separatedPairs: pairs.length, pairsOrderedAsPredicted: pairs.filter((x) => x[2]).length,
      misorderedPairs: pairs.filter((x) => !x[2]).map((x) => `${x[0]} > ${x[1]}`),
    });
  }
}
console.log('');
for (const x of summary) {
  const f = (v: unknown) => (typeof v === 'number' ? `${v.toFixed(2)}x` : '-');
  console.log(`${x.shape} G=${x.length}: auto/concat ${f(x.autoOverConcat)}, auto/best fixed R (${x.bestFixedR ?? '-'}) ${f(x.autoOverBestFixedR)}, ` +
    `auto/static ${f(x.autoOverStatic)}, worst prediction error ${(100 * (x.maxAbsPredictionError as number)).toFixed(1)}%`);
  if (x.autoSpareRows !== undefined) console.log(`  auto holds ${x.autoSpareRows} spare rows; static holds ${f(x.staticPeakOverAuto)} its peak KV bytes`);
  console.log(`  measured  ranking: ${(x.measuredRank as string[]).join(' > ')}`);
  console.log(`  predicted ranking: ${(x.predictedRank as string[]).join(' > ')}`);
  const mis = x.misorderedPairs as string[];
  console.log(`  pairs predicted >${(100 * RANK_GAP).toFixed(0)}% apart: ${x.pairsOrderedAsPredicted} of ${x.separatedPairs} measured in that order` +
    (mis.length ? ` (not: ${mis.join(', ')})` : ''));
}

mkdirSync(outDir, { recursive: true });
const json = `${JSON.stringify({ date: new Date().toISOString(), promptLen, chunk: CHUNK, repeat: REPEAT, repeatUpTo: SHORT_MAX, lengths, calibrations, rows, summary }, null, 2)}\n`;
writeFileSync(join(outDir, 'kv.json'), json);
if (argv.includes('--docs')) writeFileSync(join('docs', 'bench-kv.json'), json);
for (const shape of shapes) {
  const series = policyNames.map((p) => ({ name: p, points: rows.filter((r) => r.shape === shape && r.policy === p).map((r) => [r.length, r.tokensPerSecond] as [number, number]) }));
  const svg = lineChart({ title: `decode tokens/s by KV policy (${shape})`, xLabel: 'generated tokens', yLabel: 'tokens/s', series, logX: true });
  writeFileSync(join(outDir, `kv-${shape}.svg`), svg);
  if (argv.includes('--docs')) writeFileSync(join('docs', `bench-kv-${shape}.svg`), svg);
}
err(`wrote ${join(outDir, 'kv.json')} and ${shapes.map((s) => join(outDir, `kv-${s}.svg`)).join(', ')}\n`);
