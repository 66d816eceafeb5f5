/**
 * KV cache options: the library form `kv: { policy, r, blockSize, budgetBytes, type }` and the CLI forms
 * `--kv concat|static|bmc:R|paged:B|auto` and `--kv-type f32|f16|q8_0`. Every invalid value is an OptionError naming
 * the field (or the flag).
 */
import { OptionError } from '../errors.js';
import { DEFAULT_KV_TYPE, KV_TYPES, WARM_TYPES } from './element.js';
import type { KVType, WarmType } from './element.js';
import { isSyncFile } from './cold-store.js';
import type { ColdOption } from './cold-store.js';
import type { ActivationType, RestoreMode } from '../tiers/restore.js';

export type KVPolicyName = 'static' | 'concat' | 'bmc' | 'paged' | 'auto' | 'tiered';

export const KV_POLICIES: readonly KVPolicyName[] = ['static', 'concat', 'bmc', 'paged', 'auto', 'tiered'];

export interface KVOptions {
  /** How the cache grows (default 'auto'). */
  policy?: KVPolicyName;
  /** Spare rows per growth for `bmc` (default 64). */
  r?: number;
  /** Tokens per block for `paged` (default 16). */
  blockSize?: number;
  /**
   * Upper bound of KV bytes for `auto` (all layers, K and V); default: no bound beyond the memory limit. For `tiered`
   * (required): the arena bytes the cache never exceeds (hot rows, block tables, staging); other rows live in host
   * memory (engine/kv/tiered.ts).
   */
  budgetBytes?: number;
  /** How K and V values are stored: 'f32' (default), 'f16' or 'q8_0' (engine/kv/element.ts). */
  type?: KVType;
  /**
   * `tiered` only: the warm tier, rows compressed in the arena ('q8_0' or 'q4_0'; default 'none'). It must be smaller
   * than the cache's type: q8_0 for f32 or f16 caches, q4_0 for any.
   */
  warm?: WarmType;
  /** `tiered` with a warm tier: the share of the budget (after the fixed bytes) given to warm rows, in (0, 1); default 0.5 (unused without a warm tier). */
  warmFraction?: number;
  /**
   * `tiered` only: where cold rows live (engine/kv/cold-store.ts): 'memory' (default), 'file' (a temporary file under
   * Node, Deno or Bun, removed on dispose), or a SyncFile handle (an OPFS file in a dedicated worker:
   * `await openOpfsColdFile(name)`).
   */
  cold?: ColdOption | 'opfs';
  /** `cold: 'file'`: the directory of the temporary file (default: the OS temp directory). */
  coldPath?: string;
  /**
   * `tiered` only: how tokens move between tiers. 'attention' (default): by an EMA of the attention mass the kernel
   * computes at every step, within the migration budget below; 'first-come': the first rows that fit stay hot and
   * nothing migrates (no mass is computed).
   */
  placement?: TierPlacement;
  /** `tiered` only: the fraction R of the beneficial swaps made per step, in [0, 1] (default 1; arXiv 2508.13231). */
  migrationRatio?: number;
  /** `tiered` only: the most promotions per layer and step, an integer >= 0 (default: no cap). */
  maxMigrationsPerStep?: number;
  /**
   * `tiered` only: how cold rows are restored for attention (engine/tiers/restore.ts). 'read' (default) reads their
   * stored K/V; 'recompute' recomputes them all from the layer inputs the cache then keeps; { l } recomputes the
   * first l and reads the rest; 'auto' picks l with KVPR's cost model from rates measured at start-up.
   */
  restore?: RestoreMode;
  /**
   * `tiered` only: what the cold tier keeps of each row: 'kv' (default; plus the layer input when restore needs it)
   * or 'activations', the layer input instead of K and V (half the host bytes of an f32 MHA row; restore is then
   * 'recompute', the default with this option). Not with a warm tier (warm rows are compressed from stored K/V) nor a
   * cold store other than 'memory' (it would hold nothing).
   */
  coldKeep?: 'kv' | 'activations';
  /** `tiered` with restore: how the kept layer inputs are stored, 'f32' (default; recomputed rows are exact) or 'f16'. */
  activations?: ActivationType;
  /**
   * `tiered` only: simulate a slower cold tier (a disk, a network store) by limiting reads from it to this many
   * bytes/s; transfers then proceed without a CPU thread and overlap computation (engine/tiers/cold-link.ts).
   * Default: host memory at full speed.
   */
  coldBandwidth?: number;
}

