/**
 * node --import tsx scripts/bench/tune-online.ts [--out tune-online.json]: how READS_ONLINE (engine/tiers/simulate.ts)
 * was chosen. Records held-out traces of the three fixture models (sampling at temperature 0.8, seed 7, 300 tokens
 * after "The dog ran to the park": not the greedy "Once upon a time" traces the tests replay), then replays a grid of
 * online settings (signal, alpha, hysteresis, window and sinks) on the GH200-like model with fast tiers of 1/8, 1/4
 * and 1/2 of the KV, each read densely and at 60% sparsity (as test/tiers-ordering.test.ts replays its traces).
 * Prints the best settings by the geometric mean of reactive's time over the online policy's (> 1: online faster)
 * over the 18 cells and the worst cell, and writes every row as JSON.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import { gh200Model, simulatePlacement } from '../../engine/tiers/simulate.js';
import { readTrace, TraceRecorder } from '../../engine/tiers/trace.js';

const MODELS = join(import.meta.dirname, '../../../shared/models');
const outIdx = process.argv.indexOf('--out');
const out = outIdx > 0 ? process.argv[outIdx + 1]! : 'tune-online.json';
const cells: { name: string; f: number; sparsity: number; tr: ReturnType<typeof readTrace>; model: ReturnType<typeof gh200Model>; reactive: number }[] = [];
for (const name of ['stories260K.gguf', 'llama2xs-tok512.gguf', 'babyllama-tok105.gguf']) {
  const m = await loadModel(join(MODELS, name), { contextLength: 512 });
  const hp = m.info.hparams!;
  const rec = new TraceRecorder({ nLayers: hp.nLayers, meta: { model: name, kvBytesPerToken: 2 * hp.nKVHeads * hp.headDim * 4 } });
  const s = m.createSession({ trace: rec });
  for await (const _ of m.generate('The dog ran to the park', { maxTokens: 300, temperature: 0.8, seed: 7, ignoreEos: true, session: s })) { /* drain */ }
  m.dispose();
  const tr = readTrace(rec.finish());
  for (const f of [0.125, 0.25, 0.5]) {
    for (const sparsity of [0, 0.6]) {
      const model = gh200Model(tr, { fastFraction: f });
      const r = simulatePlacement(tr, model, { sparsity, policies: ['static', 'reactive'] });
      cells.push({ name, f, sparsity, tr, model, reactive: r.results.find((x) => x.policy === 'reactive')!.timeS });
    }
  }
  process.stderr.write(`recorded ${name}: ${tr.records.length} steps\n`);
}
const rows: { online: object; geomean: number; worst: number }[] = [];
for (const signal of ['mass', 'reads'] as const) for (const alpha of [0.3, 0.5, 0.8]) for (const hysteresis of [0, 0.25, 1]) {
  for (const [window, sinks] of [[1, 0], [4, 4], [32, 4]] as const) {
    const online = { signal, alpha, hysteresis, window, sinks };
    let lg = 0;
    let worst = Infinity;
    for (const c of cells) {
      const t = simulatePlacement(c.tr, c.model, { sparsity: c.sparsity, policies: ['static', 'online'], online }).results.find((x) => x.policy === 'online')!.timeS;
      lg += Math.log(c.reactive / t);
      worst = Math.min(worst, c.reactive / t);
    }
    rows.push({ online, geomean: Math.exp(lg / cells.length), worst });
  }
}
rows.sort((a, b) => b.geomean - a.geomean);
console.log('reactive time / online time: geomean  worst   settings');
for (const r of rows.slice(0, 10)) console.log(`${r.geomean.toFixed(5).padStart(40)}  ${r.worst.toFixed(5)}  ${JSON.stringify(r.online)}`);
writeFileSync(out, `${JSON.stringify(rows, null, 2)}\n`);
process.stderr.write(`wrote ${out}\n`);
