/**
 * npm run bench:tiers [-- --tokens 16384 --fraction 0.125 --out tiers.json]: a tiny synthetic model (16 layers, 2 KV
 * heads of 32) generates a long context through the tiered KV cache with a budget holding `fraction` of all rows,
 * beside the untiered cache (bmc:64) for the same tokens. Prints a table (stdout), progress on stderr, and JSON.
 * The physical limit beside the figures: the cold rows staged per token are bounded by the host -> arena copy rate.
 */
import { writeFileSync } from 'node:fs';
import { loadModel } from '../../engine/index.js';
import { makeTinyLlama } from '../../engine/gguf/synth.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const outIdx = process.argv.indexOf('--out');
const out = outIdx > 0 ? process.argv[outIdx + 1]! : 'bench-tiers.json';
const tokens = arg('tokens', 16384);
const fraction = arg('fraction', 0.125);
const chunk = arg('chunk', 128);
const L = 16;
const bytes = makeTinyLlama({ dim: 64, heads: 2, kvHeads: 2, layers: L, ffn: 32, vocab: 260, contextLength: tokens });
const model = await loadModel(bytes, { contextLength: tokens, batchSize: chunk });
const full = 2 * L * tokens * 64 * 4;
const budget = Math.floor(full * fraction);
const ids = Array.from({ length: tokens }, (_, i) => 1 + ((i * 7919 + 13) % 259));
const rows: Record<string, unknown>[] = [];
let ref: Float32Array | undefined;
for (const kv of [{ policy: 'bmc' as const }, { policy: 'tiered' as const, budgetBytes: budget }]) {
  const s = model.createSession({ kv });
  const t0 = performance.now();
  let last = new Float32Array(0);
  for (let at = 0; at < tokens; at += chunk) {
    last = await s.eval(ids.slice(at, at + chunk));
    if ((at / chunk) % 16 === 0) process.stderr.write(`${kv.policy}: ${at + chunk}/${tokens}\r`);
  }
  const ms = performance.now() - t0;
  const st = s.kvStats();
  ref ??= last;
  rows.push({
    policy: kv.policy, tokens, ms: Math.round(ms), tokPerS: Math.round((1000 * tokens) / ms), arenaBytes: st.bytes + st.overheadBytes,
    budget: kv.policy === 'tiered' ? budget : null, sameLogits: last.every((v, i) => Object.is(v, ref![i])), tiers: st.tiers ?? null,
  });
  s.dispose();
}
process.stderr.write('\n');
model.dispose();
console.log('policy   tokens   tok/s   arena bytes   budget      hot rows/layer  staged MB  same logits');
for (const r of rows) {
  const t = r.tiers as { hotRowsPerLayer: number; stagedBytes: number } | null;
  console.log(`${String(r.policy).padEnd(8)} ${String(r.tokens).padStart(6)} ${String(r.tokPerS).padStart(7)} ${String(r.arenaBytes).padStart(13)} ${String(r.budget ?? '-').padStart(9)} ${String(t?.hotRowsPerLayer ?? '-').padStart(15)} ${(t ? (t.stagedBytes / 1e6).toFixed(0) : '-').padStart(10)}  ${r.sameLogits}`);
}
writeFileSync(out, `${JSON.stringify({ fraction, chunk, rows }, null, 2)}\n`);
process.stderr.write(`wrote ${out}\n`);
