// Shared by the tiered-cache tests (kv-tiered, kv-warm-cold).
import { expect } from 'vitest';
import type { KVStats, Session } from '../engine/index.js';

/** What the KV cache holds in the arena: its rows and its overhead (tables, staging, buffers). */
export const arenaBytes = (s: KVStats) => s.bytes + s.overheadBytes;

/** n deterministic token ids in [1, vocab). */
export const ids = (n: number, vocab: number, salt = 0) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + 13 + salt) % (vocab - 1)));

/**
 * Feeds both sessions a 150-token prompt (all logits), then 60 single tokens with a rollback to 170 rows after the
 * 31st, expecting the tiered session's logits to equal the plain one's at every call.
 */
export async function expectPlainLogits(tiered: Session, plain: Session, vocab: number): Promise<void> {
  const prompt = ids(150, vocab);
  expect(await tiered.eval(prompt, { logits: 'all' })).toEqual(await plain.eval(prompt, { logits: 'all' }));
  for (let i = 0; i < 60; i++) {
    const t = [(i * 31 + 5) % vocab];
    expect(await tiered.eval(t)).toEqual(await plain.eval(t));
    if (i === 30) { tiered.truncate(170); plain.truncate(170); }
  }
}
