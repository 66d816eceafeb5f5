/**
 * Byte-level BPE pre-tokenization as llama.cpp does it (llama-vocab.cpp / unicode.cpp): each `tokenizer.ggml.pre`
 * value selects a list of regular expressions that are applied one after another; every expression splits each
 * piece left by the previous ones into its matches and the text between them (both kept, "isolated").
 *
 * llama.cpp replaces every non-ASCII whitespace character by U+000B before matching and its `\s` then only knows
 * ASCII whitespace; we do the same (matching on a copy of the same length), which also reproduces its custom
 * GPT-2 and Llama-3 splitters (they use Unicode White_Space, which is exactly what the replacement covers).
 * Pieces are cut from the original text.
 */
import { UnsupportedError } from '../errors.js';

// The patterns below are llama.cpp's, in its own (ECMAScript/Oniguruma-like) syntax; `compile` turns `\s`/`\S` into
// explicit ASCII-whitespace classes and compiles them with the `u` flag (so that `\p{..}` works).
const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`;
const CONTRACTIONS = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;
const LLAMA3 = CONTRACTIONS + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2 = CONTRACTIONS + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const SEED_CODER = CONTRACTIONS + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`;
const BAILINGMOE = String.raw`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`;
const BLOOM = String.raw` ?[^(\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+`;
// CJK ideographs, U+0800..U+4E00 (sic) and Hangul, as in llama.cpp's deepseek patterns.
const DEEPSEEK_CJK = String.raw`[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+`;
// deepseek-llm's letter class (cased letters of the Unicode version its tokenizer.json was written against).
const DEEPSEEK_LETTERS = String.raw`\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af` +
  String.raw`\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481` +
  String.raw`\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b` +
  String.raw`\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d` +
  String.raw`\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec` +
  String.raw`\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d` +
  String.raw`\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee` +
  String.raw`\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06` +
  String.raw`\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}` +
  String.raw`\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+`;
const DEEPSEEK_PUNCT = String.raw`\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+`;

const PATTERNS = {
  default: [String.raw`[\p{P}\$\+<=>\^~\|]+`, GPT2, String.raw`\p{N}+`, '[0-9][0-9][0-9]'],
  gpt2: [GPT2],
  llama3: [LLAMA3],
  qwen2: [QWEN2],
  'deepseek-llm': [String.raw`[\r\n]`, DEEPSEEK_LETTERS, DEEPSEEK_PUNCT, String.raw`\s+$`, DEEPSEEK_CJK, String.raw`\p{N}+`],
  'deepseek-coder': [String.raw`[\r\n]`, String.raw`\s?\p{L}+`, String.raw`\s?\p{P}+`, DEEPSEEK_CJK, String.raw`\p{N}`],
  falcon: [String.raw`[\p{P}\$\+<=>\^~\|` + '`' + String.raw`]+`, GPT2, '[0-9][0-9][0-9]'],
  starcoder: [String.raw`\p{N}`, GPT2],
  bloom: [BLOOM],
  viking: [BLOOM, String.raw`\p{N}`],
  'seed-coder': [SEED_CODER],
  bailingmoe: [BAILINGMOE],
} as const;

type PatternSet = keyof typeof PATTERNS;

export interface PreTokenizerSpec {
  /** Which llama.cpp pattern list is used. */
  readonly patterns: PatternSet;
  /** Look a whole pre-token up in the vocabulary before merging (llama.cpp `ignore_merges`). */
  readonly ignoreMerges: boolean;
  /** llama.cpp turns BOS-adding on for these pre-tokenizers (a GGUF add_bos_token still overrides it). */
  readonly addBos: boolean;
  /** llama.cpp drops the BOS token for these (chatglm). */
  readonly noBos: boolean;
}

