/**
 * Tokenizer against llama.cpp: its tokenizer test vectors for five vocab-only GGUFs (add_special=false,
 * parse_special=false), the prompt tokenization (BOS, special parsing) and detokenized bytes of every reference run,
 * streaming decode, special tokens, defaults and metadata errors.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fileSource } from '../engine/adapters/node.js';
import { GGUFFormatError, UnsupportedError } from '../engine/errors.js';
import { readGGUFHeader, type GGUFValue } from '../engine/gguf/reader.js';
import { GGUFTokenizer, StreamDecoder } from '../engine/tokenizer/index.js';
import { MODELS, readReference, referenceFiles, requireShared } from './shared-paths.js';

const VOCABS = ['llama-spm', 'phi-3', 'gpt-2', 'deepseek-llm', 'deepseek-coder'] as const;
const SEPARATOR = '\n__ggml_vocab_test__\n';

const metaCache = new Map<string, ReadonlyMap<string, GGUFValue>>();
async function metadata(path: string): Promise<ReadonlyMap<string, GGUFValue>> {
  let m = metaCache.get(path);
  if (!m) {
    m = (await readGGUFHeader(await fileSource(path))).metadata;
    metaCache.set(path, m);
  }
  return m;
}
async function load(path: string): Promise<GGUFTokenizer> {
  return GGUFTokenizer.fromMetadata(await metadata(path), path);
}
const vocabPath = (name: string): string => join(MODELS, 'vocab', `ggml-vocab-${name}.gguf`);

/** NAME.gguf.inp: every test string is followed by a separator line; NAME.gguf.out: one line of ids per string. */
function readVectors(name: string): Array<{ text: string; ids: number[] }> {
  const inp = readFileSync(`${vocabPath(name)}.inp`, 'utf8');
  const out = readFileSync(`${vocabPath(name)}.out`, 'utf8');
  const texts = inp.split(SEPARATOR);
  expect(texts.pop()).toBe(''); // the file ends with a separator
  const lines = out.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  expect(lines.length).toBe(texts.length);
  return texts.map((text, i) => ({ text, ids: lines[i]!.trim() === '' ? [] : lines[i]!.trim().split(/\s+/).map(Number) }));
}

function hex(bytes: Iterable<number>): string {
  return Buffer.from(Uint8Array.from(bytes)).toString('hex');
}

beforeAll(() => requireShared());

describe('llama.cpp tokenizer test vectors (add_special=false, parse_special=false)', () => {
  for (const name of VOCABS) {
    it(`${name}: every vector matches and decodes back to its text`, async () => {
      const tok = await load(vocabPath(name));
      const vectors = readVectors(name);
      expect(vectors.length).toBe(46);
      const failures: string[] = [];
      for (const [i, v] of vectors.entries()) {
        const got = tok.encode(v.text, { special: false });
        if (JSON.stringify(got) !== JSON.stringify(v.ids)) failures.push(`#${i} ${JSON.stringify(v.text)}: expected ${v.ids.join(' ')}, got ${got.join(' ')}`);
        const back = tok.decode(got);
        if (back !== v.text) failures.push(`#${i} ${JSON.stringify(v.text)}: decodes to ${JSON.stringify(back)}`);
      }
      expect(failures).toEqual([]);
    });
  }

  it('knows each vocabulary kind, pre-tokenizer and BOS default', async () => {
    const spm = await load(vocabPath('llama-spm'));
    expect([spm.kind, spm.pre, spm.vocabSize, spm.bos, spm.eos, spm.addBos, spm.addEos]).toEqual(['spm', undefined, 32000, 1, 2, true, false]);
    const gpt2 = await load(vocabPath('gpt-2'));
    // gpt2 BPE adds no BOS unless the file says so (this one does not).
    expect([gpt2.kind, gpt2.pre, gpt2.vocabSize, gpt2.bos, gpt2.addBos]).toEqual(['bpe', 'gpt-2', 50257, 50256, false]);
    expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
    const ds = await load(vocabPath('deepseek-llm'));
    expect([ds.kind, ds.pre, ds.addBos]).toEqual(['bpe', 'deepseek-llm', true]);
    expect(ds.encode('Hello')[0]).toBe(100000);
  });

  it('builds a 100k-token vocabulary quickly and caches it per metadata map', async () => {
    const meta = await metadata(vocabPath('deepseek-llm'));
    const t0 = performance.now();
    const tok = GGUFTokenizer.fromMetadata(new Map(meta), 'copy');
    const ms = performance.now() - t0;
    expect(tok.vocabSize).toBe(102400);
    expect(ms).toBeLessThan(5000); // about 0.3-0.6 s on a laptop-class core
    expect(GGUFTokenizer.fromMetadata(meta, 'x')).toBe(GGUFTokenizer.fromMetadata(meta, 'y'));
  });
});

