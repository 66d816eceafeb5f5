/**
 * GGUF tokenizer metadata -> a validated vocabulary description (`readVocab`) and the Hugging Face
 * tokenizer.json / tokenizer_config.json objects that drive @huggingface/tokenizers' BPE model (`toTokenizerJson`).
 *
 * Both llama.cpp tokenizer families are BPE merge loops over a word's characters, lowest rank first, ties to the
 * leftmost pair, which is what the library's BPE model does:
 * - SPM ("llama"): llama.cpp merges the adjacent pair whose concatenation is a vocabulary piece with the highest
 *   score. As merges: every split (a, b) of every piece p = a + b where a and b can occur as symbols (a single
 *   character or a piece), ranked by the score of p (descending; equal scores share a rank, see `spmRanks`).
 *   Characters left unmerged that are not pieces fall back to <0xNN> byte tokens (or unk).
 * - BPE ("gpt2"): the GGUF merges, in order, over the byte-level alphabet.
 * Pre-tokenization, special-token splitting and fallbacks are done in index.ts, as llama.cpp does them.
 */
import { GGUFFormatError, UnsupportedError } from '../errors.js';
import type { GGUFValue } from '../gguf/reader.js';
import { preTokenizerSpec, type PreTokenizerSpec } from './pretokenize.js';

export type TokenizerKind = 'spm' | 'bpe';

/** GGUF token types (tokenizer.ggml.token_type). */
export const TokenType = {
  UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6,
} as const;

export interface GGUFVocab {
  readonly file: string;
  readonly kind: TokenizerKind;
  /** tokenizer.ggml.model as stored. */
  readonly model: string;
  /** The pre-tokenizer in effect (BPE only; 'default' when the file names none). */
  readonly pre: string | undefined;
  readonly preSpec: PreTokenizerSpec | undefined;
  readonly tokens: readonly string[];
  /** Per-token type, after llama.cpp's text-based overrides (EOG/FIM-looking tokens become control). */
  readonly types: Uint8Array;
  readonly scores: Float32Array | undefined;
  /** BPE merges as stored, split at the first space after the first character (as llama.cpp does). */
  readonly merges: ReadonlyArray<readonly [string, string]>;
  /** Text -> id; for duplicate texts the last id wins, as in llama.cpp. */
  readonly tokenToId: ReadonlyMap<string, number>;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly eot: number | undefined;
  readonly eom: number | undefined;
  readonly eog: ReadonlySet<number>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  /** Tokens whose match in the text swallows the whitespace after it (llama.cpp's Phi-3 attribute quirk). */
  readonly rstrip: ReadonlySet<number>;
}

const NONE_ID = 0xffffffff;

function isStringArray(v: GGUFValue | undefined): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function isNumericArray(v: GGUFValue | undefined): v is Exclude<GGUFValue, string[] | boolean[] | unknown[] | string | number | bigint | boolean> {
  return ArrayBuffer.isView(v) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array);
}

function asInteger(v: GGUFValue | undefined): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

/** Tokens llama.cpp recognises by text and forces to control type (EOT/EOM/FIM/EOG detection). */
const EOT_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>', '_<EOT>', '<｜end▁of▁sentence｜>', '<end_of_utterance>'];
const EOM_TEXTS = ['<|eom_id|>'];
const EOG_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>', '_<EOT>', '<|end_of_text|>', '<end_of_utterance>'];
const FIM_TEXTS = [
  '<|fim_prefix|>', '<fim-prefix>', '<fim_prefix>', '<｜fim▁begin｜>', '<PRE>', '▁<PRE>', '<|code_prefix|>',
  '<|fim_suffix|>', '<fim-suffix>', '<fim_suffix>', '<｜fim▁hole｜>', '<SUF>', '▁<SUF>', '<|code_suffix|>',
  '<|fim_middle|>', '<fim-middle>', '<fim_middle>', '<｜fim▁end｜>', '<MID>', '▁<MID>', '<|code_middle|>',
  '<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>',
  '<|file_sep|>',
];
const FIM_EOG_TEXTS = ['<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>', '<|file_sep|>'];

