// Kernel module entry point: the complete ABI, listed explicitly so that internal helpers stay internal.
// Documented in wasm/README.md.
export {
  arena_init, arena_alloc, arena_free, arena_size_of, arena_limit,
  arena_bytes_in_use, arena_bytes_peak, arena_bytes_reserved, arena_alloc_count, arena_free_count, arena_reset_peak,
  arena_copy, arena_bytes_copied,
} from './arena';
export { f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16, convert_f32_to_f16, convert_f32_to_bf16, round_to_f16, round_to_bf16 } from './f16';
export {
  matmul_f32, matmul_f16, matmul_bf16, matmul_f32_scalar, matmul_f16_scalar, matmul_bf16_scalar,
} from './matmul_float';
export {
  quantize_q8_0, quantize_q8_0_scalar, quantize_q8_1, quantize_q8_1_scalar,
  dequantize_row, dequantize_q4_0, dequantize_q4_1, dequantize_q5_0, dequantize_q5_1, dequantize_q8_0,
  dequantize_f16, dequantize_bf16,
} from './quant_blocks';
export {
  matmul_q4_0, matmul_q4_1, matmul_q5_0, matmul_q5_1, matmul_q8_0,
  matmul_q4_0_scalar, matmul_q4_1_scalar, matmul_q5_0_scalar, matmul_q5_1_scalar, matmul_q8_0_scalar,
} from './matmul_quant';
export {
  rmsnorm, rmsnorm_scalar, rope, rope_scalar, silu_mul, add, add_scalar, scale, scale_scalar, copy, softmax,
} from './ops';
export { attention, attention_scalar, attention_paged, attention_paged_scalar } from './attention';
export { probe_read, probe_copy, probe_f32, probe_dot_i16 } from './probe';
