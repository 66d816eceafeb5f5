/**
 * The speed benchmark's arithmetic, kept pure so that it can be checked by hand: what one token costs a Llama model
 * (bytes read, float and integer operations), the most tokens per second the machine's measured bandwidth and peaks
 * allow for that cost, and llama.cpp's figures on the same shapes with the project's goals.
 */
import { GGML_TYPES } from '../../engine/gguf/types.js';
import { kvElement } from '../../engine/kv/element.js';
import type { KVType } from '../../engine/kv/element.js';

/** What the cost needs to know about a model: its hyperparameters and its tensors as stored (ModelInfo has both). */
export interface CostModel {
  hp: { dim: number; nLayers: number; nHeads: number; nKVHeads: number; headDim: number; ffnDim: number; nVocab: number };
  tensors: ReadonlyArray<{ name: string; type: string; shape: readonly number[]; bytes: number }>;
  /** How the KV cache stores K and V (default f32). */
  kvType?: KVType;
}

export interface TokenCost {
  /** Weight matrices read once per token (every layer matrix and the output projection), bytes. */
  matrixBytes: number;
  /** Norm (and bias) vectors, as the f32 copies the kernels read, bytes. */
  vectorBytes: number;
  /** The token's embedding row, bytes. */
  embeddingRowBytes: number;
  /** K and V rows read by attention (every layer, once each), bytes. */
  kvBytes: number;
  /** The sum: bytes read per token. */
  bytes: number;
  /** f32 operations: float-weight matmuls (2 per weight) and attention (q·k and p·v, 2 per multiply-add). */
  floatOps: number;
  /** Integer operations: quantized-weight matmuls, 2 per weight (one i16 multiply-add of the dot products). */
  intOps: number;
}

const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);

/** A model's per-token reads and operations by part: the layers (every token) and the output projection (every token with logits). */
interface Parts {
  layerBytes: number; outputBytes: number; vectorBytes: number; embeddingRowBytes: number;
  layerFloatOps: number; layerIntOps: number; outputFloatOps: number; outputIntOps: number;
}

function parts(m: CostModel): Parts {
  const p: Parts = { layerBytes: 0, outputBytes: 0, vectorBytes: 0, embeddingRowBytes: 0, layerFloatOps: 0, layerIntOps: 0, outputFloatOps: 0, outputIntOps: 0 };
  const hasOutput = m.tensors.some((t) => t.name === 'output.weight');
  for (const t of m.tensors) {
    if (t.name === 'rope_freqs.weight') continue; // read once at load
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (t.shape.filter((d) => d > 1).length <= 1) { // a vector: converted to f32 at load
      p.vectorBytes += elements * 4;
      continue;
    }
    const isEmbd = t.name === 'token_embd.weight';
    if (isEmbd) p.embeddingRowBytes = t.bytes / (elements / t.shape[0]!);
    if (isEmbd && hasOutput) continue; // only its row is read; the output projection is a matrix of its own
    const isOutput = t.name === 'output.weight' || isEmbd;
    const ops = 2 * elements;
    const float = FLOAT_TYPES.has(t.type);
    if (isOutput) {
      p.outputBytes += t.bytes;
      if (float) p.outputFloatOps += ops; else p.outputIntOps += ops;
    } else {
      p.layerBytes += t.bytes;
      if (float) p.layerFloatOps += ops; else p.layerIntOps += ops;
    }
  }
  return p;
}

const kvBytesAt = (m: CostModel, rows: number) => 2 * m.hp.nLayers * rows * kvElement(m.kvType ?? 'f32', m.hp.nKVHeads, m.hp.headDim).rowBytes;
const attentionOpsAt = (m: CostModel, rows: number) => m.hp.nLayers * 4 * m.hp.nHeads * m.hp.headDim * rows;

function total(c: Omit<TokenCost, 'bytes'>): TokenCost {
  return { ...c, bytes: c.matrixBytes + c.vectorBytes + c.embeddingRowBytes + c.kvBytes };
}

/**
 * Cost of one decoded token whose attention reads `kvRows` rows per layer (the position of the token plus one).
 * Counts what must be read at least once (the physical minimum), not what a kernel happens to re-read from cache.
 */
export function decodeCost(m: CostModel, kvRows: number): TokenCost {
  const p = parts(m);
  return total({
    matrixBytes: p.layerBytes + p.outputBytes, vectorBytes: p.vectorBytes, embeddingRowBytes: p.embeddingRowBytes,
    kvBytes: kvBytesAt(m, kvRows),
    floatOps: p.layerFloatOps + p.outputFloatOps + attentionOpsAt(m, kvRows), intOps: p.layerIntOps + p.outputIntOps,
  });
}

