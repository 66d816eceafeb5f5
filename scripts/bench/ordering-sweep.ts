/**
 * npm run bench:ordering [-- --traces 12 --tokens 200 --readers dense,0.6 --no-oracle --surfaces --out ordering-sweep.json]:
 * how often the issue's ordering oracle >= online >= reactive >= static holds beyond the six traces the tests replay.
 * For each fixture model it records `traces` fresh traces (a different prompt and sampling seed each, temperature 0.8;
 * none is the tests' greedy "Once upon a time" nor tune-online.ts's "The dog ran to the park" at seed 7), replays each
 * on the GH200-like model with fast tiers of 1/8, 1/4 and 1/2 of the KV, with READS_ONLINE (chosen before this sweep
 * existed), once per reader: `exact` (every token at every step), `dense` (every token with non-zero stored mass) or a
 * sparsity S (the top 1 - S of the context by mass); about 30 s per reader with the oracle. Per model and reader, and
 * per reader over the three models, it prints how many cells keep each link of the ordering and the whole chain, and
 * the median and worst of reactive's time over online's (> 1: online faster); the JSON holds every cell.
 * --test-trace replays instead the one trace per model that test/tiers-ordering.test.ts records (greedy, 200 tokens
 * after "Once upon a time"), for its figures under readers the test does not run.
 * --surfaces (about 15 minutes more) also evaluates the oracle's whole search space in every cell (W 1-64 x R 0-1 by
 * 0.1) and reports how close the annealing comes to its minimum, with and without the coarse scan before it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import { annealWR, gh200Model, lookaheadSurface, READS_ONLINE, readerOptions, simulatePlacement } from '../../engine/tiers/simulate.js';
import type { ReaderSpec as Reader } from '../../engine/tiers/simulate.js';
import { readTrace, TraceRecorder } from '../../engine/tiers/trace.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const MODELS = process.env.BMC_MODELS ?? join(import.meta.dirname, '../../../shared/models');
const nTraces = Number(arg('traces', '12'));
const tokens = Number(arg('tokens', '200'));
const withOracle = !process.argv.includes('--no-oracle');
const testTrace = process.argv.includes('--test-trace');
const surfaces = process.argv.includes('--surfaces');
if (surfaces && !withOracle) throw new Error('--surfaces needs the oracle (drop --no-oracle)');
const out = arg('out', 'ordering-sweep.json');
const readers: Reader[] = arg('readers', 'dense,0.6').split(',').map((r) => {
  if (r === 'exact' || r === 'dense') return r;
  const v = Number(r);
  if (!(r.trim() !== '' && v > 0 && v < 1)) throw new Error(`--readers: "${r}" is not exact, dense or a sparsity in (0, 1)`);
  return v;
});
const readerName = (r: Reader) => (typeof r === 'number' ? `${Math.round(100 * r)}% sparse` : r);
const PROMPTS = [
  'One day a little girl', 'The sun was shining and', 'Tom had a red ball', 'There was a big tree',
  'Lily and her mom went', 'A small bird sat on', 'In the morning, Ben', 'The cat was very hungry',
  'Sara found a shiny stone', 'It was a rainy day', 'Max wanted to play with', 'Once there was a kind old man',
];
if (!(Number.isInteger(nTraces) && nTraces >= 1 && nTraces <= PROMPTS.length)) throw new Error(`--traces must be an integer in [1, ${PROMPTS.length}]`);
if (!(Number.isInteger(tokens) && tokens >= 16 && tokens <= 480)) throw new Error('--tokens must be an integer in [16, 480]');

interface Cell {
  model: string; prompt: string; seed: number; fastFraction: number; reader: string;
  static: number; reactive: number; online: number; oracle?: number;
  /** Share of (step, layer) pairs whose time the fast tier sets, under static and under reactive. */
  staticFastBound: number; reactiveFastBound: number;
  /** With --surfaces: the look-ahead family's best time over the whole (W, R) grid, and the search without its scan. */
  gridMin?: number; noScan?: number; evals?: number; noScanEvals?: number;
}
const NAMES = ['stories260K.gguf', 'llama2xs-tok512.gguf', 'babyllama-tok105.gguf'];