describe('reference models (llama.cpp prompts and generations)', () => {
  const files = referenceFiles();

  it('has reference files', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    it(`${file}: prompt ids, token bytes and streamed text`, async () => {
      const ref = readReference(file);
      const tok = await load(join(MODELS, ref.model));
      expect(tok.vocabSize).toBe(ref.n_vocab);
      expect(tok.encode(ref.prompt, { special: true })).toEqual(ref.prompt_ids);
      expect(tok.encode(ref.prompt)).toEqual(ref.prompt_ids); // special defaults to true
      expect(tok.encode(ref.prompt, { special: false })).toEqual(ref.prompt_ids.slice(1));
      expect(tok.decode(ref.prompt_ids)).toBe(ref.prompt);

      const bytes: number[] = [];
      for (const id of ref.greedy_ids) bytes.push(...tok.tokenBytes(id));
      expect(hex(bytes)).toBe(ref.greedy_bytes_hex);

      const expected = new TextDecoder().decode(Buffer.from(ref.greedy_bytes_hex, 'hex'));
      const sd = new StreamDecoder(tok);
      let streamed = '';
      for (const id of ref.greedy_ids) {
        const piece = sd.push(id);
        expect(piece).not.toMatch(/[\ud800-\udbff]$/); // never half a surrogate pair
        streamed += piece;
      }
      streamed += sd.flush();
      expect(streamed).toBe(expected);
      // Generation continues the prompt: its leading space is kept.
      if (ref.greedy_bytes_hex.startsWith('20')) expect(streamed.startsWith(' ')).toBe(true);
    });
  }
});

