/**
 * Attention traces (engine/tiers/trace.ts): round trips through the file format, the recorder's selection and
 * ordering rules, the synthetic generator, and a reader that answers corrupt or hostile files with a
 * TraceFormatError (never another exception, a hang or an allocation sized by the file's claims).
 * Fuzz seed: BMC_FUZZ_SEED reproduces a run.
 */
import { describe, expect, it } from 'vitest';
import { BmcError, OptionError } from '../engine/errors.js';
import { Rng } from '../engine/gguf/synth.js';
import {
  TRACE_LIMITS, TraceFormatError, TraceRecorder, compressRecord, encodeRecord, encodeTraceHeader, readTrace, writeTrace,
} from '../engine/tiers/trace.js';
import type { AttentionTrace } from '../engine/tiers/trace.js';
import { synthTrace } from '../engine/tiers/synth-trace.js';

const SEED = process.env.BMC_FUZZ_SEED ? Number(process.env.BMC_FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 8)) >>> 0;

/** A recorded trace of `steps` steps over `layers` layers, context prompt + step + 1, random heavy-tailed masses. */
function recorded(layers: number, prompt: number, steps: number, topK: number, seed = 1): { bytes: Uint8Array; masses: Float32Array[][] } {
  const rng = new Rng(seed);
  const rec = new TraceRecorder({ nLayers: layers, topK, meta: { kvBytesPerToken: 64, model: 'test' } });
  const masses: Float32Array[][] = [];
  for (let s = 0; s < steps; s++) {
    masses.push([]);
    for (let l = 0; l < layers; l++) {
      const m = new Float32Array(prompt + s + 1);
      for (let i = 0; i < m.length; i++) m[i] = Math.exp(2 * rng.normal()) * 8; // unnormalised, as summed over 8 heads
      rec.record(l, s, m);
      masses[s]!.push(m);
    }
  }
  return { bytes: rec.finish(), masses };
}

