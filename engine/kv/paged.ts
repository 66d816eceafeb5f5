/**
 * Paged KV cache (vLLM-style): per layer, K and V live in fixed blocks of B tokens (token-major inside a block, a row
 * is nKVHeads * headDim values of the element type), allocated from the arena one block at a time as the sequence
 * grows, and found through a block table (u32 block base pointers, in the arena) that the attention kernel walks.
 * Growth never copies.
 *
 * Writing new rows: with f32 rows, when the n rows of a step fall inside one block (always for single-token decoding
 * with B > 1 or when a block boundary is not crossed), the projections write straight into that block and
 * `commitRows` does nothing. Otherwise (a boundary crossed, or f16/q8_0 rows) they write f32 staging rows owned by
 * the cache, and `commitRows` stores them into their blocks: that is part of writing rows, not growth, so it is not
 * counted in `bytesCopied`.
 *
 * Rollback (`truncate`) only lowers the length: blocks past the new length stay allocated as spare rows and are
 * reused by the next steps; they are freed by `dispose`. New blocks are zeroed, so spare rows are always finite.
 */
import { OutOfMemoryError } from '../errors.js';
import type { Kernels } from '../runtime/kernels.js';
import type { KVCache, KVShape, KVStats } from './cache.js';
import { KVLength, StagingRows, now } from './length.js';
import { contextOverflow } from './options.js';
import { attend } from './attend.js';
import type { AttentionWorkspace } from './attend.js';
import { kvElement } from './element.js';
import type { KVElement, KVType } from './element.js';

export class PagedKVCache extends KVLength implements KVCache {
  readonly policy = 'paged' as const;
  readonly rowFloats: number;
  readonly element: KVElement;
  private readonly rowBytes: number;
  private readonly maxBlocks: number;
  /** 2 * nLayers tables of maxBlocks u32: layer l's K table at tables + 8*l*maxBlocks, its V table right after. */
  private tables = 0;
  private readonly kBlocks: number[][] = [];
  private readonly vBlocks: number[][] = [];
  private nBlocks = 0;
  private readonly stage: StagingRows;
  /** Whether the rows reserved last go through the staging rows (they cross a block boundary). */
  private staged = false;
  private growths = 0;
  private growMs = 0;
  private peak = 0;
  private disposed = false;

  constructor(private readonly kern: Kernels, private readonly shape: KVShape, readonly blockSize: number, type: KVType = 'f32') {
    super();
    this.rowFloats = shape.nKVHeads * shape.headDim;
    this.element = kvElement(type, shape.nKVHeads, shape.headDim);
    this.rowBytes = this.element.rowBytes;
    this.stage = new StagingRows(kern, this.rowFloats);
    this.maxBlocks = Math.ceil(shape.contextLength / blockSize);
    for (let l = 0; l < shape.nLayers; l++) {
      this.kBlocks.push([]);
      this.vBlocks.push([]);
    }
    this.tables = kern.alloc(this.tableBytes, 64);
    new Uint8Array(kern.memory.buffer, this.tables, this.tableBytes).fill(0);
  }

  get capacity(): number { return this.nBlocks * this.blockSize; }
  /** Blocks held per layer (for K, and as many for V). */
  get blocks(): number { return this.nBlocks; }

  private get tableBytes(): number { return 2 * this.shape.nLayers * this.maxBlocks * 4; }
  private get blockBytes(): number { return this.blockSize * this.rowBytes; }
  private kTable(l: number): number { return this.tables + 8 * l * this.maxBlocks; }
  private vTable(l: number): number { return this.kTable(l) + 4 * this.maxBlocks; }

  reserve(n: number): void {
    const need = this.len + n;
    if (need > this.shape.contextLength) throw contextOverflow(need, this.shape.contextLength);
    const want = Math.ceil(need / this.blockSize);
    if (want > this.nBlocks) this.addBlocks(want - this.nBlocks);
    const B = this.blockSize;
    this.staged = n > 0 && (this.element.type !== 'f32' || Math.floor(this.len / B) !== Math.floor((need - 1) / B));
    if (this.staged) this.stage.ensure(n);
  }

