/**
 * The cold tier of the tiered KV cache (engine/kv/tiered.ts): every row of every layer, K and V, outside the arena,
 * at the cache's element type. Rows are fixed-size and addressed by (stream, row): stream 2l is layer l's K, 2l + 1
 * its V. A row is written once when the token is cached (again only after a rollback) and read whenever attention
 * needs it while it is neither hot nor warm.
 *
 * Stores:
 *  - memory: growing host Uint8Arrays (one per stream);
 *  - a file through a SyncFile: positional synchronous reads and writes, so that staging stays synchronous like the
 *    rest of a forward pass. Adapters provide the files: a temporary file under Node, Deno and Bun
 *    (engine/adapters/node-cold-file.ts; `cold: 'file'`), an OPFS sync access handle in a dedicated worker
 *    (engine/adapters/opfs.ts; `cold: await openOpfsColdFile(name)`). Row (s, j) lies at byte (s * rows + j) * rowBytes.
 */
import { OptionError } from '../errors.js';

export interface ColdStore {
  /** 'memory', 'file' or 'opfs' (what the stats report). */
  readonly kind: string;
  /** Bytes it holds (memory: allocated; file: the extent written). */
  readonly bytes: number;
  /** Writes whole rows from `src` starting at row `row` of stream `stream`. */
  write(stream: number, row: number, src: Uint8Array): void;
  /** Reads whole rows into `dst` (its length a multiple of the row size) from row `row` of stream `stream`. */
  read(stream: number, row: number, dst: Uint8Array): void;
  /** Releases the rows (a temporary file is removed). */
  dispose(): void;
}

/** A file open for synchronous positional I/O; the store owns it and closes it on dispose. */
export interface SyncFile {
  /** 'file' or 'opfs'. */
  readonly kind: string;
  /** Reads dst.length bytes at byte `at`; returns the bytes read (fewer only at the end of the file). */
  read(dst: Uint8Array, at: number): number;
  /** Writes all of src at byte `at`. */
  write(src: Uint8Array, at: number): void;
  /** Closes the file; a temporary one is removed. */
  close(): void;
}

export class MemoryColdStore implements ColdStore {
  readonly kind = 'memory';
  private readonly rows: Uint8Array[] = [];

  constructor(streams: number, private readonly rowBytes: number, private readonly maxRows: number) {
    for (let s = 0; s < streams; s++) this.rows.push(new Uint8Array(0));
  }

  get bytes(): number {
    return this.rows.reduce((a, r) => a + r.length, 0);
  }

  write(stream: number, row: number, src: Uint8Array): void {
    const end = row * this.rowBytes + src.length;
    let r = this.rows[stream]!;
    if (r.length < end) {
      // Doubling, up to the context: appends cost O(1) amortized and never allocate past every row.
      const g = new Uint8Array(Math.min(this.maxRows * this.rowBytes, Math.max(end, 2 * r.length, 64 * this.rowBytes)));
      g.set(r);
      this.rows[stream] = r = g;
    }
    r.set(src, row * this.rowBytes);
  }

  read(stream: number, row: number, dst: Uint8Array): void {
    const o = row * this.rowBytes;
    dst.set(this.rows[stream]!.subarray(o, o + dst.length));
  }

  dispose(): void {
    this.rows.fill(new Uint8Array(0));
  }
}

export class FileColdStore implements ColdStore {
  readonly kind: string;
  private extent = 0;
  private closed = false;

  constructor(private readonly file: SyncFile, private readonly rowBytes: number, private readonly maxRows: number) {
    this.kind = file.kind;
  }

  get bytes(): number {
    return this.extent;
  }

  private at(stream: number, row: number): number {
    return (stream * this.maxRows + row) * this.rowBytes;
  }

  write(stream: number, row: number, src: Uint8Array): void {
    const at = this.at(stream, row);
    this.file.write(src, at);
    this.extent = Math.max(this.extent, at + src.length);
  }

  read(stream: number, row: number, dst: Uint8Array): void {
    const got = this.file.read(dst, this.at(stream, row));
    if (got !== dst.length) throw new RangeError(`KV cold file: read ${got} of ${dst.length} bytes of stream ${stream} row ${row}`);
  }

  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }
}

/** Opens temporary files: provided by the Node/Deno/Bun adapter when the engine loads a model there. */
type TempFileOpener = (dir: string | undefined) => SyncFile;
let openTemp: TempFileOpener | undefined;

export function provideTempFiles(open: TempFileOpener): void {
  openTemp = open;
}

/** Whether `x` has the shape of a SyncFile (an adapter's handle passed as `kv.cold`). */
export function isSyncFile(x: unknown): x is SyncFile {
  const f = x as SyncFile;
  return typeof x === 'object' && x !== null && typeof f.read === 'function' && typeof f.write === 'function' && typeof f.close === 'function';
}

export type ColdOption = 'memory' | 'file' | SyncFile;

/** The store for `cold` (validated by engine/kv/options.ts) with `streams` streams of up to maxRows rows. */
export function createColdStore(cold: ColdOption, coldPath: string | undefined, streams: number, rowBytes: number, maxRows: number): ColdStore {
  if (cold === 'memory') return new MemoryColdStore(streams, rowBytes, maxRows);
  if (cold === 'file') {
    if (!openTemp) throw new OptionError('kv.cold', '"file" needs Node, Deno or Bun (a file system); in a browser worker pass an OPFS handle: cold: await openOpfsColdFile(name)');
    return new FileColdStore(openTemp(coldPath), rowBytes, maxRows);
  }
  return new FileColdStore(cold, rowBytes, maxRows);
}