describe('SPM details', () => {
  it('byte fallback, streaming across byte tokens, and token bytes', async () => {
    const tok = await load(join(MODELS, 'stories260K.gguf'));
    const ids = tok.encode('ł中', { special: false });
    // "▁" then the UTF-8 bytes of ł (C5 82) and 中 (E4 B8 AD) as <0xNN> tokens: neither is a piece.
    expect(ids.map((id) => tok.tokenText(id))).toEqual(['▁', '<0xC5>', '<0x82>', '<0xE4>', '<0xB8>', '<0xAD>']);
    expect(tok.decode(ids)).toBe('ł中');
    const sd = new StreamDecoder(tok);
    expect(ids.map((id) => sd.push(id))).toEqual([' ', '', 'ł', '', '', '中']);
    expect(sd.flush()).toBe('');
    // An incomplete character is held back, then flushed as U+FFFD.
    expect(sd.push(ids[3]!)).toBe('');
    expect(sd.flush()).toBe('\ufffd');
    // é and € are pieces of this vocabulary.
    expect(tok.encode('é€', { special: false }).map((id) => tok.tokenText(id))).toEqual(['▁', 'é', '€']);

    expect(hex(tok.tokenBytes(ids[1]!))).toBe('c5');
    expect(hex(tok.tokenBytes(ids[0]!))).toBe('20');
    expect(tok.tokenBytes(1).length).toBe(0); // <s>: control
    expect(tok.tokenBytes(0).length).toBe(0); // <unk>
    const there = tok.encode('Once upon a time there', { special: false }).at(-1)!;
    expect(tok.tokenText(there)).toBe('▁there');
    expect(new StreamDecoder(tok).push(there)).toBe(' there');
    expect(() => tok.tokenBytes(512)).toThrow(/outside/);
  });

  it('parses special-token text only when asked, with a space prefix after each special token', async () => {
    const tok = await load(join(MODELS, 'stories260K.gguf'));
    const hello = tok.encode('Hello', { special: false });
    expect(tok.encode('<s>Hello</s>', { special: true })).toEqual([1, 1, ...hello, 2]);
    const plain = tok.encode('<s>Hello', { special: false });
    expect(plain).not.toContain(1);
    expect(tok.decode(plain)).toBe('<s>Hello');
    expect(tok.decode([1, 1, ...hello, 2], { skipSpecial: false })).toBe('<s><s>Hello</s>');
    expect(tok.decode([1, 1, ...hello, 2])).toBe('Hello');
    expect(tok.encode('')).toEqual([1]);
    expect(tok.encode('', { special: false })).toEqual([]);
    expect(tok.isEog(2)).toBe(true);
    expect(tok.isEog(1)).toBe(false);
  });

  it('character vocabulary without byte tokens: unknown characters become unk', async () => {
    const tok = await load(join(MODELS, 'babyllama-tok105.gguf'));
    expect(tok.vocabSize).toBe(105);
    const ids = tok.encode('Zoë', { special: false });
    expect(ids.map((id) => tok.tokenText(id))).toEqual(['▁', 'Z', 'o', '<unk>']);
    expect(tok.decode(ids)).toBe('Zo');
  });

  it('Phi-3: control tokens, EOT detection and its whitespace-stripping special tokens', async () => {
    const tok = await load(vocabPath('phi-3'));
    const ids = tok.encode('<|user|>\nHello<|end|>\n<|assistant|>', { special: true });
    expect(ids.map((id) => tok.tokenText(id))).toEqual(['<s>', '<|user|>', '▁Hello', '<|end|>', '<|assistant|>']);
    expect(tok.encode('<|end|>', { special: false })).not.toContain(32007);
    expect([tok.isEog(32000), tok.isEog(32007), tok.isEog(32010)]).toEqual([true, true, false]);
    expect(tok.eot).toBe(32007);
    // "</s>" is user-defined in this vocabulary: llama.cpp matches it even without special parsing.
    expect(tok.encode('a</s> b', { special: false }).map((id) => tok.tokenText(id))).toEqual(['▁a', '</s>', '▁b']);
  });

  it('merging word by word gives the same ids as merging the whole text', async () => {
    // A piece with "▁" after another character forces whole-text merging; give one to a CJK piece (the last).
    const meta = await metadata(vocabPath('llama-spm'));
    const tokens = [...(meta.get('tokenizer.ggml.tokens') as string[])];
    const removed = tokens[31999]!;
    expect(removed).toMatch(/^\p{Script=Han}$/u);
    tokens[31999] = 'x▁y▁';
    const whole = GGUFTokenizer.fromMetadata(new Map(meta).set('tokenizer.ggml.tokens', tokens), 'whole');
    const wordwise = await load(vocabPath('llama-spm'));
    const texts = [...readVectors('llama-spm').map((v) => v.text), 'Once upon a time,   there  was\n\n a little girl. '.repeat(20)];
    for (const t of texts.filter((x) => !x.includes(removed))) expect(whole.encode(t, { special: false }), JSON.stringify(t)).toEqual(wordwise.encode(t, { special: false }));
  });

  it('tokenizer.ggml.add_space_prefix = false turns the space prefix off', async () => {
    const meta = new Map(await metadata(join(MODELS, 'stories260K.gguf')));
    meta.set('tokenizer.ggml.add_space_prefix', false);
    const tok = GGUFTokenizer.fromMetadata(meta, 'x');
    expect(tok.addSpacePrefix).toBe(false);
    const ids = tok.encode('Once', { special: false });
    expect(tok.tokenText(ids[0]!).startsWith('▁')).toBe(false);
    expect(tok.decode(ids)).toBe('Once');
  });
});