  /** Adds `count` zeroed blocks to every layer's K and V, all or nothing. */
  private addBlocks(count: number): void {
    const t0 = now();
    const L = this.shape.nLayers;
    const bytes = this.blockBytes;
    const fresh: number[] = [];
    try {
      for (let i = 0; i < 2 * L * count; i++) fresh.push(this.kern.alloc(bytes, 64));
    } catch (e) {
      for (const p of fresh) this.kern.free(p);
      if (e instanceof OutOfMemoryError) {
        throw new OutOfMemoryError(`KV cache for ${(this.nBlocks + count) * this.blockSize} tokens`, bytes * fresh.length, e.limit);
      }
      throw e;
    }
    const mem = new Uint8Array(this.kern.memory.buffer); // after every alloc: a grow detaches older views
    const table = new Uint32Array(this.kern.memory.buffer);
    let at = 0;
    for (let l = 0; l < L; l++) {
      for (let b = 0; b < count; b++) {
        const kb = fresh[at++]!;
        const vb = fresh[at++]!;
        mem.fill(0, kb, kb + bytes);
        mem.fill(0, vb, vb + bytes);
        const slot = this.nBlocks + b;
        table[(this.kTable(l) >>> 2) + slot] = kb;
        table[(this.vTable(l) >>> 2) + slot] = vb;
        this.kBlocks[l]!.push(kb);
        this.vBlocks[l]!.push(vb);
      }
    }
    this.nBlocks += count;
    this.growths++;
    this.peak = Math.max(this.peak, this.nBlocks * bytes * 2 * L);
    this.growMs += now() - t0;
  }

  private rowAt(blocks: number[], pos: number): number {
    return blocks[Math.floor(pos / this.blockSize)]! + (pos % this.blockSize) * this.rowBytes;
  }

  newKeys(l: number): number { return this.staged ? this.stage.k : this.rowAt(this.kBlocks[l]!, this.len); }
  newValues(l: number): number { return this.staged ? this.stage.v : this.rowAt(this.vBlocks[l]!, this.len); }

  commitRows(l: number, pos0: number, n: number): void {
    if (pos0 !== this.len || pos0 + n > this.capacity) throw new RangeError(`KV commit of rows ${pos0}..${pos0 + n} (length ${this.len}, capacity ${this.capacity})`);
    if (!this.staged) return;
    const B = this.blockSize;
    for (let i = 0; i < n;) {
      const pos = pos0 + i;
      const run = Math.min(B - (pos % B), n - i);
      this.stage.store(this.element, i, this.rowAt(this.kBlocks[l]!, pos), this.rowAt(this.vBlocks[l]!, pos), run);
      i += run;
    }
  }

  attend(l: number, q: number, out: number, ws: AttentionWorkspace, nQ: number, pos0: number, nHeads: number, qStride: number, outStride: number, scale: number): void {
    const { nKVHeads, headDim } = this.shape;
    if (pos0 + nQ > this.capacity) throw new RangeError(`KV attention over ${pos0 + nQ} rows (capacity ${this.capacity})`);
    const view = { kTable: this.kTable(l), vTable: this.vTable(l), blockRows: this.blockSize, el: this.element };
    attend(this.kern, ws, view, { q, out, nQ, pos0, nHeads, nKVHeads, headDim, qStride, outStride, scale });
  }

  stats(): KVStats {
    return {
      policy: 'paged', type: this.element.type, layout: `paged:${this.blockSize}`, length: this.len, capacity: this.capacity,
      bytes: this.nBlocks * this.blockBytes * 2 * this.shape.nLayers, peakBytes: this.peak,
      overheadBytes: (this.tables ? this.tableBytes : 0) + this.stage.bytes,
      growths: this.growths, bytesCopied: 0, growthMs: this.growMs, blockSize: this.blockSize, blocks: this.nBlocks,
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (let l = 0; l < this.shape.nLayers; l++) {
      for (const p of this.kBlocks[l]!.splice(0)) this.kern.free(p);
      for (const p of this.vBlocks[l]!.splice(0)) this.kern.free(p);
    }
    if (this.tables) this.kern.free(this.tables);
    this.stage.dispose();
    this.tables = 0;
    this.nBlocks = 0;
    this.len = 0;
  }
}
