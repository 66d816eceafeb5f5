/**
 * Incremental detokenizer for streaming generation. Token bytes are fed through a streaming UTF-8 decoder, so a
 * character split over several tokens (byte-fallback pieces, byte-level BPE) comes out whole, once its last byte has
 * arrived; bytes that can never form a valid character come out as U+FFFD as soon as that is certain (WHATWG
 * UTF-8 decoding, the same result as decoding all bytes at once). Leading spaces are kept: the tokens decoded here
 * continue a prompt, so " there" after "Once upon a time" prints its space.
 */
import type { GGUFTokenizer } from './index.js';

export class StreamDecoder {
  private readonly tok: GGUFTokenizer;
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(tok: GGUFTokenizer) {
    this.tok = tok;
  }

  /** Adds one token; returns the text completed by it (possibly empty). */
  push(id: number): string {
    const bytes = this.tok.tokenBytes(id);
    if (bytes.length === 0) return '';
    return this.decoder.decode(bytes, { stream: true });
  }

  /** Returns what is still pending (an incomplete character becomes U+FFFD) and starts over. */
  flush(): string {
    const s = this.decoder.decode();
    this.decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    return s;
  }
}