export type TierPlacement = 'attention' | 'first-come';
export const TIER_PLACEMENTS: readonly TierPlacement[] = ['attention', 'first-come'];
export const DEFAULT_TIER_PLACEMENT: ResolvedTierPlacement = { placement: 'attention', migrationRatio: 1, maxMigrationsPerStep: Infinity };

/** The tiered cache's placement options, validated. */
export interface ResolvedTierPlacement {
  placement: TierPlacement;
  migrationRatio: number;
  maxMigrationsPerStep: number;
}

/** Options after validation, defaults filled in. */
export interface ResolvedKVOptions {
  policy: KVPolicyName;
  r: number;
  blockSize: number;
  budgetBytes: number | undefined;
  type: KVType;
  warm: WarmType;
  warmFraction: number;
  cold: ColdOption;
  coldPath: string | undefined;
  placement: TierPlacement;
  migrationRatio: number;
  maxMigrationsPerStep: number;
  /** The tiered policy's restore options (defaults filled in); absent for the other policies. */
  restore?: RestoreMode;
  coldKeep?: 'kv' | 'activations';
  activations?: ActivationType;
  coldBandwidth?: number;
}

// auto: BMC with R from the analytical model (a calibration of a few ms on the first session of a model).
export const DEFAULT_KV_POLICY: KVPolicyName = 'auto';
export const DEFAULT_BMC_R = 64;
export const DEFAULT_BLOCK_SIZE = 16;
export const DEFAULT_WARM_FRACTION = 0.5;
const MAX_ROWS = 1 << 20;

