/**
 * Llama weights: which tensors the graph needs, their expected shapes and types, and loading them from the
 * GGUF stream straight into the arena (one allocation per tensor, no whole-file buffer).
 */
import { GGUFFormatError, OutOfMemoryError, UnsupportedError } from '../errors.js';
import type { GGUFHeader, GGUFTensorInfo } from '../gguf/reader.js';
import { streamTensorData } from '../gguf/reader.js';
import type { ChunkReader } from '../gguf/chunk-reader.js';
import { GGMLType, GGML_TYPES, typeName } from '../gguf/types.js';
import type { Kernels } from '../runtime/kernels.js';
import type { LlamaHParams } from './hparams.js';
import { computableTypes, hasMatmulKernel } from './matmul.js';

/** A matrix of `rows` rows by `cols` columns in its stored type, at `ptr` in the arena. */
export interface Matrix {
  readonly name: string;
  readonly ptr: number;
  readonly type: number;
  readonly rows: number;
  readonly cols: number;
  /** Bytes of one row. */
  readonly rowBytes: number;
}

export interface LayerWeights {
  attnNorm: number;
  wq: Matrix; wk: Matrix; wv: Matrix; wo: Matrix;
  bq?: number; bk?: number; bv?: number; bo?: number;
  ffnNorm: number;
  gate: Matrix; up: Matrix; down: Matrix;
}

export interface LlamaWeights {
  tokEmbd: Matrix;
  outputNorm: number;
  output: Matrix;
  /** true when the output projection reuses the token embedding. */
  tiedOutput: boolean;
  ropeFreqs?: Float32Array;
  layers: LayerWeights[];
}

interface Want { info: GGUFTensorInfo; kind: 'matrix' | 'vector'; }

/** The tensors a llama model of these hyperparameters needs, checked against the file. */
export function planWeights(header: GGUFHeader, hp: LlamaHParams): { wants: Map<string, Want>; tied: boolean } {
  const file = header.source;
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const wants = new Map<string, Want>();
  const qDim = hp.nHeads * hp.headDim;
  const kvDim = hp.nKVHeads * hp.headDim;
  const get = (name: string, shape: number[], kind: 'matrix' | 'vector', optional = false): boolean => {
    const t = byName.get(name);
    if (!t) {
      if (optional) return false;
      throw new GGUFFormatError(file, `tensor "${name}"`, 'required tensor is missing');
    }
    const got = [...t.shape];
    while (got.length > shape.length && got[got.length - 1] === 1) got.pop();
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new GGUFFormatError(file, `tensor "${name}" shape`, `expected [${shape.join(', ')}], found [${t.shape.join(', ')}]`);
    }
    if (kind === 'matrix' && !hasMatmulKernel(t.type)) {
      throw new UnsupportedError(`${file}: tensor "${name}" has type ${typeName(t.type)}, which this engine cannot compute with yet (supported: ${computableTypes().map(typeName).join(', ')})`);
    }
    if (kind === 'vector' && ![GGMLType.F32, GGMLType.F16, GGMLType.BF16].includes(t.type as 0)) {
      throw new UnsupportedError(`${file}: tensor "${name}" has type ${typeName(t.type)}; norm and bias vectors must be F32, F16 or BF16`);
    }
    wants.set(name, { info: t, kind });
    return true;
  };
  get('token_embd.weight', [hp.dim, hp.nVocab], 'matrix');
  get('output_norm.weight', [hp.dim], 'vector');
  const tied = !get('output.weight', [hp.dim, hp.nVocab], 'matrix', true);
  get('rope_freqs.weight', [hp.ropeDim / 2], 'vector', true);
  for (let l = 0; l < hp.nLayers; l++) {
    const p = `blk.${l}.`;
    get(`${p}attn_norm.weight`, [hp.dim], 'vector');
    get(`${p}attn_q.weight`, [hp.dim, qDim], 'matrix');
    get(`${p}attn_k.weight`, [hp.dim, kvDim], 'matrix');
    get(`${p}attn_v.weight`, [hp.dim, kvDim], 'matrix');
    get(`${p}attn_output.weight`, [qDim, hp.dim], 'matrix');
    get(`${p}attn_q.bias`, [qDim], 'vector', true);
    get(`${p}attn_k.bias`, [kvDim], 'vector', true);
    get(`${p}attn_v.bias`, [kvDim], 'vector', true);
    get(`${p}attn_output.bias`, [hp.dim], 'vector', true);
    get(`${p}ffn_norm.weight`, [hp.dim], 'vector');
    get(`${p}ffn_gate.weight`, [hp.dim, hp.ffnDim], 'matrix');
    get(`${p}ffn_up.weight`, [hp.dim, hp.ffnDim], 'matrix');
    get(`${p}ffn_down.weight`, [hp.ffnDim, hp.dim], 'matrix');
  }
  return { wants, tied };
}

