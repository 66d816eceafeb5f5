/**
 * Synthetic models: a tiny random Llama with a minimal SentencePiece vocabulary, written with GGUFWriter.
 * Also the small conversions it needs (f32 -> f16 / bf16, Q8_0, Q4_0 and Q5_0 quantization, as ggml's reference
 * quantizers do them) and their inverses for tests.
 */
import { OptionError } from '../errors.js';
import { GGMLType, GGML_TYPES, GGUFValueType, typeName } from './types.js';
import { GGUFWriter } from './writer.js';

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** IEEE half bits of `v`, rounded to nearest even (overflow gives infinity). */
export function f32ToF16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: the value in units of 2^-24 is m >> shift.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry into the exponent is correct, up to infinity
  return sign | h;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits of `v`, rounded to nearest even. */
export function f32ToBF16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(b: number): number {
  u32buf[0] = (b & 0xffff) << 16;
  return f32buf[0]!;
}

/** Rounds half away from zero (C's roundf). */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** Encodes `values` as ggml `type` (F32, F16, BF16, Q8_0, Q4_0 or Q5_0). Block types need a multiple of 32 values. */
export function quantize(type: number, values: Float32Array): Uint8Array {
  const n = values.length;
  const info = GGML_TYPES.get(type);
  if (!info) throw new OptionError('type', `unknown ggml type ${type}`);
  if (n % info.blockSize !== 0) throw new OptionError('values', `${n} values are not a multiple of the ${info.name} block size ${info.blockSize}`);
  const out = new Uint8Array((n / info.blockSize) * info.typeSize);
  const view = new DataView(out.buffer);
  switch (type) {
    case GGMLType.F32:
      for (let i = 0; i < n; i++) view.setFloat32(i * 4, values[i]!, true);
      return out;
    case GGMLType.F16:
      for (let i = 0; i < n; i++) view.setUint16(i * 2, f32ToF16(values[i]!), true);
      return out;
    case GGMLType.BF16:
      for (let i = 0; i < n; i++) view.setUint16(i * 2, f32ToBF16(values[i]!), true);
      return out;
    case GGMLType.Q8_0:
      for (let b = 0; b < n / 32; b++) {
        const x = values.subarray(b * 32, b * 32 + 32);
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[j]!));
        const d = Math.fround(amax / 127);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const o = b * 34;
        view.setUint16(o, f32ToF16(d), true);
        for (let j = 0; j < 32; j++) view.setInt8(o + 2 + j, roundAway(Math.fround(x[j]! * id)));
      }
      return out;
    case GGMLType.Q4_0:
      for (let b = 0; b < n / 32; b++) {
        const x = values.subarray(b * 32, b * 32 + 32);
        let amax = 0;
        let max = 0;
        for (let j = 0; j < 32; j++) {
          if (amax < Math.abs(x[j]!)) {
            amax = Math.abs(x[j]!);
            max = x[j]!;
          }
        }
        const d = Math.fround(max / -8);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const o = b * 18;
        view.setUint16(o, f32ToF16(d), true);
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(15, Math.trunc(Math.fround(Math.fround(x[j]! * id) + 8.5)));
          const q1 = Math.min(15, Math.trunc(Math.fround(Math.fround(x[16 + j]! * id) + 8.5)));
          out[o + 2 + j] = q0 | (q1 << 4);
        }
      }
      return out;
    case GGMLType.Q5_0:
      for (let b = 0; b < n / 32; b++) {
        const x = values.subarray(b * 32, b * 32 + 32);
        let amax = 0;
        let max = 0;
        for (let j = 0; j < 32; j++) {
          if (amax < Math.abs(x[j]!)) {
            amax = Math.abs(x[j]!);
            max = x[j]!;
          }
        }
        const d = Math.fround(max / -16);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const o = b * 22;
        view.setUint16(o, f32ToF16(d), true);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(31, Math.trunc(Math.fround(Math.fround(x[j]! * id) + 16.5)));
          const q1 = Math.min(31, Math.trunc(Math.fround(Math.fround(x[16 + j]! * id) + 16.5)));
          out[o + 6 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
          qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
        }
        view.setUint32(o + 2, qh >>> 0, true);
      }
      return out;
    default:
      throw new OptionError('type', `quantizing to ${typeName(type)} is not implemented (F32, F16, BF16, Q8_0, Q4_0, Q5_0)`);
  }
}

/** Decodes `n` values of ggml `type` (F32, F16, BF16, Q8_0, Q4_0 or Q5_0). */
export function dequantize(type: number, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (type) {
    case GGMLType.F32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case GGMLType.F16:
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
      return out;
    case GGMLType.BF16:
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(i * 2, true));
      return out;
    case GGMLType.Q8_0:
      for (let b = 0; b < n / 32; b++) {
        const d = f16ToF32(view.getUint16(b * 34, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(b * 34 + 2 + j);
      }
      return out;
    case GGMLType.Q4_0:
      for (let b = 0; b < n / 32; b++) {
        const d = f16ToF32(view.getUint16(b * 18, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 18 + 2 + j]!;
          out[b * 32 + j] = d * ((q & 0xf) - 8);
          out[b * 32 + 16 + j] = d * ((q >> 4) - 8);
        }
      }
      return out;
    case GGMLType.Q5_0:
      for (let b = 0; b < n / 32; b++) {
        const d = f16ToF32(view.getUint16(b * 22, true));
        const qh = view.getUint32(b * 22 + 2, true);
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 22 + 6 + j]!;
          out[b * 32 + j] = d * (((q & 0xf) | (((qh >>> j) & 1) << 4)) - 16);
          out[b * 32 + 16 + j] = d * (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
        }
      }
      return out;
    default:
      throw new OptionError('type', `dequantizing ${typeName(type)} is not implemented (F32, F16, BF16, Q8_0, Q4_0, Q5_0)`);
  }
}

