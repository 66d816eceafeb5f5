/**
 * Typed wrapper around the WebAssembly kernel module (wasm/, ABI in wasm/README.md).
 * Web-standard APIs only, so it runs in Node, browsers and workers alike.
 *
 * Pointers are byte offsets into `memory` (u32; the module returns them as i32, normalised here with >>> 0).
 * Any call that can allocate may grow memory and detach old ArrayBuffer views: take fresh views (f32(), u8(),
 * i32()) after each alloc.
 */
import { kernelsBuildId, kernelsRelaxedWasmBase64, kernelsWasmBase64 } from '../../build/kernels-wasm.js';
import { OptionError, OutOfMemoryError, UnsupportedError } from '../errors.js';
import { KernelPool, POOL_CTRL_BYTES } from './pool.js';
import type { PoolCall, PoolStats, SpawnWorker } from './pool.js';
import { withSharedMemoryFlag } from './wasm-binary.js';

type MatmulFn = (w: number, x: number, y: number, rows: number, cols: number, n: number, ldy: number, r0: number, r1: number) => void;
type RowFn = (src: number, dst: number, nElems: number) => void;
/** wasm/attention.ts: partial results of work items w0..w1 (sequence block b = w / nKvHeads, kv head g = w % nKvHeads). */
type AttnPartialsFn = (q: number, queries: number, kTable: number, vTable: number, blockRows: number, kvType: number, qBlock: number, part: number,
  scratch: number, nQ: number, nHeads: number, nKvHeads: number, headDim: number, pos0: number, rowBytes: number, qStrideFloats: number,
  scale: number, w0: number, w1: number, massExp: number) => void;
/** wasm/attention.ts: the last row's attention mass over positions j0..j1 (after attn_partials with massExp). */
type AttnMassFn = (part: number, massExp: number, out: number, nQ: number, nHeads: number, headDim: number, pos0: number,
  j0: number, j1: number) => void;
/** wasm/attention.ts: folds the partials of rows r0..r1 into out. */
type AttnMergeFn = (part: number, out: number, nQ: number, nHeads: number, headDim: number, pos0: number, outStrideFloats: number,
  r0: number, r1: number) => void;