/** Mean cost of the decode steps after a `promptLen`-token prompt: step i (0-based) attends over promptLen + i + 1 rows. */
export function decodeRunCost(m: CostModel, promptLen: number, steps: number): TokenCost {
  return decodeCost(m, promptLen + (steps + 1) / 2);
}

/**
 * Mean cost per token of prefilling `promptLen` tokens in chunks of `batch` with the logits of the last token only
 * (as Session.eval and llama.cpp compute them): each chunk reads the layer weights and the KV rows up to its end once;
 * the output projection is read and computed once per prompt.
 */
export function prefillCost(m: CostModel, promptLen: number, batch: number): TokenCost {
  const p = parts(m);
  let layerReads = 0, kvBytes = 0, attentionOps = 0;
  for (let at = 0; at < promptLen; at += batch) {
    const n = Math.min(batch, promptLen - at);
    layerReads++;
    kvBytes += kvBytesAt(m, at + n);
    attentionOps += n * attentionOpsAt(m, at + (n + 1) / 2); // the chunk's tokens attend over at+1 .. at+n rows
  }
  const k = 1 / promptLen;
  return total({
    matrixBytes: (layerReads * p.layerBytes + p.outputBytes) * k, vectorBytes: layerReads * p.vectorBytes * k,
    embeddingRowBytes: p.embeddingRowBytes, kvBytes: kvBytes * k,
    floatOps: p.layerFloatOps + p.outputFloatOps * k + attentionOps * k, intOps: p.layerIntOps + p.outputIntOps * k,
  });
}

/** Machine figures for one thread count (engine/runtime/probe.ts). */
export interface MachineLimits {
  /** Read bandwidth, GB/s. */
  readGBs: number;
  f32Gflops: number;
  dotGops: number;
}

export interface TokenLimits {
  /** Most tokens/s the read bandwidth allows: bandwidth / bytes per token. */
  bandwidthTokS: number;
  /** Most tokens/s the SIMD peaks allow: 1 / (floatOps / f32 peak + intOps / dot peak). */
  computeTokS: number;
  /** The smaller of the two, and which it is. */
  tokS: number;
  boundBy: 'bandwidth' | 'compute';
}

export function tokenLimits(c: TokenCost, m: MachineLimits): TokenLimits {
  const bandwidthTokS = (m.readGBs * 1e9) / c.bytes;
  const computeTokS = 1 / (c.floatOps / (m.f32Gflops * 1e9) + c.intOps / (m.dotGops * 1e9));
  return { bandwidthTokS, computeTokS, tokS: Math.min(bandwidthTokS, computeTokS), boundBy: bandwidthTokS <= computeTokS ? 'bandwidth' : 'compute' };
}

/** Bytes of one row of `cols` elements of a ggml type given by name. */
export function rowBytesOf(type: string, cols: number): number {
  const t = [...GGML_TYPES.values()].find((x) => x.name === type);
  if (!t) throw new Error(`unknown ggml type ${type}`);
  return (cols / t.blockSize) * t.typeSize;
}

// ---------------------------------------------------------------------------------------------------------------
// Native llama.cpp on the stories15M shape (the figures, tokens/s) and the project's goals.

export type Phase = 'decode' | 'prefill';

/** llama.cpp tokens/s on the stories15M shape by phase, threads and weight type (the measurements). */
export const NATIVE: Record<string, Record<Phase, Record<number, Record<string, number>>>> = {
  stories15m: {
    decode: { 1: { F32: 163, Q8_0: 789, Q4_0: 917, Q4_K: 679 }, 2: { F32: 378, Q8_0: 1099, Q4_0: 1166 } },
    prefill: { 1: { F32: 3491, Q8_0: 3719, Q4_0: 5253 }, 2: {} },
  },
};

/** The native figure for a model family, phase, thread count and weight type (Q4_K stands for llama.cpp's Q4_K_M). */
export function nativeTokS(family: string, phase: Phase, threads: number, quant: string): number | undefined {
  return NATIVE[family]?.[phase]?.[threads]?.[quant];
}

/**
 * The goal, as a fraction of native: decode at 1 thread >= 0.8x on F32 and >= 0.5x on Q8_0/Q4_0/Q4_K; prompt
 * processing >= 0.25x. (The thread-scaling goal, 2 threads >= 1.6x 1 thread, is checked on our own figures.)
 */
export function goalOfNative(phase: Phase, threads: number, quant: string): number | undefined {
  if (phase === 'prefill') return 0.25;
  if (threads !== 1) return undefined;
  if (quant === 'F32') return 0.8;
  if (quant === 'Q8_0' || quant === 'Q4_0' || quant === 'Q4_K') return 0.5;
  return undefined;
}

export const THREAD_SCALING_GOAL = 1.6;
