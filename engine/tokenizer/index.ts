/**
 * Tokenizer built from GGUF metadata, reproducing llama.cpp's tokenization (llama-vocab.cpp):
 * - SPM ('llama'): space prefix ("▁" before the text and after every special token, when add_space_prefix is in
 *   effect), spaces escaped as "▁", score-ordered merges, <0xNN> byte fallback (or unk without byte tokens).
 * - BPE ('gpt2'): the pre-tokenizer regexes selected by tokenizer.ggml.pre, byte-level alphabet, ranked merges.
 * The merge loop itself is @huggingface/tokenizers' BPE model, configured by the tokenizer.json that from-gguf.ts
 * derives from the metadata; special-token splitting, pre-tokenization and fallbacks are done here, as llama.cpp
 * does them (the library's own versions differ in details that the llama.cpp test vectors catch).
 *
 * Special tokens: with `special: true`, control and unknown-type tokens written in the text ("<s>", "<|im_end|>")
 * become their ids; user-defined tokens are always matched (as llama.cpp does, even with parse_special=false).
 */
import { BPE, Tokenizer } from '@huggingface/tokenizers';
import { OptionError } from '../errors.js';
import type { GGUFValue } from '../gguf/reader.js';
import { byteLevelDecode, byteLevelEncode } from './byte-level.js';
import { readVocab, spmMerges, toTokenizerJson, TokenType, type GGUFVocab, type TokenizerKind } from './from-gguf.js';
import { preTokenize } from './pretokenize.js';
import { concatBytes } from '../bytes.js';

export type { TokenizerKind } from './from-gguf.js';
export { StreamDecoder } from './stream-decoder.js';

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);
const ASCII_SPACE_LEAD = /^[ \t\n\v\f\r]+/;

/** Tokenizers already built for a metadata map (the map of a parsed header is immutable). */
const cache = new WeakMap<ReadonlyMap<string, GGUFValue>, GGUFTokenizer>();

export class GGUFTokenizer {
  readonly kind: TokenizerKind;
  /** The BPE pre-tokenizer in effect (tokenizer.ggml.pre, 'default' when absent); undefined for SPM. */
  readonly pre: string | undefined;
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly eot: number | undefined;
  readonly eom: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** SPM: a "▁" is put before the text (and after each special token). */
  readonly addSpacePrefix: boolean;

  private readonly v: GGUFVocab;
  private readonly model: BPE;
  /** Ids matched in the text before tokenizing (control, user-defined, unknown), longest text first. */
  private readonly specials: readonly number[];
  /** SPM: the id of <0xNN> for each byte, -1 where the vocabulary has none. */
  private readonly byteIds: Int32Array;
  private readonly pieces: Array<Uint8Array | undefined>;
  /**
   * SPM: no piece has a "▁" after another character (true of SentencePiece vocabularies split on whitespace), so no
   * merge can cross the start of a "▁" run and each word can be merged on its own, with the same result as merging
   * the whole text at once. Short words also hit the model's cache.
   */
  private readonly spmWordwise: boolean;

  private constructor(v: GGUFVocab, model: BPE) {
    this.v = v;
    this.model = model;
    this.kind = v.kind;
    this.pre = v.pre;
    this.vocabSize = v.tokens.length;
    this.bos = v.bos;
    this.eos = v.eos;
    this.unk = v.unk;
    this.eot = v.eot;
    this.eom = v.eom;
    this.addBos = v.addBos;
    this.addEos = v.addEos;
    this.addSpacePrefix = v.addSpacePrefix;

    const specials: number[] = [];
    const byteLen: number[] = [];
    for (let id = 0; id < v.tokens.length; id++) {
      const t = v.types[id];
      if (t === TokenType.CONTROL || t === TokenType.USER_DEFINED || t === TokenType.UNKNOWN) {
        specials.push(id);
        byteLen[id] = utf8.encode(v.tokens[id]!).length;
      }
    }
    specials.sort((a, b) => byteLen[b]! - byteLen[a]! || a - b);
    this.specials = specials;

    this.byteIds = new Int32Array(256).fill(-1);
    if (v.kind === 'spm') {
      for (let b = 0; b < 256; b++) {
        const id = v.tokenToId.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
        if (id !== undefined) this.byteIds[b] = id;
      }
    }
    this.pieces = new Array<Uint8Array | undefined>(v.tokens.length);
    this.spmWordwise = v.kind === 'spm' && !v.tokens.some((t) => /[^▁]▁/.test(t));
  }

