/**
 * KV element types: how a cached K or V value is stored. The projections always produce f32 rows (biases and RoPE
 * applied in f32); the cache stores them as
 *  - `f32`: as they are (4 bytes a value);
 *  - `f16`: IEEE half, rounded to nearest even and saturated to +-65504 (2 bytes);
 *  - `q8_0`: blocks of `qBlock` values along each head's vector, each an f16 scale d and qBlock int8 q with value d*q
 *    (ggml's q8_0 block when qBlock = 32: 1.0625 bytes a value). Heads whose size is not a multiple of 32 take the
 *    largest of 16 and 8 that divides it (stories15M's 48: blocks of 16, 1.125 bytes a value); a head size that is
 *    not a multiple of 8 is refused.
 * The attention kernel converts every stored value to f32 exactly (wasm/attention.ts).
 */
import { OptionError } from '../errors.js';

export type KVType = 'f32' | 'f16' | 'q8_0';
export const KV_TYPES: readonly KVType[] = ['f32', 'f16', 'q8_0'];
export const DEFAULT_KV_TYPE: KVType = 'f32';

/** Type ids of the kernels (wasm/attention.ts KV_F32, KV_F16, KV_Q8). */
const KERNEL_ID: Record<KVType, number> = { f32: 0, f16: 1, q8_0: 2 };

export interface KVElement {
  type: KVType;
  /** The kernels' type id. */
  id: number;
  /** q8_0: values per block (32, 16 or 8); 0 for the float types. */
  qBlock: number;
  /** Bytes of one head's vector, and of one token's row (all KV heads) of one layer's K (or V). */
  headBytes: number;
  rowBytes: number;
}

/** q8_0's block along a head of `headDim` values: 32, else 16, else 8; undefined when none divides it. */
export function q8Block(headDim: number): number | undefined {
  for (const b of [32, 16, 8]) if (headDim % b === 0) return b;
  return undefined;
}

/** The storage of `type` for rows of nKVHeads heads of headDim values; OptionError (kv.type) if it cannot hold them. */
export function kvElement(type: KVType, nKVHeads: number, headDim: number): KVElement {
  let qBlock = 0;
  let headBytes: number;
  if (type === 'f32') headBytes = 4 * headDim;
  else if (type === 'f16') headBytes = 2 * headDim;
  else if (type === 'q8_0') {
    const b = q8Block(headDim);
    if (b === undefined) throw new OptionError('kv.type', `q8_0 quantizes blocks of 32, 16 or 8 values along a head, and this model's head size ${headDim} is not a multiple of 8 (use f16)`);
    qBlock = b;
    headBytes = (headDim / b) * (b + 2);
  } else {
    throw new OptionError('kv.type', `"${String(type)}" is not one of ${KV_TYPES.join(', ')}`);
  }
  return { type, id: KERNEL_ID[type], qBlock, headBytes, rowBytes: headBytes * nKVHeads };
}

/** KV bytes of one token over all layers, K and V. */
export function kvTokenBytesOf(type: KVType, nLayers: number, nKVHeads: number, headDim: number): number {
  return 2 * nLayers * kvElement(type, nKVHeads, headDim).rowBytes;
}
