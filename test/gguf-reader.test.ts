/**
 * GGUF reader and writer: round trips of every metadata value type, nested arrays, alignment and the tensor
 * table; then hand-crafted hostile files, each of which must fail with a typed error naming the offending field.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BmcError, GGUFFormatError, OptionError, UnsupportedError } from '../engine/errors.js';
import { openReader, readGGUFHeader, readHeader, streamTensorData } from '../engine/gguf/reader.js';
import type { GGUFHeader } from '../engine/gguf/reader.js';
import type { ByteSource } from '../engine/gguf/source.js';
import { bytesSource } from '../engine/gguf/source.js';
import {
  bf16ToF32, dequantize, f16ToF32, f32ToBF16, f32ToF16, makeTinyLlama, quantize, Rng, tinyLlamaWriter, tinySpmVocab,
} from '../engine/gguf/synth.js';
import { GGMLType, GGUFValueType as V } from '../engine/gguf/types.js';
import { ByteBuilder, ggufArray, GGUFWriter } from '../engine/gguf/writer.js';
import { MODELS } from './shared-paths.js';

const read = (bytes: Uint8Array): Promise<GGUFHeader> => readGGUFHeader(bytesSource(bytes, 'test.gguf'));

/** A source of unknown size (like a stream without Content-Length), delivering `chunk`-byte pieces. */
function unsizedSource(bytes: Uint8Array, chunk = 7): ByteSource {
  return {
    name: 'stream.gguf',
    size: undefined,
    async *chunks() {
      for (let o = 0; o < bytes.byteLength; o += chunk) yield bytes.subarray(o, Math.min(bytes.byteLength, o + chunk));
    },
  };
}

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the read to fail, but it succeeded');
}

/** Asserts a GGUFFormatError whose field contains `field` (and whose message names it), message matching `msg`. */
async function expectFormat(bytes: Uint8Array, field: string, msg?: RegExp): Promise<GGUFFormatError> {
  const e = await failure(read(bytes));
  if (!(e instanceof GGUFFormatError)) throw new Error(`expected GGUFFormatError, got ${e.constructor.name}: ${e.message}`);
  expect(e.field).toContain(field);
  expect(e.message).toContain(field);
  expect(e.message).toContain('test.gguf');
  if (msg) expect(e.message).toMatch(msg);
  return e;
}

/** Byte equality without vitest's slow element-wise diff of large arrays. */
function expectSameBytes(a: Uint8Array, b: Uint8Array): void {
  expect(a.byteLength).toBe(b.byteLength);
  let i = 0;
  while (i < a.byteLength && a[i] === b[i]) i++;
  expect(i, `first difference at byte ${i}`).toBe(a.byteLength);
}

/** Header prefix: magic, version, tensor count, kv count. */
function head(nTensors: number | bigint, nKV: number | bigint, version = 3): ByteBuilder {
  return new ByteBuilder().u32(0x46554747).u32(version).u64(nTensors).u64(nKV);
}

/** A tensor-info record. */
function tinfo(b: ByteBuilder, name: string, shape: Array<number | bigint>, type: number, offset: number | bigint): ByteBuilder {
  b.string(name).u32(shape.length);
  for (const d of shape) b.u64(d);
  return b.u32(type).u64(offset);
}

/** Pads to 32 and appends `n` data bytes. */
function withData(b: ByteBuilder, n: number): Uint8Array {
  b.pad(32);
  b.bytes(new Uint8Array(n));
  return b.toBytes();
}