export function validateKVOptions(o: KVOptions | undefined): ResolvedKVOptions {
  if (o !== undefined && (o === null || typeof o !== 'object')) throw new OptionError('kv', 'expected an object');
  const policy = o?.policy ?? DEFAULT_KV_POLICY;
  if (!KV_POLICIES.includes(policy)) throw new OptionError('kv.policy', `"${String(policy)}" is not one of ${KV_POLICIES.join(', ')}`);
  const r = o?.r ?? DEFAULT_BMC_R;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > MAX_ROWS) throw new OptionError('kv.r', `${String(r)} is not an integer in [1, ${MAX_ROWS}]`);
  const blockSize = o?.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (typeof blockSize !== 'number' || !Number.isInteger(blockSize) || blockSize < 1 || blockSize > MAX_ROWS) {
    throw new OptionError('kv.blockSize', `${String(blockSize)} is not an integer in [1, ${MAX_ROWS}]`);
  }
  const budgetBytes = o?.budgetBytes;
  if (budgetBytes !== undefined && (typeof budgetBytes !== 'number' || !Number.isSafeInteger(budgetBytes) || budgetBytes < 1)) {
    throw new OptionError('kv.budgetBytes', `${String(budgetBytes)} is not a positive integer`);
  }
  if (policy === 'tiered' && budgetBytes === undefined) throw new OptionError('kv.budgetBytes', 'the tiered policy needs a budget (--kv-budget BYTES)');
  const type = o?.type ?? DEFAULT_KV_TYPE;
  if (!KV_TYPES.includes(type)) throw new OptionError('kv.type', `"${String(type)}" is not one of ${KV_TYPES.join(', ')}`);
  const warm = o?.warm ?? 'none';
  if (!WARM_TYPES.includes(warm)) throw new OptionError('kv.warm', `"${String(warm)}" is not one of ${WARM_TYPES.join(', ')}`);
  if (warm !== 'none' && policy !== 'tiered') throw new OptionError('kv.warm', `a warm tier belongs to the tiered policy, not ${policy}`);
  if (warm === 'q8_0' && type === 'q8_0') throw new OptionError('kv.warm', 'q8_0 warm rows are no smaller than this cache\'s q8_0 rows (use q4_0)');
  const warmFraction = o?.warmFraction ?? DEFAULT_WARM_FRACTION;
  if (typeof warmFraction !== 'number' || !(warmFraction > 0 && warmFraction < 1)) throw new OptionError('kv.warmFraction', `${String(warmFraction)} is not a number in (0, 1)`);
  const cold = o?.cold ?? 'memory';
  if (cold === 'opfs') throw new OptionError('kv.cold', '"opfs" needs a handle opened in a dedicated worker: cold: await openOpfsColdFile(name)');
  if (cold !== 'memory' && cold !== 'file' && !isSyncFile(cold)) throw new OptionError('kv.cold', `${typeof cold === 'string' ? `"${cold}"` : typeof cold} is not 'memory', 'file' or a SyncFile handle`);
  // (Resolved options pass through here again, e.g. for a draft model: the defaults are accepted with any policy.)
  if (cold !== 'memory' && policy !== 'tiered') throw new OptionError('kv.cold', `a cold store belongs to the tiered policy, not ${policy}`);
  const coldPath = o?.coldPath;
  if (coldPath !== undefined && (typeof coldPath !== 'string' || coldPath === '')) throw new OptionError('kv.coldPath', 'expected a directory path');
  if (coldPath !== undefined && cold !== 'file') throw new OptionError('kv.coldPath', "applies only to cold: 'file'");
  const coldKeep = o?.coldKeep ?? 'kv';
  if (coldKeep !== 'kv' && coldKeep !== 'activations') throw new OptionError('kv.coldKeep', `"${String(coldKeep)}" is not one of kv, activations`);
  const restore = validateRestore(o?.restore ?? (coldKeep === 'activations' ? 'recompute' : undefined));
  if (coldKeep === 'activations' && restore !== 'recompute') {
    throw new OptionError('kv.restore', `with coldKeep 'activations' every cold row is recomputed: restore must be 'recompute', not ${JSON.stringify(restore)}`);
  }
  const activations = o?.activations ?? 'f32';
  if (activations !== 'f32' && activations !== 'f16') throw new OptionError('kv.activations', `"${String(activations)}" is not one of f32, f16`);
  const coldBandwidth = o?.coldBandwidth;
  if (coldBandwidth !== undefined && (typeof coldBandwidth !== 'number' || !(coldBandwidth > 0) || !Number.isFinite(coldBandwidth))) {
    throw new OptionError('kv.coldBandwidth', `${String(coldBandwidth)} is not a positive number of bytes/s`);
  }
  if (policy !== 'tiered') {
    for (const [name, v] of [['restore', o?.restore], ['coldKeep', o?.coldKeep], ['activations', o?.activations], ['coldBandwidth', coldBandwidth]] as const) {
      if (v !== undefined) throw new OptionError(`kv.${name}`, `applies to the tiered policy, not ${policy}`);
    }
  }
  if (coldKeep === 'activations' && warm !== 'none') {
    // Warm rows are compressed from the cold tier's K/V copies (promotion cold -> warm), which this tier does not keep.
    throw new OptionError('kv.coldKeep', "'activations' keeps no K/V rows to compress into the warm tier: use coldKeep 'kv' with kv.warm");
  }
  if (coldKeep === 'activations' && cold !== 'memory') {
    // The cold store holds K/V rows; with only layer inputs kept there is nothing to put in it.
    throw new OptionError('kv.cold', "coldKeep 'activations' keeps layer inputs in host memory: a cold store other than 'memory' would hold nothing");
  }
  const base = { policy, r, blockSize, budgetBytes, type, warm, warmFraction, cold, coldPath, ...validatePlacement(o, policy) };
  return policy === 'tiered' ? { ...base, restore, coldKeep, activations, ...(coldBandwidth === undefined ? {} : { coldBandwidth }) } : base;
}

const RESTORE_FORMS = "'read', 'recompute', 'auto' or { l: integer >= 0 }";

function validateRestore(v: unknown): RestoreMode {
  if (v === undefined) return 'read';
  if (v === 'read' || v === 'recompute' || v === 'auto') return v;
  if (v !== null && typeof v === 'object' && Object.keys(v).length === 1) {
    const l = (v as { l?: unknown }).l;
    if (typeof l === 'number' && Number.isInteger(l) && l >= 0 && l <= MAX_ROWS) return { l };
  }
  throw new OptionError('kv.restore', `${JSON.stringify(v) ?? String(v)} is not ${RESTORE_FORMS}`);
}

/** Parses `--kv-restore read|recompute|auto|L` (L: tokens to recompute per layer). */
export function parseKVRestoreFlag(text: string): RestoreMode {
  const t = typeof text === 'string' ? text.trim() : '';
  if (t === 'read' || t === 'recompute' || t === 'auto') return t;
  if (/^[0-9]+$/.test(t) && Number(t) <= MAX_ROWS) return { l: Number(t) };
  throw new OptionError('--kv-restore', `"${String(text)}": expected read, recompute, auto or a number of tokens`);
}

