/**
 * Llama-family hyperparameters read from GGUF metadata, validated. Everything the `llama` architecture's
 * metadata can say is honoured: GQA, head and rope dimensions, rope base and scaling (linear, YaRN, per-pair
 * frequency factors), rms epsilon and the trained context length.
 */
import { GGUFFormatError, UnsupportedError } from '../errors.js';
import type { GGUFValue } from '../gguf/reader.js';

export type RopeScaling = 'none' | 'linear' | 'yarn';

export interface LlamaHParams {
  readonly arch: 'llama';
  readonly nVocab: number;
  readonly dim: number;
  readonly nLayers: number;
  readonly ffnDim: number;
  readonly nHeads: number;
  readonly nKVHeads: number;
  readonly headDim: number;
  /** Dimensions of each head that RoPE rotates (the rest pass through). */
  readonly ropeDim: number;
  readonly ropeBase: number;
  readonly ropeScaling: RopeScaling;
  /** 1 / scaling factor (1 when unscaled). */
  readonly ropeFreqScale: number;
  readonly ropeOrigContext: number;
  readonly ropeAttnFactor: number;
  readonly yarnBetaFast: number;
  readonly yarnBetaSlow: number;
  readonly rmsEps: number;
  readonly contextLength: number;
}

/** Architectures that are Llama-shaped decoders under another name are not silently accepted. */
const SUPPORTED = new Set(['llama']);

export function readHParams(meta: ReadonlyMap<string, GGUFValue>, file: string, nVocab: number): LlamaHParams {
  const arch = meta.get('general.architecture');
  if (typeof arch !== 'string') throw new GGUFFormatError(file, 'general.architecture', 'missing or not a string');
  if (!SUPPORTED.has(arch)) {
    throw new UnsupportedError(`${file}: architecture "${arch}" is not supported (supported: ${[...SUPPORTED].join(', ')})`);
  }
  const key = (k: string) => `${arch}.${k}`;
  const num = (k: string, dflt?: number, { min = 1, max = 1 << 30, int = true } = {}): number => {
    const v = meta.get(key(k));
    if (v === undefined) {
      if (dflt === undefined) throw new GGUFFormatError(file, key(k), 'required metadata is missing');
      return dflt;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new GGUFFormatError(file, key(k), `expected a number, got ${typeof v === 'bigint' ? v.toString() : typeof v}`);
    if ((int && !Number.isInteger(v)) || v < min || v > max) throw new GGUFFormatError(file, key(k), `${v} is outside [${min}, ${max}]${int ? ' or not an integer' : ''}`);
    return v;
  };
  const expertCount = num('expert_count', 0, { min: 0 });
  if (expertCount > 0) throw new UnsupportedError(`${file}: mixture-of-experts llama models (${key('expert_count')} = ${expertCount}) are not supported`);

  const dim = num('embedding_length', undefined, { max: 1 << 17 });
  const nLayers = num('block_count', undefined, { max: 4096 });
  const ffnDim = num('feed_forward_length', undefined, { max: 1 << 20 });
  const nHeads = num('attention.head_count', undefined, { max: 1 << 12 });
  const nKVHeads = num('attention.head_count_kv', nHeads, { max: nHeads });
  if (nHeads % nKVHeads !== 0) throw new GGUFFormatError(file, key('attention.head_count_kv'), `${nKVHeads} does not divide head_count ${nHeads}`);
  const headDim = num('attention.key_length', Math.floor(dim / nHeads), { max: 1 << 12 });
  const vDim = num('attention.value_length', headDim, { max: 1 << 12 });
  if (vDim !== headDim) throw new UnsupportedError(`${file}: key_length ${headDim} != value_length ${vDim} is not supported`);
  if (meta.has(key('attention.key_length')) === false && dim % nHeads !== 0) {
    throw new GGUFFormatError(file, key('embedding_length'), `${dim} is not a multiple of head_count ${nHeads}`);
  }
  const ropeDim = num('rope.dimension_count', headDim, { max: headDim });
  if (ropeDim % 2 !== 0) throw new GGUFFormatError(file, key('rope.dimension_count'), `${ropeDim} is odd`);
  const ropeBase = num('rope.freq_base', 10000, { min: 1e-3, max: 1e12, int: false });

  const scalingType = meta.get(key('rope.scaling.type'));
  let ropeScaling: RopeScaling = 'none';
  let factor = 1;
  if (scalingType !== undefined) {
    if (scalingType === 'linear' || scalingType === 'yarn') ropeScaling = scalingType;
    else if (scalingType !== 'none') throw new UnsupportedError(`${file}: ${key('rope.scaling.type')} "${String(scalingType)}" is not supported (none, linear, yarn)`);
  }
  if (meta.has(key('rope.scaling.factor'))) factor = num('rope.scaling.factor', 1, { min: 1e-3, max: 1e4, int: false });
  else if (meta.has(key('rope.scale_linear'))) {
    factor = num('rope.scale_linear', 1, { min: 1e-3, max: 1e4, int: false });
    if (scalingType === undefined && factor !== 1) ropeScaling = 'linear';
  }
  if (ropeScaling === 'none') factor = 1;
  const contextLength = num('context_length', 2048, { max: 1 << 24 });
  const ropeOrigContext = num('rope.scaling.original_context_length', contextLength, { max: 1 << 24 });
  const ropeAttnFactor = num('rope.scaling.attn_factor', 1, { min: 0, max: 100, int: false });
  const rmsEps = num('attention.layer_norm_rms_epsilon', 1e-5, { min: 0, max: 1, int: false });
  const vocabMeta = meta.get(key('vocab_size'));
  if (typeof vocabMeta === 'number' && vocabMeta !== nVocab) {
    throw new GGUFFormatError(file, key('vocab_size'), `${vocabMeta} disagrees with the embedding's ${nVocab} rows`);
  }
  return {
    arch: 'llama', nVocab, dim, nLayers, ffnDim, nHeads, nKVHeads, headDim, ropeDim, ropeBase, ropeScaling,
    ropeFreqScale: 1 / factor, ropeOrigContext, ropeAttnFactor, yarnBetaFast: 32, yarnBetaSlow: 1, rmsEps, contextLength,
  };
}