describe('byte-level BPE details', () => {
  it('special tokens, byte-level bytes and user-defined tokens', async () => {
    const gpt2 = await load(vocabPath('gpt-2'));
    expect(gpt2.encode('Hello<|endoftext|>', { special: true })).toEqual([15496, 50256]);
    expect(gpt2.encode('Hello<|endoftext|>', { special: false })).not.toContain(50256);
    expect(gpt2.isEog(50256)).toBe(true);
    const world = gpt2.encode(' world', { special: false });
    expect(world.length).toBe(1);
    expect(gpt2.tokenText(world[0]!)).toBe('Ġworld');
    expect(hex(gpt2.tokenBytes(world[0]!))).toBe(hex(new TextEncoder().encode(' world')));
    // A character split over byte-level tokens streams whole.
    const emoji = gpt2.encode('🦙', { special: false });
    expect(emoji.length).toBeGreaterThan(1);
    const sd = new StreamDecoder(gpt2);
    expect(emoji.map((id) => sd.push(id)).join('')).toBe('🦙');
    const partial = new StreamDecoder(gpt2);
    expect(emoji.slice(0, -1).map((id) => partial.push(id)).join('')).toBe('');
    expect(partial.flush()).toBe('\ufffd');

    const coder = await load(vocabPath('deepseek-coder'));
    // User-defined tokens of type 4 ("ö" is one) are matched in plain text too, as llama.cpp does.
    expect(coder.encode('ö', { special: false })).toEqual([32011]);
    expect(coder.decode([32011])).toBe('ö');
    expect(coder.encode('<｜begin▁of▁sentence｜>x', { special: true }).slice(0, 2)).toEqual([32013, 32013]);
  });
});

describe('metadata errors', () => {
  async function withField(key: string, value: GGUFValue | undefined, base = vocabPath('gpt-2')): Promise<() => GGUFTokenizer> {
    const meta = new Map(await metadata(base));
    if (value === undefined) meta.delete(key);
    else meta.set(key, value);
    return () => GGUFTokenizer.fromMetadata(meta, 'test.gguf');
  }

  it('refuses unknown tokenizer models and pre-tokenizers, naming them', async () => {
    const pre = await withField('tokenizer.ggml.pre', 'no-such-pre');
    expect(pre).toThrow(UnsupportedError);
    expect(pre).toThrow(/no-such-pre/);
    const model = await withField('tokenizer.ggml.model', 't5');
    expect(model).toThrow(UnsupportedError);
    expect(model).toThrow(/'t5'/);
  });

  it('reports inconsistent metadata as GGUFFormatError naming the field', async () => {
    const spm = join(MODELS, 'stories260K.gguf');
    const checks: Array<[string, GGUFValue | undefined, string]> = [
      ['tokenizer.ggml.scores', new Float32Array(10), spm],
      ['tokenizer.ggml.token_type', new Int32Array(511), spm],
      ['tokenizer.ggml.bos_token_id', 512, spm],
      ['tokenizer.ggml.tokens', undefined, spm],
      ['tokenizer.ggml.model', undefined, spm],
      ['tokenizer.ggml.merges', undefined, vocabPath('gpt-2')],
      ['tokenizer.ggml.merges', ['nospace'], vocabPath('gpt-2')],
    ];
    for (const [key, value, base] of checks) {
      const build = await withField(key, value, base);
      expect(build, key).toThrow(GGUFFormatError);
      try {
        build();
      } catch (e) {
        expect((e as GGUFFormatError).field).toBe(key);
      }
    }
    // 0xFFFFFFFF means "none" and is not an error.
    const none = await withField('tokenizer.ggml.padding_token_id', 0xffffffff, spm);
    expect(none().vocabSize).toBe(512);
  });
});
