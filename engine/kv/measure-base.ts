/**
 * The analytical model's per-model input that calibration cannot guess: the time of one decode step without KV-policy
 * overhead. It is timed on a few real steps of the model at a short length and the attention share (from the
 * calibrated constants) is taken out. Weight bytes x matmul cost underestimates it several times on small models,
 * whose steps are bound by per-kernel-call costs.
 */
import { argmax } from '../generate/sampling.js';
import type { Model } from '../model.js';
import type { CostConstants } from './analytical.js';
import { now } from './length.js';

export async function measureBaseStepNs(model: Model, c: CostConstants, opts: { promptLen?: number; steps?: number } = {}): Promise<number> {
  const hp = model.info.hparams;
  if (!hp) throw new Error('measureBaseStepNs needs a model with weights');
  const promptLen = opts.promptLen ?? 32;
  const steps = opts.steps ?? 48;
  const warm = 8;
  const s = model.createSession();
  try {
    let logits = await s.eval(Array.from({ length: promptLen }, (_, i) => 1 + (i % (hp.nVocab - 1))));
    for (let i = 0; i < warm; i++) logits = await s.eval([argmax(logits)]);
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
    const meanLen = promptLen + warm + steps / 2;
    return Math.max(0, stepNs - hp.nLayers * (c.attnCallNs + c.attnRowNs * meanLen));
  } finally {
    s.dispose();
  }
}
