import { concatBytes } from '../bytes.js';

/**
 * Sequential little-endian reader over a chunked byte source. `need(n)` buffers at least n bytes (awaiting more
 * chunks only when the buffer runs short), after which the sync getters read from the buffer.
 * Running out of input is reported through `onEof`, which the GGUF parser turns into a typed error.
 */
export class ChunkReader {
  private iter: AsyncIterator<Uint8Array>;
  private buf: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(this.buf.buffer);
  private pos = 0;
  /** Absolute file offset of buf[0]. */
  private base = 0;
  private done = false;

  /**
   * `reopen`, when the source is seekable, gives chunks from an absolute offset: skip() then jumps over large gaps
   * (unused tensors) instead of reading through them.
   */
  constructor(
    chunks: AsyncIterable<Uint8Array>,
    private readonly onEof: (offset: number, wanted: number) => Error,
    private readonly reopen?: (offset: number) => AsyncIterable<Uint8Array>,
  ) {
    this.iter = chunks[Symbol.asyncIterator]();
  }

  get offset(): number {
    return this.base + this.pos;
  }

  /** Bytes available without awaiting. */
  get buffered(): number {
    return this.buf.byteLength - this.pos;
  }

  async need(n: number): Promise<void> {
    if (this.buf.byteLength - this.pos >= n) return;
    const parts: Uint8Array[] = [this.buf.subarray(this.pos)];
    let have = parts[0]!.byteLength;
    while (have < n) {
      const chunk = await this.next();
      if (!chunk) throw this.onEof(this.offset + have, n - have);
      parts.push(chunk);
      have += chunk.byteLength;
    }
    const merged = concatBytes(parts);
    this.base += this.pos;
    this.pos = 0;
    this.buf = merged;
    this.view = new DataView(merged.buffer);
  }

  private async next(): Promise<Uint8Array | undefined> {
    if (this.done) return undefined;
    const r = await this.iter.next();
    if (r.done) {
      this.done = true;
      return undefined;
    }
    return r.value;
  }

  u8(): number { return this.view.getUint8(this.pos++); }
  i8(): number { return this.view.getInt8(this.pos++); }
  u16(): number { const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(): number { const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(): number { const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(): number { const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(): number { const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(): number { const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(): bigint { const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64(): bigint { const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }

  /** Copies n buffered bytes out (call need(n) first). */
  bytes(n: number): Uint8Array {
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  advance(n: number): void {
    this.pos += n;
  }

  /** Views n buffered bytes without copying; valid until the next need(). */
  peek(n: number): Uint8Array {
    return this.buf.subarray(this.pos, this.pos + n);
  }

  /**
   * Streams the next n bytes to `sink` without holding more than one chunk: used for tensor data.
   * The views passed to the sink are valid only during the call.
   */
  async pipe(n: number, sink: (part: Uint8Array, at: number) => void): Promise<void> {
    let sent = 0;
    while (sent < n) {
      if (this.buffered === 0) {
        const chunk = await this.next();
        if (!chunk) throw this.onEof(this.offset, n - sent);
        this.base += this.buf.byteLength;
        this.buf = chunk;
        this.view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        this.pos = 0;
      }
      const take = Math.min(this.buffered, n - sent);
      sink(this.buf.subarray(this.pos, this.pos + take), sent);
      this.pos += take;
      sent += take;
    }
  }

  async skip(n: number): Promise<void> {
    if (this.reopen && !this.done && n - this.buffered > ChunkReader.SEEK_THRESHOLD) {
      const target = this.offset + n;
      await this.iter.return?.();
      this.iter = this.reopen(target)[Symbol.asyncIterator]();
      this.buf = new Uint8Array(0);
      this.view = new DataView(this.buf.buffer);
      this.base = target;
      this.pos = 0;
      return;
    }
    await this.pipe(n, () => {});
  }

  /** Gaps larger than this are skipped by seeking (when the source can). */
  static readonly SEEK_THRESHOLD = 16 << 20;

  /** Releases the source (closes the file or cancels the stream). */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.iter.return?.();
    }
  }
}
