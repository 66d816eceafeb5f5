/**
 * Whole-model correctness against llama.cpp (../shared/reference): teacher forcing of prompt_ids + greedy_ids
 * through one session, logits compared row by row (rel = rms(diff) / rms(ref - mean(ref)), argmax agreement),
 * and free greedy decoding for F32 models. Tolerances per weight type follow reference/README.md and our
 * activation path: F32 exact to float rounding; F16/BF16 weights with f32 activations; Q8_0/Q4_0/Q4_1/Q5_0/Q5_1
 * with activations quantized to Q8_0/Q8_1 per 32-block, Q2_K..Q6_K with activations quantized to Q8_K per 256-block,
 * exactly as llama.cpp's x86 path does.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import type { Model } from '../engine/index.js';
import { argmax } from '../engine/generate/sampling.js';
import { MODELS, readReference, referenceFiles } from './shared-paths.js';

/** rel bound and minimum argmax agreement by weight type (from the model file name). */
/**
 * `argmax` is the agreement required over all rows of a model's reference files pooled; `argmaxPerFile` the floor
 * for each file alone (a file has 52-282 rows, so one near-tie flip moves it by up to 2%).
 */
interface Tolerance { rel: number; argmax: number; argmaxPerFile: number; exactGreedy: boolean; firstRow?: number }

function tolerance(model: string): Tolerance {
  if (/-f16\.gguf$|-bf16\.gguf$/.test(model)) return { rel: 5e-3, argmax: 0.97, argmaxPerFile: 0.95, exactGreedy: false };
  // Quantized activations make each logit row either bit-for-bit llama.cpp's (~1e-7) or, once an f32 summation-order
  // difference of ~1e-7 has flipped one q8 rounding somewhere, differ by the q8 noise level (~1e-2); the flip then
  // carries to later rows through the KV cache. Row 0 is always before any flip and must be exact, which an engine
  // with f32 activations (~1.3e-2 on every row) could not achieve.
  if (/-q\d_\d\.gguf$/.test(model)) return { rel: 2e-2, argmax: 0.97, argmaxPerFile: 0.95, exactGreedy: false, firstRow: 1e-5 };
  // K-quants (activations in Q8_K, one scale per 256 values): the same picture with a somewhat higher noise level after
  // a flip (measured rel up to 1.8e-2 per file, against up to 1.25e-2 for the 32-block types) and so a few more
  // near-tie argmax flips (worst file 65 of 68 rows, worst model 296 of 302). Row 0 stays exact (<= 3e-7).
  if (/-q\d_k(_m)?(-mixed)?\.gguf$/.test(model)) return { rel: 3e-2, argmax: 0.97, argmaxPerFile: 0.94, exactGreedy: false, firstRow: 1e-5 };
  return { rel: 1e-5, argmax: 1, argmaxPerFile: 1, exactGreedy: true };
}

const byModel = new Map<string, string[]>();
for (const f of referenceFiles()) {
  const m = f.replace(/\.p\d\.json$/, '');
  byModel.set(m, [...(byModel.get(m) ?? []), f]);
}

describe.each([...byModel.keys()])('%s', (name) => {
  const file = join(MODELS, `${name}.gguf`);
  const tol = tolerance(`${name}.gguf`);

  const pooled = { rows: 0, agree: 0 };
  it.each(byModel.get(name)!)('teacher-forced logits match %s', async (refFile) => {
    const ref = readReference(refFile);
    const model: Model = await loadModel(file, { contextLength: 2048 });
    try {
      expect(model.tokenize(ref.prompt, { special: true })).toEqual(ref.prompt_ids);
      const ids = [...ref.prompt_ids, ...ref.greedy_ids.slice(0, -1)];
      const want = [...ref.prompt_logits, ...ref.greedy_logits.slice(1)];
      expect(want.length).toBe(ids.length);
      const s = model.createSession();
      const got = await s.eval(ids, { logits: 'all' });
      const V = ref.n_vocab;
      let se = 0;
      let sr = 0;
      let agree = 0;
      let firstRowRel = 0;
      for (let r = 0; r < ids.length; r++) {
        let rowErr = 0;
        let rowRef = 0;
        const w = want[r]!;
        let mean = 0;
        for (let j = 0; j < V; j++) mean += w[j]!;
        mean /= V;
        for (let j = 0; j < V; j++) {
          const d = got[r * V + j]! - w[j]!;
          rowErr += d * d;
          rowRef += (w[j]! - mean) ** 2;
        }
        se += rowErr;
        sr += rowRef;
        if (r === 0) firstRowRel = Math.sqrt(rowErr / rowRef);
        if (argmax(got, r * V, V) === argmax(w)) agree++;
      }
      const rel = Math.sqrt(se / sr);
      const agreement = agree / ids.length;
      expect(rel, `rel ${rel.toExponential(3)}`).toBeLessThanOrEqual(tol.rel);
      expect(agreement, `argmax agreement ${agreement}`).toBeGreaterThanOrEqual(tol.argmaxPerFile);
      pooled.rows += ids.length;
      pooled.agree += agree;
      if (tol.firstRow !== undefined) expect(firstRowRel, `row 0 rel ${firstRowRel.toExponential(3)}`).toBeLessThanOrEqual(tol.firstRow);

      if (tol.exactGreedy) {
        const pieces: number[] = [];
        for await (const p of model.generate(ref.prompt, { temperature: 0, maxTokens: ref.greedy_ids.length, repeatPenalty: 1 })) pieces.push(p.token);
        expect(pieces).toEqual(ref.greedy_ids);
      }
    } finally {
      model.dispose();
    }
  });

  it('argmax agreement over all its reference rows', () => {
    expect(pooled.rows).toBeGreaterThan(0);
    const a = pooled.agree / pooled.rows;
    expect(a, `pooled argmax agreement ${a} over ${pooled.rows} rows`).toBeGreaterThanOrEqual(tol.argmax);
  });
});

