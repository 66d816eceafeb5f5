// The speed benchmark's pure helpers (scripts/bench/speed-limits.ts, svg-chart.ts) against a small shape counted by hand.
import { describe, expect, it } from 'vitest';
import { decodeCost, decodeRunCost, goalOfNative, nativeTokS, prefillCost, rowBytesOf, tokenLimits } from '../scripts/bench/speed-limits.js';
import type { CostModel } from '../scripts/bench/speed-limits.js';
import { barChart } from '../scripts/bench/svg-chart.js';

// dim 64, 1 layer, 4 heads of 16, 2 KV heads (kvDim 32), ffn 128, vocab 300.
const hp = { dim: 64, nLayers: 1, nHeads: 4, nKVHeads: 2, headDim: 16, ffnDim: 128, nVocab: 300 };
function model(type: string, bytesPerWeight: number, tied = false): CostModel {
  const mat = (name: string, cols: number, rows: number) => ({ name, type, shape: [cols, rows], bytes: cols * rows * bytesPerWeight });
  const vec = (name: string, n: number) => ({ name, type: 'F16', shape: [n], bytes: n * 2 });
  return {
    hp,
    tensors: [
      mat('token_embd.weight', 64, 300), vec('output_norm.weight', 64), ...(tied ? [] : [mat('output.weight', 64, 300)]),
      vec('blk.0.attn_norm.weight', 64), mat('blk.0.attn_q.weight', 64, 64), mat('blk.0.attn_k.weight', 64, 32),
      mat('blk.0.attn_v.weight', 64, 32), mat('blk.0.attn_output.weight', 64, 64), vec('blk.0.ffn_norm.weight', 64),
      mat('blk.0.ffn_gate.weight', 64, 128), mat('blk.0.ffn_up.weight', 64, 128), mat('blk.0.ffn_down.weight', 128, 64),
    ],
  };
}

