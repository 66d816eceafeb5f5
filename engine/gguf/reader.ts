/**
 * GGUF reader (versions 2 and 3, little-endian). Parses the header, metadata and tensor table, checking every
 * count, length, offset, shape and type against the file size and fixed limits before it is used, so a corrupt
 * or hostile file yields a GGUFFormatError naming the field instead of a crash, a hang or a huge allocation.
 * Tensor data is not read here: `streamTensorData` pipes it, tensor by tensor, to a caller-provided sink.
 */
import { GGUFFormatError, UnsupportedError } from '../errors.js';
import { ChunkReader } from './chunk-reader.js';
import type { ByteSource } from './source.js';
import { GGML_TYPES, GGUFValueType, typeName } from './types.js';

export type GGUFScalar = number | bigint | boolean | string;
export type GGUFArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array | boolean[] | string[] | GGUFArray[];
export type GGUFValue = GGUFScalar | GGUFArray;

export interface GGUFTensorInfo {
  readonly name: string;
  /** ggml order: shape[0] is the innermost (contiguous) dimension. */
  readonly shape: readonly number[];
  readonly type: number;
  readonly typeName: string;
  readonly nElements: number;
  readonly nBytes: number;
  /** Offset relative to the start of the data section. */
  readonly offset: number;
  /** Absolute offset in the file. */
  readonly fileOffset: number;
}

export interface GGUFHeader {
  readonly source: string;
  readonly version: number;
  readonly alignment: number;
  readonly metadata: ReadonlyMap<string, GGUFValue>;
  /** Metadata value types as stored (for `info` and for writers that round-trip a file). */
  readonly metadataTypes: ReadonlyMap<string, number>;
  readonly tensors: readonly GGUFTensorInfo[];
  /** Absolute offset of the tensor data section. */
  readonly dataOffset: number;
  /** Bytes of tensor data (end of the last tensor, relative to dataOffset). */
  readonly dataBytes: number;
  readonly fileSize: number | undefined;
}

/** Limits that no legitimate file comes near; they bound work and memory before the file size is known. */
export const GGUF_LIMITS = {
  maxTensors: 1 << 20,
  maxKV: 1 << 20,
  maxKeyBytes: 1 << 16,
  maxStringBytes: 1 << 28,
  maxArrayElements: 1 << 28,
  maxArrayDepth: 4,
  maxDims: 4,
  maxHeaderBytes: 2 ** 31,
  maxAlignment: 1 << 16,
} as const;

const MAGIC = 0x46554747; // "GGUF" little-endian
const GGML_MAX_DIMS = 4;

class Parser {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  constructor(private readonly r: ChunkReader, private readonly file: string, private readonly size: number | undefined) {}

  fail(field: string, msg: string): never {
    throw new GGUFFormatError(this.file, field, msg);
  }

  /** Bytes left in the file after the current position, or Infinity when the size is unknown. */
  remaining(): number {
    return this.size === undefined ? Infinity : this.size - this.r.offset;
  }

  async need(n: number, field: string): Promise<void> {
    if (n > this.remaining()) this.fail(field, `needs ${n} bytes at offset ${this.r.offset} but the file ends at ${this.size}`);
    if (this.r.offset + n > GGUF_LIMITS.maxHeaderBytes) this.fail(field, `header exceeds ${GGUF_LIMITS.maxHeaderBytes} bytes`);
    await this.r.need(n);
  }

  /** A u64 count or length that must fit in [0, max]. */
  async count(field: string, max: number): Promise<number> {
    await this.need(8, field);
    const v = this.r.u64();
    if (v > BigInt(max)) this.fail(field, `value ${v} exceeds the limit ${max}`);
    return Number(v);
  }

  /**
   * Fast path for the common case of a string that is already buffered and within every limit: reads it without
   * awaiting. Returns undefined (consuming nothing) otherwise, and the checked path below reports the problem.
   */
  bufferedString(max: number): string | undefined {
    const r = this.r;
    if (r.buffered < 8) return undefined;
    const p = r.peek(8);
    if ((p[4]! | p[5]! | p[6]! | p[7]!) !== 0) return undefined;
    const n = (p[0]! | (p[1]! << 8) | (p[2]! << 16) | (p[3]! << 24)) >>> 0;
    if (n > max || 8 + n > r.buffered || 8 + n > this.remaining() || r.offset + 8 + n > GGUF_LIMITS.maxHeaderBytes) return undefined;
    r.advance(8);
    const s = this.decoder.decode(r.peek(n));
    r.advance(n);
    return s;
  }

