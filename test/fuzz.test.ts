/**
 * Fuzzing the GGUF reader (and, for a subset, loadModel) with mutations of real model files: bit flips, truncations,
 * u64 counts/lengths/dims/offsets and u32 type fields overwritten with boundary values, random byte runs, inserted
 * and deleted bytes, hyperparameter and tokenizer values replaced. Every case must either succeed or throw a
 * BmcError subclass, finish quickly, and memory must stay bounded.
 *
 * Reproducible: the master seed is printed with every failure; set BMC_FUZZ_SEED to rerun with it (and
 * BMC_FUZZ_SCALE, e.g. 0.2 or 5, to run fewer or more cases). Models come from ../shared/models beside the project
 * or $BMC_LLM_SHARED_MODELS; tiny synthetic llamas are fuzzed as well, so the test runs without fixtures too.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BmcError } from '../engine/errors.js';
import { readGGUFHeader } from '../engine/gguf/reader.js';
import { bytesSource } from '../engine/gguf/source.js';
import { makeTinyLlama, Rng } from '../engine/gguf/synth.js';
import { GGUFValueType as V } from '../engine/gguf/types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODELS = process.env.BMC_LLM_SHARED_MODELS ? resolve(process.env.BMC_LLM_SHARED_MODELS) : resolve(ROOT, '../shared/models');
const SEED = process.env.BMC_FUZZ_SEED ? Number(process.env.BMC_FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 8)) >>> 0;
const SCALE = process.env.BMC_FUZZ_SCALE ? Number(process.env.BMC_FUZZ_SCALE) : 1;
const CASE_MS = 2000;
const RSS_GROWTH = 1.5 * 1024 ** 3;
const MEMORY_LIMIT = 256 * 1024 * 1024;

console.log(`fuzz: seed ${SEED} (BMC_FUZZ_SEED=${SEED} reproduces), scale ${SCALE}, models ${MODELS}`);

// ---------------------------------------------------------------------------------------------------------------
// Where the fields of a valid file are (a small independent parser that trusts its input).

interface Field {
  readonly pos: number;
  readonly kind: string;
}

interface ScalarValue {
  readonly key: string;
  readonly type: number;
  readonly pos: number;
}

interface Layout {
  readonly u64: Field[];
  readonly u32: Field[];
  /** Scalar metadata values (for targeted value replacement). */
  readonly values: ScalarValue[];
  /** [start, end) of the tokenizer.ggml.tokens array payload, if any. */
  readonly tokens: [number, number] | undefined;
  readonly headerEnd: number;
  readonly dataOffset: number;
}

const FIXED: Record<number, number> = {
  [V.UINT8]: 1, [V.INT8]: 1, [V.BOOL]: 1, [V.UINT16]: 2, [V.INT16]: 2, [V.UINT32]: 4, [V.INT32]: 4, [V.FLOAT32]: 4,
  [V.UINT64]: 8, [V.INT64]: 8, [V.FLOAT64]: 8,
};