describe('bytes and operations per token', () => {
  it('F32 decode at 10 KV rows, counted by hand', () => {
    const c = decodeCost(model('F32', 4), 10);
    // output 64*300*4 = 76800; layer: q 16384 + k 8192 + v 8192 + o 16384 + gate 32768 + up 32768 + down 32768 = 147456.
    expect(c.matrixBytes).toBe(76800 + 147456);
    expect(c.vectorBytes).toBe(3 * 64 * 4); // three norms, as f32 although stored F16
    expect(c.embeddingRowBytes).toBe(64 * 4);
    expect(c.kvBytes).toBe(2 * 1 * 10 * 32 * 4); // K and V, 1 layer, 10 rows of 32 f32
    expect(c.bytes).toBe(224256 + 768 + 256 + 2560);
    // 2 per weight: output 19200 + layer 4096*2 + 2048*2 + 8192*3 = 56064 weights; attention 4 * qDim 64 * 10 rows.
    expect(c.floatOps).toBe(2 * 56064 + 4 * 64 * 10);
    expect(c.intOps).toBe(0);
  });

  it('KV bytes follow the KV element type: f16 2 bytes a value, q8_0 blocks of 16 values in 18 bytes (head size 16)', () => {
    expect(decodeCost({ ...model('F32', 4), kvType: 'f16' }, 10).kvBytes).toBe(2 * 1 * 10 * 32 * 2);
    expect(decodeCost({ ...model('F32', 4), kvType: 'q8_0' }, 10).kvBytes).toBe(2 * 1 * 10 * 2 * 18);
  });

  it('Q8_0 counts integer operations for the matrices and float operations for attention; tied output reads the embedding', () => {
    const q = decodeCost(model('Q8_0', 34 / 32), 10);
    expect(q.matrixBytes).toBe((76800 + 147456) / 4 * (34 / 32));
    expect(q.embeddingRowBytes).toBe(68);
    expect(q.intOps).toBe(2 * 56064);
    expect(q.floatOps).toBe(4 * 64 * 10);
    const tied = decodeCost(model('Q8_0', 34 / 32, true), 10);
    expect(tied.matrixBytes).toBe(q.matrixBytes); // the embedding is read whole as the output projection
    expect(tied.embeddingRowBytes).toBe(68);
    expect(rowBytesOf('Q8_0', 64)).toBe(68);
    expect(rowBytesOf('Q4_K', 512)).toBe(288);
  });

  it('decode runs average over their lengths; prefill amortises the weights over each chunk', () => {
    const m = model('F32', 4);
    // 4 steps after 8 prompt tokens attend over 9, 10, 11, 12 rows: mean 10.5.
    const run = decodeRunCost(m, 8, 4);
    const mean = (decodeCost(m, 9).bytes + decodeCost(m, 10).bytes + decodeCost(m, 11).bytes + decodeCost(m, 12).bytes) / 4;
    expect(run.bytes).toBeCloseTo(mean, 9);
    // 6 tokens in chunks of 4: chunk 1 reads the layer weights and 4 KV rows, chunk 2 the layer weights and 6 rows;
    // the output projection (76800 bytes, 19200 weights) is read and computed once, for the last token's logits.
    const p = prefillCost(m, 6, 4);
    expect(p.bytes).toBeCloseTo((2 * (147456 + 768) + 76800 + 6 * 256 + 2 * 32 * 4 * (4 + 6)) / 6, 9);
    // Token j attends over j+1 rows: mean 3.5 over 6 tokens.
    expect(p.floatOps).toBeCloseTo(2 * (56064 - 19200) + (2 * 19200) / 6 + 4 * 64 * 3.5, 9);
    expect(p.intOps).toBe(0);
  });

  it('limits: bandwidth / bytes and operations / peaks', () => {
    const c = decodeCost(model('Q8_0', 34 / 32), 10);
    const l = tokenLimits(c, { readGBs: 10, f32Gflops: 20, dotGops: 40 });
    expect(l.bandwidthTokS).toBeCloseTo(10e9 / c.bytes, 6);
    expect(l.computeTokS).toBeCloseTo(1 / (c.floatOps / 20e9 + c.intOps / 40e9), 6);
    expect(l.tokS).toBe(Math.min(l.bandwidthTokS, l.computeTokS));
    expect(l.boundBy).toBe(l.bandwidthTokS < l.computeTokS ? 'bandwidth' : 'compute');
  });

  it('native figures and goals', () => {
    expect(nativeTokS('stories15m', 'decode', 1, 'F32')).toBe(163);
    expect(nativeTokS('stories15m', 'decode', 2, 'Q4_K')).toBeUndefined();
    expect(nativeTokS('stories15m', 'prefill', 1, 'Q4_0')).toBe(5253);
    expect(nativeTokS('tinyllama', 'decode', 1, 'Q4_0')).toBeUndefined();
    expect(goalOfNative('decode', 1, 'F32')).toBe(0.8);
    expect(goalOfNative('decode', 1, 'Q4_K')).toBe(0.5);
    expect(goalOfNative('decode', 1, 'F16')).toBeUndefined();
    expect(goalOfNative('prefill', 2, 'Q8_0')).toBe(0.25);
  });
});

describe('bar chart', () => {
  it('draws a bar per defined value, a mark per defined limit, and log ticks at 1-2-5', () => {
    const svg = barChart({
      title: 'decode', yLabel: 'tokens/s', categories: ['a', 'b'], logY: true,
      series: [{ name: 'ours', values: [120, undefined] }, { name: 'ref', values: [163, 900], color: '#636363' }],
      marks: [{ name: 'limit', values: [250, 2000] }],
    });
    expect(svg.match(/<rect x=/g)!.length).toBe(3 + 2); // 3 bars, 2 legend swatches
    expect(svg.match(/stroke-dasharray/g)!.length).toBe(2 + 1); // 2 marks, 1 legend line
    expect(svg).toContain('fill="#636363"');
    for (const t of ['>100<', '>200<', '>500<', '>1000<', '>2000<']) expect(svg).toContain(t);
    expect(svg).not.toContain('NaN');
  });
});