function validatePlacement(o: KVOptions | undefined, policy: KVPolicyName): ResolvedTierPlacement {
  const placement = o?.placement ?? 'attention';
  if (!TIER_PLACEMENTS.includes(placement)) throw new OptionError('kv.placement', `"${String(placement)}" is not one of ${TIER_PLACEMENTS.join(', ')}`);
  const migrationRatio = o?.migrationRatio ?? 1;
  if (typeof migrationRatio !== 'number' || !(migrationRatio >= 0 && migrationRatio <= 1)) {
    throw new OptionError('kv.migrationRatio', `${String(migrationRatio)} is not a number in [0, 1]`);
  }
  const max = o?.maxMigrationsPerStep ?? Infinity;
  if (typeof max !== 'number' || !(max === Infinity || (Number.isSafeInteger(max) && max >= 0))) {
    throw new OptionError('kv.maxMigrationsPerStep', `${String(max)} is not an integer >= 0`);
  }
  const r: ResolvedTierPlacement = { placement, migrationRatio, maxMigrationsPerStep: max };
  // Resolved options may come back as options (a draft model takes the target's): only a non-default value is wrong.
  for (const k of ['placement', 'migrationRatio', 'maxMigrationsPerStep'] as const) {
    if (policy !== 'tiered' && r[k] !== DEFAULT_TIER_PLACEMENT[k]) throw new OptionError(`kv.${k}`, `applies to the tiered policy, not ${policy}`);
  }
  return r;
}

/** Parses `--kv-warm q8_0|q4_0|none`. */
export function parseKVWarmFlag(text: string): WarmType {
  const t = typeof text === 'string' ? text.trim() : text;
  if (!WARM_TYPES.includes(t as WarmType)) throw new OptionError('--kv-warm', `"${String(text)}": expected ${WARM_TYPES.join(', ')}`);
  return t as WarmType;
}

/** Parses `--kv-cold memory|file`. */
export function parseKVColdFlag(text: string): 'memory' | 'file' {
  const t = typeof text === 'string' ? text.trim() : text;
  if (t !== 'memory' && t !== 'file') throw new OptionError('--kv-cold', `"${String(text)}": expected memory or file (OPFS is for browser workers, through the library)`);
  return t;
}

/** Parses `--kv-type f32|f16|q8_0`; anything else is an OptionError naming the flag. */
export function parseKVTypeFlag(text: string): KVType {
  const t = typeof text === 'string' ? text.trim() : text;
  if (!KV_TYPES.includes(t as KVType)) throw new OptionError('--kv-type', `"${String(text)}": expected ${KV_TYPES.join(', ')}`);
  return t as KVType;
}

/**
 * Parses the CLI form: `concat`, `static`, `bmc:R` (`bmc` alone: R = 64), `paged:B` (`paged` alone: B = 16) or
 * `auto`. Returns library options (validated); anything else is an OptionError naming --kv.
 */
export function parseKVFlag(text: string): KVOptions {
  const flag = '--kv';
  const form = 'expected concat, static, bmc:R, paged:B, auto or tiered (with --kv-budget)';
  if (typeof text !== 'string') throw new OptionError(flag, form);
  const m = /^(concat|static|bmc|paged|auto|tiered)(?::(.*))?$/.exec(text.trim());
  if (!m) throw new OptionError(flag, `"${text}": ${form}`);
  const policy = m[1] as KVPolicyName;
  const arg = m[2];
  let opts: KVOptions;
  if (arg === undefined) opts = { policy };
  else {
    if (policy !== 'bmc' && policy !== 'paged') throw new OptionError(flag, `"${text}": ${policy} takes no value (${form})`);
    if (!/^[0-9]+$/.test(arg)) throw new OptionError(flag, `"${text}": ${policy === 'bmc' ? 'R' : 'B'} must be a positive integer (${form})`);
    const v = Number(arg);
    opts = policy === 'bmc' ? { policy, r: v } : { policy, blockSize: v };
  }
  try {
    validateKVOptions(policy === 'tiered' ? { ...opts, budgetBytes: 1 } : opts); // the budget comes from --kv-budget
  } catch (e) {
    if (e instanceof OptionError) throw new OptionError(flag, `"${text}": ${e.message.replace(/^option \S+: /, '')}`);
    throw e;
  }
  return opts;
}

/** The error of a step that would pass the context length. */
export function contextOverflow(need: number, contextLength: number): OptionError {
  return new OptionError('contextLength', `the sequence would reach ${need} tokens, past the context length ${contextLength}`);
}
