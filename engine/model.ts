/**
 * loadModel: source -> validated GGUF header -> tokenizer -> weights streamed into the wasm arena -> Model.
 */
import { DisposedError, OptionError, OutOfMemoryError, SourceError } from './errors.js';
import { openReader, readHeader } from './gguf/reader.js';
import type { GGUFHeader, GGUFValue } from './gguf/reader.js';
import type { ByteSource } from './gguf/source.js';
import { blobSource, bytesSource, responseSource, streamSource, urlSource } from './gguf/source.js';
import { GGML_TYPES } from './gguf/types.js';
import { createKVCache, growthRule } from './kv/cache.js';
import type { KVGrowthRule, KVShape } from './kv/cache.js';
import { validateKVOptions } from './kv/options.js';
import { isSyncFile, provideTempFiles } from './kv/cold-store.js';
import type { KVOptions, ResolvedKVOptions } from './kv/options.js';
import { kvTokenBytesOf } from './kv/element.js';
import type { KVType } from './kv/element.js';
import { readHParams } from './model/hparams.js';
import type { LlamaHParams } from './model/hparams.js';
import { LlamaGraph, scratchBytes } from './model/llama.js';
import { loadWeights, planWeights, weightBytes } from './model/weights.js';
import { Kernels } from './runtime/kernels.js';
import { Session } from './session.js';
import { GGUFTokenizer } from './tokenizer/index.js';
import { generate } from './generate/generate.js';
import type { Generation, GenerateOptions } from './generate/generate.js';
import { TraceRecorder } from './tiers/trace.js';
import { AttentionTracer } from './tiers/attention-mass.js';

export type ModelSource = string | URL | Response | ReadableStream<Uint8Array> | Blob | Uint8Array | ArrayBuffer | ByteSource;

export interface ProgressInfo {
  status: 'initiate' | 'progress' | 'done' | 'ready';
  file: string;
  /** Bytes of tensor data loaded so far and in all (progress only). */
  loaded?: number;
  total?: number;
  /** 0..100 */
  progress?: number;
}

export interface LoadOptions {
  /** Load only metadata and tokenizer (vocab-only GGUFs have no tensors). */
  vocabOnly?: boolean;
  /** Context length in tokens; default: the model's trained length. May exceed it (as llama.cpp allows). */
  contextLength?: number;
  /** Tokens per forward chunk during prefill. Default 128. */
  batchSize?: number;
  /**
   * Threads for the kernels: the calling thread plus threads-1 workers over one shared memory; matrix rows and
   * attention heads are split between them, and results are identical for any count. Default: `$BMC_LLM_THREADS`
   * where the runtime has environment variables, else the number of cores. Where shared memory or workers are
   * unavailable the model runs on one thread (`info.threads` says what it got).
   */
  threads?: number;
  /**
   * Kernel build: 'auto' (default) runs relaxed SIMD where the runtime supports it, else plain SIMD; 'plain' or
   * 'relaxed' force one ('relaxed' throws UnsupportedError where the runtime lacks it). Results are identical.
   */
  simd?: 'auto' | 'plain' | 'relaxed';
  /**
   * A precompiled kernel module, compiled from dist/wasm/kernels-plain.wasm or kernels-relaxed.wasm, for runtimes
   * that refuse to compile wasm from bytes at run time (Cloudflare Workers: `import kernels from
   * 'bmc-llm/wasm/kernels-relaxed.wasm'`). Its build decides `simd`. These modules import an unshared memory, so the
   * model runs on one thread. Default: the kernels embedded in the bundle, compiled at load.
   */
  wasmModule?: WebAssembly.Module;
  kv?: KVOptions;
  /** Upper bound of arena bytes (weights + KV + scratch). Default and maximum: 4 GiB - 64 KiB (wasm32). */
  memoryLimit?: number;
  onProgress?: (p: ProgressInfo) => void;
  signal?: AbortSignal;
}

export interface SessionOptions {
  /** KV policy of this session's cache (default: the model's). */
  kv?: KVOptions;
  /**
   * The most draft tokens a speculative verify pass will feed after the last accepted token: under `auto` the spare
   * rows R stay >= draftK + 1 so that such a pass is written into spare rows (default 8).
   */
  draftK?: number;
  /**
   * Records an attention trace of this session: per layer and per token fed (prompt rows included), the attention
   * mass each cached token receives, summed over heads (computed on a separate, slower path; logits are unchanged).
   * The recorder must have the model's layer count; call its finish() for the file.
   */
  trace?: TraceRecorder;
}

