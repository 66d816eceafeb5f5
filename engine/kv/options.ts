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
}

export const DEFAULT_KV_POLICY: KVPolicyName = 'bmc';
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
  return { policy, r, blockSize, budgetBytes, type, warm, warmFraction, cold, coldPath };
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