/** `tokenizer.ggml.pre` values llama.cpp knows, mapped to the pattern lists above. */
const PRE: Record<string, PreTokenizerSpec> = {};
function def(names: string[], patterns: PatternSet, extra: Partial<PreTokenizerSpec> = {}): void {
  for (const n of names) PRE[n] = { patterns, ignoreMerges: false, addBos: false, noBos: false, ...extra };
}
def(['default'], 'default');
def(['llama3', 'llama-v3', 'llama-bpe', 'falcon3', 'falcon-h1', 'pixtral', 'midm-2.0', 'lfm2'], 'llama3', { ignoreMerges: true, addBos: true });
def(['dbrx', 'smaug-bpe'], 'llama3');
def(['glm4', 'chatglm-bpe'], 'llama3', { noBos: true });
def(['deepseek-llm'], 'deepseek-llm');
def(['deepseek-coder'], 'deepseek-coder');
def(['falcon'], 'falcon');
def(['gpt-2', 'phi-2', 'jina-es', 'jina-de', 'gigachat', 'jina-v2-es', 'jina-v2-de', 'a.x-4.0', 'mellum', 'exaone4', 'mpt', 'olmo', 'jais', 'trillion', 'granite-docling'], 'gpt2');
def(['starcoder', 'refact', 'command-r', 'smollm', 'codeshell', 'exaone', 'minerva-7b'], 'starcoder');
def(['qwen2', 'deepseek-r1-qwen', 'kormo', 'megrez', 'stablelm2', 'hunyuan', 'grok-2'], 'qwen2');
def(['poro-chat', 'bloom', 'gpt3-finnish'], 'bloom');
def(['viking'], 'viking');
def(['seed-coder'], 'seed-coder');
def(['bailingmoe', 'bailingmoe2', 'llada-moe'], 'bailingmoe');

export function preTokenizerSpec(pre: string): PreTokenizerSpec {
  const spec = Object.hasOwn(PRE, pre) ? PRE[pre] : undefined;
  if (!spec) {
    throw new UnsupportedError(`tokenizer.ggml.pre '${pre}' is not a supported pre-tokenizer (supported: ${Object.keys(PRE).sort().join(', ')})`);
  }
  return spec;
}

const ASCII_WS = String.raw`\t-\r `;

/** Rewrites `\s` and `\S` (inside and outside character classes) to ASCII whitespace, then compiles with `gu`. */
function compile(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      const n = pattern[i + 1];
      if (n === 's') out += inClass ? ASCII_WS : `[${ASCII_WS}]`;
      else if (n === 'S') {
        if (inClass) throw new Error(`unsupported \\S inside a class in ${pattern}`);
        out += `[^${ASCII_WS}]`;
      } else out += c + (n ?? '');
      i++;
      continue;
    }
    if (c === '[' && !inClass) inClass = true;
    else if (c === ']' && inClass) inClass = false;
    out += c;
  }
  return new RegExp(out, 'gu');
}

const compiled = new Map<PatternSet, RegExp[]>();
function regexesFor(set: PatternSet): RegExp[] {
  let r = compiled.get(set);
  if (!r) {
    r = PATTERNS[set].map(compile);
    compiled.set(set, r);
  }
  return r;
}

/** Non-ASCII White_Space characters (llama.cpp's table), which llama.cpp matches as U+000B. */
const NON_ASCII_WS = /[\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g;

/** Splits `text` into pre-tokens with the pattern list of `spec`. */
export function preTokenize(text: string, spec: PreTokenizerSpec): string[] {
  const regexes = regexesFor(spec.patterns);
  const view = text.replace(NON_ASCII_WS, '\v');
  // Piece boundaries as [start, end) offsets in UTF-16 units (the replacement keeps lengths).
  let starts = [0];
  let ends = [text.length];
  for (const re of regexes) {
    const ns: number[] = [];
    const ne: number[] = [];
    for (let k = 0; k < starts.length; k++) {
      const s = starts[k]!;
      const e = ends[k]!;
      const sub = view.slice(s, e);
      let last = 0;
      re.lastIndex = 0;
      for (const m of sub.matchAll(re)) {
        const at = m.index;
        const len = m[0].length;
        if (len === 0) continue;
        if (at > last) { ns.push(s + last); ne.push(s + at); }
        ns.push(s + at); ne.push(s + at + len);
        last = at + len;
      }
      if (last < sub.length) { ns.push(s + last); ne.push(e); }
    }
    starts = ns;
    ends = ne;
  }
  const out: string[] = new Array<string>(starts.length);
  for (let k = 0; k < starts.length; k++) out[k] = text.slice(starts[k], ends[k]);
  return out;
}