export interface TensorSummary { name: string; type: string; shape: number[]; bytes: number }

export interface MemoryPlan {
  weights: number;
  scratch: number;
  /** KV bytes per token over all layers (K and V, in the KV element type). */
  kvPerToken: number;
  /** KV bytes if the whole context is used. */
  kvAtContext: number;
  total: number;
}

export interface ModelInfo {
  file: string;
  ggufVersion: number;
  architecture: string;
  name: string | undefined;
  hparams: LlamaHParams | undefined;
  contextLength: number | undefined;
  tokenizer: { kind: string; pre: string | undefined; vocabSize: number; bos: number | undefined; eos: number | undefined; addBos: boolean };
  tensors: TensorSummary[];
  metadata: ReadonlyMap<string, GGUFValue>;
  memory: MemoryPlan | undefined;
  /** Threads the kernels run on. */
  threads: number;
  /** Why fewer threads run than were asked for (no shared memory, no workers), if so. */
  threadsFallback?: string;
  /** The kernel build the model runs on ('plain' for vocab-only models, which run none). */
  simd: 'plain' | 'relaxed';
}

const MAX_MEMORY = 4 * 1024 ** 3 - 65536;

function intOption(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new OptionError(name, `${String(v)} is not an integer in [${min}, ${max}]`);
  return v;
}

export async function resolveSource(source: ModelSource, signal?: AbortSignal): Promise<ByteSource> {
  if (typeof source === 'string') {
    if (/^https?:\/\//i.test(source)) return urlSource(source, signal);
    if (typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== 'string' && !('Deno' in globalThis)) {
      throw new SourceError(`${source}: file paths need a runtime with a file system; pass a URL, a Response or bytes`);
    }
    const { fileSource } = await import('./adapters/node.js');
    return fileSource(source);
  }
  if (source instanceof URL) return urlSource(source.href, signal);
  if (typeof Response !== 'undefined' && source instanceof Response) return responseSource(source, source.url || '<response>');
  if (typeof Blob !== 'undefined' && source instanceof Blob) return blobSource(source, (source as { name?: string }).name || '<blob>');
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) return streamSource(source, '<stream>');
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return bytesSource(source);
  if (source && typeof (source as ByteSource).chunks === 'function') return source as ByteSource;
  throw new OptionError('source', 'expected a file path, URL, Response, ReadableStream, Blob (File), Uint8Array or ArrayBuffer');
}

export function planMemory(header: GGUFHeader, hp: LlamaHParams, contextLength: number, batch: number, threads = 1, kvType: KVType = 'f32'): MemoryPlan {
  const weights = weightBytes(planWeights(header, hp).wants);
  const scratch = scratchBytes(hp, batch, contextLength, threads);
  const kvPerToken = kvTokenBytesOf(kvType, hp.nLayers, hp.nKVHeads, hp.headDim);
  const kvAtContext = kvPerToken * contextLength;
  return { weights, scratch, kvPerToken, kvAtContext, total: weights + scratch + kvAtContext };
}

function kvShape(hp: LlamaHParams, contextLength: number): KVShape {
  return { nLayers: hp.nLayers, nKVHeads: hp.nKVHeads, headDim: hp.headDim, contextLength, nHeads: hp.nHeads };
}

export class Model {
  private alive = true;
  private readonly sessions = new Set<Session>();

  /** @internal */
  constructor(
    readonly info: ModelInfo,
    readonly tokenizer: GGUFTokenizer,
    private readonly kern: Kernels | undefined,
    private readonly graph: LlamaGraph | undefined,
    private readonly weightPtrs: number[],
    private readonly kvOpts: ResolvedKVOptions,
    /** The contiguous growth rule (undefined for paged layouts and vocab-only models). */
    private readonly kvRule: KVGrowthRule | undefined,
  ) {}

  get vocabOnly(): boolean {
    return this.graph === undefined;
  }

  tokenize(text: string, opts: { special?: boolean } = {}): number[] {
    this.check();
    if (typeof text !== 'string') throw new OptionError('text', 'expected a string');
    return this.tokenizer.encode(text, { special: opts.special ?? false });
  }

