/** Where the test fixtures live: ../shared beside the project, or $BMC_LLM_SHARED. Models may be overridden alone. */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED = process.env.BMC_LLM_SHARED ? resolve(process.env.BMC_LLM_SHARED) : resolve(ROOT, '../shared');
export const MODELS = process.env.BMC_LLM_SHARED_MODELS ? resolve(process.env.BMC_LLM_SHARED_MODELS) : join(SHARED, 'models');
export const REFERENCE = join(SHARED, 'reference');

export function requireShared(): void {
  if (!existsSync(MODELS) || !existsSync(REFERENCE)) {
    throw new Error(`test fixtures not found at ${SHARED} (set BMC_LLM_SHARED to the folder holding models/ and reference/)`);
  }
}

export interface Reference {
  model: string;
  prompt: string;
  n_vocab: number;
  prompt_ids: number[];
  prompt_logits: number[][];
  greedy_ids: number[];
  greedy_logits: number[][];
  greedy_bytes_hex: string;
}

export function referenceFiles(): string[] {
  requireShared();
  return readdirSync(REFERENCE).filter((f) => f.endsWith('.json')).sort();
}

export function readReference(file: string): Reference {
  return JSON.parse(readFileSync(join(REFERENCE, file), 'utf8')) as Reference;
}