/**
 * K/V rows stored as f16 or q8_0 (engine/kv/element.ts) against the same references (which ran with f32 KV).
 * Measured over every file (rel per file, argmax pooled per model):
 *  - float weights (F32, F16, BF16, the real models): f16 KV rel 1.5e-4 .. 4.3e-3 (BF16's own 3e-3 included),
 *    argmax >= 98.9%; q8_0 KV (the query quantized per block too, as llama.cpp does for q8_0 K) rel 4.1e-3 (head size
 *    32, blocks of 32) .. 4.4e-2 (llama2xs, head size 8, blocks of 8), argmax >= 98.3%.
 *  - quantized weights (quantized activations): any change of the KV values flips q8 roundings of the activations, so
 *    both types sit at the noise level of a flip: f16 rel 1.3e-2 .. 2.4e-2, q8_0 1.5e-2 .. 2.8e-2, within the core
 *    bounds (3e-2; the 32-block types' own 2e-2 leaves too little room for q8_0 KV); argmax pooled >= 93.7% (q6_k with
 *    q8_0 KV).
 */
function kvTolerance(model: string, type: 'f16' | 'q8_0'): { rel: number; argmax: number } {
  const quantized = /-q\d_/.test(model);
  if (!quantized) return type === 'f16' ? { rel: 5e-3, argmax: 0.97 } : { rel: 5e-2, argmax: 0.97 };
  return { rel: 3e-2, argmax: 0.93 };
}

describe.each([...byModel.keys()])('%s with f16 and q8_0 KV rows', (name) => {
  it.each(['f16', 'q8_0'] as const)('%s: teacher-forced logits of every prompt within the stated tolerance', async (type) => {
    const tol = kvTolerance(`${name}.gguf`, type);
    const model: Model = await loadModel(join(MODELS, `${name}.gguf`), { contextLength: 2048, kv: { type } });
    try {
      let rows = 0;
      let agree = 0;
      for (const refFile of byModel.get(name)!) {
        const ref = readReference(refFile);
        const ids = [...ref.prompt_ids, ...ref.greedy_ids.slice(0, -1)];
        const want = [...ref.prompt_logits, ...ref.greedy_logits.slice(1)];
        const got = await model.createSession().eval(ids, { logits: 'all' });
        const V = ref.n_vocab;
        let se = 0;
        let sr = 0;
        for (let r = 0; r < ids.length; r++) {
          const w = want[r]!;
          let mean = 0;
          for (let j = 0; j < V; j++) mean += w[j]!;
          mean /= V;
          for (let j = 0; j < V; j++) {
            se += (got[r * V + j]! - w[j]!) ** 2;
            sr += (w[j]! - mean) ** 2;
          }
          if (argmax(got, r * V, V) === argmax(w)) agree++;
        }
        rows += ids.length;
        const rel = Math.sqrt(se / sr);
        expect(rel, `${refFile} rel ${rel.toExponential(3)}`).toBeLessThanOrEqual(tol.rel);
      }
      expect(agree / rows, `argmax agreement ${agree}/${rows}`).toBeGreaterThanOrEqual(tol.argmax);
    } finally {
      model.dispose();
    }
  });
});
