/**
 * npm run bench:kvpr [-- --prompt 640 --hot 128 --steps 7 --bw host,200e6,50e6 --threads N --out bench-kvpr.json]:
 * does KVPR's cost model pick the fastest restore split? For an MHA shape (stories15M: dim 288, 6 heads, Q8_0) and a
 * GQA shape (TinyLlama-1.1B, 4 layers: dim 2048, 32 heads / 4 KV heads, Q4_0), written by the project's GGUF writer
 * (synth-models.ts), and for each cold-tier bandwidth (host memory, and simulated slower tiers), a tiered cache
 * holding `hot` rows per layer is filled with a prompt; then decode steps run with the split forced to l = 0, a few
 * points between, the model's l and l = s, each step rolled back so every step restores the same s cold rows per
 * layer, in `steps` rounds over all splits. Prints predicted (restoreTime: KVPR's T(l) plus the fixed cost of a recompute, from the rates measured at
 * start-up) against measured restore time per layer (median over steps), marks the model's l and the fastest
 * measured l, and says whether the model's choice is within 10% of the fastest. Writes JSON.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { TieredKVCache } from '../../engine/kv/tiered.js';
import type { Session } from '../../engine/session.js';
import { chooseSplit, restoreTime } from '../../engine/tiers/restore.js';
import { ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const prompt = Number(flag('prompt', '640'));
const hot = Number(flag('hot', '128'));
const steps = Number(flag('steps', '7'));
const threads = argv.includes('--threads') ? Number(flag('threads', '1')) : undefined;
const bandwidths = flag('bw', 'host,200e6,50e6').split(',').map((b) => (b === 'host' ? undefined : Number(b)));
const out = flag('out', 'bench-kvpr.json');
const shapes = flag('shapes', 'stories15m-q8_0,tinyllama-4l-q4_0').split(',');
const log = (s: string) => process.stderr.write(s);

const dir = join('bench-results', 'models');
mkdirSync(dir, { recursive: true });
const ids = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + 13) % (vocab - 1)));
/** The session's cache (the bench forces the split on it between steps). */
const cacheOf = (s: Session) => (s as unknown as { kv: TieredKVCache }).kv;

interface Point { l: number; predictedMs: number; measuredMs: number; model: boolean }
interface Case {
  shape: string; attention: string; bandwidth: number | null; threads: number; s: number; modelL: number;
  rates: unknown; points: Point[]; fastestL: number; modelWithin10pct: boolean;
}
const cases: Case[] = [];

for (const name of shapes) {
  const path = await ensureModel(dir, name, log);
  const ctx = prompt + steps + 8;
  const model = await loadModel(path, { contextLength: ctx, batchSize: 64, threads });
  const hp = model.info.hparams!;
  const rowBytes = hp.nKVHeads * hp.headDim * 4;
  // The budget for `hot` rows per layer: the cache's fixed bytes (read off a first cache) plus the hot rows.
  const probe = model.createSession({ kv: { policy: 'tiered', budgetBytes: 2 ** 40, restore: 'auto' } });
  const fixed = probe.kvStats().overheadBytes;
  probe.dispose();
  const budget = fixed + 2 * hp.nLayers * hot * rowBytes;
  for (const bw of bandwidths) {
    const label = bw === undefined ? 'host' : `${(bw / 1e6).toFixed(0)} MB/s`;
    log(`${name}, ${label}: prompt ${prompt} tokens\n`);
    const s = model.createSession({ kv: { policy: 'tiered', budgetBytes: budget, restore: 'auto', ...(bw === undefined ? {} : { coldBandwidth: bw }) } });
    const p = ids(prompt, hp.nVocab);
    for (let at = 0; at < prompt; at += 64) await s.eval(p.slice(at, at + 64));
    const cache = cacheOf(s);
    const { shape, rates } = cache.restoreModel();
    /** Restore ms per layer of one decode step with split l (rolled back after). */
    const step = async (l: number, i: number): Promise<number> => {
      cache.setRestore({ l });
      const before = s.kvStats().tiers!.restore.restoreMs;
      await s.eval([3 + i]);
      const ms = (s.kvStats().tiers!.restore.restoreMs - before) / hp.nLayers;
      s.truncate(prompt);
      return ms;
    };
    await step(0, 0); // warm-up, and the cold count of a step
    const cold = s.kvStats().tiers!.restore.lastSplit.s;
    const sh = shape(cold);
    const modelL = chooseSplit(sh, rates);
    const ls = [...new Set([0, Math.round(cold / 8), Math.round(cold / 4), Math.round(cold / 2), Math.round((3 * cold) / 4), modelL, cold])].sort((a, b) => a - b);
    // Rounds over all splits, so that a change in the machine's load falls on every split alike; median per split.
    const times = ls.map(() => [] as number[]);
    for (let round = 0; round < steps; round++) {
      for (let k = 0; k < ls.length; k++) times[k]!.push(await step(ls[k]!, round));
    }
    const points: Point[] = ls.map((l, k) => {
      const t = times[k]!.sort((a, b) => a - b);
      const measuredMs = t[t.length >> 1]!;
      log(`  l ${l}: ${measuredMs.toFixed(2)} ms\n`);
      return { l, predictedMs: 1000 * restoreTime(sh, rates, l), measuredMs, model: l === modelL };
    });
    s.dispose();
    const fastest = points.reduce((a, b) => (b.measuredMs < a.measuredMs ? b : a));
    const mine = points.find((q) => q.model)!;
    cases.push({
      shape: name, attention: hp.nKVHeads === hp.nHeads ? 'MHA' : `GQA ${hp.nHeads}/${hp.nKVHeads}`, bandwidth: bw ?? null, threads: model.info.threads,
      s: cold, modelL, rates, points, fastestL: fastest.l, modelWithin10pct: mine.measuredMs <= 1.1 * fastest.measuredMs,
    });
  }
  model.dispose();
}

const pad = (v: unknown, n: number) => String(v).padStart(n);
console.log('shape               attention   tier        threads  cold s      l   predicted ms  measured ms');
for (const c of cases) {
  const tier = c.bandwidth === null ? 'host' : `${(c.bandwidth / 1e6).toFixed(0)} MB/s`;
  for (const q of c.points) {
    const mark = `${q.model ? ' <- model' : ''}${q.l === c.fastestL ? ' (fastest)' : ''}`;
    console.log(`${c.shape.padEnd(19)} ${c.attention.padEnd(11)} ${tier.padEnd(11)} ${pad(c.threads, 7)} ${pad(c.s, 7)} ${pad(q.l, 6)} ${pad(q.predictedMs.toFixed(2), 14)} ${pad(q.measuredMs.toFixed(2), 12)}${mark}`);
  }
  console.log(`  -> model picks l = ${c.modelL} of ${c.s}; fastest measured l = ${c.fastestL}; model's choice within 10% of the fastest: ${c.modelWithin10pct ? 'yes' : 'NO'}`);
}
writeFileSync(out, `${JSON.stringify({ prompt, hot, steps, cases }, null, 2)}\n`);
log(`wrote ${out}\n`);
