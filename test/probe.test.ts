// Machine probes (wasm/probe.ts, engine/runtime/probe.ts): a tiny run returns positive finite figures.
import { describe, expect, it } from 'vitest';
import { Kernels } from '../engine/runtime/kernels.js';
import { measureMachine, probeExports, readBandwidth } from '../engine/runtime/probe.js';

describe('machine probes', () => {
  it('probe_read sums what it reads; probe_copy copies', async () => {
    const K = await Kernels.create();
    const p = K.alloc(1024, 64);
    K.i32(p, 256).fill(3);
    const x = probeExports(K);
    expect(x.probe_read(p, 1024, 1)).toBe(256 * 3);
    expect(x.probe_read(p, 1024, 2)).toBe(2 * 256 * 3);
    K.i32(p + 512, 128).fill(0);
    x.probe_copy(p + 512, p, 512, 1);
    expect(Array.from(K.i32(p + 512, 128)).every((v) => v === 3)).toBe(true);
    expect(Number.isFinite(x.probe_f32(100, 1))).toBe(true);
    expect(Number.isInteger(x.probe_dot_i16(100, 1))).toBe(true);
  });

  it('a tiny measureMachine run gives positive finite bandwidths and peaks', async () => {
    const K = await Kernels.create();
    const m = measureMachine(K, { bandwidthBytes: 1 << 20, readSizes: [1 << 16], reps: 1, computeMs: 2 });
    for (const v of [m.readGBs, m.copyGBs, m.f32Gflops, m.dotGops, m.readCurve[0]!.gbPerS]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    expect(m.threads).toBe(1);
    expect(m.readCurve[0]!.bytes).toBe(1 << 16);
    expect(K.stats().bytesInUse).toBe(0);
    const p = K.alloc(4096, 64);
    K.u8(p, 4096).fill(1);
    expect(readBandwidth(K, p, 4096, 1, 0.1)).toBeGreaterThan(0);
    expect(() => measureMachine(K, { threads: 2 })).toThrow(RangeError);
  });
});
