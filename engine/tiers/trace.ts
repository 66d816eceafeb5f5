/**
 * Attention traces: for every decode step and layer, the attention mass each cached token received (summed over
 * heads, normalised to 1). The placement simulator (simulate.ts) replays them; the engine records them through
 * TraceRecorder; synth-trace.ts makes synthetic ones.
 *
 * File format, version 1, little-endian:
 *   header   "BMCT" | u32 version | u32 nLayers | u32 metaLen | metaLen bytes of UTF-8 JSON (TraceMeta)
 *   records  until the end of the file, step-major (step 0 layers 0..L-1, step 1 layers 0..L-1, ...), each
 *            u8 kind | u32 ctxLen, then
 *            kind 0, dense:  f16 mass[ctxLen]
 *            kind 1, sparse: u32 n | f32 residual | u32 index[n] (strictly ascending, < ctxLen) | f16 mass[n]
 *
 * Why this shape. Dense records cost 2 bytes per token, layer and step, which is quadratic over a generation
 * (a 32k-token context decoded for 10k steps over 32 layers is ~20 GB). Attention mass is heavy-tailed, so the
 * recorder keeps the top-k tokens of a record (optionally fewer: just enough to cover a mass fraction) at 6 bytes
 * each and sums the rest into `residual`; the simulator treats the dropped tokens as not read at that step, like a
 * top-k sparse attention would. When every token with mass is kept and dense is smaller (short contexts), the record
 * is dense. f16 keeps ~3 significant digits, enough to rank tokens. There is no step count in the header, so records
 * can be streamed to a file as they are made.
 *
 * The reader checks everything against the bytes actually present before it allocates (a record's arrays are sized
 * from lengths that must fit in what is left of the file), so a hostile file costs at most ~2x its size in memory,
 * and every defect is a TraceFormatError naming the step, layer and field.
 */
import { BmcError, OptionError } from '../errors.js';
import { f16ToF32, f32ToF16 } from '../gguf/synth.js';

export const TRACE_MAGIC = 0x54434d42; // "BMCT" read as a little-endian u32
export const TRACE_VERSION = 1;
/** Limits a trace must respect; larger values are refused as corrupt rather than trusted. */
export const TRACE_LIMITS = { maxLayers: 4096, maxMetaBytes: 65536, maxContext: 1 << 24 } as const;

const KIND_DENSE = 0;
const KIND_SPARSE = 1;
/** How far the stored masses of a record may sum from 1 (f16 rounding; tiny values flushed to zero). */
const SUM_TOLERANCE = 0.01;

/** A trace file is malformed, truncated, hostile or inconsistent. `field` names the offending part. */
export class TraceFormatError extends BmcError {
  readonly field: string;
  readonly file: string;
  constructor(file: string, field: string, message: string) {
    super('TRACE_FORMAT', `${file}: ${field}: ${message}`);
    this.file = file;
    this.field = field;
  }
}

/** Free-form metadata; the known keys are type-checked. */
export interface TraceMeta {
  /** Bytes of one token's K and V in one layer (2 * n_kv_heads * head_dim * bytes per element). */
  kvBytesPerToken?: number;
  /** Model or generator name. */
  model?: string;
  /** Where the trace came from: 'engine', 'synthetic', ... */
  source?: string;
  [key: string]: unknown;
}

/**
 * One (step, layer) record. `index === null`: dense, `mass[i]` is token i's mass (mass.length === ctxLen).
 * Otherwise sparse: token `index[j]` got `mass[j]`, indices strictly ascending; tokens not listed share `residual`.
 */
export interface TraceRecord {
  readonly ctxLen: number;
  readonly index: Uint32Array | null;
  readonly mass: Float32Array;
  readonly residual: number;
}

export interface AttentionTrace {
  readonly nLayers: number;
  readonly meta: TraceMeta;
  /** records[step][layer]. */
  readonly records: TraceRecord[][];
}

