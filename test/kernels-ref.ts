// Independent JS references for the kernel tests: number formats, ggml blocks and float64 math,
// written from the format definitions (not from the AssemblyScript code).

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export const f32Bits = (v: number): number => { f32buf[0] = v; return u32buf[0]!; };
export const bitsF32 = (b: number): number => { u32buf[0] = b >>> 0; return f32buf[0]!; };
export const fr = Math.fround;

/** IEEE half bits -> number. */
export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** number (taken as f32) -> half bits, round to nearest even, F16C semantics (NaN: quiet, top mantissa bits). */
export function numberToHalf(v: number): number {
  const bits = f32Bits(v);
  const sign = (bits >>> 16) & 0x8000;
  const a = Math.abs(fr(v));
  if (Number.isNaN(a)) return sign | 0x7e00 | ((bits >>> 13) & 0x3ff);
  if (a === 0) return sign;
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest half, 65504
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  if (e < -14) e = -14;
  const ulp = 2 ** (e - 10);
  const q = a / ulp; // exact: a is an f32 and ulp a power of two
  let f = Math.floor(q);
  const frac = q - f;
  if (frac > 0.5 || (frac === 0.5 && f % 2 === 1)) f++;
  const h = ((e + 14) << 10) + f;
  return sign | (h >= 0x7c00 ? 0x7c00 : h);
}

export const bf16ToNumber = (h: number): number => bitsF32(h << 16);

/** Round half to even, as f32.nearest. */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ---- deterministic random data ----

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { // xorshift32, in [0, 1)
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

export function randomF32(r: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

// ---- ggml blocks ----

export const BLOCK_BYTES: Record<string, number> = { q4_0: 18, q4_1: 20, q5_0: 22, q5_1: 24, q8_0: 34, q8_1: 36 };

/** Decodes one block into its integer quants q[32], scale d and min/sum m (0 when absent). */
export function decodeBlock(type: string, b: Uint8Array, off: number): { q: number[]; d: number; m: number } {
  const dv = new DataView(b.buffer, b.byteOffset + off);
  const d = halfToNumber(dv.getUint16(0, true));
  const q: number[] = new Array(32);
  if (type === 'q8_0' || type === 'q8_1') {
    const base = type === 'q8_0' ? 2 : 4;
    for (let k = 0; k < 32; k++) q[k] = dv.getInt8(base + k);
    return { q, d, m: type === 'q8_1' ? halfToNumber(dv.getUint16(2, true)) : 0 };
  }
  const hasM = type === 'q4_1' || type === 'q5_1';
  const five = type === 'q5_0' || type === 'q5_1';
  const qhOff = hasM ? 4 : 2;
  const qsOff = qhOff + (five ? 4 : 0);
  const qh = five ? dv.getUint32(qhOff, true) : 0;
  const bias = type === 'q4_0' ? 8 : type === 'q5_0' ? 16 : 0;
  for (let j = 0; j < 16; j++) {
    const byte = dv.getUint8(qsOff + j);
    const hi0 = five ? ((qh >>> j) & 1) << 4 : 0;
    const hi1 = five ? ((qh >>> (j + 16)) & 1) << 4 : 0;
    q[j] = ((byte & 0xf) | hi0) - bias;
    q[j + 16] = ((byte >> 4) | hi1) - bias;
  }
  return { q, d, m: hasM ? halfToNumber(dv.getUint16(2, true)) : 0 };
}

/** Dequantized f32 values of n elements of a block type. */
export function dequantRef(type: string, b: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const bs = BLOCK_BYTES[type]!;
  const hasM = type === 'q4_1' || type === 'q5_1';
  for (let i = 0; i < n / 32; i++) {
    const { q, d, m } = decodeBlock(type, b, i * bs);
    for (let k = 0; k < 32; k++) out[i * 32 + k] = hasM ? fr(fr(q[k]! * d) + m) : fr(q[k]! * d); // keeps -0 as ggml
  }
  return out;
}

/** Random but valid weight blocks: random quant bytes, small positive/negative finite f16 scales and mins. */
export function randomBlocks(r: () => number, type: string, nBlocks: number): Uint8Array {
  const bs = BLOCK_BYTES[type]!;
  const out = new Uint8Array(nBlocks * bs);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * 256);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < nBlocks; i++) {
    const tiny = r() < 0.1; // some subnormal half scales
    dv.setUint16(i * bs, numberToHalf((r() * 2 - 1) * (tiny ? 2e-5 : 0.05)), true);
    if (type === 'q4_1' || type === 'q5_1') dv.setUint16(i * bs + 2, numberToHalf((r() * 2 - 1) * 0.5), true);
  }
  return out;
}

