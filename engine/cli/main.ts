/**
 * bmc-llm command line: `run` (streaming generation) and `info` (what a GGUF file holds and what it will cost).
 * Results go to stdout; progress, speed and errors to stderr. Exit codes: 0 ok, 1 error, 2 usage.
 */
import { BmcError, OptionError, formatBytes } from '../errors.js';
import { readGGUFHeader } from '../gguf/reader.js';
import { loadModel, planMemory, resolveSource } from '../model.js';
import { parseKVColdFlag, parseKVFlag, parseKVRestoreFlag, parseKVTypeFlag, parseKVWarmFlag, validateKVOptions } from '../kv/options.js';
import type { TierPlacement } from '../kv/options.js';
import { readHParams } from '../model/hparams.js';
import { GGUFTokenizer } from '../tokenizer/index.js';
import { resolveModelPath } from '../adapters/model-cache.js';
import { helpText, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';
import type { GGUFValue } from '../gguf/reader.js';
import { cmdPlan } from './plan.js';
import type { DraftOptions } from '../spec/options.js';
import { cmdServe } from './serve.js';
import { cmdChat } from './chat.js';
import { cmdBench } from './bench.js';
import { progressReporter, showProgress } from './load.js';
import { cmdSimulatePlacement } from './simulate.js';
import { writeFile } from 'node:fs/promises';
import { TraceRecorder } from '../tiers/trace.js';
import { kvTokenBytesOf } from '../kv/element.js';

const err = (s: string) => process.stderr.write(s);

const RUN_FLAGS: FlagSpec[] = [
  { name: 'model', short: 'm', type: 'string', help: 'GGUF file or URL (default: $BMC_LLM_MODEL, models/*.gguf, then a downloaded TinyStories model)' },
  { name: 'prompt', short: 'p', type: 'string', help: 'prompt text (default "Once upon a time")' },
  { name: 'n-predict', short: 'n', type: 'int', help: 'tokens to generate (default 128)' },
  { name: 'temp', type: 'number', help: 'temperature, 0 = greedy (default 0.8)' },
  { name: 'top-k', type: 'int', help: 'top-k, 0 = off (default 40)' },
  { name: 'top-p', type: 'number', help: 'top-p, 1 = off (default 0.95)' },
  { name: 'min-p', type: 'number', help: 'min-p, 0 = off (default 0.05)' },
  { name: 'repeat-penalty', type: 'number', help: 'repetition penalty, 1 = off (default)' },
  { name: 'seed', type: 'int', help: 'sampling seed (default random)' },
  { name: 'threads', short: 't', type: 'int', help: 'threads: this one plus N-1 workers over shared memory (default: $BMC_LLM_THREADS or the number of cores)' },
  { name: 'ctx-size', short: 'c', type: 'int', help: 'context length (default: the model\'s)' },
  { name: 'kv', type: 'string', help: 'KV cache policy: concat | static | bmc:R | paged:B | auto | tiered (default auto)' },
  { name: 'kv-budget', type: 'int', help: 'arena bytes for the KV cache: implies --kv tiered (other rows live in host memory)' },
  { name: 'kv-type', type: 'string', help: 'KV element type: f32 | f16 | q8_0 (default f32)' },
  { name: 'kv-warm', type: 'string', help: 'tiered cache: a warm tier of rows compressed in the arena, q8_0 | q4_0 | none (default none)' },
  { name: 'kv-warm-fraction', type: 'number', help: 'tiered cache: share of the budget for warm rows, in (0, 1) (default 0.5)' },
  { name: 'kv-cold', type: 'string', help: 'tiered cache: where cold rows live, memory | file (a temporary file, removed at exit) (default memory)' },
  { name: 'kv-cold-path', type: 'string', help: 'tiered cache with --kv-cold file: directory of the temporary file (default: the OS temp directory)' },
  { name: 'kv-placement', type: 'string', help: 'tiered: attention (move tokens by the attention mass, default) | first-come' },
  { name: 'kv-migration-ratio', type: 'number', help: 'tiered: fraction R of the beneficial swaps made per step, in [0, 1] (default 1)' },
  { name: 'kv-max-migrations', type: 'int', help: 'tiered: most promotions per layer and step (default: no cap)' },
  { name: 'kv-restore', type: 'string', help: 'tiered: restore cold rows by read | recompute | auto | L (recompute the first L of each layer\'s cold rows from kept layer inputs; auto: KVPR cost model) (default read)' },
  { name: 'kv-cold-keep', type: 'string', help: 'tiered: the cold tier keeps kv (default) | activations (layer inputs only; every cold row is recomputed)' },
  { name: 'kv-activations', type: 'string', help: 'tiered with --kv-restore: store kept layer inputs as f32 (exact) | f16 (default f32)' },
  { name: 'kv-cold-bandwidth', type: 'number', help: 'tiered: simulate a slower cold tier (disk, network) read at this many bytes/s (default: host memory)' },
  { name: 'ignore-eos', type: 'bool', help: 'keep generating past end-of-text tokens' },
  { name: 'trace', type: 'string', help: 'write an attention trace (per layer and token, the mass each token receives) to FILE, for simulate-placement' },
  { name: 'draft', type: 'string', help: 'speculative decoding with this draft model (a GGUF with the same vocabulary)' },
  { name: 'lookup', type: 'bool', help: 'speculative decoding with prompt lookup (n-gram matches in the context, no model)' },
  { name: 'draft-k', type: 'int', help: 'drafts per verify pass, fixed (default: adaptive, starting at 4)' },
  { name: 'json', type: 'bool', help: 'print one JSON object at the end (text and stats, tier migrations included) instead of streaming text' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

const INFO_FLAGS: FlagSpec[] = [
  { name: 'json', type: 'bool', help: 'print JSON instead of text' },
  { name: 'ctx-size', short: 'c', type: 'int', help: 'context length for the memory estimate' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

const USAGE = `bmc-llm: GGUF Llama inference in TypeScript + WebAssembly

usage:
  bmc-llm run [-m FILE] [-p TEXT] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]
              [--repeat-penalty R] [--seed S] [--threads N] [--kv POLICY] [--kv-type T] [--ignore-eos]
              [--kv-budget N [--kv-warm W] [--kv-cold C] [--kv-restore R] [--kv-placement P] ...]   (tiered KV)
              [--draft FILE | --lookup] [--draft-k K] [--trace FILE] [--json]
  bmc-llm info FILE [--json]
  bmc-llm plan [-m FILE] [--prompt N] [--gen G] [--budget BYTES] [--threads N] [--json]   (KV policy predictions; plan --help)
  bmc-llm serve [-m FILE] [--port P] [--host H]   (OpenAI-compatible HTTP API; serve --help)
  bmc-llm chat [-m FILE] [--system TEXT]          (interactive chat keeping the KV cache between turns; chat --help)
  bmc-llm bench [-m FILE] [-p 128,512] [-n 32,128] [--json]   (prompt and decode tok/s; bench --help)
  bmc-llm simulate-placement (--trace FILE | --synthetic) [--preset gh200] [--svg FILE] [--json]
              (hot/cold KV placement policies on a two-tier memory model; simulate-placement --help)

run options:
${helpText(RUN_FLAGS)}

info options:
${helpText(INFO_FLAGS)}
`;

async function cmdRun(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, RUN_FLAGS);
  if (flags.help) { process.stdout.write(USAGE); return; }
  if (positional.length > 0) throw new OptionError(positional[0]!, 'unexpected argument (the prompt goes after -p)');
  const kvType = flags['kv-type'] === undefined ? undefined : parseKVTypeFlag(flags['kv-type'] as string);
  const budget = flags['kv-budget'] as number | undefined;
  const kvFlag = flags.kv === undefined ? undefined : parseKVFlag(flags.kv as string);
  if (budget !== undefined && kvFlag && kvFlag.policy !== 'tiered') throw new OptionError('--kv-budget', `applies to --kv tiered, not ${flags.kv as string}`);
  if (budget !== undefined && budget < 1) throw new OptionError('--kv-budget', `${budget} is not a positive number of bytes`);
  const restore = flags['kv-restore'] === undefined ? undefined : parseKVRestoreFlag(flags['kv-restore'] as string);
  const activations = flags['kv-activations'] as string | undefined;
  if (activations !== undefined && activations !== 'f32' && activations !== 'f16') throw new OptionError('--kv-activations', `"${activations}": expected f32 or f16`);
  const coldBandwidth = flags['kv-cold-bandwidth'] as number | undefined;
  if (coldBandwidth !== undefined && !(coldBandwidth > 0 && Number.isFinite(coldBandwidth))) throw new OptionError('--kv-cold-bandwidth', `${coldBandwidth} is not a positive number of bytes/s`);
  const coldKeep = flags['kv-cold-keep'] as string | undefined;
  if (coldKeep !== undefined && coldKeep !== 'kv' && coldKeep !== 'activations') throw new OptionError('--kv-cold-keep', `"${coldKeep}": expected kv or activations`);
  const tierFlags = {
    ...(flags['kv-warm'] === undefined ? {} : { warm: parseKVWarmFlag(flags['kv-warm'] as string) }),
    ...(flags['kv-warm-fraction'] === undefined ? {} : { warmFraction: flags['kv-warm-fraction'] as number }),
    ...(flags['kv-cold'] === undefined ? {} : { cold: parseKVColdFlag(flags['kv-cold'] as string) }),
    ...(flags['kv-cold-path'] === undefined ? {} : { coldPath: flags['kv-cold-path'] as string }),
    ...(flags['kv-placement'] === undefined ? {} : { placement: flags['kv-placement'] as TierPlacement }),
    ...(flags['kv-migration-ratio'] === undefined ? {} : { migrationRatio: flags['kv-migration-ratio'] as number }),
    ...(flags['kv-max-migrations'] === undefined ? {} : { maxMigrationsPerStep: flags['kv-max-migrations'] as number }),
    ...(restore === undefined ? {} : { restore }),
    ...(coldKeep === undefined ? {} : { coldKeep: coldKeep as 'kv' | 'activations' }),
    ...(activations === undefined ? {} : { activations: activations as 'f32' | 'f16' }),
    ...(coldBandwidth === undefined ? {} : { coldBandwidth }),
  };
  const tierFlag = {
    warm: '--kv-warm', warmFraction: '--kv-warm-fraction', cold: '--kv-cold', coldPath: '--kv-cold-path',
    placement: '--kv-placement', migrationRatio: '--kv-migration-ratio', maxMigrationsPerStep: '--kv-max-migrations',
    restore: '--kv-restore', coldKeep: '--kv-cold-keep', activations: '--kv-activations', coldBandwidth: '--kv-cold-bandwidth',
  } as const;
  const givenTierFlag = (Object.keys(tierFlags) as (keyof typeof tierFlag)[])[0];
  if (givenTierFlag !== undefined && budget === undefined) throw new OptionError(tierFlag[givenTierFlag], 'applies to the tiered cache (give --kv-budget)');
  const kv = kvFlag === undefined && kvType === undefined && budget === undefined ? undefined
    : { ...(kvFlag ?? {}), ...(kvType === undefined ? {} : { type: kvType }), ...(budget === undefined ? {} : { policy: 'tiered' as const, budgetBytes: budget, ...tierFlags }) };
  try {
    validateKVOptions(kv);
  } catch (e) {
    // Name the flag, not the library field.
    const field = e instanceof OptionError ? e.option.replace(/^kv\./, '') : '';
    if (e instanceof OptionError && field in tierFlag) throw new OptionError(tierFlag[field as keyof typeof tierFlag], e.message.replace(/^option \S+: /, ''));
    throw e;
  }
  const json = flags.json === true;
  const draft = draftFlags(flags);
  const traceFile = flags.trace as string | undefined;
  if (traceFile !== undefined && draft) throw new OptionError('--trace', 'cannot be combined with speculative decoding (rejected drafts roll the sequence back)');
  const modelPath = await resolveModelPath(flags.model as string | undefined, err);
  const bar = progressReporter(showProgress());
  const t0 = performance.now();
  const model = await loadModel(modelPath, {
    contextLength: flags['ctx-size'] as number | undefined,
    threads: flags.threads as number | undefined,
    kv,
    onProgress: bar.onProgress,
  });
  bar.end();
  const hp = model.info.hparams!;
  if (model.info.threadsFallback) err(`note: running on 1 thread: ${model.info.threadsFallback}\n`);
  err(`loaded ${model.info.name ?? modelPath} (${hp.nLayers} layers, dim ${hp.dim}, vocab ${hp.nVocab}, ${model.info.threads} thread${model.info.threads === 1 ? '' : 's'}) in ${(performance.now() - t0).toFixed(0)} ms\n`);
  const prompt = (flags.prompt as string | undefined) ?? 'Once upon a time';
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once('SIGINT', onSig);
  const recorder = traceFile === undefined ? undefined : new TraceRecorder({
    nLayers: hp.nLayers,
    meta: { model: model.info.name ?? modelPath, kvBytesPerToken: kvTokenBytesOf(model.kvOptions.type, 1, hp.nKVHeads, hp.headDim) },
  });
  try {
    const session = recorder ? model.createSession({ trace: recorder }) : undefined;
    const gen = model.generate(prompt, {
      session,
      maxTokens: (flags['n-predict'] as number | undefined) ?? 128,
      temperature: flags.temp as number | undefined,
      topK: flags['top-k'] as number | undefined,
      topP: flags['top-p'] as number | undefined,
      minP: flags['min-p'] as number | undefined,
      repeatPenalty: flags['repeat-penalty'] as number | undefined,
      seed: flags.seed as number | undefined,
      ignoreEos: flags['ignore-eos'] === true,
      draft,
      signal: ac.signal,
    });
    let text = '';
    if (!json) process.stdout.write(prompt);
    for await (const piece of gen) {
      if (json) text += piece.text;
      else process.stdout.write(piece.text);
    }
    const s = gen.stats;
    if (json) process.stdout.write(`${JSON.stringify({ prompt, text, stats: s }, (_, v: unknown) => (v === Infinity ? null : v))}\n`);
    else process.stdout.write('\n');
    const rate = (n: number, ms: number) => (ms > 0 ? (1000 * n) / ms : 0).toFixed(1);
    err(`prompt: ${s.promptTokens} tokens in ${s.promptMs.toFixed(1)} ms (${rate(s.promptTokens, s.promptMs)} tok/s)\n`);
    err(`generation: ${s.generatedTokens} tokens in ${s.generateMs.toFixed(1)} ms (${rate(s.generatedTokens, s.generateMs)} tok/s), stopped by ${s.stopReason}\n`);
    const sp = s.speculative;
    if (sp) {
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      err(`speculation: ${sp.drafter}: ${sp.accepted} of ${sp.drafted} drafts accepted (${pct(sp.acceptanceRate)}; per token ${pct(sp.tokenAcceptance)}), ` +
        `${sp.tokensPerPass.toFixed(2)} tokens per verify pass (${sp.passes} passes), k ${sp.k}, drafting ${sp.draftMs.toFixed(1)} ms\n`);
    }
    const tiers = s.kv?.tiers;
    if (tiers) {
      const warm = tiers.warmType === 'none' ? '' : `, ${tiers.warmRowsPerLayer} warm ${tiers.warmType}`;
      err(`kv tiers: budget ${formatBytes(tiers.budgetBytes)}, ${tiers.hotRowsPerLayer} hot rows per layer${warm}; ${tiers.hotRows} rows hot, ` +
        `${tiers.warmType === 'none' ? '' : `${tiers.warmRows} warm, `}${tiers.coldRows} cold (${tiers.coldStore} ${formatBytes(tiers.hostBytes)}); ` +
        `${tiers.warmType === 'none' ? '' : `warm moves ${tiers.warmPromotions} in, ${tiers.warmDemotions} out; expanded ${formatBytes(tiers.expandedBytes)}, ${tiers.splitReads} split reads; `}` +
        `staged ${formatBytes(tiers.stagedBytes)}\n`);
      err(`kv migrations: ${tiers.promotions} promotions (${formatBytes(tiers.promotedBytes)} host -> arena), ${tiers.demotions} demotions (0 B: rows are written through), ` +
        `over ${tiers.placementSteps} placement steps (at most ${tiers.maxPromotionsPerStep} promotions in one); staged ${formatBytes(tiers.stagedBytes)}, written through ${formatBytes(tiers.hostWrittenBytes)}\n`);
      const r = tiers.restore;
      if (r.mode !== 'read' || tiers.coldBandwidth !== undefined) {
        err(`kv restore: ${r.mode}${tiers.coldBandwidth !== undefined ? ` (cold tier ${formatBytes(tiers.coldBandwidth)}/s, simulated)` : ''}: ${r.recomputedRows} rows recomputed, ${r.readRows} read, ` +
          `${r.restoreMs.toFixed(1)} ms; last split l ${r.lastSplit.l} of ${r.lastSplit.s}${r.rates ? `; rates: read ${formatBytes(r.rates.readBytesPerSec)}/s, recompute ${(r.rates.matmulFlopsPerSec / 1e9).toFixed(2)} GFLOP/s` : ''}\n`);
      }
    }
    if (recorder) {
      const bytes = recorder.finish();
      await writeFile(traceFile!, bytes);
      err(`trace: ${recorder.steps} steps x ${hp.nLayers} layers written to ${traceFile} (${formatBytes(bytes.length)})\n`);
    }
  } finally {
    process.off('SIGINT', onSig);
    model.dispose();
  }
}

/** --draft FILE | --lookup, and --draft-k K (a fixed k; without it k adapts from 4). */
function draftFlags(flags: Record<string, unknown>): DraftOptions | undefined {
  const file = flags.draft as string | undefined;
  const lookup = flags.lookup === true;
  const k = flags['draft-k'] as number | undefined;
  if (file !== undefined && lookup) throw new OptionError('--draft', 'give --draft FILE or --lookup, not both');
  if (file === undefined && !lookup) {
    if (k !== undefined) throw new OptionError('--draft-k', 'needs --draft FILE or --lookup');
    return undefined;
  }
  if (k !== undefined && (k < 1 || k > 64)) throw new OptionError('--draft-k', `${k} is not an integer in [1, 64]`);
  const base: DraftOptions = file !== undefined ? { model: file } : { lookup: true };
  return k === undefined ? base : { ...base, k, adaptive: false };
}

function describeValue(v: GGUFValue): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 120 ? `${v.slice(0, 117)}...` : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  const arr = v as ArrayLike<unknown>;
  const head = Array.from({ length: Math.min(6, arr.length) }, (_, i) => {
    const x = arr[i];
    return typeof x === 'string' ? JSON.stringify(x) : typeof x === 'object' ? '[...]' : String(x);
  });
  return `[${arr.length} items: ${head.join(', ')}${arr.length > 6 ? ', ...' : ''}]`;
}

async function cmdInfo(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, INFO_FLAGS);
  if (flags.help) { process.stdout.write(USAGE); return; }
  if (positional.length !== 1) throw new OptionError('FILE', 'info takes exactly one GGUF file');
  const header = await readGGUFHeader(await resolveSource(positional[0]!));
  const tok = GGUFTokenizer.fromMetadata(header.metadata, header.source);
  const embd = header.tensors.find((t) => t.name === 'token_embd.weight');
  let hp; let memory; let archNote: string | undefined;
  if (embd) {
    try {
      hp = readHParams(header.metadata, header.source, embd.nElements / embd.shape[0]!);
      memory = planMemory(header, hp, (flags['ctx-size'] as number | undefined) ?? hp.contextLength, 128);
    } catch (e) {
      if (!(e instanceof BmcError)) throw e;
      archNote = e.message;
    }
  } else archNote = 'vocab-only file (no tensors)';
  if (flags.json) {
    const meta: Record<string, string> = {};
    for (const [k, v] of header.metadata) meta[k] = describeValue(v);
    process.stdout.write(`${JSON.stringify({
      file: header.source, ggufVersion: header.version, alignment: header.alignment, hparams: hp, note: archNote,
      tokenizer: { kind: tok.kind, pre: tok.pre, vocabSize: tok.vocabSize, bos: tok.bos, eos: tok.eos },
      tensors: header.tensors.map((t) => ({ name: t.name, type: t.typeName, shape: t.shape, bytes: t.nBytes })),
      memory, metadata: meta,
    }, null, 2)}\n`);
    return;
  }
  const out: string[] = [];
  out.push(`file: ${header.source}`, `gguf version: ${header.version}, alignment ${header.alignment}, ${header.tensors.length} tensors, ${header.metadata.size} metadata keys`);
  out.push(`architecture: ${String(header.metadata.get('general.architecture') ?? '?')}${archNote ? ` (${archNote})` : ''}`);
  if (hp) {
    out.push('hyperparameters:');
    for (const [k, v] of Object.entries(hp)) out.push(`  ${k.padEnd(16)} ${v}`);
  }
  out.push(`tokenizer: ${tok.kind}${tok.pre ? ` (pre ${tok.pre})` : ''}, ${tok.vocabSize} tokens, bos ${tok.bos ?? '-'}, eos ${tok.eos ?? '-'}`);
  out.push('metadata:');
  for (const [k, v] of header.metadata) out.push(`  ${k} = ${describeValue(v)}`);
  if (header.tensors.length) {
    out.push('tensors:');
    const w = Math.max(...header.tensors.map((t) => t.name.length));
    for (const t of header.tensors) out.push(`  ${t.name.padEnd(w)}  ${t.typeName.padEnd(7)} ${`[${t.shape.join(', ')}]`.padEnd(16)} ${formatBytes(t.nBytes)}`);
  }
  if (memory) {
    out.push('memory:');
    out.push(`  weights          ${formatBytes(memory.weights)}`);
    out.push(`  scratch          ${formatBytes(memory.scratch)}`);
    out.push(`  KV per token     ${formatBytes(memory.kvPerToken)}`);
    out.push(`  KV at context    ${formatBytes(memory.kvAtContext)} (${hp!.contextLength} tokens)`);
    out.push(`  total at context ${formatBytes(memory.total)}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === 'run') await cmdRun(rest);
    else if (cmd === 'info') await cmdInfo(rest);
    else if (cmd === 'plan') await cmdPlan(rest);
    else if (cmd === 'serve') await cmdServe(rest);
    else if (cmd === 'chat') await cmdChat(rest);
    else if (cmd === 'bench') await cmdBench(rest);
    else if (cmd === 'simulate-placement') await cmdSimulatePlacement(rest);
    else if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') process.stdout.write(USAGE);
    else throw new OptionError(cmd, 'unknown command (run, info, plan, serve, chat, bench, simulate-placement)');
    return 0;
  } catch (e) {
    if (e instanceof BmcError) {
      err(`bmc-llm: ${e.message}\n`);
      return e instanceof OptionError ? 2 : 1;
    }
    if ((e as Error)?.name === 'AbortError') return 130;
    err(`bmc-llm: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
