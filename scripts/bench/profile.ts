/**
 * Where a decode step's time goes: every kernel the forward pass (engine/model/llama.ts) calls for one token, timed in
 * isolation through the kernel exports at the model's shapes, times the number of calls per token. The sum set beside
 * the measured time of a whole token leaves the time spent outside the kernels (JS, dispatch, allocation).
 *
 * Cache state is kept as in a real step: a kernel whose operands are weights or KV rows cycles through as many copies
 * of them (real tensor bytes from the model file) as cover the model's working set per token, so each call reads from
 * the level of the memory hierarchy a real step reads from (DRAM for a 60 MB F32 model, L3 for an 8 MB Q4_0 one).
 * Activation-sized operands stay hot, as they are in a real step.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { readGGUFHeader, resolveSource } from '../../engine/index.js';
import type { GGUFTensorInfo } from '../../engine/index.js';
import { Rng } from '../../engine/gguf/synth.js';
import { argmax } from '../../engine/generate/sampling.js';
import type { LlamaHParams } from '../../engine/model/hparams.js';
import { actFormat, matmulKernel, prepareActivations } from '../../engine/model/matmul.js';
import type { ActFormat } from '../../engine/model/matmul.js';
import { Kernels } from '../../engine/runtime/kernels.js';

export interface ProfileRow {
  /** What was timed, e.g. 'matmul Q8_0 wq' or 'attention'. */
  kernel: string;
  /** Operand shape, e.g. '288x288' (rows x cols) or '6 heads x 140 rows'. */
  shape: string;
  callsPerToken: number;
  usPerCall: number;
  msPerToken: number;
  /** Copies cycled through (1: hot operands). */
  copies: number;
}

export interface DecodeProfile {
  rows: ProfileRow[];
  /** Sum of the rows, ms per token. */
  kernelMsPerToken: number;
  kvRows: number;
  workingSetBytes: number;
}

export interface ProfileOptions {
  /** KV rows attention reads (the mean length of the decode run being explained). */
  kvRows: number;
  /** Bytes a decode step reads (weights, embedding row, KV): how much the weight copies cycle through. */
  workingSetBytes: number;
  /** Timed runs per kernel (best kept, default 7) and the least wall time of one run (default 4 ms). */
  reps?: number;
  minMs?: number;
  log?: (s: string) => void;
}

/** Seconds per call of fn(i) (i = 0, 1, ... cycling over `period`), best of `reps` runs of at least `minMs`. */
function perCall(fn: (i: number) => void, period: number, reps: number, minMs: number): number {
  let calls = period;
  const w0 = performance.now();
  let done = 0;
  while (done < period || performance.now() - w0 < 10) fn(done++ % period); // warm-up (and the first touch of every copy)
  const trial = (performance.now() - w0) / done;
  calls = Math.max(period, Math.ceil(minMs / Math.max(trial, 1e-6)));
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) fn(i % period);
    best = Math.min(best, (performance.now() - t0) / calls);
  }
  return best / 1000;
}