export function readVocab(meta: ReadonlyMap<string, GGUFValue>, file: string): GGUFVocab {
  const fail = (field: string, msg: string): never => {
    throw new GGUFFormatError(file, field, msg);
  };

  const modelV = meta.get('tokenizer.ggml.model');
  if (modelV === undefined) fail('tokenizer.ggml.model', 'missing (the file has no tokenizer)');
  if (typeof modelV !== 'string') fail('tokenizer.ggml.model', `expected a string, got ${typeof modelV}`);
  const model = modelV as string;
  let kind: TokenizerKind;
  if (model === 'llama') kind = 'spm';
  else if (model === 'gpt2') kind = 'bpe';
  else throw new UnsupportedError(`${file}: tokenizer model '${model}' is not supported (supported: 'llama' (SentencePiece BPE), 'gpt2' (byte-level BPE))`);

  // Vocabulary.
  const tokensV = meta.get('tokenizer.ggml.tokens');
  if (tokensV === undefined) fail('tokenizer.ggml.tokens', 'missing');
  if (!isStringArray(tokensV)) fail('tokenizer.ggml.tokens', 'expected an array of strings');
  const raw = tokensV as string[];
  const n = raw.length;
  if (n === 0) fail('tokenizer.ggml.tokens', 'the vocabulary is empty');
  if (n > 0x7fffffff) fail('tokenizer.ggml.tokens', `${n} tokens is more than token ids can address`);
  const tokens: string[] = new Array<string>(n);
  for (let i = 0; i < n; i++) tokens[i] = raw[i]!.length === 0 ? `[EMPTY_${i}]` : raw[i]!;

  let scores: Float32Array | undefined;
  const scoresV = meta.get('tokenizer.ggml.scores');
  if (scoresV !== undefined) {
    if (!isNumericArray(scoresV)) fail('tokenizer.ggml.scores', 'expected a numeric array');
    const s = scoresV as unknown as ArrayLike<number>;
    if (s.length !== n) fail('tokenizer.ggml.scores', `has ${s.length} entries but the vocabulary has ${n} tokens`);
    scores = s instanceof Float32Array ? s : Float32Array.from(s);
  }

  const types = new Uint8Array(n).fill(TokenType.NORMAL);
  const typesV = meta.get('tokenizer.ggml.token_type');
  if (typesV !== undefined) {
    if (!isNumericArray(typesV)) fail('tokenizer.ggml.token_type', 'expected an integer array');
    const t = typesV as unknown as ArrayLike<number>;
    if (t.length !== n) fail('tokenizer.ggml.token_type', `has ${t.length} entries but the vocabulary has ${n} tokens`);
    for (let i = 0; i < n; i++) {
      const v = t[i]!;
      types[i] = v >= 1 && v <= 6 ? v : TokenType.UNDEFINED;
    }
  }

  const tokenToId = new Map<string, number>();
  for (let i = 0; i < n; i++) tokenToId.set(tokens[i]!, i);

  // Byte tokens of SPM vocabularies must read <0xNN>.
  if (kind === 'spm') {
    for (let i = 0; i < n; i++) {
      if (types[i] === TokenType.BYTE && !/^<0x[0-9A-Fa-f]{2}>$/.test(tokens[i]!)) {
        fail('tokenizer.ggml.tokens', `token ${i} ${JSON.stringify(tokens[i])} has the byte type but is not of the form <0xNN>`);
      }
    }
  }

  // Merges.
  let merges: Array<[string, string]> = [];
  if (kind === 'bpe') {
    const mergesV = meta.get('tokenizer.ggml.merges');
    if (mergesV === undefined) fail('tokenizer.ggml.merges', 'missing (a gpt2 tokenizer needs its merges)');
    if (!isStringArray(mergesV)) fail('tokenizer.ggml.merges', 'expected an array of strings');
    const list = mergesV as string[];
    merges = new Array<[string, string]>(list.length);
    for (let i = 0; i < list.length; i++) {
      const m = list[i]!;
      const sp = m.indexOf(' ', 1);
      if (sp < 0) fail('tokenizer.ggml.merges', `entry ${i} ${JSON.stringify(m)} is not two pieces separated by a space`);
      merges[i] = [m.slice(0, sp), m.slice(sp + 1)];
    }
  }

  // Pre-tokenizer and llama.cpp's per-family defaults.
  let pre: string | undefined;
  let preSpec: PreTokenizerSpec | undefined;
  let addBos: boolean;
  let addEos = false;
  let addSpacePrefix: boolean;
  let bos: number | undefined;
  let eos: number | undefined;
  let unk: number | undefined;
  if (kind === 'spm') {
    addBos = true;
    addSpacePrefix = true;
    bos = 1; eos = 2; unk = 0;
  } else {
    const preV = meta.get('tokenizer.ggml.pre');
    if (preV !== undefined && typeof preV !== 'string') fail('tokenizer.ggml.pre', 'expected a string');
    pre = (preV as string | undefined) ?? 'default';
    try {
      preSpec = preTokenizerSpec(pre);
    } catch (e) {
      if (e instanceof UnsupportedError) throw new UnsupportedError(`${file}: ${e.message}`);
      throw e;
    }
    addBos = preSpec.addBos;
    addSpacePrefix = false;
    bos = 11; eos = 11; unk = undefined;
    if (preSpec.noBos) bos = undefined;
  }

  const readBool = (key: string): boolean | undefined => {
    const v = meta.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') fail(key, `expected a boolean, got ${typeof v}`);
    return v as boolean;
  };
  addSpacePrefix = readBool('tokenizer.ggml.add_space_prefix') ?? addSpacePrefix;

  const readId = (key: string, dflt: number | undefined): number | undefined => {
    const v = meta.get(key);
    if (v === undefined) return dflt;
    const id = asInteger(v);
    if (id === undefined) fail(key, `expected an integer token id, got ${typeof v}`);
    // 0xFFFFFFFF (-1 written as u32) is the converters' "none".
    if (id === NONE_ID || id === -1) return dflt;
    if (id! < 0 || id! >= n) fail(key, `token id ${id} is outside the vocabulary (0..${n - 1})`);
    return id;
  };
  bos = readId('tokenizer.ggml.bos_token_id', bos);
  eos = readId('tokenizer.ggml.eos_token_id', eos);
  unk = readId('tokenizer.ggml.unknown_token_id', unk);
  let eot = readId('tokenizer.ggml.eot_token_id', undefined);
  let eom = readId('tokenizer.ggml.eom_token_id', undefined);
  // Defaults that do not exist in a small vocabulary are dropped rather than trusted.
  if (bos !== undefined && bos >= n) bos = undefined;
  if (eos !== undefined && eos >= n) eos = undefined;
  if (unk !== undefined && unk >= n) unk = undefined;

  addBos = readBool('tokenizer.ggml.add_bos_token') ?? addBos;
  addEos = readBool('tokenizer.ggml.add_eos_token') ?? addEos;
  if (addBos && bos === undefined) fail('tokenizer.ggml.add_bos_token', 'is true but the tokenizer has no BOS token');
  if (addEos && eos === undefined) fail('tokenizer.ggml.add_eos_token', 'is true but the tokenizer has no EOS token');

  // Text-based detection of end-of-generation tokens, as llama.cpp does (they become control tokens).
  const forceControl = (id: number): void => {
    types[id] = TokenType.CONTROL;
  };
  const find = (texts: readonly string[]): number | undefined => {
    for (const t of texts) {
      const id = tokenToId.get(t);
      if (id !== undefined) return id;
    }
    return undefined;
  };
  if (eot === undefined) {
    eot = find(EOT_TEXTS);
    if (eot !== undefined) forceControl(eot);
  }
  if (eom === undefined) {
    eom = find(EOM_TEXTS);
    if (eom !== undefined) forceControl(eom);
  }
  for (const t of FIM_TEXTS) {
    const id = tokenToId.get(t);
    if (id !== undefined) forceControl(id);
  }
  const eog = new Set<number>();
  for (const t of [...EOG_TEXTS, ...FIM_EOG_TEXTS]) {
    const id = tokenToId.get(t);
    if (id !== undefined) {
      eog.add(id);
      forceControl(id);
    }
  }
  for (const t of ['<|channel|>', '<|message|>', '<|start|>', '<|constrain|>']) {
    const id = tokenToId.get(t);
    if (id !== undefined) types[id] = TokenType.USER_DEFINED;
  }
  if (eos !== undefined) eog.add(eos);
  if (eot !== undefined) eog.add(eot);
  if (eom !== undefined) eog.add(eom);
  {
    // o200k_harmony: with <|return|> and <|call|> present, <|end|> does not end generation.
    const ret = tokenToId.get('<|return|>');
    const call = tokenToId.get('<|call|>');
    const end = tokenToId.get('<|end|>');
    if (ret !== undefined && call !== undefined && end !== undefined && eog.has(ret) && eog.has(call) && eog.has(end)) {
      eog.delete(end);
      types[end] = TokenType.USER_DEFINED;
    }
  }

  // llama.cpp's per-model attribute quirk: Phi-3 special tokens swallow the whitespace that follows them.
  const rstrip = new Set<number>();
  const name = meta.get('general.name');
  if (typeof name === 'string' && /phi-3|phi3/.test(name.toLowerCase())) {
    for (let i = 0; i < n; i++) {
      const t = types[i];
      if (t === TokenType.CONTROL || t === TokenType.USER_DEFINED || t === TokenType.UNKNOWN) rstrip.add(i);
    }
    const set = (text: string, on: boolean): void => {
      const id = tokenToId.get(text);
      if (id !== undefined) {
        if (on) rstrip.add(id);
        else rstrip.delete(id);
      }
    };
    set('</s>', true);
    for (const t of ['<unk>', '<s>', '<|endoftext|>']) set(t, false);
  }

  return {
    file, kind, model, pre, preSpec, tokens, types, scores, merges, tokenToId,
    bos, eos, unk, eot, eom, eog, addBos, addEos, addSpacePrefix, rstrip,
  };
}