/** Arena bytes the weights will take (vectors are stored as f32). */
export function weightBytes(wants: Map<string, Want>): number {
  let total = 0;
  for (const { info, kind } of wants.values()) total += align64(kind === 'vector' ? info.nElements * 4 : info.nBytes);
  return total;
}

const align64 = (n: number) => Math.ceil(n / 64) * 64;

export async function loadWeights(
  kern: Kernels, header: GGUFHeader, reader: ChunkReader, hp: LlamaHParams,
  onProgress?: (loaded: number, total: number) => void, signal?: AbortSignal,
): Promise<{ weights: LlamaWeights; ptrs: number[] }> {
  const { wants, tied } = planWeights(header, hp);
  const ptrs: number[] = [];
  const raw = new Map<string, number>();
  try {
    for (const [name, w] of wants) {
      const p = kern.alloc(w.info.nBytes, 64);
      ptrs.push(p);
      raw.set(name, p);
    }
    let mem = new Uint8Array(kern.memory.buffer);
    const infos = [...wants.values()].map((w) => w.info);
    await streamTensorData(reader, header, infos, (t, part, at) => {
      if (mem.buffer !== kern.memory.buffer) mem = new Uint8Array(kern.memory.buffer);
      mem.set(part, raw.get(t.name)! + at);
    }, onProgress, signal);

    // Norm and bias vectors are used as f32 by the kernels: convert the rare F16/BF16 ones once.
    const vec = (name: string): number | undefined => {
      const w = wants.get(name);
      if (!w) return undefined;
      const p = raw.get(name)!;
      if (w.info.type === GGMLType.F32) return p;
      const out = kern.alloc(w.info.nElements * 4, 64);
      ptrs.push(out);
      kern.k.dequantize_row(w.info.type, p, out, w.info.nElements);
      return out;
    };
    const mat = (name: string): Matrix => {
      const t = wants.get(name)!.info;
      const ti = GGML_TYPES.get(t.type)!;
      return { name, ptr: raw.get(name)!, type: t.type, cols: t.shape[0]!, rows: t.nElements / t.shape[0]!, rowBytes: (t.shape[0]! / ti.blockSize) * ti.typeSize };
    };
    const layers: LayerWeights[] = [];
    for (let l = 0; l < hp.nLayers; l++) {
      const p = `blk.${l}.`;
      layers.push({
        attnNorm: vec(`${p}attn_norm.weight`)!,
        wq: mat(`${p}attn_q.weight`), wk: mat(`${p}attn_k.weight`), wv: mat(`${p}attn_v.weight`), wo: mat(`${p}attn_output.weight`),
        bq: vec(`${p}attn_q.bias`), bk: vec(`${p}attn_k.bias`), bv: vec(`${p}attn_v.bias`), bo: vec(`${p}attn_output.bias`),
        ffnNorm: vec(`${p}ffn_norm.weight`)!,
        gate: mat(`${p}ffn_gate.weight`), up: mat(`${p}ffn_up.weight`), down: mat(`${p}ffn_down.weight`),
      });
    }
    const rf = vec('rope_freqs.weight');
    const ropeFreqs = rf === undefined ? undefined : kern.f32(rf, hp.ropeDim / 2).slice();
    const tokEmbd = mat('token_embd.weight');
    return {
      weights: { tokEmbd, outputNorm: vec('output_norm.weight')!, output: tied ? tokEmbd : mat('output.weight'), tiedOutput: tied, ropeFreqs, layers },
      ptrs,
    };
  } catch (e) {
    for (const p of ptrs) kern.free(p);
    if (e instanceof OutOfMemoryError) throw new OutOfMemoryError(`weights of ${header.source}`, weightBytes(wants), e.limit);
    throw e;
  }
}
