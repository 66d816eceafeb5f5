/**
 * What llama metadata can say: tied output, other architectures refused, RoPE scaling (linear, YaRN, frequency
 * factors). Variants of stories260K are written with the project's GGUF writer.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, UnsupportedError, GGUFFormatError } from '../engine/index.js';
import { bytesSource } from '../engine/gguf/source.js';
import { readGGUFHeader } from '../engine/gguf/reader.js';
import type { GGUFTensorInfo } from '../engine/gguf/reader.js';
import { GGUFWriter } from '../engine/gguf/writer.js';
import { GGUFValueType } from '../engine/gguf/types.js';
import { readHParams } from '../engine/model/hparams.js';
import type { LlamaHParams } from '../engine/model/hparams.js';
import { RopeTable } from '../engine/model/rope.js';
import { MODELS } from './shared-paths.js';

const bytes = readFileSync(join(MODELS, 'stories260K.gguf'));
const header = await readGGUFHeader(bytesSource(bytes));
const data = (t: GGUFTensorInfo) => bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes);

/** stories260K rewritten: `meta` overrides or adds keys (value undefined deletes), `tensors` maps or drops data. */
function variant(meta: Record<string, [number, unknown] | undefined>, tensors: (t: GGUFTensorInfo) => Uint8Array | null = data): Uint8Array {
  const w = new GGUFWriter();
  for (const [k, v] of header.metadata) if (!(k in meta)) w.setMeta(k, header.metadataTypes.get(k)!, v as never);
  for (const [k, v] of Object.entries(meta)) if (v) w.setMeta(k, v[0], v[1] as never);
  for (const t of header.tensors) {
    const d = tensors(t);
    if (d) w.addTensor(t.name, t.shape, t.type, d);
  }
  return w.toBytes();
}

async function logits(file: Uint8Array, ids = [1, 403, 407, 261, 378, 432, 383]): Promise<number[]> {
  const m = await loadModel(file);
  try {
    return Array.from(await m.createSession().eval(ids, { logits: 'all' }));
  } finally {
    m.dispose();
  }
}

describe('llama metadata', () => {
  it('a tied output (no output.weight) uses the token embedding, exactly like an explicit copy of it', async () => {
    const embd = data(header.tensors.find((t) => t.name === 'token_embd.weight')!);
    const copied = variant({}, (t) => (t.name === 'output.weight' ? embd : data(t)));
    const tied = variant({}, (t) => (t.name === 'output.weight' ? null : data(t)));
    const m = await loadModel(tied);
    expect(m.info.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    m.dispose();
    const a = await logits(copied);
    expect(await logits(tied)).toEqual(a);
    // When output.weight is present it is the one used (stories260K's own equals its embedding, so zero it).
    const zero = variant({}, (t) => (t.name === 'output.weight' ? new Uint8Array(t.nBytes) : data(t)));
    expect((await logits(zero)).every((x) => x === 0)).toBe(true);
  });

  it('other architectures and mixture-of-experts are refused by name', async () => {
    await expect(loadModel(variant({ 'general.architecture': [GGUFValueType.STRING, 'phi3'] }))).rejects.toThrow(UnsupportedError);
    await expect(loadModel(variant({ 'general.architecture': [GGUFValueType.STRING, 'phi3'] }))).rejects.toThrow(/architecture "phi3"/);
    await expect(loadModel(variant({ 'llama.expert_count': [GGUFValueType.UINT32, 8] }))).rejects.toThrow(/expert_count/);
    await expect(loadModel(variant({ 'llama.attention.head_count_kv': [GGUFValueType.UINT32, 3] }))).rejects.toThrow(GGUFFormatError);
    await expect(loadModel(variant({ 'llama.embedding_length': undefined }))).rejects.toThrow(/embedding_length.*missing/);
    await expect(loadModel(variant({ 'llama.rope.scaling.type': [GGUFValueType.STRING, 'su'] }))).rejects.toThrow(/rope.scaling.type "su"/);
  });

  it('rms epsilon and rope base from the metadata change the result', async () => {
    const base = await logits(bytes);
    expect(await logits(variant({ 'llama.rope.freq_base': [GGUFValueType.FLOAT32, 500000] }))).not.toEqual(base);
    expect(await logits(variant({ 'llama.attention.layer_norm_rms_epsilon': [GGUFValueType.FLOAT32, 1e-2] }))).not.toEqual(base);
  });

  it('linear rope scaling from the file is applied', async () => {
    const scaled = variant({ 'llama.rope.scaling.type': [GGUFValueType.STRING, 'linear'], 'llama.rope.scaling.factor': [GGUFValueType.FLOAT32, 2] });
    const m = await loadModel(scaled);
    expect(m.info.hparams?.ropeFreqScale).toBe(0.5);
    m.dispose();
    expect(await logits(scaled)).not.toEqual(await logits(bytes));
  });
});

describe('RoPE tables', () => {
  const hp = (over: Partial<LlamaHParams> = {}): LlamaHParams => ({ ...readHParams(header.metadata, 'stories260K', 512), ...over, headDim: 16, ropeDim: 16 });
  const table = (h: LlamaHParams, pos: number, ff?: Float32Array) => {
    const out = new Float32Array(h.headDim);
    new RopeTable(h, ff).fill(pos, out);
    return Array.from(out);
  };

  it('matches cos/sin of pos * base^(-2i/d) and passes through dims past ropeDim', () => {
    const h = hp();
    const t = table(h, 7);
    for (let i = 0; i < 8; i++) {
      const theta = 7 * Math.pow(10000, (-2 * i) / 16);
      expect(t[2 * i]).toBeCloseTo(Math.cos(theta), 5);
      expect(t[2 * i + 1]).toBeCloseTo(Math.sin(theta), 5);
    }
    const partial = table({ ...h, ropeDim: 8 }, 7);
    expect(partial.slice(8)).toEqual([1, 0, 1, 0, 1, 0, 1, 0]);
  });

  it('linear scaling by 4 at position 8 is exactly position 2; frequency factors of 2 halve the angle', () => {
    expect(table(hp({ ropeScaling: 'linear', ropeFreqScale: 0.25 }), 8)).toEqual(table(hp(), 2));
    expect(table(hp(), 10, new Float32Array(8).fill(2))).toEqual(table(hp(), 5));
  });

  it('YaRN: high-frequency pairs extrapolate, low-frequency pairs interpolate, magnitude scaled by 1 + 0.1 ln(s)', () => {
    const s = 8;
    const y = hp({ ropeScaling: 'yarn', ropeFreqScale: 1 / s, ropeOrigContext: 64, ropeBase: 10000 });
    const pos = 100;
    const got = table(y, pos);
    const extrap = table(hp({ ropeBase: 10000 }), pos);
    const mscale = 1 + 0.1 * Math.log(s);
    // Pair 0 (fastest rotation) is below the ramp: pure extrapolation. The last pair is above it: interpolation.
    expect(got[0]! / mscale).toBeCloseTo(extrap[0]!, 5);
    expect(got[1]! / mscale).toBeCloseTo(extrap[1]!, 5);
    const thetaLast = (pos / s) * Math.pow(10000, -14 / 16);
    expect(got[14]! / mscale).toBeCloseTo(Math.cos(thetaLast), 5);
    expect(got[15]! / mscale).toBeCloseTo(Math.sin(thetaLast), 5);
  });
});
