/**
 * npm run bench:tier-mass [-- --lengths 1024,4096 --gen 64 --reps 3 --threads 1 --out tier-mass.json]: the cost of
 * computing the attention mass in the kernel (wasm/attention.ts attn_mass) for the tiered cache's placement. A
 * synthetic model (4 layers, 8 heads of 32) decodes `gen` tokens after a prompt of each length through the tiered
 * cache with `placement: 'attention'` (mass every step, placement and migrations) and `'first-come'` (no mass, no
 * migration), and in between 'mass-only' (mass and EMA, migrationRatio 0) and 'capped' (maxMigrationsPerStep 4), all
 * with the same budget (a quarter of the rows hot). Runs rotate, `reps` times; the table gives the median decode
 * tokens/s of each and its ratio to first-come (measured within one run), and the JSON every rep.
 */
import { writeFileSync } from 'node:fs';
import { loadModel } from '../../engine/index.js';
import { makeTinyLlama } from '../../engine/gguf/synth.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const lengths = arg('lengths', '1024,4096').split(',').map(Number);
const gen = Number(arg('gen', '64'));
const reps = Number(arg('reps', '3'));
const threads = Number(arg('threads', '1'));
const out = arg('out', 'bench-tier-mass.json');
const L = 4, heads = 8, hd = 32;
const ctx = Math.max(...lengths) + gen;
const model = await loadModel(makeTinyLlama({ dim: heads * hd, heads, kvHeads: heads, layers: L, ffn: 128, vocab: 260, contextLength: ctx }), { contextLength: ctx, threads });
const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + seed) % 259));
const median = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)]!;
const rowBytes = heads * hd * 4;
const placements = ['first-come', 'mass-only', 'capped', 'attention'] as const;
// mass-only: the mass computed and the EMA kept, but migrationRatio 0 (no swap): the cost of the mass alone.
// capped: at most 4 promotions per layer and step. attention: the default (no cap).
const kvOf = (p: (typeof placements)[number], budgetBytes: number) => ({
  policy: 'tiered' as const, budgetBytes, placement: p === 'first-come' ? 'first-come' as const : 'attention' as const,
  ...(p === 'mass-only' ? { migrationRatio: 0 } : p === 'capped' ? { maxMigrationsPerStep: 4 } : {}),
});
const rows: Record<string, unknown>[] = [];
for (const P of lengths) {
  // Fixed bytes (tables, staging, mass buffers) plus a quarter of the rows hot; the same budget for both.
  const budget = 2 * L * ctx * 4 + 2 * ctx * rowBytes + 2 * 128 * heads * hd * 4 + 4 * (heads + 1) * ctx + 2 * L * Math.ceil((P + gen) / 4) * rowBytes;
  const tps: Record<string, number[]> = Object.fromEntries(placements.map((p) => [p, []]));
  const tiers: Record<string, unknown> = {};
  let logits: Float32Array | undefined;
  let same = true;
  for (let r = 0; r < reps; r++) {
    for (const placement of [...placements.slice(r % placements.length), ...placements.slice(0, r % placements.length)]) {
      const s = model.createSession({ kv: kvOf(placement, budget) });
      await s.eval(ids(P, 13));
      const t0 = performance.now();
      let last = new Float32Array(0);
      for (let i = 0; i < gen; i++) last = await s.eval([1 + ((i * 31) % 259)]);
      const ms = performance.now() - t0;
      tps[placement]!.push((1000 * gen) / ms);
      tiers[placement] = s.kvStats().tiers;
      if (logits && !last.every((v, i) => Object.is(v, logits![i]))) same = false;
      logits ??= last;
      s.dispose();
      process.stderr.write(`${P}: ${placement} rep ${r + 1}/${reps}\r`);
    }
  }
  const med = Object.fromEntries(placements.map((p) => [p, median(tps[p]!)]));
  rows.push({ prompt: P, gen, budget, medianTokPerS: med, sameLogits: same, reps: tps, tiers });
}
process.stderr.write('\n');
model.dispose();
console.log(`decode tok/s, tiered cache, ${L} layers x ${heads} heads of ${hd}, ${threads} thread(s), median of ${reps}; (x: / first-come)`);
console.log(`prompt  ${placements.map((p) => p.padStart(18)).join('')}   promotions/layer-step  same logits`);
for (const r of rows) {
  const m = r.medianTokPerS as Record<string, number>;
  const t = r.tiers as Record<string, { promotions: number; placementSteps: number }>;
  const cells = placements.map((p) => `${m[p]!.toFixed(1)} (${(m[p]! / m['first-come']!).toFixed(2)}x)`.padStart(18)).join('');
  const per = (p: string) => (t[p]!.placementSteps ? t[p]!.promotions / t[p]!.placementSteps : 0).toFixed(1);
  console.log(`${String(r.prompt).padStart(6)}  ${cells}   capped ${per('capped')}, attention ${per('attention')}  ${r.sameLogits}`);
}
writeFileSync(out, `${JSON.stringify({ layers: L, heads, headDim: hd, threads, gen, reps, rows }, null, 2)}\n`);
process.stderr.write(`wrote ${out}\n`);