  detokenize(ids: readonly number[]): string {
    this.check();
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.tokenizer.vocabSize) throw new OptionError('ids', `token id ${id} is outside [0, ${this.tokenizer.vocabSize})`);
    }
    return this.tokenizer.decode(ids);
  }

  /** The KV options this model was loaded with (defaults filled in). */
  get kvOptions(): ResolvedKVOptions {
    return { ...this.kvOpts };
  }

  createSession(opts: SessionOptions = {}): Session {
    this.check();
    if (!this.graph || !this.kern) throw new OptionError('vocabOnly', 'this model was loaded with vocabOnly: true and cannot evaluate');
    if (opts === null || typeof opts !== 'object') throw new OptionError('session options', 'expected an object');
    const kSpec = intOption('draftK', opts.draftK, 0, 4096);
    const hp = this.graph.hp;
    const o = opts.kv === undefined ? this.kvOpts : validateKVOptions(opts.kv);
    const rule = opts.kv === undefined ? this.kvRule : undefined;
    const kv = createKVCache(this.kern, kvShape(hp, this.graph.contextLength), o, rule, kSpec, this.graph.projector);
    let tracer: AttentionTracer | undefined;
    if (opts.trace !== undefined) {
      if (!(opts.trace instanceof TraceRecorder)) throw new OptionError('trace', 'expected a TraceRecorder');
      tracer = new AttentionTracer(opts.trace, hp, this.graph.contextLength);
    }
    const s: Session = new Session(this.graph, kv, () => this.alive, () => this.sessions.delete(s), tracer);
    this.sessions.add(s);
    return s;
  }

  /** Streams a continuation of `prompt` (a string is tokenized with special: true). */
  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): Generation {
    this.check();
    const ids = typeof prompt === 'string' ? this.tokenize(prompt, { special: true }) : [...prompt];
    return generate(this, ids, opts);
  }

  /**
   * How the kernel work was shared between threads so far: `jobs` sent to the pool, the `parts` they were cut into,
   * and `workerParts`, those computed by worker threads rather than the calling one (all 0 on one thread).
   */
  threadStats(): { threads: number; jobs: number; parts: number; workerParts: number } {
    this.check();
    return { threads: this.kern?.threads ?? 1, ...(this.kern?.poolStats() ?? { jobs: 0, parts: 0, workerParts: 0 }) };
  }

  /** Sessions created and not yet disposed (each holds its own KV cache). */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Arena statistics (bytes in use, peak, reserved). */
  memoryStats() {
    this.check();
    return this.kern?.stats();
  }

  dispose(): void {
    if (!this.alive) return;
    for (const s of [...this.sessions]) s.dispose();
    this.sessions.clear();
    this.graph?.dispose();
    for (const p of this.weightPtrs) this.kern!.free(p);
    this.kern?.dispose();
    this.alive = false;
  }

  private check(): void {
    if (!this.alive) throw new DisposedError('model');
  }
}

/** `$BMC_LLM_THREADS` if set (and valid), else the cores this runtime reports. */
export async function defaultThreads(): Promise<number> {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.BMC_LLM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new OptionError('BMC_LLM_THREADS', `${JSON.stringify(env)} is not an integer in [1, 256]`);
    return n;
  }
  const { hardwareThreads } = await import('./adapters/workers.js');
  return hardwareThreads();
}

/** Where a file system exists (Node, Deno, Bun), the adapter that opens temporary cold-tier files (kv.cold 'file'). */
async function provideColdFiles(): Promise<void> {
  if (typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== 'string' && !('Deno' in globalThis)) return;
  try {
    const { tempColdFiles } = await import('./adapters/node-cold-file.js');
    provideTempFiles(await tempColdFiles());
  } catch {
    // A runtime that looks like Node without node:fs (an edge runtime's compatibility layer): no 'file' cold store.
  }
}