/** Every export of the kernel module with its signature (numbers are i32 offsets/counts or f32/f64 scalars). */
export type KernelExports = {
  memory?: never;
  arena_init(limitBytes: number): void;
  arena_alloc(size: number, align: number): number;
  arena_free(ptr: number): void;
  arena_size_of(ptr: number): number;
  arena_limit(): number;
  arena_bytes_in_use(): number;
  arena_bytes_peak(): number;
  arena_bytes_reserved(): number;
  arena_alloc_count(): number;
  arena_free_count(): number;
  arena_reset_peak(): void;
  arena_copy(dst: number, src: number, nBytes: number): void;
  arena_bytes_copied(): number;

  f16_to_f32(h: number): number;
  f32_to_f16(f: number): number;
  bf16_to_f32(h: number): number;
  f32_to_bf16(f: number): number;
  convert_f32_to_f16(src: number, dst: number, n: number): void;
  convert_f32_to_bf16(src: number, dst: number, n: number): void;
  round_to_f16(src: number, dst: number, n: number): void;
  round_to_bf16(src: number, dst: number, n: number): void;

  matmul_f32: MatmulFn; matmul_f16: MatmulFn; matmul_bf16: MatmulFn;
  matmul_f32_scalar: MatmulFn; matmul_f16_scalar: MatmulFn; matmul_bf16_scalar: MatmulFn;
  matmul_q4_0: MatmulFn; matmul_q4_1: MatmulFn; matmul_q5_0: MatmulFn; matmul_q5_1: MatmulFn; matmul_q8_0: MatmulFn;
  matmul_q4_0_scalar: MatmulFn; matmul_q4_1_scalar: MatmulFn; matmul_q5_0_scalar: MatmulFn;
  matmul_q5_1_scalar: MatmulFn; matmul_q8_0_scalar: MatmulFn;
  matmul_q2_k: MatmulFn; matmul_q3_k: MatmulFn; matmul_q4_k: MatmulFn; matmul_q5_k: MatmulFn; matmul_q6_k: MatmulFn;
  matmul_q2_k_scalar: MatmulFn; matmul_q3_k_scalar: MatmulFn; matmul_q4_k_scalar: MatmulFn;
  matmul_q5_k_scalar: MatmulFn; matmul_q6_k_scalar: MatmulFn;

  quantize_q8_0: RowFn; quantize_q8_0_scalar: RowFn; quantize_q8_1: RowFn; quantize_q8_1_scalar: RowFn;
  quantize_q8_k: RowFn; quantize_q8_k_scalar: RowFn;
  dequantize_row(type: number, src: number, dst: number, nElems: number): number;
  dequantize_q4_0: RowFn; dequantize_q4_1: RowFn; dequantize_q5_0: RowFn; dequantize_q5_1: RowFn;
  dequantize_q8_0: RowFn; dequantize_f16: RowFn; dequantize_bf16: RowFn;
  dequantize_q2_k: RowFn; dequantize_q3_k: RowFn; dequantize_q4_k: RowFn; dequantize_q5_k: RowFn; dequantize_q6_k: RowFn;

  rmsnorm(x: number, w: number, y: number, dim: number, n: number, eps: number): void;
  rmsnorm_scalar(x: number, w: number, y: number, dim: number, n: number, eps: number): void;
  rope(x: number, cs: number, nRows: number, nHeads: number, headDim: number, rowStrideFloats: number, neox: number): void;
  rope_scalar(x: number, cs: number, nRows: number, nHeads: number, headDim: number, rowStrideFloats: number, neox: number): void;
  silu_mul(g: number, u: number, out: number, n: number): void;
  add(a: number, b: number, out: number, n: number): void;
  add_scalar(a: number, b: number, out: number, n: number): void;
  scale(x: number, s: number, n: number): void;
  scale_scalar(x: number, s: number, n: number): void;
  copy(dst: number, src: number, nBytes: number): void;
  softmax(x: number, n: number): void;
  softmax_scalar(x: number, n: number): void;
  exp_f32_array(src: number, dst: number, n: number): void;
  exp_f32_array_scalar(src: number, dst: number, n: number): void;
  attn_partials: AttnPartialsFn;
  attn_partials_scalar: AttnPartialsFn;
  attn_merge: AttnMergeFn;
  attn_merge_scalar: AttnMergeFn;
  attn_mass: AttnMassFn;
  attn_mass_scalar: AttnMassFn;
  attn_queries(kvType: number, qBlock: number, q: number, queries: number, nHeads: number, headDim: number, qStrideFloats: number, r0: number, r1: number): void;
  attn_scratch_bytes(headDim: number): number;
  attn_query_bytes(headDim: number): number;
  attn_seq_block(): number;
  attn_contiguous_rows(): number;
  kv_store_rows(kvType: number, qBlock: number, src: number, dst: number, nRows: number, rowFloats: number, rowBytes: number): void;
  kv_convert_rows: KVConvertFn;
  attn_merge_split: AttnMergeSplitFn;
  attn_merge_split_scalar: AttnMergeSplitFn;
  attn_mass_split: AttnMassSplitFn;
  attn_mass_split_scalar: AttnMassSplitFn;
  kv_convert_rows_scalar: KVConvertFn;
};

/** wasm/attention_split.ts: one query row's partials over two row sets, A's blocks then B's. */
type AttnMergeSplitFn = (partA: number, nSbA: number, partB: number, nSbB: number, out: number, nHeads: number, headDim: number) => void;
/** wasm/attention_split.ts: the mass of that row per row of each set (out_a: A's rows, out_b: B's, in table order). */
type AttnMassSplitFn = (partA: number, nSbA: number, expA: number, nA: number, partB: number, nSbB: number, expB: number, nB: number,
  outA: number, outB: number, nHeads: number, headDim: number) => void;
/** wasm/kv_convert.ts: n rows through {src, dst} u32 pointer pairs, src type -> f32 -> dst type. */
type KVConvertFn = (srcType: number, srcBlock: number, dstType: number, dstBlock: number, pairs: number, n: number, rowFloats: number, tmp: number) => void;

export interface ArenaStats {
  bytesInUse: number; bytesPeak: number; bytesReserved: number; allocs: number; frees: number;
  /** Bytes moved by KV cache growth (arena_copy) since the arena was set up. */
  bytesCopied: number;
}

/** ggml tensor type ids understood by the kernels. */
export const GGML_TYPE = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30,
} as const;

