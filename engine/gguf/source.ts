/**
 * Byte sources: where model bytes come from. The engine core only sees this interface (web-standard);
 * file paths are opened by a runtime adapter (engine/adapters/).
 */
import { SourceError } from '../errors.js';

export interface ByteSource {
  /** Shown in error messages (file path, URL or "<bytes>"). */
  readonly name: string;
  /** Total size in bytes when known (files, bytes, HTTP with Content-Length). */
  readonly size: number | undefined;
  /** Sequential chunks from the start. Breaking out of the loop releases the underlying resource. */
  chunks(): AsyncIterable<Uint8Array>;
  /** Seekable sources (files, bytes) also give chunks from any offset, so that readers skip gaps without reading them. */
  chunksFrom?(offset: number): AsyncIterable<Uint8Array>;
}

const CHUNK = 4 << 20;

export function bytesSource(bytes: Uint8Array | ArrayBuffer, name = '<bytes>'): ByteSource {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  async function* from(start: number) {
    for (let off = start; off < u8.byteLength; off += CHUNK) yield u8.subarray(off, Math.min(u8.byteLength, off + CHUNK));
  }
  return { name, size: u8.byteLength, chunks: () => from(0), chunksFrom: from };
}

export function streamSource(stream: ReadableStream<Uint8Array>, name: string, size?: number): ByteSource {
  let used = false;
  return {
    name,
    size,
    async *chunks() {
      if (used) throw new SourceError(`${name}: a stream can be read only once`);
      used = true;
      const reader = stream.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          if (value && value.byteLength > 0) yield value;
        }
      } finally {
        await reader.cancel().catch(() => {});
        reader.releaseLock();
      }
    },
  };
}

/** A Blob or File (a browser's file picker): read as a stream, from any offset through slice(). */
export function blobSource(blob: Blob, name = '<blob>'): ByteSource {
  const from = (offset: number) => streamSource(blob.slice(offset).stream() as ReadableStream<Uint8Array>, name).chunks();
  return { name, size: blob.size, chunks: () => from(0), chunksFrom: from };
}

export function responseSource(res: Response, name: string): ByteSource {
  if (!res.ok) throw new SourceError(`${name}: HTTP ${res.status} ${res.statusText}`);
  if (!res.body) throw new SourceError(`${name}: the response has no body`);
  const len = Number(res.headers.get('content-length') ?? NaN);
  return streamSource(res.body, name, Number.isFinite(len) && len >= 0 ? len : undefined);
}

export async function urlSource(url: string, signal?: AbortSignal): Promise<ByteSource> {
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    throw new SourceError(`${url}: could not fetch (${(e as Error).message})`);
  }
  return responseSource(res, url);
}