export async function loadModel(source: ModelSource, options: LoadOptions = {}): Promise<Model> {
  const o = options;
  if (o === null || typeof o !== 'object') throw new OptionError('options', 'expected an object');
  const contextOpt = intOption('contextLength', o.contextLength, 1, 1 << 20);
  const batch = intOption('batchSize', o.batchSize, 1, 4096) ?? 128;
  const threadsOpt = intOption('threads', o.threads, 1, 256);
  const memoryLimit = intOption('memoryLimit', o.memoryLimit, 1 << 20, MAX_MEMORY) ?? MAX_MEMORY;
  const kvOptions = validateKVOptions(o.kv);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new OptionError('onProgress', 'expected a function');
  if (o.wasmModule !== undefined && !(o.wasmModule instanceof WebAssembly.Module)) throw new OptionError('wasmModule', 'expected a WebAssembly.Module');
  o.signal?.throwIfAborted();

  if (isSyncFile(kvOptions.cold)) throw new OptionError('kv.cold', 'a file handle serves one session: pass it to createSession, not loadModel');
  await provideColdFiles();
  const src = await resolveSource(source, o.signal);
  const reader = openReader(src);
  try {
    o.onProgress?.({ status: 'initiate', file: src.name });
    const header = await readHeader(reader, src.name, src.size);
    const tokenizer = GGUFTokenizer.fromMetadata(header.metadata, src.name);
    const tensors = header.tensors.map((t) => ({ name: t.name, type: t.typeName, shape: [...t.shape], bytes: t.nBytes }));
    const arch = String(header.metadata.get('general.architecture') ?? 'unknown');
    const name = header.metadata.get('general.name');
    const baseInfo = {
      file: src.name, ggufVersion: header.version, architecture: arch, name: typeof name === 'string' ? name : undefined,
      tokenizer: { kind: tokenizer.kind, pre: tokenizer.pre, vocabSize: tokenizer.vocabSize, bos: tokenizer.bos, eos: tokenizer.eos, addBos: tokenizer.addBos },
      tensors, metadata: header.metadata, threads: 1, simd: 'plain' as const,
    };
    if (o.vocabOnly) {
      const info: ModelInfo = { ...baseInfo, hparams: undefined, contextLength: undefined, memory: undefined };
      o.onProgress?.({ status: 'ready', file: src.name });
      return new Model(info, tokenizer, undefined, undefined, [], kvOptions, undefined);
    }
    const embd = header.tensors.find((t) => t.name === 'token_embd.weight');
    const hp = readHParams(header.metadata, src.name, embd ? embd.nElements / embd.shape[0]! : tokenizer.vocabSize);
    if (hp.nVocab !== tokenizer.vocabSize) {
      throw new OptionError('model', `${src.name}: the embedding has ${hp.nVocab} rows but the tokenizer ${tokenizer.vocabSize} tokens`);
    }
    const contextLength = contextOpt ?? hp.contextLength;
    const threads = threadsOpt ?? await defaultThreads();
    const memory = planMemory(header, hp, contextLength, batch, threads, kvOptions.type); // refuses q8_0 for odd head sizes
    const kvRule = kvOptions.policy === 'paged' || kvOptions.policy === 'tiered' ? undefined : growthRule(kvOptions, kvShape(hp, contextLength));
    const kvInitial = kvRule ? Math.min(kvRule.initialCapacity(contextLength), contextLength) * memory.kvPerToken : 0;
    if (memory.weights + memory.scratch + kvInitial > memoryLimit) {
      throw new OutOfMemoryError(`${src.name} (weights ${memory.weights} B + scratch ${memory.scratch} B${kvInitial ? ` + KV ${kvInitial} B` : ''})`, memory.weights + memory.scratch + kvInitial, memoryLimit);
    }
    const kern = await Kernels.create({ limitBytes: memoryLimit, threads, simd: o.simd, module: o.wasmModule });
    try {
      const info: ModelInfo = { ...baseInfo, hparams: hp, contextLength, memory, threads: kern.threads, threadsFallback: kern.fallbackReason, simd: kern.simd };
      const { weights, ptrs } = await loadWeights(kern, header, reader, hp, (loaded, total) => {
        o.onProgress?.({ status: 'progress', file: src.name, loaded, total, progress: total ? (100 * loaded) / total : 100 });
      }, o.signal);
      o.onProgress?.({ status: 'done', file: src.name });
      let graph: LlamaGraph;
      try {
        graph = new LlamaGraph(kern, hp, weights, batch, contextLength);
      } catch (e) {
        for (const p of ptrs) kern.free(p);
        throw e;
      }
      o.onProgress?.({ status: 'ready', file: src.name });
      return new Model(info, tokenizer, kern, graph, ptrs, kvOptions, kvRule);
    } catch (e) {
      kern.dispose();
      throw e;
    }
  } finally {
    await reader.close();
  }
}

export { GGML_TYPES };