  async string(field: string, max: number = GGUF_LIMITS.maxStringBytes): Promise<string> {
    const fast = this.bufferedString(max);
    if (fast !== undefined) return fast;
    const n = await this.count(`${field} (string length)`, max);
    await this.need(n, field);
    const s = this.decoder.decode(this.r.peek(n));
    this.r.advance(n);
    return s;
  }

  async value(type: number, field: string, depth: number): Promise<GGUFValue> {
    const T = GGUFValueType;
    switch (type) {
      case T.UINT8: await this.need(1, field); return this.r.u8();
      case T.INT8: await this.need(1, field); return this.r.i8();
      case T.UINT16: await this.need(2, field); return this.r.u16();
      case T.INT16: await this.need(2, field); return this.r.i16();
      case T.UINT32: await this.need(4, field); return this.r.u32();
      case T.INT32: await this.need(4, field); return this.r.i32();
      case T.FLOAT32: await this.need(4, field); return this.r.f32();
      case T.FLOAT64: await this.need(8, field); return this.r.f64();
      case T.UINT64: { await this.need(8, field); const v = this.r.u64(); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      case T.INT64: {
        await this.need(8, field);
        const v = this.r.i64();
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case T.BOOL: {
        await this.need(1, field);
        const b = this.r.u8();
        if (b > 1) this.fail(field, `bool value ${b} is neither 0 nor 1`);
        return b === 1;
      }
      case T.STRING: return this.string(field);
      case T.ARRAY: return this.array(field, depth + 1);
      default: return this.fail(field, `unknown metadata value type ${type}`);
    }
  }

  async array(field: string, depth: number): Promise<GGUFArray> {
    if (depth > GGUF_LIMITS.maxArrayDepth) this.fail(field, `arrays nested deeper than ${GGUF_LIMITS.maxArrayDepth}`);
    await this.need(4, `${field} (array type)`);
    const type = this.r.u32();
    const n = await this.count(`${field} (array length)`, GGUF_LIMITS.maxArrayElements);
    const T = GGUFValueType;
    const fixed: Record<number, [number, (k: number) => GGUFArray]> = {
      [T.UINT8]: [1, (k) => new Uint8Array(k)], [T.INT8]: [1, (k) => new Int8Array(k)],
      [T.UINT16]: [2, (k) => new Uint16Array(k)], [T.INT16]: [2, (k) => new Int16Array(k)],
      [T.UINT32]: [4, (k) => new Uint32Array(k)], [T.INT32]: [4, (k) => new Int32Array(k)],
      [T.FLOAT32]: [4, (k) => new Float32Array(k)], [T.FLOAT64]: [8, (k) => new Float64Array(k)],
      [T.UINT64]: [8, (k) => new BigUint64Array(k)], [T.INT64]: [8, (k) => new BigInt64Array(k)],
    };
    const f = fixed[type];
    if (f) {
      const [size, make] = f;
      const bytes = n * size;
      // Checked before allocating: the whole array must be present in the file.
      await this.need(bytes, field);
      const raw = this.r.bytes(bytes);
      const out = make(n) as Exclude<GGUFArray, boolean[] | string[] | GGUFArray[]>;
      new Uint8Array(out.buffer).set(raw);
      return out;
    }
    // Variable-size elements: each takes at least one byte (bool) or eight (string length, nested array header),
    // so the element count is bounded by the bytes left before anything is allocated.
    const minElem = type === T.BOOL ? 1 : type === T.STRING ? 8 : type === T.ARRAY ? 12 : 0;
    if (minElem === 0) this.fail(field, `unknown array element type ${type}`);
    if (n * minElem > this.remaining()) this.fail(`${field} (array length)`, `${n} elements cannot fit in the ${this.remaining()} bytes left`);
    if (type === T.BOOL) {
      await this.need(n, field);
      const out: boolean[] = [];
      for (let i = 0; i < n; i++) {
        const b = this.r.u8();
        if (b > 1) this.fail(`${field}[${i}]`, `bool value ${b} is neither 0 nor 1`);
        out.push(b === 1);
      }
      return out;
    }
    if (type === T.STRING) {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push(this.bufferedString(GGUF_LIMITS.maxStringBytes) ?? await this.string(`${field}[${i}]`));
      return out;
    }
    const out: GGUFArray[] = [];
    // Each element is itself an array one level deeper (the depth limit bounds recursion).
    for (let i = 0; i < n; i++) out.push(await this.array(`${field}[${i}]`, depth + 1));
    return out;
  }
}

/** Reads and validates everything before the tensor data. Leaves the reader positioned at the end of the header. */
export async function readHeader(r: ChunkReader, file: string, size: number | undefined): Promise<GGUFHeader> {
  const p: Parser = new Parser(r, file, size);
  await p.need(8, 'magic');
  const magic = r.u32();
  if (magic !== MAGIC) {
    const bytes = [magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >>> 24];
    p.fail('magic', `not a GGUF file (first bytes ${bytes.map((b) => b.toString(16).padStart(2, '0')).join(' ')}, expected 47 47 55 46 "GGUF")`);
  }
  const version = r.u32();
  if (version === 0x02000000 || version === 0x03000000) {
    throw new UnsupportedError(`${file}: version field reads 0x${version.toString(16).padStart(8, '0')}: big-endian GGUF files are not supported`);
  }
  if (version === 1) throw new UnsupportedError(`${file}: GGUF version 1 is obsolete and not supported; re-convert the model (versions 2 and 3 are)`);
  if (version !== 2 && version !== 3) p.fail('version', `unsupported GGUF version ${version} (supported: 2, 3)`);

  const nTensors = await p.count('tensor_count', GGUF_LIMITS.maxTensors);
  const nKV = await p.count('metadata_kv_count', GGUF_LIMITS.maxKV);
  // Each KV takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8 + 4 + 8 + 4 + 8 bytes.
  if (nTensors * 32 > p.remaining()) p.fail('tensor_count', `${nTensors} tensors cannot fit in a ${size}-byte file`);
  if (nKV * 13 + nTensors * 32 > p.remaining()) p.fail('metadata_kv_count', `${nKV} metadata entries and ${nTensors} tensors cannot fit in a ${size}-byte file`);

  const metadata = new Map<string, GGUFValue>();
  const metadataTypes = new Map<string, number>();
  for (let i = 0; i < nKV; i++) {
    const key = await p.string(`metadata[${i}].key`, GGUF_LIMITS.maxKeyBytes);
    if (metadata.has(key)) p.fail(`metadata "${key}"`, 'duplicate key');
    await p.need(4, `metadata "${key}" type`);
    const type = r.u32();
    metadata.set(key, await p.value(type, `metadata "${key}"`, 0));
    metadataTypes.set(key, type);
  }

  let alignment = 32;
  if (metadata.has('general.alignment')) {
    const a = metadata.get('general.alignment');
    if (metadataTypes.get('general.alignment') !== GGUFValueType.UINT32 || typeof a !== 'number') p.fail('general.alignment', 'must be a uint32');
    if (a === 0 || (a & (a - 1)) !== 0 || a > GGUF_LIMITS.maxAlignment) p.fail('general.alignment', `${a} is not a power of two in [1, ${GGUF_LIMITS.maxAlignment}]`);
    alignment = a;
  }

  const raw: Array<{ name: string; shape: number[]; type: number; offset: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = await p.string(`tensor[${i}].name`, GGUF_LIMITS.maxKeyBytes);
    const field = `tensor "${name}"`;
    if (names.has(name)) p.fail(field, 'duplicate tensor name');
    names.add(name);
    await p.need(4, `${field} n_dims`);
    const nDims = r.u32();
    if (nDims < 1 || nDims > GGML_MAX_DIMS) p.fail(`${field} n_dims`, `${nDims} is outside [1, ${GGML_MAX_DIMS}]`);
    const shape: number[] = [];
    for (let d = 0; d < nDims; d++) {
      await p.need(8, `${field} shape[${d}]`);
      const v = r.u64();
      if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER)) p.fail(`${field} shape[${d}]`, `dimension ${v} is not a positive safe integer`);
      shape.push(Number(v));
    }
    await p.need(12, `${field} type`);
    const type = r.u32();
    const offset64 = r.u64();
    if (offset64 > BigInt(Number.MAX_SAFE_INTEGER)) p.fail(`${field} offset`, `${offset64} is not a safe integer`);
    raw.push({ name, shape, type, offset: Number(offset64) });
  }