/** q8_0 / q8_1 activation quantization as llama.cpp's x86 path, from the definition. */
export function quantizeQ8Ref(x: Float32Array, withSum: boolean): Uint8Array {
  const bs = withSum ? 36 : 34;
  const out = new Uint8Array((x.length / 32) * bs);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(x[b * 32 + k]!));
    const d = fr(amax / 127);
    const id = amax !== 0 ? fr(127 / amax) : 0;
    dv.setUint16(b * bs, numberToHalf(d), true);
    let sum = 0;
    for (let k = 0; k < 32; k++) {
      const q = roundHalfEven(fr(x[b * 32 + k]! * id));
      dv.setInt8(b * bs + (withSum ? 4 : 2) + k, q);
      sum += q;
    }
    if (withSum) dv.setUint16(b * bs + 2, numberToHalf(fr(d * sum)), true);
  }
  return out;
}

// ---- K-quant super-blocks (256 elements) ----

export const K_BLOCK_BYTES: Record<string, number> = { q2_k: 84, q3_k: 110, q4_k: 144, q5_k: 176, q6_k: 210, q8_k: 292 };

export interface KBlock {
  /** Integer quant of each element, offsets included (q3_k: -4..3, q6_k: -32..31). */
  q: number[];
  /** Integer scale and min applying to each element (min 0 for types without mins). */
  sc: number[];
  mn: number[];
  d: number;
  dmin: number;
}

/** Splits a little-endian u32 into its 4 bytes. */
const bytesOf = (w: number): number[] => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, (w >>> 24) & 0xff];

/**
 * Decodes one K-quant super-block, walking the elements in order as ggml's dequantize_row_qN_K does (the 6-bit
 * scales through the word masks of its dot products).
 */
export function decodeKBlock(type: string, b: Uint8Array, off: number): KBlock {
  const dv = new DataView(b.buffer, b.byteOffset + off);
  const u8 = (i: number) => dv.getUint8(i);
  const q: number[] = [], sc: number[] = [], mn: number[] = [];
  const push = (qq: number, s: number, m: number) => { q.push(qq); sc.push(s); mn.push(m); };
  if (type === 'q2_k') {
    let is = 0;
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 4; j++) {
        for (const half of [0, 16]) {
          const s = u8(is++);
          for (let l = 0; l < 16; l++) push((u8(16 + 32 * n + half + l) >> (2 * j)) & 3, s & 15, s >> 4);
        }
      }
    }
    return { q, sc, mn, d: halfToNumber(dv.getUint16(80, true)), dmin: halfToNumber(dv.getUint16(82, true)) };
  }
  if (type === 'q3_k') {
    const a0 = dv.getUint32(96, true), a1 = dv.getUint32(100, true), t = dv.getUint32(104, true);
    const k2 = 0x0f0f0f0f, k1 = 0x03030303;
    const words = [
      (a0 & k2) | ((t & k1) << 4), (a1 & k2) | (((t >>> 2) & k1) << 4),
      ((a0 >>> 4) & k2) | (((t >>> 4) & k1) << 4), ((a1 >>> 4) & k2) | (((t >>> 6) & k1) << 4),
    ];
    const scales = words.flatMap(bytesOf).map((v) => v - 32);
    let is = 0, m = 1;
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 4; j++) {
        for (const half of [0, 16]) {
          const s = scales[is++]!;
          for (let l = 0; l < 16; l++) push(((u8(32 + 32 * n + half + l) >> (2 * j)) & 3) - (u8(half + l) & m ? 0 : 4), s, 0);
        }
        m <<= 1;
      }
    }
    return { q, sc, mn, d: halfToNumber(dv.getUint16(108, true)), dmin: 0 };
  }
  if (type === 'q4_k' || type === 'q5_k') {
    const u0 = dv.getUint32(4, true), u1 = dv.getUint32(8, true), u2 = dv.getUint32(12, true);
    const scales = [...bytesOf(u0 & 0x3f3f3f3f), ...bytesOf((u2 & 0x0f0f0f0f) | (((u0 >>> 6) & 0x03030303) << 4))];
    const mins = [...bytesOf(u1 & 0x3f3f3f3f), ...bytesOf(((u2 >>> 4) & 0x0f0f0f0f) | (((u1 >>> 6) & 0x03030303) << 4))];
    const qs = type === 'q4_k' ? 16 : 48;
    for (let j = 0; j < 4; j++) {
      for (const hi of [0, 1]) {
        const sub = 2 * j + hi;
        for (let l = 0; l < 32; l++) {
          const byte = u8(qs + 32 * j + l);
          let v = hi ? byte >> 4 : byte & 15;
          if (type === 'q5_k' && (u8(16 + l) >> sub) & 1) v += 16;
          push(v, scales[sub]!, mins[sub]!);
        }
      }
    }
    return { q, sc, mn, d: halfToNumber(dv.getUint16(0, true)), dmin: halfToNumber(dv.getUint16(2, true)) };
  }
  if (type === 'q6_k') {
    const out = new Array<number>(256);
    for (let n = 0; n < 2; n++) {
      for (let l = 0; l < 32; l++) {
        const ql0 = u8(64 * n + l), ql1 = u8(64 * n + 32 + l), h = u8(128 + 32 * n + l);
        out[128 * n + l] = ((ql0 & 15) | ((h & 3) << 4)) - 32;
        out[128 * n + 32 + l] = ((ql1 & 15) | (((h >> 2) & 3) << 4)) - 32;
        out[128 * n + 64 + l] = ((ql0 >> 4) | (((h >> 4) & 3) << 4)) - 32;
        out[128 * n + 96 + l] = ((ql1 >> 4) | (((h >> 6) & 3) << 4)) - 32;
      }
    }
    for (let e = 0; e < 256; e++) push(out[e]!, dv.getInt8(192 + (e >> 4)), 0);
    return { q, sc, mn, d: halfToNumber(dv.getUint16(208, true)), dmin: 0 };
  }
  throw new Error(`not a K-quant weight type: ${type}`);
}

