/**
 * KV policies: every layout gives bit-identical logits (for every KV element type), capacities and copy traffic
 * follow each policy's rule, the caches return the arena, and the options and the --kv / --kv-type flags are
 * validated.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, OptionError } from '../engine/index.js';
import type { KVOptions, KVStats, Model } from '../engine/index.js';
import { ContiguousKVCache, bmcRule, concatRule, staticRule } from '../engine/kv/cache.js';
import type { KVGrowthRule } from '../engine/kv/cache.js';
import { PagedKVCache } from '../engine/kv/paged.js';
import { parseKVFlag, parseKVTypeFlag, validateKVOptions } from '../engine/kv/options.js';
import { kvElement } from '../engine/kv/element.js';
import type { KVType } from '../engine/kv/element.js';
import { Kernels } from '../engine/runtime/kernels.js';
import { MODELS, ROOT, readReference } from './shared-paths.js';

const POLICIES: [string, KVOptions][] = [
  ['static', { policy: 'static' }],
  ['concat', { policy: 'concat' }],
  ['bmc:5', { policy: 'bmc', r: 5 }],
  ['bmc:64', { policy: 'bmc', r: 64 }],
  ['paged:16', { policy: 'paged', blockSize: 16 }],
  ['paged:1', { policy: 'paged', blockSize: 1 }],
  ['paged:7', { policy: 'paged', blockSize: 7 }],
  ['auto', { policy: 'auto' }],
];

const MODEL_CASES = [
  { file: 'stories260K.gguf', ref: 'stories260K.p3.json', contextLength: 512 },
  { file: 'llama2xs-tok512.gguf', ref: 'llama2xs-tok512.p3.json', contextLength: 2048 },
  { file: 'babyllama-tok105.gguf', ref: 'babyllama-tok105.p3.json', contextLength: 2048 },
  { file: 'synth-d256-q4_0.gguf', ref: 'synth-d256-q4_0.p3.json', contextLength: 2048 }, // GQA: 8 heads / 2 KV heads
  // Every other weight type among the reference models (the KV path is the same; the policies must not care).
  ...['f32', 'f16', 'bf16', 'q8_0', 'q4_1', 'q5_0', 'q5_1'].map((t) => ({ file: `synth-d256-${t}.gguf`, ref: `synth-d256-${t}.p2.json`, contextLength: 2048 })),
  { file: 'babyllama-tok105-q8_0.gguf', ref: 'babyllama-tok105-q8_0.p2.json', contextLength: 2048 },
  { file: 'babyllama-tok105-q4_0.gguf', ref: 'babyllama-tok105-q4_0.p2.json', contextLength: 2048 },
];

/** The element types on models of head size 8 (q8_0 in blocks of 8), 16 (blocks of 16) and 32 with GQA. */
const TYPE_CASES = ['f16', 'q8_0'].flatMap((type) => [
  { type, file: 'stories260K.gguf', ref: 'stories260K.p3.json', contextLength: 512 },
  { type, file: 'babyllama-tok105.gguf', ref: 'babyllama-tok105.p3.json', contextLength: 2048 },
  { type, file: 'synth-d256-q4_0.gguf', ref: 'synth-d256-q4_0.p3.json', contextLength: 2048 },
]) as Array<{ type: KVType; file: string; ref: string; contextLength: number }>;

const BATCH = 16;
const PREFILL = 40;

function firstBitDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** Checks one policy's bookkeeping after a step; `prev` is the state before it. */
function checkStep(name: string, m: Model, st: KVStats, prev: KVStats, maxLen: number, evalRows: number, arenaCopied: number): void {
  const hp = m.info.hparams!;
  const rowBytes = kvElement(st.type, hp.nKVHeads, hp.headDim).rowBytes;
  const ctx = m.info.contextLength!;
  expect(st.capacity).toBeGreaterThanOrEqual(st.length);
  expect(st.bytes).toBe(st.capacity * rowBytes * 2 * hp.nLayers);
  const grew = st.growths - prev.growths;
  const copied = st.bytesCopied - prev.bytesCopied;
  expect(arenaCopied).toBe(copied); // the arena counts exactly the cache's growth copies
  if (name === 'static') {
    expect(st.capacity).toBe(ctx);
    expect(st.growths).toBe(0);
    expect(st.bytesCopied).toBe(0);
  } else if (name === 'concat') {
    if (st.length > prev.length && prev.length === prev.capacity) {
      // Every forward chunk allocates exactly what it needs and copies all live rows of every layer.
      const chunks = Math.ceil(evalRows / BATCH);
      expect(grew).toBe(chunks);
      let want = 0;
      for (let c = 0, len = prev.length; c < chunks; c++, len += BATCH) want += len * rowBytes * 2 * hp.nLayers;
      expect(copied).toBe(want);
      expect(st.capacity).toBe(st.length);
    } else if (st.length <= prev.capacity) {
      expect(grew).toBe(0);
      expect(copied).toBe(0);
    }
  } else if (name.startsWith('bmc:')) {
    const R = Number(name.slice(4));
    expect(st.capacity).toBeLessThanOrEqual(Math.min(maxLen + R, ctx));
    if (st.length <= prev.capacity) {
      expect(grew).toBe(0); // fits: written in place
      expect(copied).toBe(0);
    } else if (evalRows === 1) {
      expect(grew).toBe(1);
      expect(copied).toBe(prev.length * rowBytes * 2 * hp.nLayers);
      expect(st.capacity).toBe(Math.min(st.length + R, ctx));
    }
  } else if (name === 'auto') {
    // BMC with R from the analytical model: in place when it fits; a growth leaves at least kSpec + 1 = 9 spare rows
    // (unless the context is the limit) and copies exactly the live rows once.
    if (st.length <= prev.capacity) {
      expect(grew).toBe(0);
      expect(copied).toBe(0);
    } else if (evalRows === 1) {
      expect(grew).toBe(1);
      expect(copied).toBe(prev.length * rowBytes * 2 * hp.nLayers);
      expect(st.capacity - st.length).toBeGreaterThanOrEqual(Math.min(9, ctx - st.length));
    }
  } else {
    expect(name.startsWith('paged:')).toBe(true);
    const B = Number(name.slice(6));
    expect(st.blockSize).toBe(B);
    expect(st.blocks).toBe(Math.ceil(maxLen / B)); // blocks past a rollback are kept as spare
    expect(st.capacity).toBe(st.blocks! * B);
    expect(st.bytesCopied).toBe(0);
  }
}

describe.each([
  ...MODEL_CASES.map((c) => ({ ...c, type: 'f32' as KVType })),
  ...TYPE_CASES,
])('every KV policy gives the logits of static: $file, $type rows', ({ file, ref, contextLength, type }) => {
  it('prefill chunk, single tokens, rollback and re-feed', async () => {
    const r = readReference(ref);
    const ids = [...r.prompt_ids, ...r.greedy_ids.slice(0, -1)];
    const V = r.n_vocab;
    const cut = ids.length - 12; // rollback point
    const outs: Float32Array[] = [];
    for (const [name, kv] of POLICIES) {
      const m = await loadModel(join(MODELS, file), { kv: { ...kv, type }, contextLength, batchSize: BATCH });
      const s = m.createSession();
      const parts: Float32Array[] = [];
      let maxLen = 0;
      const step = async (tokens: number[], mode: 'all' | 'last') => {
        const prev = s.kvStats();
        const a0 = m.memoryStats()!.bytesCopied;
        parts.push(await s.eval(tokens, { logits: mode }));
        maxLen = Math.max(maxLen, s.length);
        checkStep(name, m, s.kvStats(), prev, maxLen, tokens.length, m.memoryStats()!.bytesCopied - a0);
      };
      await step(ids.slice(0, PREFILL), 'all');
      for (let i = PREFILL; i < ids.length; i++) await step([ids[i]!], 'last');
      // Rollback: drop the last 12 tokens, feed 5 other tokens (a rejected draft), roll back again, then re-feed the
      // originals as one chunk and one token: stale rows must be overwritten, never read.
      s.truncate(cut);
      await step([3, 4, 5, 6, 7].map((t) => t % V), 'all');
      s.truncate(cut);
      await step(ids.slice(cut, ids.length - 1), 'all');
      await step([ids[ids.length - 1]!], 'last');
      expect(s.length).toBe(ids.length);
      outs.push(Float32Array.from(parts.flatMap((p) => Array.from(p))));
      const st = s.kvStats();
      expect(st.policy).toBe(kv.policy);
      expect(st.type).toBe(type);
      s.dispose();
      m.dispose();
    }
    const want = outs[0]!;
    expect(want.length).toBe((PREFILL + (ids.length - PREFILL) + 5 + 12) * V);
    // The re-fed rows equal the first pass at the same positions (rollback is exact; rows 0.. are positions 0..).
    expect(cut).toBeGreaterThan(PREFILL);
    expect(firstBitDiff(want.subarray(want.length - 12 * V), want.subarray(cut * V, ids.length * V))).toBe(-1);
    for (let p = 1; p < POLICIES.length; p++) {
      const at = firstBitDiff(want, outs[p]!);
      if (at >= 0) expect.fail(`${POLICIES[p]![0]}: logit ${at} is ${outs[p]![at]}, static gives ${want[at]}`);
    }
  });
});

