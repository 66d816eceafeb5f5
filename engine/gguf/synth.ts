/**
 * Synthetic models: a tiny random Llama with a minimal SentencePiece vocabulary, written with GGUFWriter.
 * Also the conversions it needs and their inverses for tests: f32 -> f16 / bf16; Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 as
 * ggml's reference quantizers do them; and Q2_K .. Q6_K with a simple one-pass quantizer of our own (valid blocks
 * with a reasonable error, not llama.cpp's optimizing search).
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

/** Types `quantize` and `dequantize` handle. */
export const QUANTIZABLE: readonly number[] = [
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1,
  GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
];

/** The first value of largest magnitude, with its sign. */
function signedMax(x: Float32Array): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < x.length; j++) {
    if (amax < Math.abs(x[j]!)) {
      amax = Math.abs(x[j]!);
      max = x[j]!;
    }
  }
  return max;
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

/**
 * One K-quant super-block of 256 values into out[o..]: per sub-block a scale (and for Q2_K / Q4_K / Q5_K a min,
 * taken as min(0, smallest value)) from its range, the scales quantized against the super-block's largest, the values
 * rounded against their sub-block's quantized scale. Layouts as in wasm/kquant_blocks.ts.
 */
function quantizeK(type: number, x: Float32Array, out: Uint8Array, o: number): void {
  const view = new DataView(out.buffer, out.byteOffset);
  const sub = type === GGMLType.Q4_K || type === GGMLType.Q5_K ? 32 : 16;
  const nSub = 256 / sub;
  const L = new Int32Array(256); // quants, stored form (offsets added)
  if (type === GGMLType.Q2_K || type === GGMLType.Q4_K || type === GGMLType.Q5_K) {
    const nmax = type === GGMLType.Q2_K ? 3 : type === GGMLType.Q4_K ? 15 : 31;
    const smax = type === GGMLType.Q2_K ? 15 : 63; // largest quantized scale / min
    const scales: number[] = [];
    const mins: number[] = [];
    for (let j = 0; j < nSub; j++) {
      let lo = 0;
      let hi = -Infinity;
      for (let l = 0; l < sub; l++) {
        lo = Math.min(lo, x[j * sub + l]!);
        hi = Math.max(hi, x[j * sub + l]!);
      }
      scales.push((hi - lo) / nmax);
      mins.push(-lo);
    }
    const dBits = f32ToF16(Math.max(...scales) / smax);
    const mBits = f32ToF16(Math.max(...mins) / smax);
    const d = f16ToF32(dBits);
    const dmin = f16ToF32(mBits);
    const ls = scales.map((v) => (d > 0 ? clamp(Math.round(v / d), 0, smax) : 0));
    const lm = mins.map((v) => (dmin > 0 ? clamp(Math.round(v / dmin), 0, smax) : 0));
    for (let e = 0; e < 256; e++) {
      const j = Math.floor(e / sub);
      const dl = Math.fround(d * ls[j]!);
      const ml = Math.fround(dmin * lm[j]!);
      L[e] = dl > 0 ? clamp(Math.round((x[e]! + ml) / dl), 0, nmax) : 0;
    }
    if (type === GGMLType.Q2_K) {
      for (let j = 0; j < 16; j++) out[o + j] = ls[j]! | (lm[j]! << 4);
      packCrumbs(L, out, o + 16);
      view.setUint16(o + 80, dBits, true);
      view.setUint16(o + 82, mBits, true);
      return;
    }
    view.setUint16(o, dBits, true);
    view.setUint16(o + 2, mBits, true);
    for (let j = 0; j < 8; j++) { // 6-bit scales and mins, 12 bytes
      if (j < 4) {
        out[o + 4 + j] = ls[j]!;
        out[o + 8 + j] = lm[j]!;
      } else {
        out[o + 4 + j + 4] = (ls[j]! & 15) | ((lm[j]! & 15) << 4);
        out[o + 4 + j - 4] |= (ls[j]! >> 4) << 6;
        out[o + 4 + j] |= (lm[j]! >> 4) << 6;
      }
    }
    const qs = o + (type === GGMLType.Q4_K ? 16 : 48);
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        const a = L[64 * c + l]!;
        const b = L[64 * c + 32 + l]!;
        out[qs + 32 * c + l] = (a & 15) | ((b & 15) << 4);
        if (type === GGMLType.Q5_K) out[o + 16 + l] |= ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1));
      }
    }
    return;
  }
  // Q3_K and Q6_K: signed quants (-4..3 resp. -32..31), the largest |value| of a sub-block at the negative end;
  // signed sub-block scales against the super-block's largest.
  const six = type === GGMLType.Q6_K;
  const qmin = six ? 32 : 4;
  const smin = six ? 128 : 32;
  const scales: number[] = [];
  for (let j = 0; j < 16; j++) scales.push(signedMax(x.subarray(16 * j, 16 * j + 16)) / -qmin);
  const maxScale = scales.reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), 0);
  const iscale = maxScale !== 0 ? -smin / maxScale : 0;
  const dBits = f32ToF16(iscale !== 0 ? 1 / iscale : 0);
  const d = f16ToF32(dBits);
  const ls = scales.map((v) => clamp(Math.round(iscale * v), -smin, smin - 1));
  for (let e = 0; e < 256; e++) {
    const dl = Math.fround(d * ls[e >> 4]!);
    L[e] = (dl !== 0 ? clamp(Math.round(x[e]! / dl), -qmin, qmin - 1) : 0) + qmin;
  }
  if (six) {
    for (let n = 0; n < 2; n++) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[128 * n + l]!, q2 = L[128 * n + 32 + l]!, q3 = L[128 * n + 64 + l]!, q4 = L[128 * n + 96 + l]!;
        out[o + 64 * n + l] = (q1 & 15) | ((q3 & 15) << 4);
        out[o + 64 * n + 32 + l] = (q2 & 15) | ((q4 & 15) << 4);
        out[o + 128 + 32 * n + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
    for (let j = 0; j < 16; j++) view.setInt8(o + 192 + j, ls[j]!);
    view.setUint16(o + 208, dBits, true);
    return;
  }
  for (let e = 0; e < 256; e++) { // Q3_K: bit 2 of each quant into hmask (element e: byte e % 32, bit e / 32)
    if (L[e]! > 3) {
      out[o + (e & 31)] |= 1 << (e >> 5);
      L[e] -= 4;
    }
  }
  packCrumbs(L, out, o + 32);
  for (let j = 0; j < 16; j++) { // 6-bit scales (stored + 32), 12 bytes
    const v = ls[j]! + 32;
    if (j < 8) out[o + 96 + j] |= v & 15;
    else out[o + 96 + j - 8] |= (v & 15) << 4;
    out[o + 96 + 8 + (j & 3)] |= (v >> 4) << (2 * (j >> 2));
  }
  view.setUint16(o + 108, dBits, true);
}

