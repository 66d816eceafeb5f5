/** Test files with tensor types the engine cannot use, made by re-typing a tensor in the header of a valid GGUF. */
import { makeTinyLlama } from '../engine/gguf/synth.js';

/**
 * A copy of `gguf` whose tensor `name` has ggml type `type` in its tensor info (the data is left as it is, so pick a
 * type of the same bytes per row, or test the reader's refusal).
 */
export function retype(gguf: Uint8Array, name: string, type: number): Uint8Array {
  const out = gguf.slice();
  const key = new TextEncoder().encode(name);
  let at = -1;
  for (let i = 0; at < 0 && i + key.length <= out.length; i++) {
    let j = 0;
    while (j < key.length && out[i + j] === key[j]) j++;
    // Name preceded by its u64 length (tensor infos come after the metadata; a key of the same text would too).
    if (j === key.length && new DataView(out.buffer).getUint32(i - 8, true) === key.length) at = i;
  }
  if (at < 0) throw new Error(`tensor ${name} not found`);
  const dv = new DataView(out.buffer);
  const nDims = dv.getUint32(at + key.length, true);
  dv.setUint32(at + key.length + 4 + 8 * nDims, type, true);
  return out;
}

/** GGML type id of IQ4_NL: 32 values in 18 bytes, like Q4_0. */
export const IQ4_NL = 20;

/** A tiny random Llama (dim 64, Q4_0) whose blk.0.ffn_down.weight is IQ4_NL, a type the engine cannot compute. */
export function iq4nlTinyLlama(): Uint8Array {
  return retype(makeTinyLlama({ type: 'Q4_0', layers: 1 }), 'blk.0.ffn_down.weight', IQ4_NL);
}
