/**
 * GPT-2 style byte-level alphabet: every byte 0..255 is represented by one printable Unicode character, so that
 * byte-level BPE vocabularies can store arbitrary bytes as text. Printable Latin-1 bytes ('!'..'~', '¡'..'¬',
 * '®'..'ÿ') stand for themselves; the other 68 bytes map, in increasing order, to U+0100, U+0101, ...
 */

const BYTE_TO_CHAR: string[] = new Array<string>(256);
const CHAR_TO_BYTE = new Map<number, number>();

{
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const cp = printable ? b : next++;
    BYTE_TO_CHAR[b] = String.fromCharCode(cp);
    CHAR_TO_BYTE.set(cp, b);
  }
}

const utf8 = new TextEncoder();

/** UTF-8 bytes of `text`, each written as its byte-level character. */
export function byteLevelEncode(text: string): string {
  const bytes = utf8.encode(text);
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += BYTE_TO_CHAR[bytes[i]!];
  return out;
}

/**
 * The bytes a byte-level piece stands for. A character outside the byte alphabet (which a well-formed vocabulary
 * does not contain in normal tokens) contributes its own UTF-8 encoding.
 */
export function byteLevelDecode(piece: string): Uint8Array {
  const out: number[] = [];
  for (const ch of piece) {
    const cp = ch.codePointAt(0)!;
    const b = CHAR_TO_BYTE.get(cp);
    if (b !== undefined) out.push(b);
    else for (const x of utf8.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}