/**
 * SPM merges: every (a, b) with a + b a piece and a, b possible symbols, with the merged piece's id. Sorted by the
 * piece's score, highest first; `ranks[i]` is the dense rank of merge i's score, so that equal scores share a rank
 * (llama.cpp then prefers the leftmost pair, which the library's position tie-break reproduces).
 */
export function spmMerges(v: GGUFVocab): { merges: Array<[string, string]>; ranks: number[] } {
  const scores = v.scores;
  const list: Array<{ a: string; b: string; score: number; id: number }> = [];
  const isSymbol = (s: string): boolean => v.tokenToId.has(s) || isSingleChar(s);
  for (let id = 0; id < v.tokens.length; id++) {
    const p = v.tokens[id]!;
    if (v.tokenToId.get(p) !== id) continue; // a duplicate text: llama.cpp scores the merge by the last id
    if (p.length < 2) continue;
    const s = scores ? scores[id]! : 0;
    const score = Number.isNaN(s) ? -Infinity : s;
    for (let k = 1; k < p.length; k++) {
      const c = p.charCodeAt(k);
      if (c >= 0xdc00 && c <= 0xdfff && isHighSurrogate(p.charCodeAt(k - 1))) continue; // inside a code point
      const a = p.slice(0, k);
      const b = p.slice(k);
      if (isSymbol(a) && isSymbol(b)) list.push({ a, b, score, id });
    }
  }
  list.sort((x, y) => y.score - x.score || x.id - y.id);
  const merges: Array<[string, string]> = new Array(list.length);
  const ranks: number[] = new Array<number>(list.length);
  let rank = -1;
  let prev = NaN;
  for (let i = 0; i < list.length; i++) {
    const m = list[i]!;
    if (m.score !== prev) {
      rank++;
      prev = m.score;
    }
    merges[i] = [m.a, m.b];
    ranks[i] = rank;
  }
  return { merges, ranks };
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isSingleChar(s: string): boolean {
  return s.length === 1 || (s.length === 2 && isHighSurrogate(s.charCodeAt(0)));
}

/** The tokenizer.json and tokenizer_config.json objects for @huggingface/tokenizers' `Tokenizer`. */
export function toTokenizerJson(v: GGUFVocab, merges: ReadonlyArray<readonly [string, string]>): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  // A null-prototype object: vocabulary pieces such as "__proto__" or "constructor" must stay plain keys.
  const vocab = Object.create(null) as Record<string, number>;
  for (const [t, id] of v.tokenToId) vocab[t] = id;
  const unkToken = v.unk !== undefined ? v.tokens[v.unk] : null;
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    // Special tokens are split out by GGUFTokenizer (llama.cpp rules), so the library sees plain text only.
    added_tokens: [],
    // Space escaping (SPM) and regex pre-splitting + byte-level mapping (BPE) are done before the model is called.
    normalizer: null,
    pre_tokenizer: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unkToken,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: v.kind === 'spm',
      ignore_merges: v.preSpec?.ignoreMerges ?? false,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
    post_processor: null,
    decoder: null,
  };
  const tokenizerConfig = {
    add_bos_token: v.addBos,
    add_eos_token: v.addEos,
    bos_token: v.bos !== undefined ? v.tokens[v.bos] : null,
    eos_token: v.eos !== undefined ? v.tokens[v.eos] : null,
    unk_token: unkToken,
    clean_up_tokenization_spaces: false,
  };
  return { tokenizerJson, tokenizerConfig };
}
