// Synthetic models with a type mix: the Q5_0 quantizer (checked against the kernels' decoder) and the per-matrix type hook.
import { describe, expect, it } from 'vitest';
import { dequantize, f16ToF32, makeTinyLlama, quantize, Rng } from '../engine/gguf/synth.js';
import { GGMLType } from '../engine/gguf/types.js';
import { readGGUFHeader, bytesSource, loadModel, OptionError } from '../engine/index.js';
import { Kernels } from '../engine/runtime/kernels.js';

describe('Q5_0 quantizer and type mixes', () => {
  it('quantizes Q5_0 like ggml (d = max/-16, 5-bit quants) and the wasm decoder reads the same values', async () => {
    const x = new Float32Array(64);
    x[0] = -16;
    x[1] = 8;
    x[2] = 1;
    x[17] = 15;
    const q = quantize(GGMLType.Q5_0, x);
    expect(q.byteLength).toBe(44);
    const view = new DataView(q.buffer);
    expect(f16ToF32(view.getUint16(0, true))).toBe(1); // max is -16: d = -16 / -16
    expect(Array.from(dequantize(GGMLType.Q5_0, q, 64).subarray(0, 18))).toEqual([-16, 8, 1, ...new Array(14).fill(0), 15]);
    expect(f16ToF32(view.getUint16(22, true)) === 0).toBe(true); // all-zero block: zero scale (-0, as in ggml)

    const rng = new Rng(5);
    const v = Float32Array.from({ length: 1024 }, () => rng.normal());
    const bytes = quantize(GGMLType.Q5_0, v);
    const back = dequantize(GGMLType.Q5_0, bytes, 1024);
    for (let i = 0; i < 1024; i++) expect(Math.abs(back[i]! - v[i]!)).toBeLessThan(0.25);
    const K = await Kernels.create();
    const src = K.alloc(bytes.byteLength);
    K.write(src, bytes);
    const dst = K.alloc(1024 * 4);
    K.k.dequantize_q5_0(src, dst, 1024);
    expect(Array.from(K.f32(dst, 1024))).toEqual(Array.from(back));
  });

  it('matrixType picks a type per matrix, and the engine loads the mix', async () => {
    const bytes = makeTinyLlama({
      dim: 64, layers: 1, heads: 4, ffn: 256, vocab: 300, type: 'Q5_0',
      matrixType: (name, cols) => (name.endsWith('ffn_down.weight') && cols % 256 === 0 ? 'Q8_0' : undefined),
    });
    const h = await readGGUFHeader(bytesSource(bytes));
    const types = new Map(h.tensors.map((t) => [t.name, t.typeName]));
    expect(types.get('blk.0.ffn_down.weight')).toBe('Q8_0');
    expect(types.get('blk.0.ffn_up.weight')).toBe('Q5_0');
    expect(types.get('blk.0.attn_norm.weight')).toBe('F32');
    expect(h.metadata.get('general.file_type')).toBe(8);
    const m = await loadModel(bytes);
    const logits = await m.createSession().eval([1, 2, 3]);
    expect(logits.every(Number.isFinite)).toBe(true);
    m.dispose();
    expect(() => makeTinyLlama({ dim: 64, matrixType: () => 'Q6_K' })).toThrow(OptionError);
  });
});
