/**
 * Quantized decode and prefill speed on the stories15M shape (synthetic Q8_0 / Q4_0 weights in bench-results/models/),
 * one thread, for each kernel build ('plain', 'relaxed'), A/B in one process: the variants run alternately and each
 * keeps its best of --reps runs. `--base DIR` adds another build of the engine (its dist/index.js) as variant 'base'.
 *
 *   node --experimental-wasm-relaxed-simd --import tsx scripts/bench/bench-quant.ts [--types q8_0,q4_0] [--reps 5]
 *     [--prompt 128] [--gen 128] [--base /path/to/other/checkout]
 *
 * (Node 22+ needs no flag; without relaxed SIMD only 'plain' runs.)
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadModel } from '../../engine/index.js';
import { relaxedSimdSupported } from '../../engine/runtime/kernels.js';
import { argmax } from '../../engine/generate/sampling.js';
import { SHAPES, ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const types = (flag('types') ?? 'q8_0,q4_0').split(',');
const reps = Number(flag('reps') ?? 5);
const promptLen = Number(flag('prompt') ?? 128);
const genLen = Number(flag('gen') ?? 128);
const base = flag('base');
const err = (s: string) => process.stderr.write(s);

type Load = typeof loadModel;
interface Variant { name: string; load: Load; opts: Record<string, unknown> }
const variants: Variant[] = [];
if (base) {
  const mod = await import(pathToFileURL(join(base, 'dist/index.js')).href) as { loadModel: Load };
  variants.push({ name: 'base', load: mod.loadModel, opts: {} });
}
variants.push({ name: 'plain', load: loadModel, opts: { simd: 'plain' } });
if (relaxedSimdSupported()) variants.push({ name: 'relaxed', load: loadModel, opts: { simd: 'relaxed' } });

for (const type of types) {
  const shape = `stories15m-${type}`;
  SHAPES[shape] = { ...SHAPES['stories15m-f32']!, type: type.toUpperCase(), note: `stories15M shape, ${type.toUpperCase()}` };
  const file = await ensureModel(join('bench-results', 'models'), shape, err);
  const models = await Promise.all(variants.map((v) =>
    v.load(file, { threads: 1, contextLength: promptLen + genLen + 8, batchSize: promptLen, ...v.opts } as Parameters<Load>[1])));
  const nVocab = models[0]!.info.hparams!.nVocab;
  const prompt = Array.from({ length: promptLen }, (_, i) => 1 + ((i * 7919) % (nVocab - 1)));
  const best = variants.map(() => ({ prefill: 0, decode: 0 }));
  const outs: string[] = variants.map(() => '');
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 ? [...variants.keys()].reverse() : [...variants.keys()];
    for (const i of order) {
      const session = models[i]!.createSession();
      let t0 = performance.now();
      let logits = await session.eval(prompt);
      const prefill = (1000 * promptLen) / (performance.now() - t0);
      const ids: number[] = [];
      t0 = performance.now();
      for (let g = 0; g < genLen; g++) {
        const id = argmax(logits);
        ids.push(id);
        logits = await session.eval([id]);
      }
      const decode = (1000 * genLen) / (performance.now() - t0);
      session.dispose?.();
      best[i]!.prefill = Math.max(best[i]!.prefill, prefill);
      best[i]!.decode = Math.max(best[i]!.decode, decode);
      outs[i] = ids.join(',');
    }
  }
  for (const [i, v] of variants.entries()) {
    const same = outs[i] === outs[0] ? '' : '  (tokens differ from the first variant)';
    console.log(`${type} ${v.name.padEnd(7)} prefill ${best[i]!.prefill.toFixed(0).padStart(5)} tok/s   decode ${best[i]!.decode.toFixed(0).padStart(5)} tok/s${same}`);
  }
  for (const m of models) m.dispose();
}
