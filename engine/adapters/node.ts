/**
 * Node/Deno/Bun adapter: file paths as byte sources. Kept apart from the engine core, which uses only
 * web-standard APIs; the core reaches this module through a dynamic import when given a path. node:fs is itself
 * imported lazily, so that the bundle (dist/index.js) also loads where it does not exist (browsers, Workers).
 */
import { SourceError } from '../errors.js';
import type { ByteSource } from '../gguf/source.js';

const CHUNK = 8 << 20;

export async function fileSource(path: string): Promise<ByteSource> {
  const { open, stat } = await import('node:fs/promises');
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new SourceError(`${path}: not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof SourceError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new SourceError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read (${(e as Error).message})`);
  }
  async function* from(start: number) {
    const fh = await open(path, 'r');
    try {
      let pos = start;
      while (pos < size) {
        // A fresh buffer per chunk: consumers may hold a chunk while the next one is read.
        const buf = new Uint8Array(Math.min(CHUNK, size - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
        if (bytesRead === 0) return;
        pos += bytesRead;
        yield bytesRead === buf.byteLength ? buf : buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }
  return { name: path, size, chunks: () => from(0), chunksFrom: from };
}