function expectTraceError(bytes: Uint8Array, field: RegExp): TraceFormatError {
  let caught: unknown;
  try {
    readTrace(bytes, 'x.trace');
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(TraceFormatError);
  const e = caught as TraceFormatError;
  expect(e.code).toBe('TRACE_FORMAT');
  expect(e.field).toMatch(field);
  expect(e.message).toMatch(/^x\.trace: /);
  return e;
}

describe('trace format', () => {
  it('dense records round-trip the normalised masses to f16 precision', () => {
    const { bytes, masses } = recorded(3, 20, 5, 1 << 20);
    const t = readTrace(bytes);
    expect(t.nLayers).toBe(3);
    expect(t.records.length).toBe(5);
    expect(t.meta).toMatchObject({ kvBytesPerToken: 64, model: 'test', source: 'engine' });
    for (let s = 0; s < 5; s++) {
      for (let l = 0; l < 3; l++) {
        const r = t.records[s]![l]!;
        const m = masses[s]![l]!;
        expect(r.index).toBeNull(); // every token kept: dense is smaller
        expect(r.ctxLen).toBe(21 + s);
        const sum = m.reduce((a, b) => a + b, 0);
        for (let i = 0; i < m.length; i++) expect(Math.abs(r.mass[i]! - m[i]! / sum)).toBeLessThanOrEqual(m[i]! / sum / 1024 + 3e-8);
      }
    }
  });

  it('sparse records keep the top-k tokens ascending and sum the rest into the residual', () => {
    const { bytes, masses } = recorded(2, 100, 4, 10);
    const t = readTrace(bytes);
    for (let s = 0; s < 4; s++) {
      for (let l = 0; l < 2; l++) {
        const r = t.records[s]![l]!;
        const m = Array.from(masses[s]![l]!);
        const sum = m.reduce((a, b) => a + b, 0);
        const top = m.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 10).map((x) => x[1]).sort((a, b) => a - b);
        expect(Array.from(r.index!)).toEqual(top);
        const kept = top.reduce((a, i) => a + m[i]! / sum, 0);
        expect(r.residual).toBeCloseTo(1 - kept, 5);
      }
    }
    // 6 bytes per kept token + 13 per record beside the 16-byte header and the metadata.
    const meta = new DataView(bytes.buffer, bytes.byteOffset).getUint32(12, true);
    expect(bytes.byteLength).toBe(16 + meta + 4 * 2 * (13 + 60));
  });

  it('coverage keeps the fewest tokens that reach the fraction', () => {
    const m = new Float32Array([0.05, 0.5, 0.05, 0.3, 0.1]);
    const r = compressRecord(m, { coverage: 0.85 });
    expect(Array.from(r.index!)).toEqual([1, 3, 4]);
    expect(r.residual).toBeCloseTo(0.1, 6);
    // Zero masses are never listed; ties at the cut are taken in index order.
    const z = compressRecord(new Float32Array([0, 1, 1, 1, 0]), { topK: 2 });
    expect(Array.from(z.index!)).toEqual([1, 2]);
  });

  it('writeTrace(readTrace(x)) reproduces the file byte for byte', () => {
    const { bytes } = recorded(2, 50, 6, 16);
    expect(writeTrace(readTrace(bytes))).toEqual(bytes);
    const syn = writeTrace(synthTrace({ layers: 2, prompt: 40, steps: 8 }));
    expect(writeTrace(readTrace(syn))).toEqual(syn);
  });

  it('the recorder streams to a sink and checks its caller', () => {
    const chunks: Uint8Array[] = [];
    const rec = new TraceRecorder({ nLayers: 2, sink: (c) => chunks.push(c) });
    rec.record(0, 0, [1, 2, 3]);
    expect(() => rec.record(0, 0, [1, 2, 3])).toThrow(OptionError); // layer 1 expected
    expect(() => rec.record(1, 0, [1, 2])).toThrow(/expected 3/); // same length for every layer of a step
    expect(() => rec.finish()).toThrow(/1 of 2 layers/);
    rec.record(1, 0, [3, 2, 1]);
    expect(() => rec.record(0, 1, [1, 1])).toThrow(/at least 3/); // contexts never shrink
    expect(() => rec.record(0, 1, [1, -1, 1, 1])).toThrow(/mass/);
    expect(() => rec.record(0, 1, [0, 0, 0, 0])).toThrow(/sum to 0/);
    expect(rec.steps).toBe(1);
    expect(rec.finish().byteLength).toBe(0);
    const t = readTrace(Uint8Array.from(chunks.flatMap((c) => Array.from(c))));
    expect(t.records.length).toBe(1);
    expect(() => new TraceRecorder({ nLayers: 0 })).toThrow(OptionError);
    expect(() => new TraceRecorder({ nLayers: 1, topK: 0 })).toThrow(/topK/);
  });

  it('synthetic traces: sinks and the recent window are always attended, sparsity sets the attended share', () => {
    const t = synthTrace({ layers: 2, prompt: 200, steps: 30, sinks: 4, window: 16, sparsity: 0.7, variation: 0.5, seed: 3 });
    for (const step of t.records) {
      for (const r of step) {
        const attended = (i: number) => (r.index ? r.index.includes(i) : r.mass[i]! > 0);
        for (let i = 0; i < 4; i++) expect(attended(i)).toBe(true);
        for (let i = r.ctxLen - 16; i < r.ctxLen; i++) expect(attended(i)).toBe(true);
        const n = r.index ? r.index.length : r.mass.filter((m) => m > 0).length;
        expect(n).toBe(Math.ceil(0.3 * r.ctxLen - 1e-9));
      }
    }
    // Importance moves with variation: the attended set between the sinks and the window changes over the steps.
    const mid = (r: AttentionTrace['records'][0][0]) => new Set(Array.from({ length: r.ctxLen }, (_, i) => i).filter((i) => i >= 4 && i < 150 && (r.index ? r.index.includes(i) : r.mass[i]! > 0)));
    const changes = (v: number) => {
      const tr = synthTrace({ layers: 1, prompt: 200, steps: 30, sparsity: 0.7, variation: v, seed: 3 });
      const a = mid(tr.records[0]![0]!);
      const b = mid(tr.records[29]![0]!);
      return [...a].filter((i) => !b.has(i)).length;
    };
    // Without variation the set only shifts as tokens leave the window and new ones compete; with it, it churns.
    expect(changes(1)).toBeGreaterThan(2 * changes(0) + 5);
    expect(synthTrace({ seed: 9, steps: 4, prompt: 30 })).toEqual(synthTrace({ seed: 9, steps: 4, prompt: 30 }));
    expect(() => synthTrace({ sparsity: 1 })).toThrow(/sparsity/);
  });
});

