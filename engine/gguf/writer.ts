/**
 * GGUF writer (version 3 by default, little-endian): metadata of every value type (nested arrays included,
 * 64-bit integers as bigint), a tensor table and the tensor data, aligned to `general.alignment` (default 32)
 * with zero padding after every tensor, as llama.cpp writes it. Used to build synthetic models and test files.
 *
 * Tensor data may be given as bytes or as a function producing them; with `writeTo` the functions are called one
 * tensor at a time, so a large synthetic model never has to exist in memory as a whole.
 */
import { OptionError } from '../errors.js';
import type { GGUFArray } from './reader.js';
import { GGML_TYPES, GGUFValueType } from './types.js';

/** An array value with an explicit element type (needed for empty arrays and to choose e.g. INT32 over UINT32). */
export interface GGUFArrayValue {
  readonly elemType: number;
  readonly items: ArrayLike<number | bigint | boolean | string> | readonly GGUFArrayValue[];
}

/**
 * Values accepted by `setMeta`. Arrays may be a `GGUFArrayValue` or an array as the reader returns it (typed
 * arrays, boolean[], string[], nested arrays), whose element type is inferred (an empty plain array is a string array).
 */
export type GGUFWriterValue = number | bigint | boolean | string | GGUFArrayValue | GGUFArray;

export function ggufArray(elemType: number, items: GGUFArrayValue['items']): GGUFArrayValue {
  return { elemType, items };
}

const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 4;
/** Longest key or tensor name the reader accepts. */
const MAX_NAME_BYTES = 1 << 16;
const encoder = new TextEncoder();

/** Growable little-endian byte buffer. Also used by tests to hand-craft (possibly malformed) GGUF files. */
export class ByteBuilder {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private grow(n: number): number {
    const at = this.length;
    const need = at + n;
    if (need > this.buf.byteLength) {
      let cap = this.buf.byteLength * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.length = need;
    return at;
  }

  u8(v: number): this { const at = this.grow(1); this.view.setUint8(at, v); return this; }
  i8(v: number): this { const at = this.grow(1); this.view.setInt8(at, v); return this; }
  u16(v: number): this { const at = this.grow(2); this.view.setUint16(at, v, true); return this; }
  i16(v: number): this { const at = this.grow(2); this.view.setInt16(at, v, true); return this; }
  u32(v: number): this { const at = this.grow(4); this.view.setUint32(at, v, true); return this; }
  i32(v: number): this { const at = this.grow(4); this.view.setInt32(at, v, true); return this; }
  f32(v: number): this { const at = this.grow(4); this.view.setFloat32(at, v, true); return this; }
  f64(v: number): this { const at = this.grow(8); this.view.setFloat64(at, v, true); return this; }
  u64(v: number | bigint): this { const at = this.grow(8); this.view.setBigUint64(at, BigInt(v), true); return this; }
  i64(v: number | bigint): this { const at = this.grow(8); this.view.setBigInt64(at, BigInt(v), true); return this; }

  /** A GGUF string: u64 byte length, then UTF-8 bytes. */
  string(s: string): this {
    const b = encoder.encode(s);
    return this.u64(b.byteLength).bytes(b);
  }

  bytes(b: Uint8Array): this {
    const at = this.grow(b.byteLength);
    this.buf.set(b, at);
    return this;
  }

  /** Zero bytes up to the next multiple of `alignment`. */
  pad(alignment: number): this {
    const n = (alignment - (this.length % alignment)) % alignment;
    const at = this.grow(n);
    this.buf.fill(0, at, at + n);
    return this;
  }

  /** Overwrites 4 bytes at `at` (for patching fields in tests). */
  setU32(at: number, v: number): this { this.view.setUint32(at, v, true); return this; }
  /** Overwrites 8 bytes at `at`. */
  setU64(at: number, v: number | bigint): this { this.view.setBigUint64(at, BigInt(v), true); return this; }

  toBytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function typeLabel(type: number): string {
  const e = Object.entries(GGUFValueType).find(([, v]) => v === type);
  return e ? e[0] : `unknown(${type})`;
}

const INT_RANGES: Record<number, [number, number]> = {
  [GGUFValueType.UINT8]: [0, 0xff], [GGUFValueType.INT8]: [-0x80, 0x7f],
  [GGUFValueType.UINT16]: [0, 0xffff], [GGUFValueType.INT16]: [-0x8000, 0x7fff],
  [GGUFValueType.UINT32]: [0, 0xffffffff], [GGUFValueType.INT32]: [-0x80000000, 0x7fffffff],
};

function isArrayValue(v: unknown): v is GGUFArrayValue {
  return typeof v === 'object' && v !== null && !ArrayBuffer.isView(v) && !Array.isArray(v) && 'elemType' in v && 'items' in v;
}

/** Element type and items of an array value (explicit, or inferred from a reader-style array). */
function arrayParts(v: unknown, where: string): GGUFArrayValue {
  if (isArrayValue(v)) return v;
  const T = GGUFValueType;
  if (v instanceof Uint8Array) return { elemType: T.UINT8, items: v };
  if (v instanceof Int8Array) return { elemType: T.INT8, items: v };
  if (v instanceof Uint16Array) return { elemType: T.UINT16, items: v };
  if (v instanceof Int16Array) return { elemType: T.INT16, items: v };
  if (v instanceof Uint32Array) return { elemType: T.UINT32, items: v };
  if (v instanceof Int32Array) return { elemType: T.INT32, items: v };
  if (v instanceof Float32Array) return { elemType: T.FLOAT32, items: v };
  if (v instanceof Float64Array) return { elemType: T.FLOAT64, items: v };
  if (v instanceof BigUint64Array) return { elemType: T.UINT64, items: v };
  if (v instanceof BigInt64Array) return { elemType: T.INT64, items: v };
  if (Array.isArray(v)) {
    const first: unknown = v[0];
    if (v.length === 0 || typeof first === 'string') return { elemType: T.STRING, items: v as string[] };
    if (typeof first === 'boolean') return { elemType: T.BOOL, items: v as boolean[] };
    if (typeof first === 'object' && first !== null) return { elemType: T.ARRAY, items: (v as unknown[]).map((x, i) => arrayParts(x, `${where}[${i}]`)) };
  }
  throw new OptionError(where, 'expected an array value (a GGUFArrayValue, typed array, boolean[], string[] or nested array)');
}

function writeValue(b: ByteBuilder, type: number, v: unknown, where: string, depth: number): void {
  const T = GGUFValueType;
  const bad = (what: string): never => {
    throw new OptionError(where, `${String(v)} is not ${what} (type ${typeLabel(type)})`);
  };
  const range = INT_RANGES[type];
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) bad(`an integer in [${range[0]}, ${range[1]}]`);
    switch (type) {
      case T.UINT8: b.u8(v as number); return;
      case T.INT8: b.i8(v as number); return;
      case T.UINT16: b.u16(v as number); return;
      case T.INT16: b.i16(v as number); return;
      case T.UINT32: b.u32(v as number); return;
      default: b.i32(v as number); return;
    }
  }
  switch (type) {
    case T.FLOAT32:
      if (typeof v !== 'number') bad('a number');
      b.f32(v as number);
      return;
    case T.FLOAT64:
      if (typeof v !== 'number') bad('a number');
      b.f64(v as number);
      return;
    case T.UINT64:
    case T.INT64: {
      if (typeof v === 'number' && !Number.isSafeInteger(v)) bad('a safe integer (use a bigint)');
      if (typeof v !== 'number' && typeof v !== 'bigint') bad('a bigint or integer');
      const x = BigInt(v as number | bigint);
      if (type === T.UINT64 && (x < 0n || x >= 1n << 64n)) bad('in [0, 2^64)');
      if (type === T.INT64 && (x < -(1n << 63n) || x >= 1n << 63n)) bad('in [-2^63, 2^63)');
      if (type === T.UINT64) b.u64(x);
      else b.i64(x);
      return;
    }
    case T.BOOL:
      if (typeof v !== 'boolean') bad('a boolean');
      b.u8(v ? 1 : 0);
      return;
    case T.STRING:
      if (typeof v !== 'string') bad('a string');
      b.string(v as string);
      return;
    case T.ARRAY: {
      if (depth >= MAX_ARRAY_DEPTH) throw new OptionError(where, `arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
      const { elemType, items } = arrayParts(v, where);
      if (!Object.values(T).includes(elemType as 0)) throw new OptionError(where, `unknown array element type ${elemType}`);
      b.u32(elemType).u64(items.length);
      for (let i = 0; i < items.length; i++) writeValue(b, elemType, items[i], `${where}[${i}]`, depth + 1);
      return;
    }
    default:
      throw new OptionError(where, `unknown metadata value type ${type}`);
  }
}

interface MetaEntry {
  readonly type: number;
  readonly value: GGUFWriterValue;
  /** Encoded key, type and value. */
  readonly encoded: Uint8Array;
}

export type TensorData = Uint8Array | (() => Uint8Array);

interface TensorEntry {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: number;
  readonly nBytes: number;
  readonly data: TensorData;
}

export interface GGUFWriterOptions {
  /** GGUF version written in the header: 3 (default) or 2 (same layout). */
  version?: 2 | 3;
}

/** Bytes of a tensor of `shape` (ggml order) and ggml `type`; validates the shape against the type's block size. */
export function tensorBytes(shape: readonly number[], type: number, name = 'tensor'): number {
  const info = GGML_TYPES.get(type);
  if (!info) throw new OptionError(`${name} type`, `unknown ggml tensor type ${type}`);
  if (shape.length < 1 || shape.length > MAX_DIMS) throw new OptionError(`${name} shape`, `needs 1 to ${MAX_DIMS} dimensions, got ${shape.length}`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 1) throw new OptionError(`${name} shape`, `dimension ${d} is not a positive integer`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new OptionError(`${name} shape`, 'element count overflows');
  if (shape[0]! % info.blockSize !== 0) throw new OptionError(`${name} shape`, `shape[0] = ${shape[0]} is not a multiple of the ${info.name} block size ${info.blockSize}`);
  return (n / info.blockSize) * info.typeSize;
}

export class GGUFWriter {
  private readonly meta = new Map<string, MetaEntry>();
  private readonly tensors: TensorEntry[] = [];
  private readonly names = new Set<string>();
  readonly version: 2 | 3;

  constructor(options: GGUFWriterOptions = {}) {
    this.version = options.version ?? 3;
    if (this.version !== 2 && this.version !== 3) throw new OptionError('version', `${String(this.version)} is not 2 or 3`);
  }

  /** Sets (or replaces, keeping its position) a metadata entry. The value is checked against the type now. */
  setMeta(key: string, type: number, value: GGUFWriterValue): this {
    if (typeof key !== 'string' || encoder.encode(key).byteLength > MAX_NAME_BYTES) throw new OptionError('key', `expected a string of at most ${MAX_NAME_BYTES} bytes`);
    if (key === 'general.alignment') {
      if (type !== GGUFValueType.UINT32) throw new OptionError(key, 'must be a UINT32');
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || (value & (value - 1)) !== 0 || value > 1 << 16) {
        throw new OptionError(key, `${String(value)} is not a power of two in [1, 65536]`);
      }
    }
    const b = new ByteBuilder();
    b.string(key).u32(type);
    writeValue(b, type, value, `metadata "${key}"`, 0);
    this.meta.set(key, { type, value, encoded: b.toBytes() });
    return this;
  }

  setString(key: string, v: string): this { return this.setMeta(key, GGUFValueType.STRING, v); }
  setBool(key: string, v: boolean): this { return this.setMeta(key, GGUFValueType.BOOL, v); }
  setU8(key: string, v: number): this { return this.setMeta(key, GGUFValueType.UINT8, v); }
  setI8(key: string, v: number): this { return this.setMeta(key, GGUFValueType.INT8, v); }
  setU16(key: string, v: number): this { return this.setMeta(key, GGUFValueType.UINT16, v); }
  setI16(key: string, v: number): this { return this.setMeta(key, GGUFValueType.INT16, v); }
  setU32(key: string, v: number): this { return this.setMeta(key, GGUFValueType.UINT32, v); }
  setI32(key: string, v: number): this { return this.setMeta(key, GGUFValueType.INT32, v); }
  setU64(key: string, v: number | bigint): this { return this.setMeta(key, GGUFValueType.UINT64, v); }
  setI64(key: string, v: number | bigint): this { return this.setMeta(key, GGUFValueType.INT64, v); }
  setF32(key: string, v: number): this { return this.setMeta(key, GGUFValueType.FLOAT32, v); }
  setF64(key: string, v: number): this { return this.setMeta(key, GGUFValueType.FLOAT64, v); }
  /** An array of `elemType` (for nested arrays, elemType ARRAY and items that are GGUFArrayValues). */
  setArray(key: string, elemType: number, items: GGUFArrayValue['items']): this {
    return this.setMeta(key, GGUFValueType.ARRAY, { elemType, items });
  }

  deleteMeta(key: string): boolean {
    return this.meta.delete(key);
  }

  get alignment(): number {
    const a = this.meta.get('general.alignment');
    return a ? (a.value as number) : 32;
  }

  /**
   * Adds a tensor. `shape` is in ggml order (shape[0] contiguous); `data` holds exactly the tensor's bytes, or is a
   * function returning them when written (checked then).
   */
  addTensor(name: string, shape: readonly number[], type: number, data: TensorData): this {
    if (typeof name !== 'string' || encoder.encode(name).byteLength > MAX_NAME_BYTES) throw new OptionError('name', `expected a string of at most ${MAX_NAME_BYTES} bytes`);
    if (this.names.has(name)) throw new OptionError(`tensor "${name}"`, 'duplicate tensor name');
    const nBytes = tensorBytes(shape, type, `tensor "${name}"`);
    if (data instanceof Uint8Array) {
      if (data.byteLength !== nBytes) throw new OptionError(`tensor "${name}" data`, `has ${data.byteLength} bytes, the shape and type need ${nBytes}`);
    } else if (typeof data !== 'function') {
      throw new OptionError(`tensor "${name}" data`, 'expected a Uint8Array or a function returning one');
    }
    this.names.add(name);
    this.tensors.push({ name, shape: [...shape], type, nBytes, data });
    return this;
  }

  get tensorCount(): number {
    return this.tensors.length;
  }

  /** Offsets of each tensor relative to the data section, and the layout totals. */
  layout(): { offsets: number[]; headerBytes: number; dataOffset: number; dataBytes: number; totalBytes: number } {
    const align = this.alignment;
    const up = (n: number) => Math.ceil(n / align) * align;
    const offsets: number[] = [];
    let off = 0;
    for (const t of this.tensors) {
      offsets.push(off);
      off = up(off + t.nBytes);
    }
    const headerBytes = this.header(offsets).byteLength;
    const dataOffset = up(headerBytes);
    return { offsets, headerBytes, dataOffset, dataBytes: off, totalBytes: dataOffset + off };
  }

  /** Everything before the data section, without padding. */
  private header(offsets: readonly number[]): Uint8Array {
    const b = new ByteBuilder();
    b.u32(0x46554747).u32(this.version).u64(this.tensors.length).u64(this.meta.size);
    for (const m of this.meta.values()) b.bytes(m.encoded);
    this.tensors.forEach((t, i) => {
      b.string(t.name).u32(t.shape.length);
      for (const d of t.shape) b.u64(d);
      b.u32(t.type).u64(offsets[i]!);
    });
    return b.toBytes();
  }

  private tensorData(t: TensorEntry): Uint8Array {
    if (t.data instanceof Uint8Array) return t.data;
    const d = t.data();
    if (!(d instanceof Uint8Array) || d.byteLength !== t.nBytes) {
      throw new OptionError(`tensor "${t.name}" data`, `the data function returned ${d instanceof Uint8Array ? `${d.byteLength} bytes` : 'no Uint8Array'}, the shape and type need ${t.nBytes}`);
    }
    return d;
  }

  /** The whole file in memory. */
  toBytes(): Uint8Array {
    const { offsets, dataOffset, totalBytes } = this.layout();
    const out = new Uint8Array(totalBytes);
    out.set(this.header(offsets), 0);
    this.tensors.forEach((t, i) => out.set(this.tensorData(t), dataOffset + offsets[i]!));
    return out;
  }

  /** Streams the file to `sink` (header, then each tensor and its padding); awaits the sink between chunks. */
  async writeTo(sink: (chunk: Uint8Array) => void | Promise<void>): Promise<void> {
    const align = this.alignment;
    const { offsets, dataOffset } = this.layout();
    const head = new Uint8Array(dataOffset);
    head.set(this.header(offsets));
    await sink(head);
    const zeros = new Uint8Array(align);
    for (const t of this.tensors) {
      await sink(this.tensorData(t));
      const pad = (align - (t.nBytes % align)) % align;
      if (pad > 0) await sink(zeros.subarray(0, pad));
    }
  }
}