/** Dequantized values, with ggml's float operations: (d·sc)·q − dmin·m, or (d·sc)·q without mins. */
export function dequantKRef(type: string, b: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const bs = K_BLOCK_BYTES[type]!;
  const hasMin = type === 'q2_k' || type === 'q4_k' || type === 'q5_k';
  for (let i = 0; i < n / 256; i++) {
    const k = decodeKBlock(type, b, i * bs);
    for (let e = 0; e < 256; e++) {
      const v = fr(fr(k.d * k.sc[e]!) * k.q[e]!);
      out[i * 256 + e] = hasMin ? fr(v - fr(k.dmin * k.mn[e]!)) : v;
    }
  }
  return out;
}

/** Random K-quant weight blocks: random bytes, then small finite f16 d / dmin (some subnormal). */
export function randomKBlocks(r: () => number, type: string, nBlocks: number): Uint8Array {
  const bs = K_BLOCK_BYTES[type]!;
  const out = new Uint8Array(nBlocks * bs);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * 256);
  const dv = new DataView(out.buffer);
  const dOff = { q2_k: 80, q3_k: 108, q4_k: 0, q5_k: 0, q6_k: 208 }[type]!;
  const mOff = { q2_k: 82, q4_k: 2, q5_k: 2 }[type];
  for (let i = 0; i < nBlocks; i++) {
    const tiny = r() < 0.1;
    dv.setUint16(i * bs + dOff, numberToHalf((r() * 2 - 1) * (tiny ? 2e-6 : 0.005)), true);
    if (mOff !== undefined) dv.setUint16(i * bs + mOff, numberToHalf((r() * 2 - 1) * 0.005), true);
  }
  return out;
}

/** Q8_K activation quantization as llama.cpp's quantize_row_q8_K, from its definition. */
export function quantizeQ8KRef(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 292);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < x.length / 256; b++) {
    const o = b * 292;
    let amax = 0, max = 0;
    for (let k = 0; k < 256; k++) {
      const v = x[b * 256 + k]!;
      if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
    }
    if (amax === 0) continue; // d = 0, quants 0 (and bsums 0)
    const iscale = fr(-127 / max);
    dv.setFloat32(o, fr(1 / iscale), true);
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let k = 0; k < 16; k++) {
        const q = Math.min(127, roundHalfEven(fr(iscale * x[b * 256 + 16 * j + k]!)));
        dv.setInt8(o + 4 + 16 * j + k, q);
        sum += q;
      }
      dv.setInt16(o + 260 + 2 * j, sum, true);
    }
  }
  return out;
}

/** Decodes a Q8_K block: d, quants, bsums. */
export function decodeQ8K(b: Uint8Array, off: number): { d: number; q: number[]; bsums: number[] } {
  const dv = new DataView(b.buffer, b.byteOffset + off);
  const q: number[] = [], bsums: number[] = [];
  for (let k = 0; k < 256; k++) q.push(dv.getInt8(4 + k));
  for (let j = 0; j < 16; j++) bsums.push(dv.getInt16(260 + 2 * j, true));
  return { d: dv.getFloat32(0, true), q, bsums };
}
