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
  quantize_q8_k, quantize_q8_k_scalar, dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
} from './kquant_blocks';
export {
  matmul_q2_k, matmul_q3_k, matmul_q4_k, matmul_q5_k, matmul_q6_k,
  matmul_q2_k_scalar, matmul_q3_k_scalar, matmul_q4_k_scalar, matmul_q5_k_scalar, matmul_q6_k_scalar,
} from './matmul_kquant';
export {
  rmsnorm, rmsnorm_scalar, rope, rope_scalar, silu_mul, add, add_scalar, scale, scale_scalar, copy, softmax, softmax_scalar,
} from './ops';
export {
  attn_partials, attn_partials_scalar, attn_merge, attn_merge_scalar, attn_queries, attn_scratch_bytes, attn_query_bytes,
  attn_seq_block, attn_contiguous_rows, attn_mass, attn_mass_scalar,
  kv_store_rows,
} from './attention';
export { kv_convert_rows, kv_convert_rows_scalar } from './kv_convert';
export { attn_merge_split, attn_merge_split_scalar, attn_mass_split, attn_mass_split_scalar } from './attention_split';
export { exp_f32_array, exp_f32_array_scalar } from './expf';
export { probe_read, probe_copy, probe_f32, probe_dot_i16 } from './probe';