  /**
   * Builds the tokenizer from a GGUF header's metadata. Throws GGUFFormatError for missing or inconsistent
   * tokenizer fields and UnsupportedError for tokenizer models or pre-tokenizers this engine does not implement.
   */
  static fromMetadata(meta: ReadonlyMap<string, GGUFValue>, file: string): GGUFTokenizer {
    const hit = cache.get(meta);
    if (hit) return hit;
    const v = readVocab(meta, file);
    let merges: ReadonlyArray<readonly [string, string]>;
    let ranks: number[] | undefined;
    if (v.kind === 'spm') ({ merges, ranks } = spmMerges(v));
    else merges = v.merges;
    const { tokenizerJson, tokenizerConfig } = toTokenizerJson(v, merges);
    const hf = new Tokenizer(tokenizerJson, tokenizerConfig);
    const model = hf.model;
    if (!(model instanceof BPE)) throw new Error('internal: @huggingface/tokenizers did not build a BPE model');
    if (ranks) setRanks(model, merges, ranks);
    else if (model.bpe_ranks.size !== merges.length) setRanks(model, merges, undefined);
    const tok = new GGUFTokenizer(v, model);
    cache.set(meta, tok);
    return tok;
  }

  /**
   * Text -> token ids. `special` (default true, llama.cpp's default for prompts): add BOS/EOS as the GGUF says and
   * turn special-token text into the token. `special: false`: no BOS/EOS; control-token text is plain text.
   */
  encode(text: string, opts: { special?: boolean } = {}): number[] {
    const special = opts.special ?? true;
    const out: number[] = [];
    if (special && this.addBos && this.bos !== undefined) out.push(this.bos);
    const frags = text.length > 0 ? this.partition(text, special) : [];
    if (this.kind === 'spm') {
      let prevSpecial = true;
      for (const f of frags) {
        if (typeof f === 'number') {
          out.push(f);
          prevSpecial = true;
        } else {
          this.encodeSpm(this.addSpacePrefix && prevSpecial ? ' ' + f : f, out);
          prevSpecial = false;
        }
      }
    } else {
      for (const f of frags) {
        if (typeof f === 'number') out.push(f);
        else this.encodeBpe(f, out);
      }
    }
    if (special && this.addEos && this.eos !== undefined) out.push(this.eos);
    return out;
  }

