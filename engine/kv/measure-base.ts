/**
 * The analytical model's per-model input that calibration cannot guess: the time of one decode step without KV-policy
 * overhead. It is timed on a few real steps of the model at a short length and the attention share (from the
 * calibrated constants) is taken out. Weight bytes x matmul cost underestimates it several times on small models,
 * whose steps are bound by per-kernel-call costs.
 */
import { argmax } from '../generate/sampling.js';
import type { Model } from '../model.js';
import { decodeAttentionNs } from './analytical.js';
import type { CostConstants } from './analytical.js';
import { now } from './length.js';

export async function measureBaseStepNs(model: Model, c: CostConstants, opts: { promptLen?: number; steps?: number } = {}): Promise<number> {
  const hp = model.info.hparams;
  if (!hp) throw new Error('measureBaseStepNs needs a model with weights');
  const promptLen = opts.promptLen ?? 32;
  const steps = opts.steps ?? 48;
  const s = model.createSession();
  try {
    const first = await s.eval(Array.from({ length: promptLen }, (_, i) => 1 + (i % (hp.nVocab - 1))));
    // Warm-up: the same steps once untimed, then back to the prompt. The first steps of a process run baseline-compiled
    // wasm and cold caches, 20-30% slower than later ones (measured: 1.7-1.9 ms against 1.0-1.1 after a warm-up).
    let logits = first;
    for (let i = 0; i < steps; i++) logits = await s.eval([argmax(logits)]);
    s.truncate(promptLen);
    logits = first;
    // The median step, not the mean: on a shared machine a few steps are descheduled, and the median ignores them.
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const growthBefore = s.kvStats().growthMs;
      const t0 = now();
      logits = await s.eval([argmax(logits)]);
      times.push(now() - t0 - (s.kvStats().growthMs - growthBefore));
    }
    times.sort((a, b) => a - b);
    const stepNs = times[times.length >> 1]! * 1e6;
    return Math.max(0, stepNs - decodeAttentionNs(c, hp, promptLen, promptLen + steps) / steps);
  } finally {
    s.dispose();
  }
}
