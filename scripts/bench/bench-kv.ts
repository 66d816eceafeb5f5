/**
 * npm run bench:kv: the BMC paper's comparison on this engine. For each synthetic model shape and each KV policy,
 * one session prefills a short prompt and then decodes token by token up to the longest generation length; the
 * decode time is read at every length checkpoint, so one pass gives every length. Prints a table, writes JSON and
 * one SVG chart per shape (tokens/s against generation length, one line per policy) to bench-results/.
 *
 *   npm run bench:kv                          quick: stories15M shape, lengths 256 1024 2048
 *   npm run bench:kv -- --full                both shapes, lengths 256 1024 2048 4096
 *   npm run bench:kv -- --shapes stories15m-f32 --lengths 256,4096 --policies concat,bmc:64
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../engine/index.js';
import type { KVOptions } from '../../engine/index.js';
import { argmax } from '../../engine/generate/sampling.js';
import { lineChart } from './svg-chart.js';
import { SHAPES, ensureModel } from './synth-models.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const full = argv.includes('--full');
const shapes = (flag('shapes') ?? (full ? Object.keys(SHAPES).join(',') : 'stories15m-f32')).split(',');
const lengths = (flag('lengths') ?? (full ? '256,1024,2048,4096' : '256,1024,2048')).split(',').map(Number).sort((a, b) => a - b);
const policyNames = (flag('policies') ?? 'concat,static,bmc:16,bmc:64,bmc:256,paged:16,auto').split(',');
const promptLen = Number(flag('prompt') ?? 32);
const outDir = flag('out') ?? 'bench-results';
const err = (s: string) => process.stderr.write(s);

function kvOption(p: string): KVOptions {
  const [name, arg] = p.split(':');
  if (name === 'bmc') return { policy: 'bmc', r: Number(arg) };
  if (name === 'paged') return { policy: 'paged', blockSize: Number(arg) } as KVOptions;
  return { policy: name } as KVOptions;
}

interface Row {
  shape: string; policy: string; length: number; tokensPerSecond: number; msPerToken: number;
  growths: number; bytesCopied: number; copyMs: number | undefined; peakKVBytes: number; capacity: number;
}

const rows: Row[] = [];
const maxLen = lengths[lengths.length - 1]!;
for (const shape of shapes) {
  const file = await ensureModel(join(outDir, 'models'), shape, err);
  for (const policy of policyNames) {
    const model = await loadModel(file, { contextLength: promptLen + maxLen + 1, kv: kvOption(policy) });
    const session = model.createSession();
    const prompt = Array.from({ length: promptLen }, (_, i) => 1 + ((i * 7919) % (model.info.hparams!.nVocab - 1)));
    let logits = await session.eval(prompt);
    const t0 = performance.now();
    let next = 0;
    for (let g = 1; g <= maxLen; g++) {
      logits = await session.eval([argmax(logits)]);
      if (g === lengths[next]) {
        const ms = performance.now() - t0;
        const st = session.kvStats() as ReturnType<typeof session.kvStats> & { copyMs?: number };
        const row: Row = {
          shape, policy, length: g, tokensPerSecond: (1000 * g) / ms, msPerToken: ms / g, growths: st.growths,
          bytesCopied: st.bytesCopied, copyMs: st.copyMs, peakKVBytes: st.peakBytes, capacity: st.capacity,
        };
        rows.push(row);
        err(`${shape} ${policy.padEnd(9)} G=${String(g).padStart(5)}  ${row.tokensPerSecond.toFixed(1)} tok/s\n`);
        next++;
      }
    }
    model.dispose();
  }
}

const mib = (b: number) => (b / 1048576).toFixed(1);
const head = ['shape', 'policy', 'G', 'tok/s', 'ms/tok', 'growths', 'copied MiB', 'copy ms', 'peak KV MiB'];
const table = rows.map((r) => [r.shape, r.policy, String(r.length), r.tokensPerSecond.toFixed(1), r.msPerToken.toFixed(3),
  String(r.growths), mib(r.bytesCopied), r.copyMs === undefined ? '-' : r.copyMs.toFixed(1), mib(r.peakKVBytes)]);
const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
console.log(line(head));
for (const r of table) console.log(line(r));

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'kv.json'), `${JSON.stringify({ date: new Date().toISOString(), promptLen, lengths, rows }, null, 2)}\n`);
for (const shape of shapes) {
  const series = policyNames.map((p) => ({ name: p, points: rows.filter((r) => r.shape === shape && r.policy === p).map((r) => [r.length, r.tokensPerSecond] as [number, number]) }));
  writeFileSync(join(outDir, `kv-${shape}.svg`), lineChart({ title: `decode tokens/s by KV policy (${shape})`, xLabel: 'generated tokens', yLabel: 'tokens/s', series, logX: true }));
}
err(`wrote ${join(outDir, 'kv.json')} and ${shapes.map((s) => join(outDir, `kv-${s}.svg`)).join(', ')}\n`);