/** Every (W, R) of the oracle's family, then the annealing (seed 1, as the cells use) with and without its scan. */
function searchVsGrid(tr: Parameters<typeof lookaheadSurface>[0], model: Parameters<typeof lookaheadSurface>[1], reader: Reader, oracle: number) {
  const { wMax, cost } = lookaheadSurface(tr, model, readerOptions(reader));
  const grid = new Map<number, number>();
  for (let w = 1; w <= wMax; w++) for (let r10 = 0; r10 <= 10; r10++) grid.set(w * 16 + r10, cost(w, r10 / 10));
  const at = (w: number, r: number) => grid.get(w * 16 + Math.round(r * 10))!;
  const withScan = annealWR(at, { seed: 1, wMax });
  const without = annealWR(at, { seed: 1, wMax, scanW: [], scanR: [] });
  // The same search as the cell's oracle, on the same costs: a check that the grid is the space the oracle searched.
  if (withScan.cost !== oracle) throw new Error(`search on the grid gives ${withScan.cost}, the oracle ${oracle}`);
  return { gridMin: Math.min(...grid.values()), noScan: without.cost, evals: withScan.evals, noScanEvals: without.evals };
}
const cells: Cell[] = [];
const le = (a: number, b: number) => a <= b * (1 + 1e-12);

for (const name of NAMES) {
  const m = await loadModel(join(MODELS, name), { contextLength: tokens + 32 });
  const hp = m.info.hparams!;
  try {
    for (let k = 0; k < (testTrace ? 1 : nTraces); k++) {
      const prompt = testTrace ? 'Once upon a time' : PROMPTS[k]!;
      const seed = 101 + k;
      const rec = new TraceRecorder({ nLayers: hp.nLayers, meta: { model: name, kvBytesPerToken: 2 * hp.nKVHeads * hp.headDim * 4 } });
      const s = m.createSession({ trace: rec });
      for await (const _ of m.generate(prompt, { maxTokens: tokens, temperature: testTrace ? 0 : 0.8, seed, ignoreEos: true, session: s })) { /* drain */ }
      s.dispose();
      const tr = readTrace(rec.finish());
      for (const fastFraction of [0.125, 0.25, 0.5]) {
        for (const reader of readers) {
          const model = gh200Model(tr, { fastFraction });
          const policies = withOracle ? ['static', 'reactive', 'oracle'] as const : ['static', 'reactive'] as const;
          const base = simulatePlacement(tr, model, { ...readerOptions(reader), policies: [...policies], anneal: { seed: 1 } });
          const on = simulatePlacement(tr, model, { ...readerOptions(reader), policies: ['static', 'online'], online: READS_ONLINE });
          const get = (p: string, r = base) => r.results.find((x) => x.policy === p);
          const t = (p: string, r = base) => get(p, r)?.timeS;
          const cell: Cell = {
            model: name, prompt, seed, fastFraction, reader: readerName(reader), static: t('static')!, reactive: t('reactive')!, online: t('online', on)!, oracle: t('oracle'),
            staticFastBound: get('static')!.fastBound, reactiveFastBound: get('reactive')!.fastBound,
          };
          if (surfaces) Object.assign(cell, searchVsGrid(tr, model, reader, cell.oracle!));
          cells.push(cell);
        }
      }
      process.stderr.write(`${name}: trace ${k + 1}/${testTrace ? 1 : nTraces} ("${prompt}", seed ${seed}) replayed\n`);
    }
  } finally {
    m.dispose();
  }
}