describe('KV caches directly on the arena', () => {
  const shape = { nLayers: 3, nKVHeads: 2, headDim: 4, contextLength: 50 };
  const rowF = shape.nKVHeads * shape.headDim;

  /** Writes rows for positions [len, len+n) of every layer with value-coded contents, as the forward pass would. */
  function feed(K: Kernels, kv: ContiguousKVCache | PagedKVCache, n: number): void {
    const pos0 = kv.length;
    kv.reserve(n);
    for (let l = 0; l < shape.nLayers; l++) {
      const kr = K.f32(kv.newKeys(l), n * rowF), vr = K.f32(kv.newValues(l), n * rowF);
      for (let i = 0; i < n * rowF; i++) {
        kr[i] = 1000 * l + (pos0 + Math.floor(i / rowF)) + (i % rowF) / 100;
        vr[i] = -kr[i]!;
      }
      kv.commitRows(l, pos0, n);
    }
    kv.advance(n);
  }

  it('contiguous rules: rows survive growth, spare rows are zero, copies are counted', async () => {
    for (const rule of [staticRule, concatRule, bmcRule(5), bmcRule(100)] as KVGrowthRule[]) {
      const K = await Kernels.create();
      const kv = new ContiguousKVCache(K, shape, rule);
      for (const n of [3, 1, 1, 7, 1, 1, 1, 1, 1, 1, 12]) feed(K, kv, n);
      const len = kv.length;
      for (let l = 0; l < shape.nLayers; l++) {
        const k = K.f32(kv.keys(l), kv.capacity * rowF);
        for (let j = 0; j < len; j++) expect(k[j * rowF + 3]).toBe(Math.fround(1000 * l + j + 0.03));
        expect(k.subarray(len * rowF).every((x) => x === 0)).toBe(true);
      }
      const st = kv.stats();
      expect(st.bytesCopied).toBe(K.stats().bytesCopied);
      if (rule === concatRule) expect(st.growths).toBe(11);
      if (rule === staticRule) expect([st.capacity, st.growths, st.bytesCopied]).toEqual([50, 0, 0]);
      if (rule.name === 'bmc:100') expect([st.capacity, st.growths, st.bytesCopied]).toEqual([50, 1, 0]); // clamped to the context
      kv.dispose();
      expect(K.stats().bytesInUse).toBe(0);
    }
  });

  it('a custom growth rule plugs in (the shape of `auto`)', async () => {
    const K = await Kernels.create();
    const doubling: KVGrowthRule = { name: 'double', initialCapacity: () => 4, nextCapacity: (_l, need, cap) => Math.max(need, 2 * cap) };
    const kv = new ContiguousKVCache(K, shape, doubling, 'auto');
    const caps: number[] = [kv.capacity];
    for (let i = 0; i < 20; i++) { feed(K, kv, 1); caps.push(kv.capacity); }
    expect([...new Set(caps)]).toEqual([4, 8, 16, 32]);
    expect(kv.stats()).toMatchObject({ policy: 'auto', layout: 'double', growths: 3 });
    kv.dispose();
  });

  it('paged: rows land in their blocks through staging, blocks are never moved, rollback keeps them', async () => {
    const K = await Kernels.create();
    const kv = new PagedKVCache(K, shape, 4);
    const base = K.stats().bytesInUse;
    const seen = new Set<number>();
    for (const n of [3, 1, 1, 7, 1, 1, 1, 9]) {
      feed(K, kv, n);
      expect(kv.blocks).toBe(Math.ceil(kv.length / 4));
    }
    expect(kv.length).toBe(24);
    expect(K.stats().bytesCopied).toBe(0);
    // Read every row back through the block table that the kernel uses.
    const table = (l: number, which: 0 | 1) => {
      const maxBlocks = Math.ceil(shape.contextLength / 4);
      return Array.from(K.i32((kv as unknown as { tables: number }).tables + 4 * (2 * l + which) * maxBlocks, kv.blocks));
    };
    for (let l = 0; l < shape.nLayers; l++) {
      const kt = table(l, 0), vt = table(l, 1);
      for (const b of [...kt, ...vt]) seen.add(b);
      for (let j = 0; j < kv.length; j++) {
        const k = K.f32(kt[Math.floor(j / 4)]! + (j % 4) * rowF * 4, rowF);
        const v = K.f32(vt[Math.floor(j / 4)]! + (j % 4) * rowF * 4, rowF);
        expect(k[5]).toBe(Math.fround(1000 * l + j + 0.05));
        expect(v[5]).toBe(-Math.fround(1000 * l + j + 0.05));
      }
    }
    expect(seen.size).toBe(2 * shape.nLayers * kv.blocks);
    kv.truncate(5);
    expect(kv.blocks).toBe(6); // kept as spare
    feed(K, kv, 10);
    expect(kv.blocks).toBe(6);
    const st = kv.stats();
    expect(st).toMatchObject({ policy: 'paged', blockSize: 4, blocks: 6, capacity: 24, bytesCopied: 0 });
    expect(K.stats().bytesInUse - base).toBe(st.bytes + 2 * 10 * rowF * 4); // blocks + staging rows (10: the widest step that crossed a block)
    kv.dispose();
    expect(K.stats().bytesInUse).toBe(0);
    const full = new PagedKVCache(K, shape, 7);
    feed(K, full, 49);
    expect(() => full.reserve(2)).toThrow(/context length 50/);
    full.dispose();
  });
});

