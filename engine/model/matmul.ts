/**
 * Matrix multiply dispatch shared by the forward pass and the analytical model's calibration: which kernel a weight
 * type uses, and in which format its activations are fed. Activation formats follow llama.cpp's vec_dot_type: F32 as
 * is; F16 and BF16 rounded to that precision (kept as f32 values, so products and sums match a half-precision dot
 * exactly); block types quantized per 32-block to Q8_0 or Q8_1, K-quants (Q2_K .. Q6_K) per 256-block to Q8_K.
 */
import { GGMLType } from '../gguf/types.js';
import type { Kernels } from '../runtime/kernels.js';

export type ActFormat = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q8_1' | 'q8_k';

export function actFormat(type: number): ActFormat {
  switch (type) {
    case GGMLType.F16: return 'f16';
    case GGMLType.BF16: return 'bf16';
    case GGMLType.Q4_0: case GGMLType.Q5_0: case GGMLType.Q8_0: return 'q8_0';
    case GGMLType.Q4_1: case GGMLType.Q5_1: return 'q8_1';
    case GGMLType.Q2_K: case GGMLType.Q3_K: case GGMLType.Q4_K: case GGMLType.Q5_K: case GGMLType.Q6_K: return 'q8_k';
    default: return 'f32';
  }
}

/**
 * Bytes of `n` activation values in a format (Q8_0 / Q8_1: 34 or 36 bytes per 32 values; Q8_K: 292 per 256). None
 * exceeds the 4 bytes per value of f32, which the forward pass sizes its activation buffers for.
 */
export function actBytes(fmt: ActFormat, n: number): number {
  return fmt === 'q8_0' ? (n / 32) * 34 : fmt === 'q8_1' ? (n / 32) * 36 : fmt === 'q8_k' ? (n / 256) * 292 : n * 4;
}

/** Writes `n` f32 activations at `x` into `dst` in format `fmt` (not for 'f32', which is used in place). */
export function prepareActivations(kern: Kernels, fmt: Exclude<ActFormat, 'f32'>, x: number, dst: number, n: number): void {
  const k = kern.k;
  if (fmt === 'q8_0') k.quantize_q8_0(x, dst, n);
  else if (fmt === 'q8_1') k.quantize_q8_1(x, dst, n);
  else if (fmt === 'q8_k') k.quantize_q8_k(x, dst, n);
  else if (fmt === 'f16') k.round_to_f16(x, dst, n);
  else k.round_to_bf16(x, dst, n);
}

export type MatmulFn = (w: number, x: number, y: number, rows: number, cols: number, n: number, ldy: number, r0: number, r1: number) => void;

const KERNEL: Record<number, string> = {
  [GGMLType.F32]: 'matmul_f32', [GGMLType.F16]: 'matmul_f16', [GGMLType.BF16]: 'matmul_bf16',
  [GGMLType.Q4_0]: 'matmul_q4_0', [GGMLType.Q4_1]: 'matmul_q4_1', [GGMLType.Q5_0]: 'matmul_q5_0',
  [GGMLType.Q5_1]: 'matmul_q5_1', [GGMLType.Q8_0]: 'matmul_q8_0',
  [GGMLType.Q2_K]: 'matmul_q2_k', [GGMLType.Q3_K]: 'matmul_q3_k', [GGMLType.Q4_K]: 'matmul_q4_k',
  [GGMLType.Q5_K]: 'matmul_q5_k', [GGMLType.Q6_K]: 'matmul_q6_k',
};

/** The kernel export's name for a weight type, or undefined when the engine has none. */
export function matmulKernelName(type: number): string | undefined {
  return KERNEL[type];
}

/** The kernel for a weight type, or undefined when the engine has none. */
export function matmulKernel(kern: Kernels, type: number): MatmulFn | undefined {
  const name = matmulKernelName(type);
  return name === undefined ? undefined : (kern.k as unknown as Record<string, MatmulFn>)[name];
}

export function hasMatmulKernel(type: number): boolean {
  return matmulKernelName(type) !== undefined;
}

/** Every weight type the kernels compute with directly (the types a matrix tensor may have). */
export function computableTypes(): number[] {
  return Object.keys(KERNEL).map(Number);
}
