/**
 * Synthetic attention traces for tests and demos, shaped like the observations behind arXiv 2508.13231: a few
 * attention-sink tokens take a fixed share of the mass, the newest tokens are attended strongly, and every other
 * token has a heavy-tailed base importance that rises and falls over time (a sinusoid in log space with its own
 * period and phase), so tokens drop out of and come back into the attended set. `sparsity` is the fraction of the
 * context that gets no attention at a step (what a top-k sparse attention would skip); `variation` scales how far
 * a token's importance swings (0: a fixed ranking, 1: swings of about e^+-3).
 */
import { OptionError } from '../errors.js';
import { Rng } from '../gguf/synth.js';
import { compressRecord } from './trace.js';
import type { AttentionTrace, TraceRecord } from './trace.js';

export interface SynthTraceOptions {
  /** Layers, default 4. Each has its own token importances. */
  layers?: number;
  /** Tokens in the cache before the first decode step, default 512. */
  prompt?: number;
  /** Decode steps, default 256. */
  steps?: number;
  /** Attention-sink tokens (the first ones), default 4. */
  sinks?: number;
  /** Newest tokens that are always attended, default 32. */
  window?: number;
  /** Fraction of the context not attended at a step, in [0, 1), default 0.6. */
  sparsity?: number;
  /** Importance variation over time, in [0, 1], default 0.5. */
  variation?: number;
  /** Share of each step's mass on the sinks, default 0.2. */
  sinkShare?: number;
  seed?: number;
  /** Stored in the trace's metadata for the simulator, default 4096 (Llama-3.1-8B: 2 x 8 heads x 128 x fp16). */
  kvBytesPerToken?: number;
}

const SWING = 3; // log-importance amplitude at variation 1
const MIN_PERIOD = 16;
const MAX_PERIOD = 256;

export function synthTrace(opts: SynthTraceOptions = {}): AttentionTrace {
  const layers = opts.layers ?? 4;
  const prompt = opts.prompt ?? 512;
  const steps = opts.steps ?? 256;
  const sinks = opts.sinks ?? 4;
  const window = opts.window ?? 32;
  const sparsity = opts.sparsity ?? 0.6;
  const variation = opts.variation ?? 0.5;
  const sinkShare = opts.sinkShare ?? 0.2;
  const kvBytesPerToken = opts.kvBytesPerToken ?? 4096;
  const intIn = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new OptionError(name, `${v} is not an integer in [${lo}, ${hi}]`);
  };
  intIn('layers', layers, 1, 256);
  intIn('prompt', prompt, 1, 1 << 20);
  intIn('steps', steps, 1, 1 << 20);
  intIn('sinks', sinks, 0, prompt);
  intIn('window', window, 0, 1 << 20);
  intIn('kvBytesPerToken', kvBytesPerToken, 1, 2 ** 32);
  if (!(sparsity >= 0 && sparsity < 1)) throw new OptionError('sparsity', `${sparsity} is not in [0, 1)`);
  if (!(variation >= 0 && variation <= 1)) throw new OptionError('variation', `${variation} is not in [0, 1]`);
  if (!(sinkShare >= 0 && sinkShare < 1)) throw new OptionError('sinkShare', `${sinkShare} is not in [0, 1)`);
  if (layers * steps * (prompt + steps) > 2 ** 31) throw new OptionError('steps', 'the trace would be too large to generate (layers x steps x context over 2^31)');

  const maxCtx = prompt + steps;
  const records: TraceRecord[][] = Array.from({ length: steps }, () => []);
  const seed = opts.seed ?? 1;
  for (let l = 0; l < layers; l++) {
    const rng = new Rng((seed * 0x9e3779b1 + l * 0x85ebca6b) >>> 0);
    const logBase = new Float64Array(maxCtx);
    const freq = new Float64Array(maxCtx);
    const phase = new Float64Array(maxCtx);
    for (let i = 0; i < maxCtx; i++) {
      logBase[i] = rng.normal();
      freq[i] = (2 * Math.PI) / (MIN_PERIOD * (MAX_PERIOD / MIN_PERIOD) ** rng.next());
      phase[i] = 2 * Math.PI * rng.next();
    }
    const score = new Float64Array(maxCtx);
    const order: number[] = [];
    for (let t = 0; t < steps; t++) {
      const ctx = prompt + t + 1;
      const recentFrom = Math.max(sinks, ctx - window);
      // Tokens between the sinks and the window compete for the attended slots by their importance at step t.
      order.length = 0;
      for (let i = sinks; i < recentFrom; i++) {
        score[i] = Math.exp(logBase[i]! + variation * SWING * Math.sin(freq[i]! * t + phase[i]!));
        order.push(i);
      }
      const attended = Math.max(0, Math.ceil((1 - sparsity) * ctx - 1e-9) - (ctx - recentFrom) - Math.min(sinks, ctx));
      if (attended < order.length) {
        order.sort((a, b) => score[b]! - score[a]! || a - b);
        order.length = attended;
      }
      const mass = new Float64Array(ctx);
      let body = 0;
      for (const i of order) body += (mass[i] = score[i]!);
      // The recent window: weight decaying with age, on the scale of a typical attended token times a few.
      for (let i = recentFrom; i < ctx; i++) body += (mass[i] = 4 * Math.exp(-(ctx - 1 - i) / Math.max(1, window / 4)) + 1);
      const scale = (sinks > 0 ? 1 - sinkShare : 1) / body;
      for (let i = sinks; i < ctx; i++) mass[i] = mass[i]! * scale;
      for (let i = 0; i < Math.min(sinks, ctx); i++) mass[i] = sinkShare / sinks;
      records[t]!.push(compressRecord(mass, { topK: ctx }));
    }
  }
  return {
    nLayers: layers,
    meta: { source: 'synthetic', model: `synthetic sparsity ${sparsity} variation ${variation} seed ${seed}`, kvBytesPerToken, sinks, window },
    records,
  };
}