const quantile = (x: number[], q: number) => [...x].sort((a, b) => a - b)[Math.min(x.length - 1, Math.floor(q * x.length))]!;
const summary: Record<string, unknown>[] = [];
console.log(`${testTrace ? 'the test\'s greedy trace' : `${nTraces} traces`} per model, ${tokens} tokens each, 3 fast tiers: cells keeping each link; reactive/online time (> 1: online faster)`);
console.log('model                   reader      cells  oracle>=online  online>=reactive  reactive>=static  oracle>=reactive  whole chain  median    worst');
for (const name of [...NAMES, 'all models']) {
  for (const reader of readers.map(readerName)) {
    const cs = cells.filter((c) => (name === 'all models' || c.model === name) && c.reader === reader);
    const ratio = cs.map((c) => c.reactive / c.online);
    const row = {
      model: name, reader, cells: cs.length,
      oracleAtLeastOnline: withOracle ? cs.filter((c) => le(c.oracle!, c.online)).length : null,
      onlineAtLeastReactive: cs.filter((c) => le(c.online, c.reactive)).length,
      reactiveAtLeastStatic: cs.filter((c) => le(c.reactive, c.static)).length,
      oracleAtLeastReactive: withOracle ? cs.filter((c) => le(c.oracle!, c.reactive)).length : null,
      wholeChain: withOracle ? cs.filter((c) => le(c.oracle!, c.online) && le(c.online, c.reactive) && le(c.reactive, c.static)).length : null,
      medianReactiveOverOnline: quantile(ratio, 0.5), worstReactiveOverOnline: Math.min(...ratio),
    };
    summary.push(row);
    const o = (v: number | null, w: number) => (v === null ? '-' : String(v)).padStart(w);
    console.log(`${name.padEnd(24)}${reader.padEnd(12)}${String(row.cells).padStart(5)}  ${o(row.oracleAtLeastOnline, 14)}  ${o(row.onlineAtLeastReactive, 16)}  ${o(row.reactiveAtLeastStatic, 16)}  ${o(row.oracleAtLeastReactive, 16)}  ${o(row.wholeChain, 11)}  ${row.medianReactiveOverOnline.toFixed(5)}  ${row.worstReactiveOverOnline.toFixed(5)}`);
  }
}
// Where reactive trails static: is the fast tier already the bottleneck under static? Then promotions move reads onto
// the busier tier and only lengthen its steps, and reactive gains only in the few steps the slow tier sets. (Not the
// exact reader's cells: there no move gains anything, whatever the bottleneck.)
const span = (x: number[]) => (x.length ? `${Math.min(...x).toFixed(4)}-${Math.max(...x).toFixed(4)}` : '-');
const partial = cells.filter((c) => c.reader !== 'exact');
for (const [what, cs] of [
  ['static fast-bound in >= 90% of (step, layer) pairs', partial.filter((c) => c.staticFastBound >= 0.9)],
  ['static fast-bound in < 90%', partial.filter((c) => c.staticFastBound < 0.9)],
] as const) {
  const keep = cs.filter((c) => le(c.reactive, c.static)).length;
  console.log(`${what}: ${cs.length} cells, reactive >= static in ${keep}, static/reactive time ${span(cs.map((c) => c.static / c.reactive))}`);
}
if (surfaces) {
  console.log(`\nthe oracle's search against the whole (W, R) grid in ${cells.length} cells:`);
  for (const [what, found, evals] of [
    ['with the coarse scan', (c: Cell) => c.oracle!, (c: Cell) => c.evals!],
    ['annealing alone', (c: Cell) => c.noScan!, (c: Cell) => c.noScanEvals!],
  ] as const) {
    const gaps = cells.map((c) => found(c) / c.gridMin! - 1);
    const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
    console.log(`  ${what}: at the minimum in ${gaps.filter((g) => g <= 1e-12).length}, worst ${(100 * Math.max(...gaps)).toFixed(3)}% above, ` +
      `mean ${(100 * mean(gaps)).toFixed(4)}%, ${mean(cells.map(evals)).toFixed(1)} evaluations on average`);
  }
}
writeFileSync(out, `${JSON.stringify({ traces: testTrace ? 'test' : nTraces, tokens, readers, online: READS_ONLINE, summary, cells }, null, 2)}\n`);
process.stderr.write(`wrote ${out}\n`);
