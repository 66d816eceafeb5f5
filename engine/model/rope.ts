/**
 * RoPE angle tables, computed the way ggml does (f32 arithmetic, the angle advanced by repeated multiplication
 * by theta_scale) so that F32 models reproduce llama.cpp to the last bits. Supports linear scaling, YaRN
 * (extrapolation/interpolation ramp and magnitude scale) and per-pair frequency factors (`rope_freqs.weight`).
 * The table holds (cos, sin) for every pair of head_dim; pairs beyond ropeDim get (1, 0): an exact pass-through.
 */
import type { LlamaHParams } from './hparams.js';

const f = Math.fround;

export class RopeTable {
  private readonly thetaScale: number;
  private readonly corrLow: number;
  private readonly corrHigh: number;
  private readonly extFactor: number;
  private readonly mscale: number;

  constructor(private readonly hp: LlamaHParams, private readonly freqFactors?: Float32Array) {
    this.thetaScale = f(Math.pow(hp.ropeBase, -2 / hp.ropeDim));
    this.extFactor = hp.ropeScaling === 'yarn' ? 1 : 0;
    this.mscale = f(hp.ropeAttnFactor);
    const corrDim = (nRot: number) =>
      (hp.ropeDim * Math.log(hp.ropeOrigContext / (nRot * 2 * Math.PI))) / (2 * Math.log(hp.ropeBase));
    this.corrLow = Math.max(0, Math.floor(corrDim(hp.yarnBetaFast)));
    this.corrHigh = Math.min(hp.ropeDim - 1, Math.ceil(corrDim(hp.yarnBetaSlow)));
  }

  /** Writes (cos, sin) pairs for position `pos` into out[0 .. headDim). */
  fill(pos: number, out: Float32Array, at = 0): void {
    const { ropeDim, headDim, ropeFreqScale } = this.hp;
    const freqScale = f(ropeFreqScale);
    let theta = f(pos);
    for (let i0 = 0; i0 < ropeDim; i0 += 2) {
      const ff = this.freqFactors ? this.freqFactors[i0 / 2]! : 1;
      const thetaExtrap = f(theta / ff);
      const thetaInterp = f(freqScale * thetaExtrap);
      let t = thetaInterp;
      let mscale = this.mscale;
      if (this.extFactor !== 0) {
        const y = (i0 / 2 - this.corrLow) / Math.max(0.001, this.corrHigh - this.corrLow);
        const ramp = f((1 - Math.min(1, Math.max(0, y))) * this.extFactor);
        t = f(f(thetaInterp * f(1 - ramp)) + f(thetaExtrap * ramp));
        mscale = f(mscale * f(1 + f(0.1 * Math.log(1 / freqScale))));
      }
      out[at + i0] = f(Math.cos(t) * mscale);
      out[at + i0 + 1] = f(Math.sin(t) * mscale);
      theta = f(theta * this.thetaScale);
    }
    for (let i0 = ropeDim; i0 < headDim; i0 += 2) {
      out[at + i0] = 1;
      out[at + i0 + 1] = 0;
    }
  }
}
