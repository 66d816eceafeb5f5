/**
 * KV cache options: the library form `kv: { policy, r, blockSize, budgetBytes, type }` and the CLI forms
 * `--kv concat|static|bmc:R|paged:B|auto` and `--kv-type f32|f16|q8_0`. Every invalid value is an OptionError naming
 * the field (or the flag).
 */
import { OptionError } from '../errors.js';
import { DEFAULT_KV_TYPE, KV_TYPES } from './element.js';
import type { KVType } from './element.js';

export type KVPolicyName = 'static' | 'concat' | 'bmc' | 'paged' | 'auto' | 'tiered';

export const KV_POLICIES: readonly KVPolicyName[] = ['static', 'concat', 'bmc', 'paged', 'auto', 'tiered'];

export interface KVOptions {
  /** How the cache grows (default 'bmc'). */
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
   * `tiered` only: how tokens move between tiers. 'attention' (default): by an EMA of the attention mass the kernel
   * computes at every step, within the migration budget below; 'first-come': the first rows that fit stay hot and
   * nothing migrates (no mass is computed).
   */
  placement?: TierPlacement;
  /** `tiered` only: the fraction R of the beneficial swaps made per step, in [0, 1] (default 1; arXiv 2508.13231). */
  migrationRatio?: number;
  /** `tiered` only: the most promotions per layer and step, an integer >= 0 (default: no cap). */
  maxMigrationsPerStep?: number;
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
  placement: TierPlacement;
  migrationRatio: number;
  maxMigrationsPerStep: number;
}

export const DEFAULT_KV_POLICY: KVPolicyName = 'bmc';
export const DEFAULT_BMC_R = 64;
export const DEFAULT_BLOCK_SIZE = 16;
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
  return { policy, r, blockSize, budgetBytes, type, ...validatePlacement(o, policy) };
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
