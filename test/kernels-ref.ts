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