/** Small seeded PRNG (mulberry32): `next()` in [0, 1), `normal()` standard normal. */
export class Rng {
  private s: number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export interface TinyLlamaOptions {
  /** Embedding width (default 64). */
  dim?: number;
  /** Transformer blocks (default 2). */
  layers?: number;
  /** Attention heads (default 4); dim must be a multiple. */
  heads?: number;
  /** Key/value heads (default `heads`); must divide `heads`. */
  kvHeads?: number;
  /** Feed-forward width (default 4 * dim). */
  ffn?: number;
  /** Vocabulary size, at least 259 (default 320): <unk>, <s>, </s>, 256 byte tokens, then pieces. */
  vocab?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** ggml type of the matrices, as an id or a name: F32 (default), F16, BF16, Q8_0, Q4_0, Q5_0. Norms stay F32. */
  type?: number | string;
  /**
   * Per-matrix type (for mixes like llama.cpp's, e.g. a 256-block type where the row length allows and a fallback
   * elsewhere): called with the tensor name and its row length and row count; undefined keeps `type`.
   */
  matrixType?: (name: string, cols: number, rows: number) => number | string | undefined;
  /** Trained context length written to the metadata (default 256). */
  contextLength?: number;
  /** Omit output.weight so the output projection is tied to token_embd (default false). */
  tied?: boolean;
  ropeBase?: number;
  rmsEps?: number;
  name?: string;
}

const WORDS = [
  'the', 'and', 'to', 'a', 'was', 'he', 'she', 'it', 'of', 'in', 'said', 'her', 'his', 'they', 'with', 'day',
  'Once', 'upon', 'time', 'there', 'little', 'girl', 'boy', 'named', 'Lily', 'Tim', 'play', 'happy', 'big', 'dog',
  'cat', 'ball', 'tree', 'sun', 'friend', 'mom', 'went', 'saw', 'had', 'very', 'wanted', 'one', 'you', 'not',
];

/** The minimal SPM vocabulary: tokens, scores and token types (1 normal, 2 unknown, 3 control, 6 byte). */
export function tinySpmVocab(size: number): { tokens: string[]; scores: Float32Array; types: Int32Array } {
  if (!Number.isInteger(size) || size < 259) throw new OptionError('vocab', `${size} is not an integer >= 259 (3 special and 256 byte tokens)`);
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const seen = new Set(tokens);
  const pieces: string[] = ['▁'];
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?\'"';
  for (const c of letters) pieces.push(c);
  for (const c of letters) pieces.push(`▁${c}`);
  for (const w of WORDS) pieces.push(`▁${w}`, w);
  const lower = 'abcdefghijklmnopqrstuvwxyz';
  for (const a of lower) for (const b of lower) pieces.push(a + b);
  for (const a of lower) for (const b of lower) pieces.push(`▁${a}${b}`);
  const scores: number[] = [0, 0, 0, ...new Array<number>(256).fill(0)];
  let k = 0;
  for (let i = 0; tokens.length < size; i++) {
    const p = i < pieces.length ? pieces[i]! : `▁t${k++}`;
    if (seen.has(p)) continue;
    seen.add(p);
    tokens.push(p);
    types.push(1);
    scores.push(-tokens.length);
  }
  return { tokens, scores: Float32Array.from(scores), types: Int32Array.from(types) };
}

function resolveType(t: number | string | undefined): number {
  if (t === undefined) return GGMLType.F32;
  const id = typeof t === 'number' ? t : [...GGML_TYPES.values()].find((x) => x.name === t.toUpperCase())?.id;
  const ok: number[] = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q5_0];
  if (id === undefined || !ok.includes(id)) throw new OptionError('type', `${String(t)} is not one of F32, F16, BF16, Q8_0, Q4_0, Q5_0`);
  return id;
}

function posInt(name: string, v: unknown, dflt: number, max = 1 << 20): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new OptionError(name, `${String(v)} is not an integer in [1, ${max}]`);
  return v;
}

/**
 * A writer holding a random Llama of the given shape (tensor data is generated lazily, per tensor, from the seed
 * and the tensor name, so the same options always give the same bytes). Add metadata before writing if needed.
 */
