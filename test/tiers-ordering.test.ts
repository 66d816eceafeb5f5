/**
 * The issue's ordering oracle >= online >= reactive >= static on recorded traces of the real fixture models (greedy
 * decoding, 200 tokens after "Once upon a time"), replayed on the GH200-like two-tier model with fast tiers of 1/8,
 * 1/4 and 1/2 of the largest KV. The online policy runs twice: with the engine's defaults (EMA of attention mass,
 * window 32, sinks 4) and with READS_ONLINE (tuned on held-out traces, see simulate.ts). Each trace is replayed by
 * five readers: sparse at 20%, 40% and 60% (each step reads only the top 80%, 60%, 40% of the context by mass; 60% is
 * the paper's operating point), where the test asserts the whole ordering in every cell; dense (every token with
 * non-zero stored mass: near exact attention, less the tokens whose mass f16 stores as 0, below ~6e-8), where online
 * (reads) and reactive tie within 0.05% in two cells; and exact (every token at every step, as the engine's own
 * attention reads), where no move can save a read: the oracle finds static's time, online (reads) makes reactive's
 * moves, and both trail static (README: the ordering is a statement about sparse readers).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { gh200Model, READS_ONLINE, readerOptions, simulatePlacement } from '../engine/tiers/simulate.js';
import type { ReaderSpec } from '../engine/tiers/simulate.js';
import { readTrace, TraceRecorder } from '../engine/tiers/trace.js';
import type { AttentionTrace } from '../engine/tiers/trace.js';
import { MODELS } from './shared-paths.js';

async function record(name: string): Promise<AttentionTrace> {
  const m = await loadModel(join(MODELS, name), { contextLength: 256 });
  try {
    const hp = m.info.hparams!;
    const rec = new TraceRecorder({ nLayers: hp.nLayers, meta: { model: name, kvBytesPerToken: 2 * hp.nKVHeads * hp.headDim * 4 } });
    const s = m.createSession({ trace: rec });
    for await (const _ of m.generate('Once upon a time', { maxTokens: 200, temperature: 0, ignoreEos: true, session: s })) { /* drain */ }
    return readTrace(rec.finish());
  } finally {
    m.dispose();
  }
}

const FRACTIONS = [0.125, 0.25, 0.5];
const READERS: ReaderSpec[] = [0.6, 0.4, 0.2, 'dense', 'exact'];

function replay(tr: AttentionTrace, name: string, f: number, reader: ReaderSpec) {
  const model = gh200Model(tr, { fastFraction: f });
  const how = readerOptions(reader);
  const all = simulatePlacement(tr, model, { ...how, policies: ['static', 'reactive', 'online', 'oracle'], anneal: { seed: 1 } });
  const reads = simulatePlacement(tr, model, { ...how, policies: ['static', 'online'], online: READS_ONLINE });
  const t = Object.fromEntries(all.results.map((r) => [r.policy, r.timeS])) as Record<string, number>;
  t.reads = reads.results.find((r) => r.policy === 'online')!.timeS;
  const x = (v: number) => (t.static! / v).toFixed(4);
  const cell = `${name} ${typeof reader === 'number' ? `sparsity ${reader}` : reader} fast ${f}`;
  console.log(`${cell}: vs static: reactive ${x(t.reactive!)}, online (mass) ${x(t.online!)}, online (reads) ${x(t.reads)}, oracle ${x(t.oracle!)}`);
  // Times: lower is better.
  const le = (a: number, b: number, what: string) => expect(a, `${cell}: ${what}`).toBeLessThanOrEqual(b * (1 + 1e-12));
  return { t, le };
}

describe.each(['stories260K.gguf', 'llama2xs-tok512.gguf', 'babyllama-tok105.gguf'])('placement ordering on a trace of %s', (name) => {
  it.skipIf(!existsSync(join(MODELS, name)))('fast tiers of 1/8, 1/4, 1/2; sparse, dense and exact readers', async () => {
    const tr = await record(name);
    expect(tr.records.length).toBeGreaterThanOrEqual(200);
    for (const f of FRACTIONS) {
      for (const reader of READERS) {
        const { t, le } = replay(tr, name, f, reader);
        // Every reader: the oracle beats both online settings and reactive.
        le(t.oracle!, t.reads!, 'oracle <= online (reads)');
        le(t.oracle!, t.online!, 'oracle <= online (mass)');
        le(t.oracle!, t.reactive!, 'oracle <= reactive');
        if (typeof reader === 'number') {
          // A sparse reader (the paper's setting): the issue's whole ordering, and the engine's own setting beats static.
          le(t.reads!, t.reactive!, 'online (reads) <= reactive');
          le(t.reactive!, t.static!, 'reactive <= static');
          le(t.online!, t.static!, 'online (mass) <= static');
        } else if (reader === 'dense') {
          le(t.reactive!, t.static!, 'reactive <= static');
          le(t.reads!, t.static!, 'online (reads) <= static');
          if (name === 'llama2xs-tok512.gguf') {
            // llama2xs-tok512 reads 10-49% of its context per layer even here: the whole ordering.
            le(t.reads!, t.reactive!, 'online (reads) <= reactive');
          } else {
            // stories260K and babyllama-tok105 read 99-100% of the context in most layers (every policy within 4% of
            // static): online (reads) and reactive tie to within 0.05% (README: 0.04% and 0.004% behind in two cells).
            le(t.reads!, t.reactive! * 1.0005, 'online (reads) within 0.05% of reactive');
          }
          // The engine's own setting beats static except on babyllama-tok105, where its migrations cost more than
          // they gain (0.15% behind at 1/2; README).
          if (name !== 'babyllama-tok105.gguf') le(t.online!, t.static!, 'online (mass) <= static');
        } else {
          // Exact: every row is read at every step, so no placement saves a read, and static's (no moves) is the best
          // time; the oracle finds it. Writing the newest row hot costs reactive, and online (reads) with it, a
          // fast-tier read of the row it pushes out: both trail static, online (reads) by exactly reactive's moves.
          le(t.static!, t.oracle!, 'static <= oracle (nothing to gain)');
          le(t.static!, t.reactive!, 'static <= reactive');
          le(t.reads!, t.reactive!, 'online (reads) <= reactive');
          le(t.reactive!, t.reads!, 'reactive <= online (reads)');
        }
      }
    }
  }, 180_000);
});
