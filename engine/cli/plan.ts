/**
 * `bmc-llm plan`: the analytical KV model (engine/kv/analytical.ts) for one model file, prompt length and generation
 * length. Reads the GGUF header only (no weights are loaded, nothing is generated), calibrates the cost constants on
 * this machine, and prints per policy the predicted decode speed, growth copies, bytes copied and peak KV bytes, and
 * the R that `auto` would choose. Results to stdout (a table, or JSON with --json); progress to stderr.
 */
import { OptionError, formatBytes } from '../errors.js';
import { readGGUFHeader } from '../gguf/reader.js';
import { defaultThreads, loadModel, resolveSource } from '../model.js';
import { readHParams } from '../model/hparams.js';
import { planWeights } from '../model/weights.js';
import { resolveModelPath } from '../adapters/model-cache.js';
import { Kernels } from '../runtime/kernels.js';
import { measureBaseStepNs } from '../kv/measure-base.js';
import { DEFAULT_K_SPEC, PLAN_POLICIES, baseTokenNs, calibrate, chooseR, kvTokenBytes, optimalR, predict } from '../kv/analytical.js';
import type { CostConstants, ModelShape, Prediction } from '../kv/analytical.js';
import { parseKVFlag, parseKVTypeFlag } from '../kv/options.js';
import { kvElement } from '../kv/element.js';
import { helpText, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';

export const PLAN_FLAGS: FlagSpec[] = [
  { name: 'model', short: 'm', type: 'string', help: 'GGUF file or URL (default as for run)' },
  { name: 'prompt', type: 'int', help: 'prompt tokens (default 32)' },
  { name: 'gen', type: 'int', help: 'generated tokens (decode steps, default 256)' },
  { name: 'budget', type: 'int', help: 'most KV bytes for auto (default: no budget)' },
  { name: 'k-spec', type: 'int', help: `speculative drafts that must fit the spare rows (default ${DEFAULT_K_SPEC})` },
  { name: 'ctx-size', short: 'c', type: 'int', help: 'context length (default: the model\'s)' },
  { name: 'kv-type', type: 'string', help: 'KV element type: f32 | f16 | q8_0 (default f32)' },
  { name: 'batch-size', type: 'int', help: 'prompt tokens per forward chunk (default 128)' },
  { name: 'policies', type: 'string', help: `comma-separated policies (default ${PLAN_POLICIES.join(',')})` },
  { name: 'measure', type: 'int', help: 'time N real decode steps for the base step time (loads the weights; default: estimate from weight bytes)' },
  { name: 'threads', short: 't', type: 'int', help: 'threads the model will run on (default: $BMC_LLM_THREADS or the number of cores)' },
  { name: 'json', type: 'bool', help: 'print JSON instead of a table' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

const err = (s: string) => process.stderr.write(s);

function intFlag(flags: Record<string, string | number | boolean>, name: string, def: number | undefined, min: number, max: number): number | undefined {
  const v = flags[name] as number | undefined;
  if (v === undefined) return def;
  if (v < min || v > max) throw new OptionError(`--${name}`, `${v} is not in [${min}, ${max}]`);
  return v;
}

export async function cmdPlan(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, PLAN_FLAGS);
  if (flags.help) {
    process.stdout.write(`usage: bmc-llm plan [-m FILE] [--prompt N] [--gen G] [--budget BYTES] [--kv-type T] [--measure N] [--json]\n\n${helpText(PLAN_FLAGS)}\n`);
    return;
  }
  if (positional.length > 0) throw new OptionError(positional[0]!, 'unexpected argument (the model goes after -m)');
  const P = intFlag(flags, 'prompt', 32, 1, 1 << 20)!;
  const G = intFlag(flags, 'gen', 256, 1, 1 << 20)!;
  const budgetBytes = intFlag(flags, 'budget', undefined, 1, Number.MAX_SAFE_INTEGER);
  const kSpec = intFlag(flags, 'k-spec', DEFAULT_K_SPEC, 0, 4096)!;
  const ctxOpt = intFlag(flags, 'ctx-size', undefined, 1, 1 << 20);
  const batch = intFlag(flags, 'batch-size', 128, 1, 4096)!;
  const kvType = flags['kv-type'] === undefined ? 'f32' : parseKVTypeFlag(flags['kv-type'] as string);
  const policies = flags.policies === undefined ? [...PLAN_POLICIES] : String(flags.policies).split(',').map((s) => s.trim());
  for (const p of policies) {
    try {
      parseKVFlag(p);
    } catch (e) {
      if (e instanceof OptionError) throw new OptionError('--policies', e.message.replace(/^option \S+: /, ''));
      throw e;
    }
  }

  const path = await resolveModelPath(flags.model as string | undefined, err);
  const header = await readGGUFHeader(await resolveSource(path));
  const embd = header.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new OptionError('--model', `${header.source} has no token_embd.weight (vocab-only file?)`);
  const hp = readHParams(header.metadata, header.source, embd.nElements / embd.shape[0]!);
  const contextLength = ctxOpt ?? hp.contextLength;
  try {
    kvElement(kvType, hp.nKVHeads, hp.headDim);
  } catch (e) {
    if (e instanceof OptionError) throw new OptionError('--kv-type', e.message.replace(/^option \S+: /, ''));
    throw e;
  }
  if (P + G > contextLength) throw new OptionError('--gen', `prompt ${P} + generation ${G} tokens exceed the context length ${contextLength} (see --ctx-size)`);
  const { wants, tied } = planWeights(header, hp);
  // Weights read per decoded token: every matrix, the embedding only when it doubles as the output head.
  const weights = [...wants.entries()]
    .filter(([name, w]) => w.kind === 'matrix' && (name !== 'token_embd.weight' || tied))
    .map(([, w]) => ({ type: w.info.type, bytes: w.info.nBytes }));
  const shape: ModelShape = {
    nLayers: hp.nLayers, nKVHeads: hp.nKVHeads, headDim: hp.headDim, nHeads: hp.nHeads, contextLength, batch, weights, kvType,
  };
  const tokenBytes = kvTokenBytes(shape);
  if (budgetBytes !== undefined && Math.floor(budgetBytes / tokenBytes) < P + G) {
    throw new OptionError('--budget', `${budgetBytes} bytes hold ${Math.floor(budgetBytes / tokenBytes)} tokens of KV (${tokenBytes} B each), fewer than prompt + generation (${P + G})`);
  }

  err('calibrating...\n');
  // Attention's per-row cost is divided by the threads the model will run it on (CalibrateOptions.threads).
  const threads = (flags.threads as number | undefined) ?? await defaultThreads();
  // On the model's threads: attention past the cache is timed on them (CalibrateOptions.largeAttnBytes).
  const kern = await Kernels.create({ threads });
  let constants: CostConstants;
  try {
    // Twice: the first run of a process times baseline-compiled wasm (attention measured 2-3x slower), the second the
    // optimised code.
    calibrate(kern, shape, { threads: kern.threads });
    constants = calibrate(kern, shape, { threads: kern.threads });
  } finally {
    kern.dispose();
  }
  err(`calibrated in ${constants.calibrationMs.toFixed(1)} ms\n`);
  let baseSource = `estimated from ${formatBytes(weights.reduce((a, w) => a + w.bytes, 0))} of weights`;
  const measure = flags.measure as number | undefined;
  if (measure !== undefined) {
    if (!Number.isInteger(measure) || measure < 1 || measure > 10000) throw new OptionError('--measure', `${measure} is not an integer in [1, 10000]`);
    err(`timing ${measure} decode steps...\n`);
    const model = await loadModel(path, { contextLength: Math.max(contextLength, 32 + 8 + measure + 1), batchSize: batch, kv: { policy: 'static', type: kvType }, threads });
    try {
      shape.baseTokenNs = await measureBaseStepNs(model, constants, { steps: measure });
    } finally {
      model.dispose();
    }
    baseSource = `measured over ${measure} decode steps`;
  }
  const opts = { kSpec, budgetBytes };
  const rows: Prediction[] = policies.map((p) => predict(constants, shape, P, G, p === 'auto' && budgetBytes !== undefined ? { policy: 'auto', budgetBytes } : p, opts));
  const R = chooseR(constants, shape, P, G, opts);
  const base = baseTokenNs(constants, shape);
  const rStar = { atPrompt: optimalR(constants, shape, P, opts), atEnd: optimalR(constants, shape, P + G, opts) };

  if (flags.json) {
    process.stdout.write(`${JSON.stringify({
      model: header.source, name: header.metadata.get('general.name') ?? null,
      shape: { ...shape, weightBytes: weights.reduce((a, w) => a + w.bytes, 0), weights: undefined, kvTokenBytes: tokenBytes },
      prompt: P, gen: G, kSpec, budgetBytes: budgetBytes ?? null,
      constants, baseTokenNs: base, chosenR: R, rStar, predictions: rows,
    }, null, 2)}\n`);
    return;
  }

  const out: string[] = [];
  const c = constants;
  out.push(`model: ${header.source} (${hp.nLayers} layers, ${hp.nKVHeads} KV heads x ${hp.headDim}, KV ${kvType} ${formatBytes(tokenBytes)} per token), context ${contextLength}`);
  out.push(`prompt ${P} tokens (chunks of ${batch}), generation ${G} tokens, kSpec ${kSpec}, budget ${budgetBytes === undefined ? 'none' : formatBytes(budgetBytes)}`);
  out.push(`calibration (${c.calibrationMs.toFixed(1)} ms):`);
  out.push(`  copy          ${c.copyNsPerByte.toFixed(4)} ns/B (${(1 / c.copyNsPerByte).toFixed(1)} GB/s, memory.copy of ${formatBytes(c.sizes.copyBytes)})`);
  if (c.copyNsPerByteLarge !== undefined) {
    out.push(`  copy, large   ${c.copyNsPerByteLarge.toFixed(4)} ns/B (${(1 / c.copyNsPerByteLarge).toFixed(1)} GB/s, memory.copy of ${formatBytes(c.sizes.copyBytesLarge ?? 0)}; the rate growths are priced at)`);
  }
  out.push(`  zero          ${c.zeroNsPerByte.toFixed(4)} ns/B`);
  out.push(`  alloc+free    ${c.allocFreeNs.toFixed(0)} ns per block (c_alloc = ${(2 * hp.nLayers * c.allocFreeNs / 1000).toFixed(2)} us per growth)`);
  out.push(`  attention     ${c.attnRowNs.toFixed(1)} ns per row per layer + ${c.attnCallNs.toFixed(0)} ns per call (paged ${c.pagedAttnRowNs.toFixed(1)} ns + ${c.pagedAttnCallNs.toFixed(0)} ns)`);
  if (c.attnRowNsLarge !== undefined) {
    out.push(`  attention, large ${c.attnRowNsLarge.toFixed(1)} ns per row per layer over ${formatBytes(c.sizes.attnBytesLarge ?? 0)} of KV on ${threads} threads (paged ${(c.pagedAttnRowNsLarge ?? c.attnRowNsLarge).toFixed(1)}); steps between the two sizes interpolate`);
  }
  out.push(`  padded row    ${c.padRowNs} ns (attention is bounded by the real length; spare rows cost memory and zeroing only)`);
  for (const [t, v] of Object.entries(c.matmulNsPerByte)) out.push(`  matmul ${t.padEnd(6)} ${v.toFixed(4)} ns per weight byte`);
  out.push(`base decode step (${baseSource}): ${(base / 1e6).toFixed(3)} ms`);
  out.push('');
  const head = ['policy', 'R/B', 'tok/s', 'ms/tok', 'copies', 'bytes copied', 'peak KV'];
  const table = rows.map((r) => [r.policy, r.param === undefined ? '-' : String(r.param), r.tokensPerSecond.toFixed(1), r.msPerToken.toFixed(3),
    String(r.growths), formatBytes(r.bytesCopied), formatBytes(r.peakBytes)]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join('  ');
  out.push(line(head));
  for (const row of table) out.push(line(row));
  out.push('');
  const fmtR = (r: number) => (Number.isFinite(r) ? r.toFixed(1) : 'inf');
  out.push(`chosen R: ${R} (r* = ${fmtR(rStar.atPrompt)} at length ${P}, ${fmtR(rStar.atEnd)} at ${P + G}; clamped to >= kSpec + 1 = ${kSpec + 1}, <= ${G} steps, context and budget)`);
  process.stdout.write(`${out.join('\n')}\n`);
}