function scan(b: Uint8Array): Layout {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u64: Field[] = [];
  const u32: Field[] = [];
  const values: ScalarValue[] = [];
  let tokens: [number, number] | undefined;
  let p = 8;
  const r64 = (kind: string): number => {
    u64.push({ pos: p, kind });
    const v = Number(dv.getBigUint64(p, true));
    p += 8;
    return v;
  };
  const r32 = (kind: string): number => {
    u32.push({ pos: p, kind });
    const v = dv.getUint32(p, true);
    p += 4;
    return v;
  };
  u32.push({ pos: 4, kind: 'version' });
  const str = (kind: string): string => {
    const n = r64(kind);
    const s = Buffer.from(b.subarray(p, p + n)).toString('utf8');
    p += n;
    return s;
  };
  const value = (type: number, kind: string): void => {
    if (FIXED[type]) {
      p += FIXED[type]!;
    } else if (type === V.STRING) {
      str(`${kind} strlen`);
    } else {
      const et = r32(`${kind} elemtype`);
      const n = r64(`${kind} arraylen`);
      if (FIXED[et]) p += n * FIXED[et]!;
      else for (let i = 0; i < n; i++) value(et, `${kind}[]`);
    }
  };
  const nT = r64('tensor_count');
  const nKV = r64('kv_count');
  let alignment = 32;
  for (let i = 0; i < nKV; i++) {
    const key = str('key strlen');
    const type = r32('value type');
    if (FIXED[type] || type === V.STRING) values.push({ key, type, pos: p });
    if (key === 'general.alignment') alignment = dv.getUint32(p, true);
    const start = p;
    value(type, 'value');
    if (key === 'tokenizer.ggml.tokens') tokens = [start, p];
  }
  for (let i = 0; i < nT; i++) {
    str('tensor name strlen');
    const nd = r32('n_dims');
    for (let d = 0; d < nd; d++) r64('dim');
    r32('tensor type');
    r64('tensor offset');
  }
  return { u64, u32, values, tokens, headerEnd: p, dataOffset: Math.ceil(p / alignment) * alignment };
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations. Each edits `work` in place and returns the ranges to restore from the pristine copy afterwards
// (or a fresh buffer when the length changes).

const U64_BOUNDARY: bigint[] = [
  0n, 1n, 2n, 3n, 4n, 7n, 8n, 31n, 32n, 33n, 255n, 256n, 65535n, 65536n, 65537n, 1n << 20n, (1n << 20n) + 1n,
  (1n << 28n) - 1n, 1n << 28n, (1n << 28n) + 1n, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n,
  (1n << 32n) + 1n, 1n << 40n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n,
  (1n << 64n) - 1n, (1n << 64n) - 8n,
];
const U32_BOUNDARY: number[] = [
  ...Array.from({ length: 16 }, (_, i) => i), 24, 27, 28, 29, 30, 31, 33, 34, 35, 38, 39, 40, 99, 255, 256, 0xffff,
  0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x01000000, 0x02000000, 0x03000000,
];

interface Corpus {
  readonly name: string;
  readonly pristine: Uint8Array;
  readonly work: Uint8Array;
  readonly layout: Layout;
}

interface Mutant {
  readonly bytes: Uint8Array;
  readonly what: string;
  /** Ranges of `work` to restore afterwards. */
  readonly touched: Array<[number, number]>;
}

function pick<T>(rng: Rng, a: readonly T[]): T {
  return a[rng.int(a.length)]!;
}

function u64Value(rng: Rng, c: Corpus, orig: bigint): bigint {
  const size = BigInt(c.pristine.byteLength);
  switch (rng.int(4)) {
    case 0: return pick(rng, [size, size - 1n, size + 1n, BigInt(c.layout.dataOffset), orig + 1n, orig - 1n, orig * 2n, orig + 32n, orig ^ (1n << 63n)]) & ((1n << 64n) - 1n);
    case 1: return (BigInt(rng.int(2 ** 32)) << 32n) | BigInt(rng.int(2 ** 32));
    default: return pick(rng, U64_BOUNDARY);
  }
}

function mutate(rng: Rng, c: Corpus, kind: string): Mutant {
  const { work, pristine, layout } = c;
  const size = work.byteLength;
  const dv = new DataView(work.buffer, work.byteOffset, work.byteLength);
  const headerPos = () => rng.int(rng.next() < 0.85 ? layout.headerEnd : size);
  switch (kind) {
    case 'bitflip': {
      const n = 1 + rng.int(rng.next() < 0.5 ? 2 : 16);
      const touched: Array<[number, number]> = [];
      const bits: string[] = [];
      for (let i = 0; i < n; i++) {
        const at = headerPos();
        const bit = rng.int(8);
        work[at]! ^= 1 << bit;
        touched.push([at, at + 1]);
        bits.push(`${at}.${bit}`);
      }
      return { bytes: work, what: `bitflip ${bits.join(',')}`, touched };
    }
    case 'truncate': {
      const r = rng.next();
      const len = r < 0.7 ? rng.int(layout.headerEnd + 1) : r < 0.8 ? layout.dataOffset + rng.int(64) - 32 : rng.int(size);
      const l = Math.max(0, Math.min(size - 1, len));
      return { bytes: work.subarray(0, l), what: `truncate to ${l}`, touched: [] };
    }
    case 'u64': {
      const f = pickField(rng, layout.u64);
      const orig = dv.getBigUint64(f.pos, true);
      const v = u64Value(rng, c, orig);
      dv.setBigUint64(f.pos, v, true);
      return { bytes: work, what: `u64 ${f.kind} @${f.pos}: ${orig} -> ${v}`, touched: [[f.pos, f.pos + 8]] };
    }
    case 'u32': {
      const f = pickField(rng, layout.u32);
      const orig = dv.getUint32(f.pos, true);
      const v = rng.next() < 0.8 ? pick(rng, U32_BOUNDARY) : rng.int(2 ** 32);
      dv.setUint32(f.pos, v, true);
      return { bytes: work, what: `u32 ${f.kind} @${f.pos}: ${orig} -> ${v}`, touched: [[f.pos, f.pos + 4]] };
    }
    case 'run': {
      const at = headerPos();
      const len = Math.min(size - at, 1 + rng.int(rng.next() < 0.7 ? 16 : 512));
      const fill = rng.int(4);
      for (let i = 0; i < len; i++) work[at + i] = fill === 0 ? 0 : fill === 1 ? 0xff : rng.int(256);
      return { bytes: work, what: `run @${at} len ${len} fill ${['00', 'ff', 'random', 'random'][fill]}`, touched: [[at, at + len]] };
    }
    case 'shift': {
      // Insert or delete bytes inside the header: everything after moves (a fresh buffer).
      const at = rng.int(layout.headerEnd);
      const n = 1 + rng.int(rng.next() < 0.7 ? 8 : 200);
      const del = rng.next() < 0.5;
      const out = new Uint8Array(del ? size - Math.min(n, size - at) : size + n);
      out.set(pristine.subarray(0, at));
      if (del) out.set(pristine.subarray(Math.min(size, at + n)), at);
      else {
        for (let i = 0; i < n; i++) out[at + i] = rng.int(256);
        out.set(pristine.subarray(at), at + n);
      }
      return { bytes: out, what: `${del ? 'delete' : 'insert'} ${n} bytes @${at}`, touched: [] };
    }
    case 'value': {
      // A scalar metadata value (hyperparameters, token ids, alignment, ...) replaced by a boundary value.
      const pool = layout.values.filter((v) => v.type !== V.STRING || rng.next() < 0.3);
      if (pool.length === 0) return mutate(rng, c, 'u32');
      const s = pick(rng, pool);
      const w = FIXED[s.type];
      let what: string;
      if (s.type === V.FLOAT32 || s.type === V.FLOAT64) {
        const f = pick(rng, [0, -0, -1, 1e-30, 1e30, 1e300, NaN, Infinity, -Infinity, 0.5, 3, 2 ** 31, -(2 ** 31)]);
        if (s.type === V.FLOAT32) dv.setFloat32(s.pos, f, true);
        else dv.setFloat64(s.pos, f, true);
        what = `${f}`;
      } else if (s.type === V.STRING) {
        const len = Number(dv.getBigUint64(s.pos, true));
        const k = Math.min(len, 1 + rng.int(8));
        for (let i = 0; i < k; i++) work[s.pos + 8 + rng.int(Math.max(1, len))] = rng.int(256);
        what = `${k} random bytes in the string`;
        return { bytes: work, what: `value "${s.key}": ${what}`, touched: [[s.pos, s.pos + 8 + len]] };
      } else if (w === 8) {
        const v = pick(rng, U64_BOUNDARY);
        dv.setBigUint64(s.pos, v, true);
        what = `${v}`;
      } else {
        // Half the time a near miss of the original (loads further), else a boundary value.
        let orig = 0;
        for (let i = w! - 1; i >= 0; i--) orig = orig * 256 + work[s.pos + i]!;
        const near = [orig + 1, orig - 1, orig * 2, Math.floor(orig / 2), orig + 32, 0];
        const v = (rng.next() < 0.5 ? pick(rng, near) : pick(rng, U32_BOUNDARY)) >>> 0;
        for (let i = 0; i < w!; i++) work[s.pos + i] = (v >>> (8 * i)) & 0xff;
        what = `${v} (low ${w} bytes)`;
      }
      return { bytes: work, what: `value "${s.key}" @${s.pos} -> ${what}`, touched: [[s.pos, s.pos + (w ?? 8)]] };
    }
    case 'vocab': {
      // Random bytes inside the token strings (invalid UTF-8, changed lengths are left to the u64 cases).
      if (!layout.tokens) return mutate(rng, c, 'run');
      const [a, b] = layout.tokens;
      const n = 1 + rng.int(32);
      const touched: Array<[number, number]> = [];
      for (let i = 0; i < n; i++) {
        const at = a + rng.int(b - a);
        work[at] = pick(rng, [0, 0x20, 0x80, 0xc3, 0xe2, 0xf0, 0xff, rng.int(256)]);
        touched.push([at, at + 1]);
      }
      return { bytes: work, what: `vocab: ${n} bytes in tokenizer.ggml.tokens`, touched };
    }
    default:
      throw new Error(`unknown mutation ${kind}`);
  }
}

/** Fields by kind first (so rare kinds like n_dims are hit as often as the many string lengths), then position. */
function pickField(rng: Rng, fields: readonly Field[]): Field {
  const kinds = [...new Set(fields.map((f) => f.kind))];
  const k = pick(rng, kinds);
  return pick(rng, fields.filter((f) => f.kind === k));
}

function restore(c: Corpus, m: Mutant): void {
  for (const [a, b] of m.touched) c.work.set(c.pristine.subarray(a, b), a);
}

// ---------------------------------------------------------------------------------------------------------------

function corpusOf(name: string, bytes: Uint8Array): Corpus {
  return { name, pristine: bytes, work: bytes.slice(), layout: scan(bytes) };
}

function fixtureFiles(): string[] {
  if (!existsSync(MODELS)) return [];
  const top = readdirSync(MODELS).filter((f) => f.endsWith('.gguf')).sort().map((f) => join(MODELS, f));
  const vdir = join(MODELS, 'vocab');
  const vocab = existsSync(vdir) ? readdirSync(vdir).filter((f) => f.endsWith('.gguf')).sort().map((f) => join(vdir, f)) : [];
  return [...top, ...vocab];
}

const FILES = fixtureFiles();
const SYNTH: Array<[string, () => Uint8Array]> = [
  ['synthetic tiny llama F32', () => makeTinyLlama({ dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocab: 300, seed: 11 })],
  ['synthetic tiny llama Q8_0', () => makeTinyLlama({ dim: 64, layers: 1, heads: 2, ffn: 64, vocab: 280, seed: 12, type: 'Q8_0', tied: true })],
];

const HEADER_KINDS = ['bitflip', 'bitflip', 'truncate', 'u64', 'u64', 'u32', 'run', 'shift', 'value'];

function caseRng(file: string, i: number, salt: number): Rng {
  let h = (SEED ^ salt) >>> 0;
  for (let k = 0; k < file.length; k++) h = Math.imul(h ^ file.charCodeAt(k), 0x01000193) >>> 0;
  return new Rng((h ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
}

interface Tally {
  ok: number;
  typed: number;
  codes: Map<string, number>;
  failures: string[];
  slowest: number;
}

function newTally(): Tally {
  return { ok: 0, typed: 0, codes: new Map(), failures: [], slowest: 0 };
}

const rss0 = process.memoryUsage.rss();
let rssMax = rss0;

/** Runs one case; records a failure for an untyped error, a slow case or memory growth. */
async function runCase(t: Tally, label: string, fn: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  try {
    await fn();
    t.ok++;
  } catch (e) {
    if (e instanceof BmcError) {
      t.typed++;
      t.codes.set(e.code, (t.codes.get(e.code) ?? 0) + 1);
    } else {
      const err = e as Error;
      t.failures.push(`${label}: ${err?.constructor?.name ?? typeof e}: ${err?.message ?? String(e)}\n${(err?.stack ?? '').split('\n').slice(1, 5).join('\n')}`);
    }
  }
  const dt = performance.now() - t0;
  t.slowest = Math.max(t.slowest, dt);
  if (dt > CASE_MS) t.failures.push(`${label}: took ${dt.toFixed(0)} ms (limit ${CASE_MS} ms)`);
  const rss = process.memoryUsage.rss();
  rssMax = Math.max(rssMax, rss);
  if (rss - rss0 > RSS_GROWTH) t.failures.push(`${label}: rss grew by ${((rss - rss0) / 2 ** 20).toFixed(0)} MiB`);
}

function report(t: Tally, what: string): void {
  const codes = [...t.codes].map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`fuzz ${what}: ${t.ok + t.typed} cases, ${t.ok} parsed, ${t.typed} typed errors (${codes}), slowest ${t.slowest.toFixed(0)} ms, rss +${((rssMax - rss0) / 2 ** 20).toFixed(0)} MiB`);
  expect(t.failures.slice(0, 10), `seed ${SEED}: ${t.failures.length} failures (rerun with BMC_FUZZ_SEED=${SEED})`).toEqual([]);
}

/** Cases per file: fewer for files whose header is large (the vocab-only files parse in 10-100 ms). */
function headerCases(c: Corpus): number {
  const n = c.layout.headerEnd > 200_000 ? 40 : 400;
  return Math.max(1, Math.round(n * SCALE));
}

let totalCases = 0;

/**
 * Lets the event loop run: the cases only await microtasks, and a long run of them would starve the test
 * runner's worker messages (vitest then reports an RPC timeout).
 */
function macrotask(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

describe(`GGUF header fuzz (seed ${SEED})`, () => {
  const entries: Array<[string, () => Uint8Array]> = [
    ...FILES.map((f): [string, () => Uint8Array] => [basename(f), () => new Uint8Array(readFileSync(f))]),
    ...SYNTH,
  ];
  if (FILES.length === 0) console.warn(`fuzz: no fixture models at ${MODELS}; fuzzing synthetic files only`);

  it.each(entries)('%s', async (name, load) => {
    const c = corpusOf(name, load());
    await readGGUFHeader(bytesSource(c.pristine)); // the original must parse
    const t = newTally();
    const n = headerCases(c);
    for (let i = 0; i < n; i++) {
      const rng = caseRng(name, i, 1);
      const kind = pick(rng, HEADER_KINDS);
      const m = mutate(rng, c, kind);
      await runCase(t, `seed ${SEED} ${name} case ${i} [${m.what}]`, async () => {
        await readGGUFHeader(bytesSource(m.bytes, name));
      });
      restore(c, m);
      if (i % 50 === 49) await macrotask();
    }
    totalCases += n;
    report(t, name);
  }, 120_000);
});

describe(`loadModel fuzz (seed ${SEED})`, () => {
  // Files the engine can load; mutating them reaches hparams, tokenizer, weight planning and loading.
  const loadable = ['stories260K.gguf', 'llama2xs-tok512.gguf', 'babyllama-tok105-q8_0.gguf', 'babyllama-tok105-q4_0.gguf', 'synth-d256-q4_0.gguf',
    'synth-d256-q4_k_m-mixed.gguf']
    .map((f) => join(MODELS, f)).filter((f) => existsSync(f));
  const entries: Array<[string, () => Uint8Array]> = [
    ...loadable.map((f): [string, () => Uint8Array] => [basename(f), () => new Uint8Array(readFileSync(f))]),
    ...SYNTH,
  ];
  const perFile = Math.max(1, Math.round((600 / entries.length) * SCALE));
  const kinds = ['value', 'value', 'value', 'vocab', 'u64', 'u32', 'bitflip', 'truncate', 'run'];

  it.each(entries)('%s', async (name, load) => {
    const { loadModel } = await import('../engine/model.js');
    const c = corpusOf(name, load());
    const first = await loadModel(c.pristine, { memoryLimit: MEMORY_LIMIT }); // the original must load
    first.dispose();
    const t = newTally();
    for (let i = 0; i < perFile; i++) {
      const rng = caseRng(name, i, 2);
      const kind = pick(rng, kinds);
      const m = mutate(rng, c, kind);
      // loadModel reads from the source lazily; `work` must stay mutated until the load has finished.
      await runCase(t, `seed ${SEED} loadModel ${name} case ${i} [${m.what}]`, async () => {
        const model = await loadModel(m.bytes, { memoryLimit: MEMORY_LIMIT });
        try {
          const ids = model.tokenize('Once upon a time, 42 ünïcode ✓');
          model.detokenize(ids);
        } finally {
          model.dispose();
        }
      });
      restore(c, m);
      if (i % 10 === 9) await macrotask();
    }
    totalCases += perFile;
    report(t, `loadModel ${name}`);
  }, 120_000);

  it('ran several thousand cases in total', () => {
    // (0 when a -t filter ran only this test.)
    if (SCALE >= 1 && totalCases > 0) expect(totalCases).toBeGreaterThanOrEqual(FILES.length > 0 ? 5000 : 700);
    console.log(`fuzz: ${totalCases} cases in total`);
  });
});