/** 2-bit quants L[0..255] into 64 bytes at out[o..]: element 128n + 32k + l in bits 2k of byte 32n + l. */
function packCrumbs(L: Int32Array, out: Uint8Array, o: number): void {
  for (let n = 0; n < 2; n++) {
    for (let l = 0; l < 32; l++) {
      out[o + 32 * n + l] = L[128 * n + l]! | (L[128 * n + 32 + l]! << 2) | (L[128 * n + 64 + l]! << 4) | (L[128 * n + 96 + l]! << 6);
    }
  }
}

/** Integer quant (offsets included), scale and min of each of the 256 elements of the K-quant block at b[o..]. */
function decodeK(type: number, b: Uint8Array, o: number): { q: Int32Array; sc: Int32Array; mn: Int32Array; d: number; dmin: number } {
  const view = new DataView(b.buffer, b.byteOffset);
  const q = new Int32Array(256), sc = new Int32Array(256), mn = new Int32Array(256);
  const crumb = (base: number, e: number) => (b[base + 32 * (e >> 7) + (e & 31)]! >> (2 * ((e >> 5) & 3))) & 3;
  if (type === GGMLType.Q2_K) {
    for (let e = 0; e < 256; e++) {
      q[e] = crumb(o + 16, e);
      sc[e] = b[o + (e >> 4)]! & 15;
      mn[e] = b[o + (e >> 4)]! >> 4;
    }
    return { q, sc, mn, d: f16ToF32(view.getUint16(o + 80, true)), dmin: f16ToF32(view.getUint16(o + 82, true)) };
  }
  if (type === GGMLType.Q3_K) {
    for (let e = 0; e < 256; e++) {
      const hbit = (b[o + (e & 31)]! >> (e >> 5)) & 1;
      q[e] = crumb(o + 32, e) - (hbit ? 0 : 4);
      const j = e >> 4;
      const low = j < 8 ? b[o + 96 + j]! & 15 : b[o + 96 + j - 8]! >> 4;
      sc[e] = (low | (((b[o + 104 + (j & 3)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
    }
    return { q, sc, mn, d: f16ToF32(view.getUint16(o + 108, true)), dmin: 0 };
  }
  if (type === GGMLType.Q4_K || type === GGMLType.Q5_K) {
    const s6 = (j: number, m: number) => (j < 4 ? b[o + 4 + j + m]! & 63
      : (m ? b[o + 4 + j + 4]! >> 4 : b[o + 4 + j + 4]! & 15) | ((b[o + 4 + j - 4 + m]! >> 6) << 4));
    const qs = o + (type === GGMLType.Q4_K ? 16 : 48);
    for (let e = 0; e < 256; e++) {
      const g = e >> 5;
      const byte = b[qs + 32 * (g >> 1) + (e & 31)]!;
      q[e] = (g & 1 ? byte >> 4 : byte & 15) + (type === GGMLType.Q5_K ? ((b[o + 16 + (e & 31)]! >> g) & 1) << 4 : 0);
      sc[e] = s6(g, 0);
      mn[e] = s6(g, 4);
    }
    return { q, sc, mn, d: f16ToF32(view.getUint16(o, true)), dmin: f16ToF32(view.getUint16(o + 2, true)) };
  }
  // Q6_K
  for (let e = 0; e < 256; e++) {
    const n = e >> 7, k = (e >> 5) & 3, l = e & 31;
    const byte = b[o + 64 * n + 32 * (k & 1) + l]!;
    const nib = k & 2 ? byte >> 4 : byte & 15;
    q[e] = (nib | (((b[o + 128 + 32 * n + l]! >> (2 * k)) & 3) << 4)) - 32;
    sc[e] = view.getInt8(o + 192 + (e >> 4));
  }
  return { q, sc, mn, d: f16ToF32(view.getUint16(o + 208, true)), dmin: 0 };
}

/** Encodes `values` as ggml `type` (see QUANTIZABLE). Block types need a multiple of their block size (32 or 256). */
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
    case GGMLType.Q4_1:
    case GGMLType.Q5_1: {
      const five = type === GGMLType.Q5_1;
      const bs = five ? 24 : 20;
      const nmax = five ? 31 : 15;
      for (let b = 0; b < n / 32; b++) {
        const x = values.subarray(b * 32, b * 32 + 32);
        let min = Infinity;
        let max = -Infinity;
        for (let j = 0; j < 32; j++) {
          min = Math.min(min, x[j]!);
          max = Math.max(max, x[j]!);
        }
        const d = Math.fround((max - min) / nmax);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const o = b * bs;
        view.setUint16(o, f32ToF16(d), true);
        view.setUint16(o + 2, f32ToF16(min), true);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(nmax, Math.trunc(Math.fround(Math.fround(Math.fround(x[j]! - min) * id) + 0.5)));
          const q1 = Math.min(nmax, Math.trunc(Math.fround(Math.fround(Math.fround(x[16 + j]! - min) * id) + 0.5)));
          out[o + bs - 16 + j] = (q0 & 15) | ((q1 & 15) << 4);
          qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
        }
        if (five) view.setUint32(o + 4, qh >>> 0, true);
      }
      return out;
    }
    case GGMLType.Q5_0:
      for (let b = 0; b < n / 32; b++) {
        const x = values.subarray(b * 32, b * 32 + 32);
        const max = signedMax(x);
        const d = Math.fround(max / -16);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const o = b * 22;
        view.setUint16(o, f32ToF16(d), true);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(31, Math.trunc(Math.fround(Math.fround(x[j]! * id) + 16.5)));
          const q1 = Math.min(31, Math.trunc(Math.fround(Math.fround(x[16 + j]! * id) + 16.5)));
          out[o + 6 + j] = (q0 & 15) | ((q1 & 15) << 4);
          qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
        }
        view.setUint32(o + 2, qh >>> 0, true);
      }
      return out;
    case GGMLType.Q2_K:
    case GGMLType.Q3_K:
    case GGMLType.Q4_K:
    case GGMLType.Q5_K:
    case GGMLType.Q6_K:
      for (let b = 0; b < n / 256; b++) quantizeK(type, values.subarray(b * 256, b * 256 + 256), out, b * info.typeSize);
      return out;
    default:
      throw new OptionError('type', `quantizing to ${typeName(type)} is not implemented (${QUANTIZABLE.map(typeName).join(', ')})`);
  }
}

/** Decodes `n` values of ggml `type` (see QUANTIZABLE). */
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
    case GGMLType.Q4_1:
    case GGMLType.Q5_0:
    case GGMLType.Q5_1: {
      const bs = type === GGMLType.Q4_1 ? 20 : type === GGMLType.Q5_0 ? 22 : 24;
      for (let b = 0; b < n / 32; b++) {
        const o = b * bs;
        const d = f16ToF32(view.getUint16(o, true));
        const m = type === GGMLType.Q5_0 ? 0 : f16ToF32(view.getUint16(o + 2, true));
        const qh = type === GGMLType.Q4_1 ? 0 : view.getUint32(o + bs - 20, true);
        for (let j = 0; j < 16; j++) {
          const byte = bytes[o + bs - 16 + j]!;
          let q0 = (byte & 15) | (((qh >>> j) & 1) << 4);
          let q1 = (byte >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          if (type === GGMLType.Q5_0) {
            q0 -= 16;
            q1 -= 16;
          }
          out[b * 32 + j] = type === GGMLType.Q5_0 ? d * q0 : Math.fround(d * q0) + m;
          out[b * 32 + 16 + j] = type === GGMLType.Q5_0 ? d * q1 : Math.fround(d * q1) + m;
        }
      }
      return out;
    }
    case GGMLType.Q2_K:
    case GGMLType.Q3_K:
    case GGMLType.Q4_K:
    case GGMLType.Q5_K:
    case GGMLType.Q6_K: {
      // ggml's float operations: (d·sc)·q − dmin·m, or (d·sc)·q for the types without mins.
      const bs = GGML_TYPES.get(type)!.typeSize;
      const hasMin = type === GGMLType.Q2_K || type === GGMLType.Q4_K || type === GGMLType.Q5_K;
      for (let b = 0; b < n / 256; b++) {
        const k = decodeK(type, bytes, b * bs);
        for (let e = 0; e < 256; e++) {
          const v = Math.fround(Math.fround(k.d * k.sc[e]!) * k.q[e]!);
          out[b * 256 + e] = hasMin ? v - Math.fround(k.dmin * k.mn[e]!) : v;
        }
      }
      return out;
    }
    default:
      throw new OptionError('type', `dequantizing ${typeName(type)} is not implemented (${QUANTIZABLE.map(typeName).join(', ')})`);
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
  /**
   * ggml type of the matrices, as an id or a name: F32 (default), F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
   * Q4_K, Q5_K, Q6_K. Norms stay F32. K-quant matrices whose column count (dim or ffn) is not a multiple of 256 fall
   * back to another type as llama-quantize does (see matrixType).
   */
  type?: number | string;
  /**
   * Per-matrix type override (e.g. llama.cpp's Q4_K_M mixes: Q4_K where rows allow, another type elsewhere): called
   * with the tensor name, its row length and row count; undefined keeps `type` (with its row-length fallback).
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
  if (id === undefined || !QUANTIZABLE.includes(id)) throw new OptionError('type', `${String(t)} is not one of ${QUANTIZABLE.map(typeName).join(', ')}`);
  return id;
}

/**
 * The type a matrix of `cols` columns is written in for the requested `type`. K-quants need whole 256-value
 * super-blocks per row; where `cols` is not a multiple of 256 the matrix falls back like llama-quantize does:
 * Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and Q2_K / Q3_K -> Q4_0 (llama.cpp takes IQ4_NL there, which this engine
 * does not compute); F16 where even 32 does not divide `cols`. Other types are used as they are.
 */
export function matrixType(type: number, cols: number): number {
  if (GGML_TYPES.get(type)!.blockSize !== 256 || cols % 256 === 0) return type;
  const fallback = type === GGMLType.Q4_K ? GGMLType.Q5_0 : type === GGMLType.Q5_K ? GGMLType.Q5_1
    : type === GGMLType.Q6_K ? GGMLType.Q8_0 : GGMLType.Q4_0;
  return cols % 32 === 0 ? fallback : GGMLType.F16;
}

/** llama.cpp's general.file_type for a model whose matrices are mostly `type` (K-quants: the _S variants). */
const FILE_TYPE: Record<number, number> = {
  [GGMLType.F32]: 0, [GGMLType.F16]: 1, [GGMLType.Q4_0]: 2, [GGMLType.Q4_1]: 3, [GGMLType.Q8_0]: 7, [GGMLType.Q5_0]: 8,
  [GGMLType.Q5_1]: 9, [GGMLType.Q2_K]: 10, [GGMLType.Q3_K]: 11, [GGMLType.Q4_K]: 14, [GGMLType.Q5_K]: 16,
  [GGMLType.Q6_K]: 18, [GGMLType.BF16]: 32,
};

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
    if (block !== 256 && v % block !== 0) throw new OptionError(n, `${v} is not a multiple of the ${typeName(type)} block size ${block}`);
  }
  const kvDim = kvHeads * headDim;
  const vocab = tinySpmVocab(nVocab);

  const w = new GGUFWriter();
  const T = GGUFValueType;
  w.setString('general.architecture', 'llama');
  w.setString('general.name', options.name ?? `tiny-llama-d${dim}-l${layers}`);
  w.setU32('general.alignment', 32);
  w.setU32('general.file_type', FILE_TYPE[type]!);
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
    const t = own === undefined ? matrixType(type, cols) : resolveType(own);
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