/** A small valid file covering most value types, nested arrays and two tensors. */
function sampleWriter(): GGUFWriter {
  const w = new GGUFWriter();
  w.setString('general.architecture', 'llama');
  w.setU8('u8', 200).setI8('i8', -100).setU16('u16', 60000).setI16('i16', -30000);
  w.setU32('u32', 4_000_000_000).setI32('i32', -2_000_000_000).setF32('f32', 1.5).setF64('f64', Math.PI);
  w.setBool('yes', true).setBool('no', false).setString('str', 'héllo ✓ 世界').setString('empty', '');
  w.setU64('u64.small', 12345).setU64('u64.big', 2n ** 64n - 1n).setI64('i64.small', -5).setI64('i64.big', -(2n ** 63n));
  w.setArray('a.u8', V.UINT8, new Uint8Array([0, 1, 255]));
  w.setArray('a.i8', V.INT8, [-128, 0, 127]);
  w.setArray('a.u16', V.UINT16, [0, 65535]);
  w.setArray('a.i16', V.INT16, [-32768, 32767]);
  w.setArray('a.u32', V.UINT32, [0, 4294967295]);
  w.setArray('a.i32', V.INT32, new Int32Array([-1, 2, -3]));
  w.setArray('a.f32', V.FLOAT32, [0.5, -2.25]);
  w.setArray('a.f64', V.FLOAT64, [1e300, -1e-300]);
  w.setArray('a.u64', V.UINT64, [0n, 2n ** 64n - 1n]);
  w.setArray('a.i64', V.INT64, [-(2n ** 63n), 2n ** 63n - 1n]);
  w.setArray('a.bool', V.BOOL, [true, false, true]);
  w.setArray('a.str', V.STRING, ['a', '', 'ünï']);
  w.setArray('a.empty', V.UINT32, []);
  w.setArray('a.nested', V.ARRAY, [ggufArray(V.UINT32, [1, 2]), ggufArray(V.UINT32, [3])]);
  w.setArray('a.nested.str', V.ARRAY, [ggufArray(V.STRING, ['x', 'y']), ggufArray(V.STRING, [])]);
  w.setArray('a.deep', V.ARRAY, [ggufArray(V.ARRAY, [ggufArray(V.ARRAY, [ggufArray(V.INT8, [-7])])])]);
  const f32 = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).buffer);
  w.addTensor('a', [4, 3], GGMLType.F32, f32);
  w.addTensor('b', [64, 2], GGMLType.Q8_0, quantize(GGMLType.Q8_0, Float32Array.from({ length: 128 }, (_, i) => i / 10 - 6)));
  w.addTensor('c', [5], GGMLType.F16, () => quantize(GGMLType.F16, new Float32Array([1, -1, 0.5, 2, 3])));
  return w;
}

