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
 *
 * Warm rows of the tiered cache (engine/kv/tiered.ts) may also be `q4_0`: blocks of the same size as q8_0's, each an
 * f16 scale d and qBlock 4-bit n with value (n - 8) * d (ggml's q4_0 block when qBlock = 32: 0.5625 bytes a value).
 * The attention kernel does not read q4_0 rows; wasm/kv_convert.ts expands them into staging rows first.
 */
import { OptionError } from '../errors.js';

export type KVType = 'f32' | 'f16' | 'q8_0';
/** Every row storage: the cache types and the warm-only q4_0. */
export type KVStorageType = KVType | 'q4_0';
/** Compressed types of the tiered cache's warm tier ('none': no warm tier). */
export type WarmType = 'q8_0' | 'q4_0' | 'none';
export const WARM_TYPES: readonly WarmType[] = ['q8_0', 'q4_0', 'none'];
export const KV_TYPES: readonly KVType[] = ['f32', 'f16', 'q8_0'];
export const DEFAULT_KV_TYPE: KVType = 'f32';

/** Type ids of the kernels (wasm/attention.ts KV_F32, KV_F16, KV_Q8, KV_Q4). */
const KERNEL_ID: Record<KVStorageType, number> = { f32: 0, f16: 1, q8_0: 2, q4_0: 3 };

export interface KVElement<T extends KVStorageType = KVType> {
  type: T;
  /** The kernels' type id. */
  id: number;
  /** q8_0, q4_0: values per block (32, 16 or 8); 0 for the float types. */
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
  if (!KV_TYPES.includes(type)) throw new OptionError('kv.type', `"${String(type)}" is not one of ${KV_TYPES.join(', ')}`);
  return storageElement(type, nKVHeads, headDim, 'kv.type');
}

/** The storage of a warm tier of `type` (q8_0 or q4_0); OptionError (kv.warm) if it cannot hold the rows. */
export function warmElement(type: 'q8_0' | 'q4_0', nKVHeads: number, headDim: number): KVElement<'q8_0' | 'q4_0'> {
  if (type !== 'q8_0' && type !== 'q4_0') throw new OptionError('kv.warm', `"${String(type)}" is not one of q8_0, q4_0`);
  return storageElement(type, nKVHeads, headDim, 'kv.warm');
}

function storageElement<T extends KVStorageType>(type: T, nKVHeads: number, headDim: number, field: string): KVElement<T> {
  let qBlock = 0;
  let headBytes: number;
  if (type === 'f32') headBytes = 4 * headDim;
  else if (type === 'f16') headBytes = 2 * headDim;
  else {
    const b = q8Block(headDim);
    if (b === undefined) throw new OptionError(field, `${type} quantizes blocks of 32, 16 or 8 values along a head, and this model's head size ${headDim} is not a multiple of 8 (use f16)`);
    qBlock = b;
    headBytes = (headDim / b) * (type === 'q8_0' ? b + 2 : b / 2 + 2);
  }
  return { type, id: KERNEL_ID[type], qBlock, headBytes, rowBytes: headBytes * nKVHeads };
}

/** KV bytes of one token over all layers, K and V. */
export function kvTokenBytesOf(type: KVType, nLayers: number, nKVHeads: number, headDim: number): number {
  return 2 * nLayers * kvElement(type, nKVHeads, headDim).rowBytes;
}
