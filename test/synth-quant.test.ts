/**
 * The synthetic-model quantizers (engine/gguf/synth.ts) for Q4_1, Q5_0, Q5_1 and the K-quants: round trips, the JS
 * decoder against the wasm dequantizers, the llama-quantize-style fallback for K-quant rows that are not whole
 * super-blocks, and tiny models in those types computed by the engine.
 */
import { describe, expect, it } from 'vitest';
import { loadModel } from '../engine/index.js';
import { bytesSource } from '../engine/gguf/source.js';
import { readGGUFHeader } from '../engine/gguf/reader.js';
import { Rng, dequantize, makeTinyLlama, matrixType, quantize } from '../engine/gguf/synth.js';
import { GGMLType, GGML_TYPES, typeName } from '../engine/gguf/types.js';
import { Kernels } from '../engine/runtime/kernels.js';
import { GGUFWriter } from '../engine/gguf/writer.js';

/** Types and their round-trip bound: rms(error) / rms(x) on standard normal data (measured 0.019 .. 0.33). */
const BOUNDS: Array<[number, number]> = [
  [GGMLType.Q4_1, 0.09], [GGMLType.Q5_0, 0.05], [GGMLType.Q5_1, 0.045],
  [GGMLType.Q2_K, 0.36], [GGMLType.Q3_K, 0.18], [GGMLType.Q4_K, 0.09], [GGMLType.Q5_K, 0.045], [GGMLType.Q6_K, 0.025],
];

describe('synthetic quantizers', () => {
  it.each(BOUNDS.map(([t, b]) => [typeName(t), t, b] as const))('%s: valid blocks, round trip, JS decoder == wasm', async (_, type, bound) => {
    const rng = new Rng(type);
    const n = 2048;
    const v = Float32Array.from({ length: n }, () => rng.normal());
    v.fill(0, 512, 768); // an all-zero block (and super-block)
    for (let i = 768; i < 1024; i++) v[i] = 1e-3 * rng.normal(); // a small-scale one
    const info = GGML_TYPES.get(type)!;
    const q = quantize(type, v);
    expect(q.byteLength).toBe((n / info.blockSize) * info.typeSize);
    expect(quantize(type, v)).toEqual(q); // deterministic
    const back = dequantize(type, q, n);
    let err = 0, ref = 0;
    for (let i = 0; i < n; i++) {
      err += (back[i]! - v[i]!) ** 2;
      ref += v[i]! ** 2;
    }
    expect(Math.sqrt(err / ref)).toBeLessThan(bound);
    for (let i = 512; i < 768; i++) expect(back[i] === 0).toBe(true); // (Q5_0's d = 0 / -16 gives -0)
    let small = 0;
    for (let i = 768; i < 1024; i++) small = Math.max(small, Math.abs(back[i]! - v[i]!));
    expect(small).toBeLessThan(1e-3); // scales follow the block's own range

    const K = await Kernels.create();
    const src = K.alloc(q.byteLength), dst = K.alloc(n * 4);
    K.write(src, q);
    expect(K.k.dequantize_row(type, src, dst, n)).toBe(0);
    expect(K.f32(dst, n)).toEqual(back);
    expect(() => quantize(type, new Float32Array(info.blockSize + 16))).toThrow(/block size/);
  });

  it('Q5_0 follows ggml: d = max / -16 from the signed largest value, 5-bit quants with the fifth bits in qh', () => {
    const x = new Float32Array(32);
    x[3] = -8; // largest magnitude, negative: d = 0.5, so -8 -> 0 and +7.5 -> 31
    x[20] = 7.5;
    x[7] = 0.25; // 0.25 / 0.5 + 16.5 = 17 (truncated)
    const q = quantize(GGMLType.Q5_0, x);
    const dv = new DataView(q.buffer);
    expect(dv.getUint16(0, true)).toBe(0x3800); // 0.5
    const back = dequantize(GGMLType.Q5_0, q, 32);
    expect([back[3], back[20], back[7], back[0]]).toEqual([-8, 7.5, 0.5, 0]);
    expect((dv.getUint32(2, true) >>> 20) & 1).toBe(1); // element 20: q = 31, fifth bit set
    expect((dv.getUint32(2, true) >>> 3) & 1).toBe(0); // element 3: q = 0
  });
});