describe('GGUF writer and reader round trip', () => {
  it('round-trips every scalar value type', async () => {
    const h = await read(sampleWriter().toBytes());
    const m = h.metadata;
    expect(h.version).toBe(3);
    expect(m.get('general.architecture')).toBe('llama');
    expect(m.get('u8')).toBe(200);
    expect(m.get('i8')).toBe(-100);
    expect(m.get('u16')).toBe(60000);
    expect(m.get('i16')).toBe(-30000);
    expect(m.get('u32')).toBe(4_000_000_000);
    expect(m.get('i32')).toBe(-2_000_000_000);
    expect(m.get('f32')).toBe(1.5);
    expect(m.get('f64')).toBe(Math.PI);
    expect(m.get('yes')).toBe(true);
    expect(m.get('no')).toBe(false);
    expect(m.get('str')).toBe('héllo ✓ 世界');
    expect(m.get('empty')).toBe('');
    expect(m.get('u64.small')).toBe(12345);
    expect(m.get('u64.big')).toBe(2n ** 64n - 1n);
    expect(m.get('i64.small')).toBe(-5);
    expect(m.get('i64.big')).toBe(-(2n ** 63n));
    const types = h.metadataTypes;
    expect(types.get('u8')).toBe(V.UINT8);
    expect(types.get('i64.big')).toBe(V.INT64);
    expect(types.get('a.nested')).toBe(V.ARRAY);
    expect(types.get('str')).toBe(V.STRING);
  });

  it('round-trips arrays of every element type, empty and nested arrays', async () => {
    const m = (await read(sampleWriter().toBytes())).metadata;
    expect(m.get('a.u8')).toEqual(new Uint8Array([0, 1, 255]));
    expect(m.get('a.i8')).toEqual(new Int8Array([-128, 0, 127]));
    expect(m.get('a.u16')).toEqual(new Uint16Array([0, 65535]));
    expect(m.get('a.i16')).toEqual(new Int16Array([-32768, 32767]));
    expect(m.get('a.u32')).toEqual(new Uint32Array([0, 4294967295]));
    expect(m.get('a.i32')).toEqual(new Int32Array([-1, 2, -3]));
    expect(m.get('a.f32')).toEqual(new Float32Array([0.5, -2.25]));
    expect(m.get('a.f64')).toEqual(new Float64Array([1e300, -1e-300]));
    expect(m.get('a.u64')).toEqual(new BigUint64Array([0n, 2n ** 64n - 1n]));
    expect(m.get('a.i64')).toEqual(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]));
    expect(m.get('a.bool')).toEqual([true, false, true]);
    expect(m.get('a.str')).toEqual(['a', '', 'ünï']);
    expect(m.get('a.empty')).toEqual(new Uint32Array([]));
    expect(m.get('a.nested')).toEqual([new Uint32Array([1, 2]), new Uint32Array([3])]);
    expect(m.get('a.nested.str')).toEqual([['x', 'y'], []]);
    expect(m.get('a.deep')).toEqual([[[new Int8Array([-7])]]]);
  });

  it('lays out the tensor table and data with alignment and padding', async () => {
    const w = sampleWriter();
    const bytes = w.toBytes();
    const h = await read(bytes);
    expect(h.alignment).toBe(32);
    expect(h.dataOffset % 32).toBe(0);
    expect(h.tensors.map((t) => [t.name, t.typeName, t.shape, t.nElements, t.nBytes])).toEqual([
      ['a', 'F32', [4, 3], 12, 48],
      ['b', 'Q8_0', [64, 2], 128, 136],
      ['c', 'F16', [5], 5, 10],
    ]);
    expect(h.tensors.map((t) => t.offset)).toEqual([0, 64, 224]);
    for (const t of h.tensors) {
      expect(t.offset % 32).toBe(0);
      expect(t.fileOffset).toBe(h.dataOffset + t.offset);
    }
    // Padded after every tensor, the last one included, as llama.cpp writes files.
    expect(bytes.byteLength).toBe(h.dataOffset + 256);
    expect(h.dataBytes).toBe(234);
    const a = h.tensors[0]!;
    expect(new Float32Array(bytes.slice(a.fileOffset, a.fileOffset + a.nBytes).buffer)[11]).toBe(12);
    const c = h.tensors[2]!;
    expect(dequantize(GGMLType.F16, bytes.subarray(c.fileOffset, c.fileOffset + c.nBytes), 5)).toEqual(new Float32Array([1, -1, 0.5, 2, 3]));
    const layout = w.layout();
    expect(layout.dataOffset).toBe(h.dataOffset);
    expect(layout.offsets).toEqual([0, 64, 224]);
    expect(layout.totalBytes).toBe(bytes.byteLength);
  });

  it.each([1, 8, 64, 4096])('honours general.alignment = %i', async (align) => {
    const w = sampleWriter().setU32('general.alignment', align);
    const bytes = w.toBytes();
    const h = await read(bytes);
    expect(h.alignment).toBe(align);
    expect(h.dataOffset % align).toBe(0);
    expect(h.dataOffset - align).toBeLessThan(w.layout().headerBytes);
    for (const t of h.tensors) expect(t.offset % align).toBe(0);
    expect(bytes.byteLength % align).toBe(0);
    expect(h.metadata.get('general.alignment')).toBe(align);
  });

  it('writes version 2 files with the same layout', async () => {
    const h = await read(new GGUFWriter({ version: 2 }).setString('k', 'v').toBytes());
    expect(h.version).toBe(2);
    expect(h.metadata.get('k')).toBe('v');
    expect(h.tensors).toEqual([]);
  });

  it('writeTo streams the same bytes as toBytes, calling lazy data functions', async () => {
    const w = sampleWriter();
    const chunks: Uint8Array[] = [];
    await w.writeTo(async (c) => {
      chunks.push(c.slice());
    });
    const all = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
    let o = 0;
    for (const c of chunks) {
      all.set(c, o);
      o += c.byteLength;
    }
    expectSameBytes(all, w.toBytes());
  });

  it('streams tensor data from a file of unknown size in small chunks', async () => {
    const bytes = sampleWriter().toBytes();
    const src = unsizedSource(bytes, 5);
    const r = openReader(src);
    const h = await readHeader(r, src.name, src.size);
    const got = new Map<string, Uint8Array>();
    await streamTensorData(r, h, [h.tensors[2]!, h.tensors[0]!], (t, part, at) => {
      const buf = got.get(t.name) ?? new Uint8Array(t.nBytes);
      buf.set(part, at);
      got.set(t.name, buf);
    });
    await r.close();
    expect([...got.keys()].sort()).toEqual(['a', 'c']);
    for (const t of [h.tensors[0]!, h.tensors[2]!]) expect(got.get(t.name)).toEqual(bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes));
  });

  it('re-writes a header it read (values as the reader returns them) to identical bytes', async () => {
    const bytes = sampleWriter().toBytes();
    const h = await read(bytes);
    const w = new GGUFWriter();
    for (const [k, v] of h.metadata) {
      const type = h.metadataTypes.get(k)!;
      // Empty nested string arrays cannot be inferred from [], so give that one explicitly.
      if (k === 'a.nested.str') w.setArray(k, V.ARRAY, [ggufArray(V.STRING, ['x', 'y']), ggufArray(V.STRING, [])]);
      else w.setMeta(k, type, v);
    }
    for (const t of h.tensors) w.addTensor(t.name, t.shape, t.type, bytes.slice(t.fileOffset, t.fileOffset + t.nBytes));
    expectSameBytes(w.toBytes(), bytes);
  });

  const real = join(MODELS, 'stories260K.gguf');
  it.skipIf(!existsSync(real))('re-writes a llama.cpp file (stories260K) to identical bytes', async () => {
    const bytes = new Uint8Array(readFileSync(real));
    const h = await read(bytes);
    const w = new GGUFWriter({ version: h.version as 2 | 3 });
    for (const [k, v] of h.metadata) w.setMeta(k, h.metadataTypes.get(k)!, v);
    for (const t of h.tensors) w.addTensor(t.name, t.shape, t.type, bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes));
    expect(w.layout().offsets).toEqual(h.tensors.map((t) => t.offset));
    expectSameBytes(w.toBytes(), bytes);
  });

  it('rejects invalid writer input with OptionError', () => {
    const w = new GGUFWriter();
    expect(() => w.setU8('k', 256)).toThrow(OptionError);
    expect(() => w.setI32('k', 1.5)).toThrow(OptionError);
    expect(() => w.setU64('k', -1n)).toThrow(/metadata "k"/);
    expect(() => w.setU64('k', 2 ** 60)).toThrow(OptionError);
    expect(() => w.setMeta('k', 99, 1)).toThrow(/unknown metadata value type/);
    expect(() => w.setMeta('k', V.STRING, 5)).toThrow(OptionError);
    expect(() => w.setArray('k', V.BOOL, [1])).toThrow(/metadata "k"\[0\]/);
    expect(() => w.setU32('general.alignment', 3)).toThrow(/general.alignment/);
    expect(() => w.setU64('general.alignment', 32)).toThrow(/general.alignment/);
    expect(() => w.setArray('k', V.ARRAY, [ggufArray(V.ARRAY, [ggufArray(V.ARRAY, [ggufArray(V.ARRAY, [ggufArray(V.UINT8, [])])])])])).toThrow(/deeper/);
    w.addTensor('t', [32], GGMLType.Q8_0, new Uint8Array(34));
    expect(() => w.addTensor('t', [32], GGMLType.Q8_0, new Uint8Array(34))).toThrow(/duplicate tensor name/);
    expect(() => w.addTensor('u', [33], GGMLType.Q8_0, new Uint8Array(34))).toThrow(/block size/);
    expect(() => w.addTensor('u', [32], GGMLType.Q8_0, new Uint8Array(33))).toThrow(/34/);
    expect(() => w.addTensor('u', [], GGMLType.F32, new Uint8Array(0))).toThrow(OptionError);
    expect(() => w.addTensor('u', [1, 0], GGMLType.F32, new Uint8Array(0))).toThrow(OptionError);
    expect(() => w.addTensor('u', [4], 4, new Uint8Array(16))).toThrow(/unknown ggml tensor type/);
    w.addTensor('lazy', [4], GGMLType.F32, () => new Uint8Array(3));
    expect(() => w.toBytes()).toThrow(/tensor "lazy" data/);
  });
});