  const headerEnd = r.offset;
  const dataOffset = Math.ceil(headerEnd / alignment) * alignment;
  const tensors: GGUFTensorInfo[] = [];
  let dataBytes = 0;
  for (const t of raw) {
    const field = `tensor "${t.name}"`;
    const info = GGML_TYPES.get(t.type);
    if (!info) p.fail(`${field} type`, `unknown ggml tensor type ${t.type}`);
    let nElements = 1;
    for (const d of t.shape) {
      nElements *= d;
      if (nElements > Number.MAX_SAFE_INTEGER) p.fail(`${field} shape`, `element count overflows (${t.shape.join(' x ')})`);
    }
    if (t.shape[0]! % info.blockSize !== 0) p.fail(`${field} shape[0]`, `${t.shape[0]} is not a multiple of the ${info.name} block size ${info.blockSize}`);
    const nBytes = (nElements / info.blockSize) * info.typeSize;
    if (t.offset % alignment !== 0) p.fail(`${field} offset`, `${t.offset} is not a multiple of the alignment ${alignment}`);
    const end = t.offset + nBytes;
    if (end > Number.MAX_SAFE_INTEGER) p.fail(`${field} data`, `offset ${t.offset} + ${nBytes} bytes overflows`);
    if (size !== undefined && dataOffset + end > size) {
      p.fail(`${field} data`, `bytes [${dataOffset + t.offset}, ${dataOffset + end}) lie beyond the end of the file (${size} bytes)`);
    }
    dataBytes = Math.max(dataBytes, end);
    tensors.push({ name: t.name, shape: t.shape, type: t.type, typeName: typeName(t.type), nElements, nBytes, offset: t.offset, fileOffset: dataOffset + t.offset });
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (sorted[i]!.offset < prev.offset + prev.nBytes) p.fail(`tensor "${sorted[i]!.name}" offset`, `overlaps tensor "${prev.name}"`);
  }
  return { source: file, version, alignment, metadata, metadataTypes, tensors, dataOffset, dataBytes, fileSize: size };
}

