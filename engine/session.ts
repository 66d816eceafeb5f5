/**
 * A session is one sequence: its own KV cache over the model's weights. `eval` feeds tokens (teacher forcing
 * or generation) and returns their logits; the prompt goes through in chunks of the model's batch size.
 */
import { DisposedError, OptionError } from './errors.js';
import type { KVCache, KVStats } from './kv/cache.js';
import type { LlamaGraph } from './model/llama.js';
import type { AttentionTracer } from './tiers/attention-mass.js';

export interface EvalOptions {
  /** Which logits to return: of the last token only (default) or of every token fed. */
  logits?: 'last' | 'all';
}

export class Session {
  private disposed = false;

  /** @internal */
  constructor(
    private readonly graph: LlamaGraph,
    private readonly kv: KVCache,
    private readonly isAlive: () => boolean,
    private readonly onDispose?: () => void,
    private readonly tracer?: AttentionTracer,
  ) {}

  /** Whether dispose() was called or the model was disposed (the session can no longer be used). */
  get isDisposed(): boolean {
    return this.disposed || !this.isAlive();
  }

  /** Tokens in the sequence so far. */
  get length(): number {
    return this.kv.length;
  }

  get contextLength(): number {
    return this.graph.contextLength;
  }

  /**
   * Feeds `ids` after the current sequence and returns logits as a row-major Float32Array: 1 x vocab for
   * `logits: 'last'`, ids.length x vocab for `'all'`.
   */
  async eval(ids: ArrayLike<number>, opts: EvalOptions = {}): Promise<Float32Array> {
    this.check();
    const mode = opts.logits ?? 'last';
    if (mode !== 'last' && mode !== 'all') throw new OptionError('logits', `"${String(mode)}" is not 'last' or 'all'`);
    const n = ids.length;
    if (n === 0) throw new OptionError('ids', 'eval needs at least one token');
    if (this.kv.length + n > this.graph.contextLength) {
      throw new OptionError('contextLength', `${this.kv.length} + ${n} tokens exceed the context length ${this.graph.contextLength}`);
    }
    const V = this.graph.hp.nVocab;
    const out = new Float32Array((mode === 'all' ? n : 1) * V);
    const B = this.graph.batch;
    for (let at = 0; at < n; at += B) {
      const chunk = Array.from({ length: Math.min(B, n - at) }, (_, i) => ids[at + i]!);
      const rows = mode === 'all' ? chunk.map((_, i) => i) : at + chunk.length === n ? [chunk.length - 1] : [];
      this.graph.forward(this.kv, chunk, rows, out, mode === 'all' ? at * V : 0, this.tracer);
    }
    return out;
  }

  /** Drops tokens past `length` (keeps the first `length`). No copy. */
  truncate(length: number): void {
    this.check();
    this.kv.truncate(length);
    this.tracer?.truncate(length);
  }

  reset(): void {
    this.truncate(0);
  }

  kvStats(): KVStats {
    return this.kv.stats();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.isAlive()) this.kv.dispose();
    this.onDispose?.();
  }

  private check(): void {
    if (this.disposed) throw new DisposedError('session');
    if (!this.isAlive()) throw new DisposedError('model');
  }
}