describe('synthetic models and conversions', () => {
  it('converts f32 to f16 with round-to-nearest-even', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(0)).toBe(0);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up to infinity
    expect(f32ToF16(1e9)).toBe(0x7c00);
    expect(f32ToF16(-Infinity)).toBe(0xfc00);
    expect(f32ToF16(NaN) & 0x7e00).toBe(0x7e00);
    expect(f32ToF16(2 ** -24)).toBe(1);
    expect(f32ToF16(2 ** -25)).toBe(0); // tie to even (0)
    expect(f32ToF16(3 * 2 ** -25)).toBe(2); // tie to even (2)
    expect(f32ToF16(2 ** -14)).toBe(0x0400);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd rounds up
    const rng = new Rng(5);
    for (let i = 0; i < 2000; i++) {
      const v = Math.fround(rng.normal() * 10 ** rng.int(6) / 100);
      const back = f16ToF32(f32ToF16(v));
      expect(Math.abs(back - v)).toBeLessThanOrEqual(Math.max(Math.abs(v) * 2 ** -11, 2 ** -25));
    }
  });

  it('converts f32 to bf16 with round-to-nearest-even', () => {
    expect(f32ToBF16(1)).toBe(0x3f80);
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(f32ToBF16(1 + 2 ** -8)).toBe(0x3f80); // tie, even
    expect(f32ToBF16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBF16(NaN)).toBe(0x7fc0);
    expect(bf16ToF32(f32ToBF16(-3.5))).toBe(-3.5);
  });

  it('quantizes Q8_0 per 32-block with amax/127 scales and rounding half away from zero', () => {
    const x = new Float32Array(64);
    x[0] = 127;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = -127;
    x[4] = 0.49;
    const q = quantize(GGMLType.Q8_0, x);
    expect(q.byteLength).toBe(68);
    const view = new DataView(q.buffer);
    expect(f16ToF32(view.getUint16(0, true))).toBe(1);
    expect([view.getInt8(2), view.getInt8(3), view.getInt8(4), view.getInt8(5), view.getInt8(6)]).toEqual([127, 3, -3, -127, 0]);
    expect(view.getUint16(34, true)).toBe(0); // all-zero block: zero scale
    const rng = new Rng(9);
    const v = Float32Array.from({ length: 256 }, () => rng.normal());
    const back = dequantize(GGMLType.Q8_0, quantize(GGMLType.Q8_0, v), 256);
    for (let i = 0; i < 256; i++) expect(Math.abs(back[i]! - v[i]!)).toBeLessThan(0.03);
    const back4 = dequantize(GGMLType.Q4_0, quantize(GGMLType.Q4_0, v), 256);
    for (let i = 0; i < 256; i++) expect(Math.abs(back4[i]! - v[i]!)).toBeLessThan(0.5);
    expect(() => quantize(GGMLType.Q8_0, new Float32Array(33))).toThrow(OptionError);
  });

  it('builds a tiny llama with an SPM vocabulary, deterministically', async () => {
    const opts = { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, vocab: 300, seed: 3 };
    const bytes = makeTinyLlama(opts);
    expectSameBytes(makeTinyLlama(opts), bytes);
    expect(Buffer.compare(makeTinyLlama({ ...opts, seed: 4 }), bytes)).not.toBe(0);
    const h = await read(bytes);
    const m = h.metadata;
    expect(m.get('general.architecture')).toBe('llama');
    expect(m.get('tokenizer.ggml.model')).toBe('llama');
    expect(m.get('llama.embedding_length')).toBe(64);
    expect(m.get('llama.attention.head_count_kv')).toBe(2);
    const tokens = m.get('tokenizer.ggml.tokens') as string[];
    expect(tokens.length).toBe(300);
    expect(tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(tokens[3 + 0x0a]).toBe('<0x0A>');
    expect(new Set(tokens).size).toBe(300);
    expect((m.get('tokenizer.ggml.scores') as Float32Array).length).toBe(300);
    const tt = m.get('tokenizer.ggml.token_type') as Int32Array;
    expect([tt[0], tt[1], tt[2], tt[3], tt[258], tt[259]]).toEqual([2, 3, 3, 6, 6, 1]);
    expect(h.tensors.length).toBe(3 + 2 * 9);
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    expect(byName.get('token_embd.weight')!.shape).toEqual([64, 300]);
    expect(byName.get('blk.1.attn_k.weight')!.shape).toEqual([64, 32]);
    expect(byName.get('blk.0.ffn_down.weight')!.shape).toEqual([96, 64]);
    expect(h.tensors.every((t) => t.type === GGMLType.F32)).toBe(true);
    const q8 = await read(makeTinyLlama({ ...opts, type: 'Q8_0', tied: true }));
    expect(q8.tensors.find((t) => t.name === 'output.weight')).toBeUndefined();
    expect(q8.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!.typeName).toBe('Q8_0');
    expect(q8.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')!.typeName).toBe('F32');
    expect(() => makeTinyLlama({ vocab: 100 })).toThrow(OptionError);
    expect(() => makeTinyLlama({ dim: 48, type: 'Q8_0' })).toThrow(/block size/);
    expect(() => makeTinyLlama({ heads: 3 })).toThrow(OptionError);
    expect(tinySpmVocab(2000).tokens.length).toBe(2000);
    expect(tinyLlamaWriter({ layers: 1 }).tensorCount).toBe(12);
  });
});