  /**
   * Token ids -> text, for a sequence that starts the text: the bytes of every token (see tokenBytes) decoded as
   * UTF-8 (invalid bytes become U+FFFD). With add_space_prefix (SPM), the one space that encoding put before the
   * text is removed from the first token after any leading BOS, so decode(encode(s)) === s. (llama.cpp removes it
   * only when there is no BOS; use StreamDecoder for text that continues a prompt, which keeps it.) No
   * clean-up of spaces before punctuation is done. `skipSpecial` (default true): control and unknown tokens give
   * no text; false: they give their text, e.g. "<s>".
   */
  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    const skip = opts.skipSpecial ?? true;
    const parts: Uint8Array[] = [];
    let first = 0;
    while (first < ids.length && ids[first] === this.bos) first++;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      let b = skip ? this.piece(id) : this.pieceWithSpecial(id);
      if (i === first && this.addSpacePrefix && b.length > 0 && b[0] === 0x20) b = b.subarray(1);
      parts.push(b);
    }
    return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(concatBytes(parts));
  }

  /**
   * The bytes a token contributes to the text (llama.cpp token_to_piece with special=false): byte tokens give
   * their byte, SPM pieces their text with "▁" as space, byte-level BPE pieces the bytes their characters stand
   * for, user-defined tokens their text; control, unknown and unused tokens give nothing. A fresh copy.
   */
  tokenBytes(id: number): Uint8Array {
    return this.piece(id).slice();
  }

  /** Whether generating `id` ends generation: EOS, EOT, EOM and the end-of-turn tokens llama.cpp recognises. */
  isEog(id: number): boolean {
    return this.v.eog.has(id);
  }

  /** The raw vocabulary piece (e.g. "▁the", "<0x0A>", "Ġthe"). */
  tokenText(id: number): string {
    this.check(id);
    return this.v.tokens[id]!;
  }

  /** GGUF token type of `id` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
  tokenType(id: number): number {
    this.check(id);
    return this.v.types[id]!;
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new OptionError('id', `token id ${id} is outside [0, ${this.vocabSize})`);
    }
  }

  private piece(id: number): Uint8Array {
    this.check(id);
    let p = this.pieces[id];
    if (p === undefined) {
      p = this.computePiece(id);
      this.pieces[id] = p;
    }
    return p;
  }

  private pieceWithSpecial(id: number): Uint8Array {
    this.check(id);
    const t = this.v.types[id];
    if (t === TokenType.CONTROL || t === TokenType.UNKNOWN) return utf8.encode(this.v.tokens[id]!);
    return this.piece(id);
  }

  private computePiece(id: number): Uint8Array {
    const text = this.v.tokens[id]!;
    switch (this.v.types[id]) {
      case TokenType.USER_DEFINED:
        return utf8.encode(text);
      case TokenType.NORMAL:
        return this.kind === 'spm' ? utf8.encode(text.replaceAll('▁', ' ')) : byteLevelDecode(text);
      case TokenType.BYTE:
        return this.kind === 'spm' ? Uint8Array.of(parseInt(text.slice(3, 5), 16)) : EMPTY;
      default:
        return EMPTY; // control, unknown, unused, undefined
    }
  }

  /** llama.cpp tokenizer_st_partition: the text split around special-token matches, longest tokens first. */
  private partition(text: string, parseSpecial: boolean): Array<string | number> {
    let frags: Array<string | number> = [text];
    const { tokens, types, rstrip } = this.v;
    for (const id of this.specials) {
      const t = types[id];
      if (!parseSpecial && (t === TokenType.CONTROL || t === TokenType.UNKNOWN)) continue;
      const st = tokens[id]!;
      let hit = false;
      for (const f of frags) {
        if (typeof f === 'string' && f.includes(st)) {
          hit = true;
          break;
        }
      }
      if (!hit) continue;
      const strip = rstrip.has(id);
      const next: Array<string | number> = [];
      for (const f of frags) {
        if (typeof f !== 'string') {
          next.push(f);
          continue;
        }
        let rest = f;
        for (;;) {
          const at = rest.indexOf(st);
          if (at < 0) {
            if (rest.length > 0) next.push(rest);
            break;
          }
          if (at > 0) next.push(rest.slice(0, at));
          next.push(id);
          rest = rest.slice(at + st.length);
          if (strip) rest = rest.replace(ASCII_SPACE_LEAD, '');
        }
      }
      frags = next;
    }
    return frags;
  }

  private encodeSpm(text: string, out: number[]): void {
    const escaped = text.replaceAll(' ', '▁');
    if (!this.spmWordwise) {
      this.encodeSpmWord(escaped, out);
      return;
    }
    // Words: a run of "▁" and what follows it up to the next "▁" that comes after another character.
    let start = 0;
    for (let i = 1; i < escaped.length; i++) {
      if (escaped.charCodeAt(i) === 0x2581 && escaped.charCodeAt(i - 1) !== 0x2581) {
        this.encodeSpmWord(escaped.slice(start, i), out);
        start = i;
      }
    }
    this.encodeSpmWord(escaped.slice(start), out);
  }

  private encodeSpmWord(word: string, out: number[]): void {
    const map = this.v.tokenToId;
    for (const p of this.model.bpe(word)) {
      const id = map.get(p);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // A character that no piece covers: its UTF-8 bytes as <0xNN> tokens, or unk without byte tokens.
      const bytes = utf8.encode(p);
      let ok = true;
      for (const b of bytes) if (this.byteIds[b]! < 0) ok = false;
      if (ok) for (const b of bytes) out.push(this.byteIds[b]!);
      else if (this.unk !== undefined) out.push(this.unk);
    }
  }

  private encodeBpe(text: string, out: number[]): void {
    const map = this.v.tokenToId;
    const ignoreMerges = this.v.preSpec?.ignoreMerges ?? false;
    for (const word of preTokenize(text, this.v.preSpec!)) {
      const enc = byteLevelEncode(word);
      if (ignoreMerges) {
        const id = map.get(enc);
        if (id !== undefined) {
          out.push(id);
          continue;
        }
      }
      for (const p of this.model.bpe(enc)) {
        const id = map.get(p);
        if (id !== undefined) {
          out.push(id);
          continue;
        }
        // llama.cpp: each byte of the piece's text that is itself a token (only ASCII can be).
        for (let k = 0; k < p.length; k++) {
          const c = p.charCodeAt(k);
          if (c < 0x80) {
            const bid = map.get(p[k]!);
            if (bid !== undefined) out.push(bid);
          }
        }
      }
    }
  }
}

/**
 * The library ranks merges by their list position, the last of duplicate pairs winning. SPM needs merges whose
 * pieces have equal scores to share a rank (so that the leftmost wins, as in llama.cpp): `ranks` gives them. A BPE
 * merge list with duplicates (ranks undefined) keeps the first occurrence's rank, as llama.cpp does.
 */
function setRanks(model: BPE, merges: ReadonlyArray<readonly [string, string]>, ranks: readonly number[] | undefined): void {
  const key = (m: readonly [string, string]): string => JSON.stringify([m[0], m[1]]);
  if (merges.length > 0 && model.bpe_ranks.get(key(merges[merges.length - 1]!)) === undefined) {
    throw new Error('internal: unexpected @huggingface/tokenizers BPE rank table layout');
  }
  const table = new Map<string, number>();
  if (ranks) {
    for (let i = 0; i < merges.length; i++) table.set(key(merges[i]!), ranks[i]!);
  } else {
    for (let i = merges.length - 1; i >= 0; i--) table.set(key(merges[i]!), i);
  }
  model.bpe_ranks = table;
}