/**
 * Jobs of fewer multiply-adds than this run on the calling thread alone: waking the workers and waiting for them
 * (a few microseconds) would cost more than it saves. Which thread computes a row never changes its value.
 */
export const POOL_MIN_WORK = 1 << 17;
let poolMinWork = POOL_MIN_WORK;

/** Sets the smallest job that goes to the pool (tests use 0 to run every job on all threads). Returns the old value. */
export function setPoolMinWork(work: number): number {
  const old = poolMinWork;
  poolMinWork = work;
  return old;
}

const PAGE = 65536;
const MAX_PAGES = 65536;
const INITIAL_PAGES = 2; // the module's declared minimum (scripts/build.mjs --initialMemory)

/** Which build of the kernel module runs: plain wasm SIMD, or relaxed SIMD (same ABI, same results). */
export type SimdVariant = 'plain' | 'relaxed';

/**
 * A minimal module whose one function uses `i32x4.relaxed_dot_i8x16_i7x16_add_s`: it validates exactly where the
 * runtime has relaxed SIMD (Node 22+, Deno, Bun, current browsers; Node 20 only with --experimental-wasm-relaxed-simd).
 */
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128 v128 v128) -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x93, 0x02, 0x0b, // local.get 0..2, relaxed dot add
]);

/** Whether this runtime validates relaxed SIMD instructions (checked on each call; cheap). */
export function relaxedSimdSupported(): boolean {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

const modulePromises = new Map<string, Promise<WebAssembly.Module>>();

function decodeBase64(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Compiles a build of the kernel module once per process/realm, importing a shared or an unshared memory. */
function kernelModule(simd: SimdVariant, shared: boolean): Promise<WebAssembly.Module> {
  const key = `${simd}:${shared}`;
  let p = modulePromises.get(key);
  if (!p) {
    const b64 = simd === 'relaxed' ? kernelsRelaxedWasmBase64 : kernelsWasmBase64;
    p = WebAssembly.compile(withSharedMemoryFlag(decodeBase64(b64), shared));
    modulePromises.set(key, p);
  }
  return p;
}

/**
 * The kernel files emitted for runtimes that import wasm as modules instead of compiling bytes (dist/wasm/*.wasm,
 * see scripts/build.mjs) carry this custom section: JSON `{ build, simd, sharedMemory }`, so that a module handed to
 * the engine says which build it is and whether it matches this engine.
 */
export const KERNEL_BUILD_SECTION = 'bmc-llm.kernels';

export interface KernelBuildInfo {
  /** Identifies the kernel sources the module was built from (a hash of both builds' bytes). */
  build: string;
  simd: SimdVariant;
  /** Whether its memory import is shared (a thread pool needs that). */
  sharedMemory: boolean;
}

/** Reads the build section of a precompiled kernel module; OptionError('wasmModule') when it is not one of ours. */
export function kernelBuildInfo(module: WebAssembly.Module): KernelBuildInfo {
  if (!(module instanceof WebAssembly.Module)) throw new OptionError('wasmModule', 'expected a WebAssembly.Module');
  const sections = WebAssembly.Module.customSections(module, KERNEL_BUILD_SECTION);
  let info: Partial<KernelBuildInfo> | undefined;
  try {
    info = sections.length === 1 ? JSON.parse(new TextDecoder().decode(sections[0])) as Partial<KernelBuildInfo> : undefined;
  } catch {
    info = undefined;
  }
  if (!info || (info.simd !== 'plain' && info.simd !== 'relaxed') || typeof info.sharedMemory !== 'boolean') {
    throw new OptionError('wasmModule', `not a bmc-llm kernel module (no valid "${KERNEL_BUILD_SECTION}" section): pass one compiled from dist/wasm/kernels-*.wasm`);
  }
  if (info.build !== kernelsBuildId) {
    throw new OptionError('wasmModule', `the kernel module is from another build of bmc-llm (${String(info.build)}, this engine is ${kernelsBuildId}): use the .wasm files shipped with this version`);
  }
  return info as KernelBuildInfo;
}

/** The build that `simd` asks for ('auto': relaxed where the runtime supports it, else plain). */
export function resolveSimd(simd: 'auto' | SimdVariant = 'auto'): SimdVariant {
  if (simd === 'auto') return relaxedSimdSupported() ? 'relaxed' : 'plain';
  if (simd === 'plain') return 'plain';
  if (simd === 'relaxed') {
    if (!relaxedSimdSupported()) {
      throw new UnsupportedError('relaxed SIMD: this WebAssembly runtime does not support it (Node 20 needs --experimental-wasm-relaxed-simd)');
    }
    return 'relaxed';
  }
  throw new OptionError('simd', `${String(simd)} is not one of auto, plain, relaxed`);
}

export interface KernelsOptions {
  /** Arena cap in bytes (default: up to 4 GiB - 64 KiB). */
  limitBytes?: number;
  /** Threads to compute with (default 1). Above 1 needs shared memory and a worker spawner, else it falls back to 1. */
  threads?: number;
  /** Starts a worker (runtime adapter); default: the one for this runtime (adapters/workers.ts). */
  spawn?: SpawnWorker;
  /**
   * Kernel build: 'relaxed' (relaxed SIMD: integer dot products for the quantized matmuls), 'plain' (wasm SIMD only),
   * or 'auto' (default): relaxed where the runtime validates it. Both give bit-identical results. Forcing 'relaxed'
   * where the runtime lacks it throws UnsupportedError.
   */
  simd?: 'auto' | SimdVariant;
  /**
   * A precompiled kernel module (from dist/wasm/kernels-*.wasm) to run instead of compiling the embedded bytes: for
   * runtimes that refuse to compile wasm at run time (Cloudflare Workers import it as a module). Its build section
   * decides the SIMD build; `simd`, if not 'auto', must agree. Threads need a module with a shared memory import.
   */
  module?: WebAssembly.Module;
}

export class Kernels {
  readonly memory: WebAssembly.Memory;
  readonly k: KernelExports;
  /** Most bytes the arena may span (the effective limit). */
  readonly limitBytes: number;
  /** The kernel build this instance runs. */
  readonly simd: SimdVariant;

  private pool: KernelPool | undefined;
  private poolCtrl = 0;
  /** Why more than one thread was asked for but this instance runs on one (undefined otherwise). */
  fallbackReason: string | undefined;

  private constructor(memory: WebAssembly.Memory, k: KernelExports, simd: SimdVariant) {
    this.memory = memory;
    this.k = k;
    this.simd = simd;
    this.limitBytes = k.arena_limit();
  }

  /** Threads the kernels run on (1 without a pool). */
  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /**
   * A fresh kernel instance with its own memory and arena, and with `threads` > 1 a pool of threads-1 workers over
   * the same (shared) memory. Falls back to one thread where shared memory or workers are unavailable.
   */
  static async create(opts: KernelsOptions = {}): Promise<Kernels> {
    const given = opts.module !== undefined ? kernelBuildInfo(opts.module) : undefined;
    let simd = given ? given.simd : resolveSimd(opts.simd);
    if (given && opts.simd !== undefined && opts.simd !== 'auto' && opts.simd !== given.simd) {
      if (opts.simd !== 'plain' && opts.simd !== 'relaxed') throw new OptionError('simd', `${String(opts.simd)} is not one of auto, plain, relaxed`);
      throw new OptionError('simd', `${opts.simd} was asked for but the kernel module given is the ${given.simd} build`);
    }
    const wanted = Math.max(1, Math.floor(opts.threads ?? 1));
    let spawn = opts.spawn;
    let shared = false;
    let fallbackReason: string | undefined;
    if (wanted > 1) {
      const adapters = await import('../adapters/workers.js');
      spawn ??= adapters.workerSpawner();
      shared = spawn !== undefined && adapters.sharedMemoryAvailable();
      if (!spawn) fallbackReason = 'this runtime has no workers';
      else if (!shared) fallbackReason = 'this runtime has no shared WebAssembly memory (in a browser: the page is not cross-origin isolated)';
      else if (given && !given.sharedMemory) {
        shared = false;
        fallbackReason = 'the kernel module given imports an unshared memory (threads need the shared build)';
      }
    }
    let module: WebAssembly.Module;
    if (opts.module && given) {
      module = opts.module;
      shared = given.sharedMemory; // a shared import needs a shared memory even on one thread
      if (shared && !(await import('../adapters/workers.js')).sharedMemoryAvailable()) {
        throw new UnsupportedError('the kernel module given imports a shared memory, which this runtime lacks: use dist/wasm/kernels-*.wasm (unshared)');
      }
    } else {
      try {
        module = await kernelModule(simd, shared);
      } catch (e) {
        // The probe validated but the relaxed build did not compile: with 'auto', run the plain build instead.
        if (simd !== 'relaxed' || (opts.simd ?? 'auto') !== 'auto') throw e;
        simd = 'plain';
        module = await kernelModule(simd, shared);
      }
    }
    const memory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: MAX_PAGES, shared });
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const k = instance.exports as unknown as KernelExports;
    const limit = opts.limitBytes;
    // 0 means "no limit" to the module; limits at or above 4 GiB are the same as no limit.
    k.arena_init(limit === undefined || limit >= (MAX_PAGES - 1) * PAGE ? 0 : Math.max(16, Math.floor(limit)) | 0);
    const kern = new Kernels(memory, k, simd);
    kern.fallbackReason = fallbackReason;
    if (shared && spawn) {
      kern.poolCtrl = kern.alloc(POOL_CTRL_BYTES, 64);
      try {
        kern.pool = await KernelPool.start(wanted, module, memory, kern.poolCtrl, instance.exports as Record<string, unknown>, spawn);
      } catch (e) {
        // Workers could not start (a content security policy, a sandbox): the same kernels run on this thread.
        kern.free(kern.poolCtrl);
        kern.fallbackReason = `workers failed to start: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    return kern;
  }

  /**
   * Runs kernel calls, each split by its range across the pool's threads (see runtime/pool.ts), as one job; without
   * a pool, each call runs whole on this thread. `alongside` runs on this thread while the workers compute (before
   * the calls when there are no workers to overlap with).
   */
  parallel(calls: PoolCall[], alongside?: () => void): void {
    if (this.pool) {
      let work = 0;
      for (const c of calls) work += c.work ?? Infinity;
      if (work >= poolMinWork) {
        this.pool.run(calls, alongside);
        return;
      }
    }
    alongside?.();
    const k = this.k as unknown as Record<string, (...a: number[]) => void>;
    for (const c of calls) k[c.fn]!(...c.args);
  }

  /** How jobs were shared between the threads (undefined without a pool). */
  poolStats(): PoolStats | undefined {
    return this.pool?.stats();
  }

  /** Stops the pool's workers (the memory stays usable on this thread). */
  dispose(): void {
    if (!this.pool) return;
    this.pool.dispose();
    this.pool = undefined;
    this.free(this.poolCtrl);
  }

  /** Allocates `bytes` (aligned to `align`, a power of two >= 16). Throws OutOfMemoryError past the limit. */
  alloc(bytes: number, align = 64): number {
    const ptr = bytes > 0xffffffff ? 0 : this.k.arena_alloc(bytes | 0, align | 0) >>> 0;
    if (ptr === 0) throw new OutOfMemoryError('kernel arena allocation', bytes + this.stats().bytesInUse, this.limitBytes);
    return ptr;
  }

  free(ptr: number): void {
    this.k.arena_free(ptr | 0);
  }

  /** Usable bytes of an allocated block. */
  sizeOf(ptr: number): number {
    return this.k.arena_size_of(ptr | 0) >>> 0;
  }

  f32(ptr: number, n: number): Float32Array { return new Float32Array(this.memory.buffer, ptr, n); }
  u8(ptr: number, n: number): Uint8Array { return new Uint8Array(this.memory.buffer, ptr, n); }
  i32(ptr: number, n: number): Int32Array { return new Int32Array(this.memory.buffer, ptr, n); }

  /** Copies bytes (or the raw bytes of a Float32Array) into memory at ptr. */
  write(ptr: number, data: Uint8Array | Float32Array): void {
    new Uint8Array(this.memory.buffer, ptr, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  /** Copies `bytes` from `src` to `dst` inside the arena and counts them as KV growth traffic (stats().bytesCopied). */
  copyCounted(dst: number, src: number, bytes: number): void {
    this.k.arena_copy(dst | 0, src | 0, bytes | 0);
  }

  stats(): ArenaStats {
    const k = this.k;
    return {
      bytesInUse: k.arena_bytes_in_use(),
      bytesPeak: k.arena_bytes_peak(),
      bytesReserved: k.arena_bytes_reserved(),
      allocs: k.arena_alloc_count(),
      frees: k.arena_free_count(),
      bytesCopied: k.arena_bytes_copied(),
    };
  }

  resetPeak(): void {
    this.k.arena_reset_peak();
  }
}