/** Parses just the header of a source and releases it. */
export async function readGGUFHeader(source: ByteSource): Promise<GGUFHeader> {
  const r = openReader(source);
  try {
    return await readHeader(r, source.name, source.size);
  } finally {
    await r.close();
  }
}

export function openReader(source: ByteSource): ChunkReader {
  return new ChunkReader(
    source.chunks(),
    (offset, wanted) => new GGUFFormatError(source.name, 'file', `truncated: ${wanted} more bytes were needed at offset ${offset}`),
    source.chunksFrom?.bind(source),
  );
}

/**
 * Streams the data of `wanted` tensors (in file order) to `sink`, skipping everything else. `r` must be positioned
 * at the end of the header (as readHeader leaves it). `onProgress` gets the bytes consumed so far.
 */
export async function streamTensorData(
  r: ChunkReader,
  header: GGUFHeader,
  wanted: readonly GGUFTensorInfo[],
  sink: (tensor: GGUFTensorInfo, part: Uint8Array, at: number) => void,
  onProgress?: (loaded: number, total: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const order = [...wanted].sort((a, b) => a.fileOffset - b.fileOffset);
  const total = order.reduce((s, t) => s + t.nBytes, 0);
  let loaded = 0;
  for (const t of order) {
    signal?.throwIfAborted();
    const gap = t.fileOffset - r.offset;
    if (gap < 0) throw new GGUFFormatError(header.source, `tensor "${t.name}" offset`, 'overlaps the header');
    await r.skip(gap);
    await r.pipe(t.nBytes, (part, at) => sink(t, part, at));
    loaded += t.nBytes;
    onProgress?.(loaded, total);
  }
}