// ---------------------------------------------------------------------------------------------------------------
// Choosing what a record keeps.

/** Selection for a record: keep at most `topK` tokens, and only as many as cover `coverage` of the mass. */
export interface KeepOptions {
  /** Most tokens kept per record (default 4096). */
  topK?: number;
  /** Keep the fewest tokens whose mass reaches this fraction (default 1: no cut beyond topK). */
  coverage?: number;
}

/** k-th largest (1-based) of `v` (which it reorders): Hoare quickselect, expected O(n). */
function kthLargest(v: Float32Array, k: number): number {
  let lo = 0;
  let hi = v.length - 1;
  const want = k - 1;
  while (lo < hi) {
    const pivot = v[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (v[i]! > pivot) i++;
      while (v[j]! < pivot) j--;
      if (i <= j) {
        const t = v[i]!;
        v[i] = v[j]!;
        v[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return v[want]!;
  }
  return v[want]!;
}

/**
 * Turns one step's per-token mass (any non-negative scale, e.g. summed over heads) into a TraceRecord: normalised,
 * reduced to the kept tokens, dense when that is smaller and loses nothing. Throws OptionError on a bad array.
 */
export function compressRecord(mass: ArrayLike<number>, opts: KeepOptions = {}): TraceRecord {
  const topK = opts.topK ?? 4096;
  const coverage = opts.coverage ?? 1;
  if (!Number.isInteger(topK) || topK < 1) throw new OptionError('topK', `${topK} is not a positive integer`);
  if (!(coverage > 0 && coverage <= 1)) throw new OptionError('coverage', `${coverage} is not in (0, 1]`);
  const n = mass.length;
  if (n < 1 || n > TRACE_LIMITS.maxContext) throw new OptionError('mass', `length ${n} is not in [1, ${TRACE_LIMITS.maxContext}]`);
  let sum = 0;
  let nonzero = 0;
  for (let i = 0; i < n; i++) {
    const m = mass[i]!;
    if (!(m >= 0) || m === Infinity) throw new OptionError('mass', `token ${i} has mass ${m} (must be finite and >= 0)`);
    sum += m;
    if (m > 0) nonzero++;
  }
  if (!(sum > 0) || !Number.isFinite(sum)) throw new OptionError('mass', `the masses sum to ${sum}`);
  const norm = new Float32Array(n);
  for (let i = 0; i < n; i++) norm[i] = mass[i]! / sum;

  let keep = Math.min(topK, nonzero);
  let threshold = 0; // keep tokens above it, and ties at it in index order up to `keep`
  if (keep < nonzero) {
    const vals = new Float32Array(nonzero);
    for (let i = 0, j = 0; i < n; i++) if (norm[i]! > 0) vals[j++] = norm[i]!;
    threshold = kthLargest(vals, keep);
  }
  let idx: number[] = [];
  let ties = keep - countAbove(norm, threshold);
  for (let i = 0; i < n; i++) {
    const m = norm[i]!;
    if (m > threshold || (m === threshold && m > 0 && ties-- > 0)) idx.push(i);
  }
  if (coverage < 1) {
    const byMass = idx.slice().sort((a, b) => norm[b]! - norm[a]! || a - b);
    let acc = 0;
    let cut = 0;
    while (cut < byMass.length && acc < coverage) acc += norm[byMass[cut++]!]!;
    idx = byMass.slice(0, cut).sort((a, b) => a - b);
    keep = idx.length;
  }
  let kept = 0;
  for (const i of idx) kept += norm[i]!;
  const lossless = keep === nonzero;
  if (lossless && 2 * n <= 8 + 6 * keep) return { ctxLen: n, index: null, mass: roundF16(norm), residual: 0 };
  const index = Uint32Array.from(idx);
  const m = new Float32Array(index.length);
  for (let j = 0; j < index.length; j++) m[j] = norm[index[j]!]!;
  return { ctxLen: n, index, mass: roundF16(m), residual: lossless ? 0 : Math.max(0, 1 - kept) };
}

function countAbove(v: Float32Array, t: number): number {
  let c = 0;
  for (let i = 0; i < v.length; i++) if (v[i]! > t) c++;
  return c;
}

/** The masses as they will read back from the file (f16), so in-memory and on-disk traces replay the same. */
function roundF16(v: Float32Array): Float32Array {
  for (let i = 0; i < v.length; i++) v[i] = f16ToF32(f32ToF16(v[i]!));
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing.

const utf8 = new TextEncoder();

export function encodeTraceHeader(nLayers: number, meta: TraceMeta = {}): Uint8Array {
  if (!Number.isInteger(nLayers) || nLayers < 1 || nLayers > TRACE_LIMITS.maxLayers) {
    throw new OptionError('nLayers', `${nLayers} is not in [1, ${TRACE_LIMITS.maxLayers}]`);
  }
  const json = utf8.encode(JSON.stringify(meta));
  if (json.byteLength > TRACE_LIMITS.maxMetaBytes) throw new OptionError('meta', `${json.byteLength} bytes of JSON, at most ${TRACE_LIMITS.maxMetaBytes}`);
  const out = new Uint8Array(16 + json.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, TRACE_MAGIC, true);
  dv.setUint32(4, TRACE_VERSION, true);
  dv.setUint32(8, nLayers, true);
  dv.setUint32(12, json.byteLength, true);
  out.set(json, 16);
  return out;
}

export function encodeRecord(r: TraceRecord): Uint8Array {
  if (r.index === null) {
    const out = new Uint8Array(5 + 2 * r.ctxLen);
    const dv = new DataView(out.buffer);
    dv.setUint8(0, KIND_DENSE);
    dv.setUint32(1, r.ctxLen, true);
    for (let i = 0; i < r.ctxLen; i++) dv.setUint16(5 + 2 * i, f32ToF16(r.mass[i]!), true);
    return out;
  }
  const n = r.index.length;
  const out = new Uint8Array(13 + 6 * n);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, KIND_SPARSE);
  dv.setUint32(1, r.ctxLen, true);
  dv.setUint32(5, n, true);
  dv.setFloat32(9, r.residual, true);
  for (let j = 0; j < n; j++) dv.setUint32(13 + 4 * j, r.index[j]!, true);
  for (let j = 0; j < n; j++) dv.setUint16(13 + 4 * n + 2 * j, f32ToF16(r.mass[j]!), true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.byteLength;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** The whole file for an in-memory trace. */
export function writeTrace(trace: AttentionTrace): Uint8Array {
  const parts = [encodeTraceHeader(trace.nLayers, trace.meta)];
  for (const step of trace.records) {
    if (step.length !== trace.nLayers) throw new OptionError('records', `a step has ${step.length} layers, expected ${trace.nLayers}`);
    for (const r of step) parts.push(encodeRecord(r));
  }
  return concat(parts);
}

export interface TraceRecorderOptions extends KeepOptions {
  nLayers: number;
  meta?: TraceMeta;
  /** Receives the file as it is made (the header first, then one chunk per record); without it finish() returns it. */
  sink?: (chunk: Uint8Array) => void;
}

/**
 * Records an attention trace during generation. The engine calls `record(layer, step, mass)` once per layer per
 * decode step, in order (step 0 layers 0..L-1, then step 1, ...), where `mass[i]` is the attention token i received
 * at that step summed over the layer's heads (any scale: the recorder normalises; length = tokens in the cache,
 * the new token included, the same for every layer of a step and never shrinking). The array is not kept.
 * `finish()` checks that the last step is complete and returns the file (or an empty array when a sink was given).
 */
export class TraceRecorder {
  readonly nLayers: number;
  private readonly keep: KeepOptions;
  private readonly sink: (chunk: Uint8Array) => void;
  private readonly parts: Uint8Array[] = [];
  private step = 0;
  private layer = 0;
  private ctxLen = 0;
  private finished = false;

  constructor(opts: TraceRecorderOptions) {
    this.nLayers = opts.nLayers;
    this.keep = { topK: opts.topK, coverage: opts.coverage };
    compressRecord([1], this.keep); // validates topK and coverage now rather than at the first record
    this.sink = opts.sink ?? ((c) => this.parts.push(c));
    this.sink(encodeTraceHeader(opts.nLayers, { source: 'engine', ...opts.meta }));
  }

  /** Complete steps recorded so far. */
  get steps(): number {
    return this.step;
  }

  record(layer: number, step: number, mass: ArrayLike<number>): void {
    if (this.finished) throw new OptionError('record', 'the recorder is finished');
    if (step !== this.step || layer !== this.layer) {
      throw new OptionError('layer', `got step ${step} layer ${layer}, expected step ${this.step} layer ${this.layer} (records come step by step, layers in order)`);
    }
    if (layer > 0 ? mass.length !== this.ctxLen : mass.length < this.ctxLen) {
      throw new OptionError('mass', `step ${step} layer ${layer} has ${mass.length} tokens, ${layer > 0 ? 'expected' : 'at least'} ${this.ctxLen}`);
    }
    this.sink(encodeRecord(compressRecord(mass, this.keep)));
    this.ctxLen = mass.length;
    if (++this.layer === this.nLayers) {
      this.layer = 0;
      this.step++;
    }
  }

  finish(): Uint8Array {
    if (this.layer !== 0) throw new OptionError('record', `step ${this.step} has ${this.layer} of ${this.nLayers} layers`);
    this.finished = true;
    const out = concat(this.parts);
    this.parts.length = 0;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading.

const utf8d = new TextDecoder('utf-8', { fatal: true });

function checkMeta(meta: unknown, bad: (field: string, msg: string) => never): TraceMeta {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) bad('meta', 'is not a JSON object');
  const m = meta as TraceMeta;
  if (m.kvBytesPerToken !== undefined) {
    const v = m.kvBytesPerToken;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 32) bad('meta.kvBytesPerToken', `${JSON.stringify(v)} is not an integer in [1, 2^32]`);
  }
  for (const k of ['model', 'source'] as const) {
    if (m[k] !== undefined && typeof m[k] !== 'string') bad(`meta.${k}`, 'is not a string');
  }
  return m;
}

/** Parses and validates a whole trace file. Throws TraceFormatError naming the defect. */
export function readTrace(bytes: Uint8Array, name = '<trace>'): AttentionTrace {
  const bad = (field: string, msg: string): never => {
    throw new TraceFormatError(name, field, msg);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytes.byteLength;
  if (size < 16) bad('header', `${size} bytes, a trace header is 16`);
  if (dv.getUint32(0, true) !== TRACE_MAGIC) bad('magic', 'not a bmc-llm attention trace (no "BMCT")');
  const version = dv.getUint32(4, true);
  if (version !== TRACE_VERSION) bad('version', `${version} is not supported (only ${TRACE_VERSION})`);
  const nLayers = dv.getUint32(8, true);
  if (nLayers < 1 || nLayers > TRACE_LIMITS.maxLayers) bad('nLayers', `${nLayers} is not in [1, ${TRACE_LIMITS.maxLayers}]`);
  const metaLen = dv.getUint32(12, true);
  if (metaLen > TRACE_LIMITS.maxMetaBytes) bad('metaLen', `${metaLen} is over the limit of ${TRACE_LIMITS.maxMetaBytes}`);
  if (16 + metaLen > size) bad('meta', `${metaLen} bytes declared, ${size - 16} present`);
  let meta: unknown;
  try {
    meta = JSON.parse(utf8d.decode(bytes.subarray(16, 16 + metaLen)));
  } catch (e) {
    bad('meta', `not valid UTF-8 JSON (${(e as Error).message})`);
  }
  const records: TraceRecord[][] = [];
  let pos = 16 + metaLen;
  let prevCtx = 0;
  let step: TraceRecord[] = [];
  while (pos < size) {
    const where = `step ${records.length} layer ${step.length}`;
    const need = (n: number, what: string) => {
      if (n > size - pos) bad(`${where}: ${what}`, `needs ${n} bytes, ${size - pos} left (truncated?)`);
    };
    need(5, 'record header');
    const kind = dv.getUint8(pos);
    const ctxLen = dv.getUint32(pos + 1, true);
    pos += 5;
    if (ctxLen < 1 || ctxLen > TRACE_LIMITS.maxContext) bad(`${where}: ctxLen`, `${ctxLen} is not in [1, ${TRACE_LIMITS.maxContext}]`);
    if (step.length > 0 ? ctxLen !== prevCtx : ctxLen < prevCtx) {
      bad(`${where}: ctxLen`, `${ctxLen} ${step.length > 0 ? `differs from layer 0's ${prevCtx}` : `is below the previous step's ${prevCtx}`}`);
    }
    let rec: TraceRecord;
    let sum = 0;
    const checkMass = (v: number, j: number) => {
      if (!(v >= 0) || v === Infinity) bad(`${where}: mass[${j}]`, `${v} is not a finite non-negative number`);
      sum += v;
    };
    if (kind === KIND_DENSE) {
      need(2 * ctxLen, 'dense masses');
      const mass = new Float32Array(ctxLen);
      for (let i = 0; i < ctxLen; i++) {
        const v = f16ToF32(dv.getUint16(pos + 2 * i, true));
        checkMass(v, i);
        mass[i] = v;
      }
      pos += 2 * ctxLen;
      rec = { ctxLen, index: null, mass, residual: 0 };
    } else if (kind === KIND_SPARSE) {
      need(8, 'sparse header');
      const n = dv.getUint32(pos, true);
      const residual = dv.getFloat32(pos + 4, true);
      pos += 8;
      if (n > ctxLen) bad(`${where}: n`, `${n} tokens listed of ${ctxLen}`);
      if (!(residual >= 0 && residual <= 1)) bad(`${where}: residual`, `${residual} is not in [0, 1]`);
      need(6 * n, 'sparse entries');
      const index = new Uint32Array(n);
      const mass = new Float32Array(n);
      let prev = -1;
      for (let j = 0; j < n; j++) {
        const t = dv.getUint32(pos + 4 * j, true);
        if (t <= prev || t >= ctxLen) bad(`${where}: index[${j}]`, `${t} is not ascending and below ctxLen ${ctxLen}`);
        index[j] = t;
        prev = t;
        const v = f16ToF32(dv.getUint16(pos + 4 * n + 2 * j, true));
        checkMass(v, j);
        mass[j] = v;
      }
      pos += 6 * n;
      sum += residual;
      rec = { ctxLen, index, mass, residual };
    } else {
      return bad(`${where}: kind`, `${kind} is neither dense (0) nor sparse (1)`);
    }
    if (Math.abs(sum - 1) > SUM_TOLERANCE + ctxLen * 3e-8) bad(`${where}: mass`, `sums to ${sum.toPrecision(6)}, expected 1`);
    prevCtx = ctxLen;
    step.push(rec);
    if (step.length === nLayers) {
      records.push(step);
      step = [];
    }
  }
  if (step.length > 0) bad(`step ${records.length}`, `has ${step.length} of ${nLayers} layers (truncated?)`);
  return { nLayers, meta: checkMeta(meta, bad), records };
}

/** Tokens in the cache at the last step (the largest context of the trace), 0 for an empty trace. */
export function traceMaxContext(trace: AttentionTrace): number {
  const last = trace.records[trace.records.length - 1];
  return last ? last[0]!.ctxLen : 0;
}