/** Profiles one decode token of the model in `file` (hyperparameters `hp`) on one thread. */
export async function profileDecode(file: string, hp: LlamaHParams, o: ProfileOptions): Promise<DecodeProfile> {
  const reps = o.reps ?? 7;
  const minMs = o.minMs ?? 4;
  const log = o.log ?? (() => {});
  const header = await readGGUFHeader(await resolveSource(file));
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const kern = await Kernels.create();
  const k = kern.k;
  const rng = new Rng(3);
  const qDim = hp.nHeads * hp.headDim;
  const kvDim = hp.nKVHeads * hp.headDim;
  const L = hp.nLayers;
  const rows: ProfileRow[] = [];
  const add = (kernel: string, shape: string, callsPerToken: number, sPerCall: number, copies = 1) =>
    rows.push({ kernel, shape, callsPerToken, usPerCall: sPerCall * 1e6, msPerToken: callsPerToken * sPerCall * 1e3, copies });

  const fd = openSync(file, 'r');
  const readTensor = (t: GGUFTensorInfo, dst: number) => {
    const buf = Buffer.allocUnsafe(t.nBytes);
    readSync(fd, buf, 0, t.nBytes, t.fileOffset);
    kern.write(dst, buf);
  };
  const randomF32 = (p: number, n: number, scale = 1) => {
    const v = kern.f32(p, n);
    for (let i = 0; i < n; i++) v[i] = scale * rng.normal();
  };
  const maxCols = Math.max(hp.dim, hp.ffnDim, qDim);
  const x = kern.alloc(maxCols * 4, 64);
  const xq = kern.alloc(maxCols * 4 + 64, 64);
  const y = kern.alloc(Math.max(hp.nVocab, maxCols) * 4, 64);
  randomF32(x, maxCols);

  try {
    // Matrices: layer 0's (all layers have the same shapes and types) and the output projection.
    const matrices: Array<[string, string, number]> = [
      ['wq', 'blk.0.attn_q.weight', L], ['wk', 'blk.0.attn_k.weight', L], ['wv', 'blk.0.attn_v.weight', L],
      ['wo', 'blk.0.attn_output.weight', L], ['gate', 'blk.0.ffn_gate.weight', L], ['up', 'blk.0.ffn_up.weight', L],
      ['down', 'blk.0.ffn_down.weight', L], ['output', byName.has('output.weight') ? 'output.weight' : 'token_embd.weight', 1],
    ];
    for (const [label, name, calls] of matrices) {
      const t = byName.get(name);
      if (!t) throw new Error(`${file}: no tensor ${name}`);
      const cols = t.shape[0]!;
      const nRows = t.nElements / cols;
      const fn = matmulKernel(kern, t.type);
      if (!fn) {
        add(`matmul ${t.typeName} ${label}`, `${nRows}x${cols}`, calls, NaN);
        continue;
      }
      log(`profile: matmul ${t.typeName} ${label} ${nRows}x${cols}`);
      const stride = Math.ceil(t.nBytes / 64) * 64;
      const copies = Math.max(1, Math.min(4096, Math.ceil(o.workingSetBytes / stride)));
      const w = kern.alloc(stride * copies, 64);
      try {
        readTensor(t, w);
        for (let c = 1; c < copies; c++) k.copy(w + c * stride, w, t.nBytes);
        const fmt = actFormat(t.type);
        if (fmt !== 'f32') prepareActivations(kern, fmt, x, xq, cols);
        const xin = fmt === 'f32' ? x : xq;
        const s = perCall((c) => fn(w + c * stride, xin, y, nRows, cols, 1, nRows, 0, nRows), copies, reps, minMs);
        add(`matmul ${t.typeName} ${label}`, `${nRows}x${cols}`, calls, s, copies);
      } finally {
        kern.free(w);
      }
    }

    // Activation formats: one conversion per input vector and distinct format, as LlamaGraph.inputs does.
    const fmtOf = (name: string) => actFormat(byName.get(name)!.type);
    const groups: Array<[string, string[], number, number]> = [
      ['attention input', ['blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight'], hp.dim, L],
      ['attention output', ['blk.0.attn_output.weight'], qDim, L],
      ['ffn input', ['blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight'], hp.dim, L],
      ['ffn down input', ['blk.0.ffn_down.weight'], hp.ffnDim, L],
      ['output input', [matrices[7]![1]], hp.dim, 1],
    ];
    const byFormat = new Map<string, { fmt: Exclude<ActFormat, 'f32'>; cols: number; calls: number; what: string[] }>();
    for (const [what, names, cols, calls] of groups) {
      for (const fmt of new Set(names.map(fmtOf))) {
        if (fmt === 'f32') continue;
        const key = `${fmt}:${cols}`;
        const e = byFormat.get(key) ?? { fmt, cols, calls: 0, what: [] };
        e.calls += calls;
        e.what.push(what);
        byFormat.set(key, e);
      }
    }
    for (const e of byFormat.values()) {
      log(`profile: activations to ${e.fmt} (${e.cols})`);
      add(`activations to ${e.fmt}`, `${e.cols}`, e.calls, perCall(() => prepareActivations(kern, e.fmt, x, xq, e.cols), 1, reps, minMs));
    }

    // Element-wise and per-row ops on activations (hot).
    log('profile: rmsnorm, rope, add, silu_mul');
    const normW = kern.alloc(hp.dim * 4, 64);
    randomF32(normW, hp.dim, 0.05);
    kern.f32(normW, hp.dim).forEach((v, i, a) => (a[i] = 1 + v));
    add('rmsnorm', `${hp.dim}`, 2 * L + 1, perCall(() => k.rmsnorm(x, normW, y, hp.dim, 1, hp.rmsEps), 1, reps, minMs));
    const cs = kern.alloc(hp.headDim * 4, 64);
    const csv = kern.f32(cs, hp.headDim);
    for (let i = 0; i < hp.headDim; i += 2) { csv[i] = Math.cos(i); csv[i + 1] = Math.sin(i); }
    const qv = kern.alloc(qDim * 4, 64);
    randomF32(qv, qDim);
    add('rope q', `${hp.nHeads}x${hp.headDim}`, L, perCall(() => k.rope(qv, cs, 1, hp.nHeads, hp.headDim, qDim, 0), 1, reps, minMs));
    add('rope k', `${hp.nKVHeads}x${hp.headDim}`, L, perCall(() => k.rope(qv, cs, 1, hp.nKVHeads, hp.headDim, kvDim, 0), 1, reps, minMs));
    add('add (residual)', `${hp.dim}`, 2 * L, perCall(() => k.add(x, y, y, hp.dim), 1, reps, minMs));
    const hb = kern.alloc(hp.ffnDim * 4, 64);
    const hb2 = kern.alloc(hp.ffnDim * 4, 64);
    randomF32(hb, hp.ffnDim);
    randomF32(hb2, hp.ffnDim);
    add('silu_mul', `${hp.ffnDim}`, L, perCall(() => k.silu_mul(hb, hb2, y, hp.ffnDim), 1, reps, minMs));

    // Attention over kvRows rows: one K and one V block per layer (they are part of the working set as in a real step).
    const kvRows = Math.max(1, Math.round(o.kvRows));
    log(`profile: attention (${kvRows} rows)`);
    const kvBytes = kvRows * kvDim * 4;
    const kvBlocks = kern.alloc(2 * L * kvBytes, 64);
    randomF32(kvBlocks, 2 * L * kvRows * kvDim, 0.5);
    const scratch = kern.alloc(kvRows * 4 + 64, 64);
    const att = kern.alloc(qDim * 4, 64);
    const scale = 1 / Math.sqrt(hp.headDim);
    add('attention', `${hp.nHeads}/${hp.nKVHeads} heads x ${kvRows} rows`, L, perCall((l) => {
      const kp = kvBlocks + 2 * l * kvBytes;
      k.attention(qv, kp, kp + kvBytes, att, scratch, 1, hp.nHeads, hp.nKVHeads, hp.headDim, kvRows - 1, kvDim, qDim, qDim, scale);
    }, L, reps, minMs), L);

    // The token's embedding row: random rows of the real table.
    const e = byName.get('token_embd.weight')!;
    log('profile: embedding row');
    const embd = kern.alloc(e.nBytes, 64);
    readTensor(e, embd);
    const rowB = e.nBytes / hp.nVocab;
    const tokens = Array.from({ length: 256 }, () => rng.int(hp.nVocab));
    add(`embedding row ${e.typeName} to f32`, `${hp.dim}`, 1, perCall((i) => k.dequantize_row(e.type, embd + tokens[i]! * rowB, y, hp.dim), tokens.length, reps, minMs), tokens.length);
    kern.free(embd);

    // The logits leave wasm memory as a fresh Float32Array per eval (engine/session.ts): JS work, timed the same way.
    add('logits to JS (alloc + copy)', `${hp.nVocab}`, 1, perCall(() => new Float32Array(hp.nVocab).set(kern.f32(y, hp.nVocab)), 1, reps, minMs));
    const logits = kern.f32(y, hp.nVocab).slice();
    // The benchmark's greedy pick of the next token (JS, inside the timed decode loop).
    add('argmax (JS, greedy pick)', `${hp.nVocab}`, 1, perCall(() => argmax(logits), 1, reps, minMs));
  } finally {
    closeSync(fd);
  }
  return { rows, kernelMsPerToken: rows.reduce((a, r) => a + (Number.isFinite(r.msPerToken) ? r.msPerToken : 0), 0), kvRows: o.kvRows, workingSetBytes: o.workingSetBytes };
}