describe('KV caches return the arena', () => {
  it.each(POLICIES)('%s: generate and dispose many times leaves bytesInUse where it started', async (_name, kv) => {
    const m = await loadModel(join(MODELS, 'stories260K.gguf'), { kv, contextLength: 256, batchSize: 8 });
    const base = m.memoryStats()!.bytesInUse;
    for (let i = 0; i < 4; i++) {
      const text = await m.generate('Once upon a time', { maxTokens: 20 + 7 * i, seed: i, ignoreEos: true }).text();
      expect(text.length).toBeGreaterThan(0);
      expect(m.memoryStats()!.bytesInUse).toBe(base);
    }
    const s = m.createSession();
    await s.eval([1, 403, 407, 261, 378, 11, 12, 13, 14]);
    expect(m.memoryStats()!.bytesInUse).toBeGreaterThan(base);
    s.truncate(2);
    await s.eval([5]);
    s.dispose();
    expect(m.memoryStats()!.bytesInUse).toBe(base);
    m.dispose();
  });
});

describe('KV options', () => {
  it('validates every field with an OptionError naming it', () => {
    expect(validateKVOptions(undefined)).toEqual({
      policy: 'auto', r: 64, blockSize: 16, budgetBytes: undefined, type: 'f32', warm: 'none', warmFraction: 0.5, cold: 'memory', coldPath: undefined,
      placement: 'attention', migrationRatio: 1, maxMigrationsPerStep: Infinity, // tiered only; the defaults elsewhere
    });
    expect(() => validateKVOptions({ policy: 'paged', maxMigrationsPerStep: 2 })).toThrow(/kv\.maxMigrationsPerStep.*tiered/);
    expect(validateKVOptions({ type: 'q8_0' })).toMatchObject({ type: 'q8_0' });
    expect(() => validateKVOptions({ type: 'q4_0' as KVType })).toThrow(/kv\.type/);
    expect(validateKVOptions({ policy: 'paged', blockSize: 7 })).toMatchObject({ policy: 'paged', blockSize: 7 });
    expect(validateKVOptions({ policy: 'auto', budgetBytes: 1 << 20 })).toMatchObject({ policy: 'auto', budgetBytes: 1 << 20 });
    expect(() => validateKVOptions({ policy: 'ring' as 'bmc' })).toThrow(/kv\.policy/);
    expect(() => validateKVOptions({ r: 0 })).toThrow(/kv\.r/);
    expect(() => validateKVOptions({ r: 2.5 })).toThrow(/kv\.r/);
    expect(() => validateKVOptions({ policy: 'paged', blockSize: 0 })).toThrow(/kv\.blockSize/);
    expect(() => validateKVOptions({ blockSize: '16' as unknown as number })).toThrow(/kv\.blockSize/);
    expect(() => validateKVOptions({ budgetBytes: -1 })).toThrow(/kv\.budgetBytes/);
    expect(() => validateKVOptions({ budgetBytes: 1.5 })).toThrow(OptionError);
  });

  it('parses the --kv flag', () => {
    expect(parseKVFlag('concat')).toEqual({ policy: 'concat' });
    expect(parseKVFlag('static')).toEqual({ policy: 'static' });
    expect(parseKVFlag('bmc:5')).toEqual({ policy: 'bmc', r: 5 });
    expect(parseKVFlag('bmc')).toEqual({ policy: 'bmc' });
    expect(parseKVFlag('paged:16')).toEqual({ policy: 'paged', blockSize: 16 });
    expect(parseKVFlag('auto')).toEqual({ policy: 'auto' });
    for (const bad of ['bmc:x', 'bmc:', 'bmc:0', 'bmc:-3', 'bmc:1.5', 'paged:abc', 'paged:0', 'static:4', 'ring', '', 'BMC:4', 'auto:3']) {
      let e: unknown;
      try { parseKVFlag(bad); } catch (x) { e = x; }
      expect(e, bad).toBeInstanceOf(OptionError);
      expect((e as OptionError).option).toBe('--kv');
    }
  });

  it('parses the --kv-type flag', () => {
    for (const t of ['f32', 'f16', 'q8_0'] as const) expect(parseKVTypeFlag(t)).toBe(t);
    for (const bad of ['', 'F16', 'q8', 'q4_0', 'bf16']) {
      let e: unknown;
      try { parseKVTypeFlag(bad); } catch (x) { e = x; }
      expect(e, bad).toBeInstanceOf(OptionError);
      expect((e as OptionError).option).toBe('--kv-type');
    }
  });

  it('q8_0 takes blocks of 32, 16 or 8 along a head and refuses other head sizes', async () => {
    expect(kvElement('q8_0', 6, 48)).toMatchObject({ qBlock: 16, headBytes: 3 * 18, rowBytes: 6 * 54 });
    expect(kvElement('q8_0', 2, 64)).toMatchObject({ qBlock: 32, headBytes: 68 });
    expect(kvElement('q8_0', 4, 8)).toMatchObject({ qBlock: 8, headBytes: 10 });
    expect(kvElement('f16', 6, 48).rowBytes).toBe(576);
    expect(() => kvElement('q8_0', 3, 12)).toThrow(/kv\.type.*head size 12/);
    // A model whose head size is 12 (dim 48, 4 heads) is refused at load with the option named.
    const { makeTinyLlama } = await import('../engine/gguf/synth.js');
    const bytes = makeTinyLlama({ dim: 48, heads: 4, layers: 1, ffn: 64 });
    await expect(loadModel(bytes, { kv: { type: 'q8_0' } })).rejects.toThrow(/kv\.type/);
    const m = await loadModel(bytes, { kv: { type: 'f16' } });
    expect(m.info.memory!.kvPerToken).toBe(2 * 1 * 48 * 2);
    m.dispose();
  });

});