describe('tiny llamas in K-quants', () => {
  it('matrixType: K-quant rows that are not whole super-blocks fall back as llama-quantize does', () => {
    expect(matrixType(GGMLType.Q4_K, 768)).toBe(GGMLType.Q4_K);
    expect(matrixType(GGMLType.Q4_K, 288)).toBe(GGMLType.Q5_0);
    expect(matrixType(GGMLType.Q5_K, 288)).toBe(GGMLType.Q5_1);
    expect(matrixType(GGMLType.Q6_K, 288)).toBe(GGMLType.Q8_0);
    expect(matrixType(GGMLType.Q2_K, 288)).toBe(GGMLType.Q4_0);
    expect(matrixType(GGMLType.Q3_K, 288)).toBe(GGMLType.Q4_0);
    expect(matrixType(GGMLType.Q4_K, 100)).toBe(GGMLType.F16);
    expect(matrixType(GGMLType.Q8_0, 288)).toBe(GGMLType.Q8_0);
  });

  /** Logits of every position of a short sequence. */
  async function logits(bytes: Uint8Array): Promise<Float32Array> {
    const m = await loadModel(bytes);
    try {
      return await m.createSession().eval([1, 300, 301, 302, 303, 304, 305, 306, 307], { logits: 'all' });
    } finally {
      m.dispose();
    }
  }

  /** The same model with every tensor dequantized to F32 (by the JS decoder): only the activation path differs. */
  async function dequantized(bytes: Uint8Array): Promise<Uint8Array> {
    const h = await readGGUFHeader(bytesSource(bytes));
    const w = new GGUFWriter();
    for (const [k, v] of h.metadata) w.setMeta(k, h.metadataTypes.get(k)!, v as never);
    for (const t of h.tensors) {
      const values = dequantize(t.type, bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes), t.nElements);
      w.addTensor(t.name, t.shape, GGMLType.F32, quantize(GGMLType.F32, values));
    }
    return w.toBytes();
  }

  const rel = (a: Float32Array, b: Float32Array) => {
    let e = 0, r = 0;
    for (let i = 0; i < a.length; i++) {
      e += (a[i]! - b[i]!) ** 2;
      r += b[i]! ** 2;
    }
    return Math.sqrt(e / r);
  };

  it('a stories15M-shaped model (dim 288, ffn 768) written as Q4_K mixes Q4_K and Q5_0; the engine loads and runs it', async () => {
    const shape = { dim: 288, heads: 6, ffn: 768, layers: 2, vocab: 320, seed: 5 };
    const bytes = makeTinyLlama({ ...shape, type: 'Q4_K' });
    const h = await readGGUFHeader(bytesSource(bytes));
    const types = new Map(h.tensors.map((t) => [t.name, t.typeName]));
    expect(types.get('blk.0.ffn_down.weight')).toBe('Q4_K'); // 768 columns: 3 super-blocks
    for (const n of ['token_embd.weight', 'output.weight', 'blk.0.attn_q.weight', 'blk.1.attn_output.weight', 'blk.1.ffn_up.weight']) {
      expect(types.get(n), n).toBe('Q5_0'); // 288 columns
    }
    expect(h.metadata.get('general.file_type')).toBe(14); // mostly Q4_K (S)
    // Against the same weights in F32, only the Q8_0 / Q8_K activation rounding differs (measured 0.020).
    expect(rel(await logits(bytes), await logits(await dequantized(bytes)))).toBeLessThan(0.035);
  });

  it.each(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'])('%s throughout (dim 256, ffn 512): every matrix and the embedding in the K type', async (type) => {
    const shape = { dim: 256, heads: 4, ffn: 512, layers: 2, vocab: 320, seed: 6 };
    const bytes = makeTinyLlama({ ...shape, type });
    const h = await readGGUFHeader(bytesSource(bytes));
    expect(h.tensors.filter((t) => t.shape.length === 2).every((t) => t.typeName === type)).toBe(true);
    const got = await logits(bytes);
    // Against the same weights in F32 only the Q8_K activation rounding differs: measured 0.023 .. 0.025 (Q8_0
    // activations give 0.015 .. 0.02 on such models; Q8_K has one scale per 256 values instead of 32).
    expect(rel(got, await logits(await dequantized(bytes)))).toBeLessThan(0.035);
  });
});