describe('trace reader refuses bad files with a TraceFormatError', () => {
  const header = (layers = 1, meta = '{}') => {
    const h = encodeTraceHeader(layers, {});
    const json = new TextEncoder().encode(meta);
    const out = new Uint8Array(16 + json.length);
    out.set(h.subarray(0, 12));
    new DataView(out.buffer).setUint32(12, json.length, true);
    out.set(json, 16);
    return out;
  };
  const cat = (...p: Uint8Array[]) => Uint8Array.from(p.flatMap((x) => Array.from(x)));
  const sparse = (ctxLen: number, n: number, residual: number, idx: number[], mass: number[]) => {
    const b = new Uint8Array(13 + 6 * idx.length);
    const dv = new DataView(b.buffer);
    dv.setUint8(0, 1);
    dv.setUint32(1, ctxLen, true);
    dv.setUint32(5, n, true);
    dv.setFloat32(9, residual, true);
    idx.forEach((t, j) => dv.setUint32(13 + 4 * j, t, true));
    mass.forEach((m, j) => dv.setUint16(13 + 4 * idx.length + 2 * j, Math.round(m * 1024) === 1024 ? 0x3c00 : 0x3800, true)); // 1.0 or 0.5
    return b;
  };
  const good = cat(header(), sparse(4, 2, 0, [1, 3], [0.5, 0.5]));

  it('a well-formed hand-made file reads', () => {
    const t = readTrace(good);
    expect(Array.from(t.records[0]![0]!.index!)).toEqual([1, 3]);
  });

  it('names the defect', () => {
    expectTraceError(good.subarray(0, 10), /^header$/);
    const bad = good.slice();
    bad[0] = 0x47;
    expectTraceError(bad, /^magic$/);
    const v = good.slice();
    new DataView(v.buffer).setUint32(4, 2, true);
    expectTraceError(v, /^version$/);
    const l = good.slice();
    new DataView(l.buffer).setUint32(8, TRACE_LIMITS.maxLayers + 1, true);
    expectTraceError(l, /^nLayers$/);
    const m = good.slice();
    new DataView(m.buffer).setUint32(12, 0xffffffff, true);
    expectTraceError(m, /^metaLen$/);
    expectTraceError(cat(header(1, '[1]'), sparse(4, 2, 0, [1, 3], [0.5, 0.5])), /^meta$/);
    expectTraceError(cat(header(1, '{"kvBytesPerToken":-3}'), sparse(4, 2, 0, [1, 3], [0.5, 0.5])), /kvBytesPerToken/);
    expectTraceError(cat(header(1, '{not json'), sparse(4, 2, 0, [1, 3], [0.5, 0.5])), /^meta$/);
    expectTraceError(cat(header(), sparse(4, 2, 0, [3, 1], [0.5, 0.5])), /step 0 layer 0: index\[1\]/);
    expectTraceError(cat(header(), sparse(4, 2, 0, [1, 4], [0.5, 0.5])), /index\[1\]/);
    expectTraceError(cat(header(), sparse(4, 5, 0, [1, 3], [0.5, 0.5])), /: n$/);
    expectTraceError(cat(header(), sparse(4, 2, 0.5, [1, 3], [0.5, 0.5])), /: mass$/); // sums to 1.5
    expectTraceError(cat(header(), sparse(4, 2, NaN, [1, 3], [0.5, 0.5])), /residual/);
    expectTraceError(cat(header(), sparse(0, 0, 1, [], [])), /ctxLen/);
    expectTraceError(cat(header(), sparse(4, 2, 0, [1, 3], [0.5, 0.5]), sparse(3, 2, 0, [1, 2], [0.5, 0.5])), /step 1 layer 0: ctxLen/);
    expectTraceError(cat(header(2), sparse(4, 2, 0, [1, 3], [0.5, 0.5]), sparse(5, 2, 0, [1, 3], [0.5, 0.5])), /step 0 layer 1: ctxLen/);
    expectTraceError(cat(header(2), sparse(4, 2, 0, [1, 3], [0.5, 0.5])), /^step 0$/); // a step missing a layer
    const k = good.slice();
    k[16 + 2] = 7;
    expectTraceError(k, /kind/);
    const nan = cat(header(), encodeRecord({ ctxLen: 2, index: null, mass: new Float32Array([0.5, 0.5]), residual: 0 }));
    new DataView(nan.buffer).setUint16(nan.length - 2, 0x7e00, true);
    expectTraceError(nan, /mass\[1\]/);
  });

  it('lengths are checked against the bytes present before anything is allocated', () => {
    // A dense record claiming 2^24 tokens and a sparse one claiming 2^24 entries, each in a 40-byte file.
    const dense = cat(header(), Uint8Array.of(0, 0, 0, 0, 1), new Uint8Array(16));
    expectTraceError(dense, /dense masses/);
    const s = cat(header(), sparse(1 << 24, 1 << 24, 0, [], []));
    expectTraceError(s, /sparse entries/);
    const huge = cat(header(), sparse(0xffffffff, 1, 0, [0], [1]));
    expectTraceError(huge, /ctxLen/);
  });

  it(`fuzz: random mutations either read or throw a TraceFormatError (seed ${SEED})`, () => {
    const rng = new Rng(SEED);
    const bases = [recorded(2, 30, 4, 8, SEED).bytes, recorded(1, 6, 3, 100, SEED + 1).bytes, writeTrace(synthTrace({ layers: 2, prompt: 24, steps: 3, seed: SEED }))];
    const boundary = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe, 1 << 24, (1 << 24) + 1, 4096, 4097, 65536, 65537];
    const t0 = performance.now();
    let read = 0;
    let refused = 0;
    for (let c = 0; c < 1500; c++) {
      const base = bases[rng.int(bases.length)]!;
      let b = base.slice();
      const op = rng.int(6);
      if (op === 0) for (let k = 1 + rng.int(4); k > 0; k--) b[rng.int(b.length)]! ^= 1 << rng.int(8);
      else if (op === 1) b = b.slice(0, rng.int(b.length));
      else if (op === 2 && b.length >= 4) new DataView(b.buffer).setUint32(rng.int(b.length - 3), boundary[rng.int(boundary.length)]!, true);
      else if (op === 3) for (let k = rng.int(16), p = rng.int(b.length); k > 0 && p < b.length; k--, p++) b[p] = rng.int(256);
      else if (op === 4) {
        const p = rng.int(b.length);
        b = Uint8Array.from([...b.subarray(0, p), ...Array.from({ length: 1 + rng.int(8) }, () => rng.int(256)), ...b.subarray(p)]);
      } else {
        const p = rng.int(b.length);
        b = Uint8Array.from([...b.subarray(0, p), ...b.subarray(p + 1 + rng.int(8))]);
      }
      try {
        const t = readTrace(b, 'fuzz');
        // What reads is consistent: every record has its step's context and masses that sum to ~1.
        for (const step of t.records) for (const r of step) expect(r.ctxLen).toBe(step[0]!.ctxLen);
        read++;
      } catch (e) {
        if (!(e instanceof TraceFormatError)) throw new Error(`case ${c} (seed ${SEED}, op ${op}): ${(e as Error)?.stack ?? e}`);
        expect(e).toBeInstanceOf(BmcError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(500);
    expect(read + refused).toBe(1500);
    expect(performance.now() - t0).toBeLessThan(20_000);
  });
});