describe('GGUF reader on hostile input', () => {
  it('bad magic', async () => {
    const b = head(0, 0).setU32(0, 0x46554746).toBytes();
    await expectFormat(b, 'magic', /not a GGUF file/);
    await expectFormat(new TextEncoder().encode('<!DOCTYPE html><html></html>'), 'magic', /3c 21 44 4f/);
  });

  it('version 1, 0, 4 and big-endian files', async () => {
    const v1 = await failure(read(head(0, 0, 1).toBytes()));
    expect(v1).toBeInstanceOf(UnsupportedError);
    expect(v1.message).toMatch(/version 1/);
    for (const v of [0x03000000, 0x02000000]) {
      const be = await failure(read(head(0, 0, v).toBytes()));
      expect(be).toBeInstanceOf(UnsupportedError);
      expect(be.message).toMatch(/version/);
      expect(be.message).toMatch(/big-endian/);
    }
    await expectFormat(head(0, 0, 0).toBytes(), 'version', /unsupported GGUF version 0/);
    await expectFormat(head(0, 0, 4).toBytes(), 'version', /unsupported GGUF version 4/);
  });

  it('unknown metadata value type and unknown array element type', async () => {
    await expectFormat(head(0, 1).string('k').u32(13).u32(0).toBytes(), 'metadata "k"', /unknown metadata value type 13/);
    await expectFormat(head(0, 1).string('k').u32(0xffffffff).u64(0).toBytes(), 'metadata "k"', /unknown metadata value type 4294967295/);
    await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(13).u64(1).u64(0).toBytes(), 'metadata "k"', /unknown array element type 13/);
  });

  it('string lengths larger than the file or the limits', async () => {
    await expectFormat(head(0, 1).string('k').u32(V.STRING).u64(1000).bytes(new Uint8Array(10)).toBytes(), 'metadata "k"', /needs 1000 bytes/);
    await expectFormat(head(0, 1).string('k').u32(V.STRING).u64(2n ** 63n).toBytes(), 'metadata "k" (string length)', /exceeds the limit/);
    await expectFormat(head(0, 1).u64(500).bytes(new Uint8Array(20)).toBytes(), 'metadata[0].key', /needs 500 bytes/);
    await expectFormat(head(0, 1).u64(1 << 20).bytes(new Uint8Array(16)).toBytes(), 'metadata[0].key (string length)', /exceeds the limit 65536/);
    await expectFormat(head(1, 0).u64(2n ** 64n - 1n).bytes(new Uint8Array(32)).toBytes(), 'tensor[0].name (string length)', /exceeds the limit/);
    const arr = head(0, 1).string('k').u32(V.ARRAY).u32(V.STRING).u64(2).string('ok').u64(99).toBytes();
    await expectFormat(arr, 'metadata "k"[1]', /needs 99 bytes/);
  });

  it('array length 2^40 and arrays longer than the file', async () => {
    for (const t of [V.UINT8, V.UINT64, V.STRING, V.BOOL, V.ARRAY]) {
      await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(t).u64(2n ** 40n).toBytes(), 'metadata "k" (array length)', /exceeds the limit/);
    }
    await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(V.UINT32).u64(1000).u32(1).toBytes(), 'metadata "k"', /needs 4000 bytes/);
    await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(V.STRING).u64(1000).u64(0).toBytes(), 'metadata "k" (array length)', /cannot fit/);
    await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(V.ARRAY).u64(1000).toBytes(), 'metadata "k" (array length)', /cannot fit/);
    await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(V.BOOL).u64(1000).toBytes(), 'metadata "k" (array length)', /cannot fit/);
  });

  it('arrays nested deeper than the limit', async () => {
    const b = head(0, 1).string('k').u32(V.ARRAY);
    for (let i = 0; i < 6; i++) b.u32(V.ARRAY).u64(1);
    b.u32(V.UINT8).u64(0);
    await expectFormat(b.toBytes(), 'metadata "k"[0][0][0][0]', /nested deeper than 4/);
    // A long chain of one-element nested arrays must not recurse without bound.
    const chain = head(0, 1).string('k').u32(V.ARRAY);
    for (let i = 0; i < 100_000; i++) chain.u32(V.ARRAY).u64(1);
    await expectFormat(chain.toBytes(), 'metadata "k"', /nested deeper/);
  });

  it('tensor and metadata counts inflated', async () => {
    await expectFormat(head(2n ** 63n, 0).toBytes(), 'tensor_count', /exceeds the limit/);
    await expectFormat(head(0, 2n ** 64n - 1n).toBytes(), 'metadata_kv_count', /exceeds the limit/);
    await expectFormat(head(1000, 0).bytes(new Uint8Array(100)).toBytes(), 'tensor_count', /1000 tensors cannot fit/);
    await expectFormat(head(0, 1000).bytes(new Uint8Array(100)).toBytes(), 'metadata_kv_count', /1000 metadata entries/);
    // Inflated by one: the count fits the size check but the entries run out.
    const w = new GGUFWriter().setString('a', 'b').setU32('c', 1).toBytes();
    const b = new Uint8Array(w.byteLength + 40).fill(0xff);
    b.set(w);
    new DataView(b.buffer).setBigUint64(16, 3n, true);
    const e = await failure(read(b));
    expect(e).toBeInstanceOf(GGUFFormatError);
    expect((e as GGUFFormatError).field).toMatch(/metadata\[2\]\.key|metadata ".*"/);
  });

  it('n_dims 0 and 5', async () => {
    await expectFormat(head(1, 0).string('t').u32(0).u32(0).u64(0).bytes(new Uint8Array(40)).toBytes(), 'tensor "t" n_dims', /0 is outside \[1, 4\]/);
    await expectFormat(tinfo(head(1, 0), 't', [1, 1, 1, 1, 1], 0, 0).bytes(new Uint8Array(40)).toBytes(), 'tensor "t" n_dims', /5 is outside/);
  });

  it('dimension 0 and dimensions beyond 2^53', async () => {
    await expectFormat(withData(tinfo(head(1, 0), 't', [4, 0], 0, 0), 64), 'tensor "t" shape[1]', /dimension 0/);
    await expectFormat(withData(tinfo(head(1, 0), 't', [2n ** 60n], 0, 0), 64), 'tensor "t" shape[0]', /not a positive safe integer/);
  });

  it('element count overflow', async () => {
    await expectFormat(withData(tinfo(head(1, 0), 't', [2 ** 26, 2 ** 26, 2 ** 26], 0, 0), 64), 'tensor "t" shape', /element count overflows/);
    await expectFormat(withData(tinfo(head(1, 0), 't', [2 ** 52], 27, 0), 64), 'tensor "t" data', /overflows|beyond the end/);
  });

  it('unknown tensor type', async () => {
    for (const type of [4, 5, 31, 99, 0xffffffff]) {
      await expectFormat(withData(tinfo(head(1, 0), 't', [32], type, 0), 128), 'tensor "t" type', new RegExp(`unknown ggml tensor type ${type}`));
    }
  });

  it('shape[0] not a multiple of the block size', async () => {
    await expectFormat(withData(tinfo(head(1, 0), 't', [33, 2], GGMLType.Q8_0, 0), 256), 'tensor "t" shape[0]', /33 is not a multiple of the Q8_0 block size 32/);
    await expectFormat(withData(tinfo(head(1, 0), 't', [128], GGMLType.Q4_K, 0), 256), 'tensor "t" shape[0]', /block size 256/);
  });

  it('misaligned or unrepresentable offsets', async () => {
    await expectFormat(withData(tinfo(head(1, 0), 't', [4], 0, 4), 64), 'tensor "t" offset', /4 is not a multiple of the alignment 32/);
    const a64 = head(1, 1).string('general.alignment').u32(V.UINT32).u32(64);
    await expectFormat(withData(tinfo(a64, 't', [4], 0, 32), 128), 'tensor "t" offset', /alignment 64/);
    await expectFormat(withData(tinfo(head(1, 0), 't', [4], 0, 2n ** 63n), 64), 'tensor "t" offset', /not a safe integer/);
  });

  it('tensor data past the end of the file', async () => {
    await expectFormat(withData(tinfo(head(1, 0), 't', [4], 0, 0), 15), 'tensor "t" data', /beyond the end of the file/);
    await expectFormat(withData(tinfo(head(1, 0), 't', [4], 0, 2 ** 40), 64), 'tensor "t" data', /beyond the end of the file/);
    await expectFormat(withData(tinfo(head(1, 0), 't', [2 ** 20, 2 ** 20], 0, 0), 64), 'tensor "t" data', /beyond the end/);
  });

  it('overlapping tensors', async () => {
    const b = head(2, 0);
    tinfo(b, 'a', [16], 0, 0);
    tinfo(b, 'b', [16], 0, 32);
    await expectFormat(withData(b, 128), 'tensor "b" offset', /overlaps tensor "a"/);
    const same = head(2, 0);
    tinfo(same, 'a', [4], 0, 32);
    tinfo(same, 'b', [4], 0, 32);
    await expectFormat(withData(same, 128), 'offset', /overlaps/);
  });

  it('duplicate key and duplicate tensor name', async () => {
    await expectFormat(head(0, 2).string('k').u32(V.UINT8).u8(1).string('k').u32(V.UINT8).u8(2).toBytes(), 'metadata "k"', /duplicate key/);
    const b = head(2, 0);
    tinfo(b, 't', [4], 0, 0);
    tinfo(b, 't', [4], 0, 32);
    await expectFormat(withData(b, 64), 'tensor "t"', /duplicate tensor name/);
  });

  it('bad alignment: 0, 3, 2^17, non-u32', async () => {
    for (const a of [0, 3, 48, 1 << 17, 0x80000000]) {
      await expectFormat(head(0, 1).string('general.alignment').u32(V.UINT32).u32(a).toBytes(), 'general.alignment', /not a power of two/);
    }
    await expectFormat(head(0, 1).string('general.alignment').u32(V.UINT64).u64(32).toBytes(), 'general.alignment', /must be a uint32/);
    await expectFormat(head(0, 1).string('general.alignment').u32(V.INT32).i32(32).toBytes(), 'general.alignment', /must be a uint32/);
    await expectFormat(head(0, 1).string('general.alignment').u32(V.STRING).string('32').toBytes(), 'general.alignment', /must be a uint32/);
  });

  it('bool value 2', async () => {
    await expectFormat(head(0, 1).string('k').u32(V.BOOL).u8(2).toBytes(), 'metadata "k"', /bool value 2/);
    await expectFormat(head(0, 1).string('k').u32(V.ARRAY).u32(V.BOOL).u64(3).u8(1).u8(0).u8(255).toBytes(), 'metadata "k"[2]', /bool value 255/);
  });

  it('every truncation of a small file fails with a typed error naming a field', async () => {
    const w = sampleWriter();
    const bytes = w.toBytes();
    let n = 0;
    const h = await read(bytes);
    // Everything up to the end of the last tensor is needed; the padding after it is not.
    const needed = h.dataOffset + h.dataBytes;
    for (let len = needed; len <= bytes.byteLength; len++) await read(bytes.subarray(0, len));
    for (let len = 0; len < needed; len++) {
      const e = await failure(read(bytes.subarray(0, len)));
      if (!(e instanceof GGUFFormatError)) throw new Error(`prefix ${len}: expected GGUFFormatError, got ${e.constructor.name}: ${e.message}`);
      expect(e.message).toContain(e.field);
      expect(e.field.length).toBeGreaterThan(0);
      n++;
    }
    expect(n).toBe(needed);
  });

  it('every truncation of a small stream of unknown size fails with a typed error', async () => {
    const w = sampleWriter();
    const bytes = w.toBytes();
    // Without a size the reader needs the header only, not the padding after it.
    const headerEnd = w.layout().headerBytes;
    for (let len = 0; len < headerEnd; len++) {
      const src = unsizedSource(bytes.subarray(0, len), 1 + (len % 13));
      const e = await failure(readGGUFHeader(src));
      if (!(e instanceof GGUFFormatError)) throw new Error(`prefix ${len}: expected GGUFFormatError, got ${e.constructor.name}: ${e.message}`);
      expect(e.message).toContain(e.field);
    }
    // With the header complete, missing tensor data shows when it is streamed.
    const src = unsizedSource(bytes.subarray(0, bytes.byteLength - 40));
    const r = openReader(src);
    const hh = await readHeader(r, src.name, undefined);
    const e = await failure(streamTensorData(r, hh, hh.tensors, () => {}));
    expect(e).toBeInstanceOf(GGUFFormatError);
    expect((e as GGUFFormatError).field).toBe('file');
    expect(e.message).toMatch(/truncated/);
  });

  it('every single-byte corruption of a small header fails cleanly or parses', async () => {
    const bytes = sampleWriter().toBytes();
    const h = await read(bytes);
    for (let i = 0; i < h.dataOffset; i++) {
      for (const v of [0x00, 0xff, bytes[i]! ^ 0x80, bytes[i]! + 1]) {
        const m = bytes.slice();
        m[i] = v & 0xff;
        try {
          await read(m);
        } catch (e) {
          if (!(e instanceof BmcError)) throw new Error(`byte ${i} = ${v}: ${(e as Error).constructor.name}: ${(e as Error).message}`);
        }
      }
    }
  });
});