export function tinyLlamaWriter(options: TinyLlamaOptions = {}): GGUFWriter {
  const dim = posInt('dim', options.dim, 64);
  const layers = posInt('layers', options.layers, 2, 4096);
  const heads = posInt('heads', options.heads, 4, 4096);
  const kvHeads = posInt('kvHeads', options.kvHeads, heads, heads);
  const ffn = posInt('ffn', options.ffn, 4 * dim);
  const nVocab = posInt('vocab', options.vocab, 320, 1 << 22);
  const seed = options.seed ?? 1;
  if (!Number.isInteger(seed)) throw new OptionError('seed', `${String(seed)} is not an integer`);
  const ctx = posInt('contextLength', options.contextLength, 256, 1 << 24);
  const type = resolveType(options.type);
  if (dim % heads !== 0) throw new OptionError('heads', `${heads} does not divide dim ${dim}`);
  if (heads % kvHeads !== 0) throw new OptionError('kvHeads', `${kvHeads} does not divide heads ${heads}`);
  const headDim = dim / heads;
  if (headDim % 2 !== 0) throw new OptionError('heads', `head dimension ${headDim} is odd`);
  const block = GGML_TYPES.get(type)!.blockSize;
  for (const [n, v] of [['dim', dim], ['ffn', ffn]] as const) {
    if (v % block !== 0) throw new OptionError(n, `${v} is not a multiple of the ${typeName(type)} block size ${block}`);
  }
  const kvDim = kvHeads * headDim;
  const vocab = tinySpmVocab(nVocab);

  const w = new GGUFWriter();
  const T = GGUFValueType;
  w.setString('general.architecture', 'llama');
  w.setString('general.name', options.name ?? `tiny-llama-d${dim}-l${layers}`);
  w.setU32('general.alignment', 32);
  // llama.cpp file types: 0 all F32, 1 mostly F16, 2 Q4_0, 7 Q8_0, 8 Q5_0, 32 BF16.
  const fileType: Record<number, number> = { [GGMLType.F32]: 0, [GGMLType.F16]: 1, [GGMLType.Q4_0]: 2, [GGMLType.Q8_0]: 7, [GGMLType.Q5_0]: 8, [GGMLType.BF16]: 32 };
  w.setU32('general.file_type', fileType[type]!);
  w.setU32('llama.context_length', ctx);
  w.setU32('llama.embedding_length', dim);
  w.setU32('llama.block_count', layers);
  w.setU32('llama.feed_forward_length', ffn);
  w.setU32('llama.attention.head_count', heads);
  w.setU32('llama.attention.head_count_kv', kvHeads);
  w.setU32('llama.rope.dimension_count', headDim);
  w.setF32('llama.rope.freq_base', options.ropeBase ?? 10000);
  w.setF32('llama.attention.layer_norm_rms_epsilon', options.rmsEps ?? 1e-5);
  w.setU32('llama.vocab_size', nVocab);
  w.setString('tokenizer.ggml.model', 'llama');
  w.setArray('tokenizer.ggml.tokens', T.STRING, vocab.tokens);
  w.setArray('tokenizer.ggml.scores', T.FLOAT32, vocab.scores);
  w.setArray('tokenizer.ggml.token_type', T.INT32, vocab.types);
  w.setU32('tokenizer.ggml.unknown_token_id', 0);
  w.setU32('tokenizer.ggml.bos_token_id', 1);
  w.setU32('tokenizer.ggml.eos_token_id', 2);
  w.setBool('tokenizer.ggml.add_bos_token', true);
  w.setBool('tokenizer.ggml.add_eos_token', false);

  const gen = (name: string, n: number, scale: number, offset: number) => () => {
    const rng = new Rng((seed ^ hashString(name)) >>> 0);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = offset + scale * rng.normal();
    return v;
  };
  const matrix = (name: string, cols: number, rows: number) => {
    const values = gen(name, cols * rows, 1 / Math.sqrt(cols), 0);
    const own = options.matrixType?.(name, cols, rows);
    const t = own === undefined ? type : resolveType(own);
    w.addTensor(name, [cols, rows], t, () => quantize(t, values()));
  };
  const vector = (name: string, n: number) => {
    const values = gen(name, n, 0.05, 1);
    w.addTensor(name, [n], GGMLType.F32, () => quantize(GGMLType.F32, values()));
  };
  matrix('token_embd.weight', dim, nVocab);
  vector('output_norm.weight', dim);
  if (!options.tied) matrix('output.weight', dim, nVocab);
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    vector(`${p}attn_norm.weight`, dim);
    matrix(`${p}attn_q.weight`, dim, dim);
    matrix(`${p}attn_k.weight`, dim, kvDim);
    matrix(`${p}attn_v.weight`, dim, kvDim);
    matrix(`${p}attn_output.weight`, dim, dim);
    vector(`${p}ffn_norm.weight`, dim);
    matrix(`${p}ffn_gate.weight`, dim, ffn);
    matrix(`${p}ffn_up.weight`, dim, ffn);
    matrix(`${p}ffn_down.weight`, ffn, dim);
  }
  return w;
}

/** GGUF bytes of a tiny random Llama (F32 weights unless `type` says otherwise) with a minimal SPM vocabulary. */
export function makeTinyLlama(options: TinyLlamaOptions = {}): Uint8Array {
  return tinyLlamaWriter(options).toBytes();
}
