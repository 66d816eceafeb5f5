/** Library API: sessions, KV policies, generation options, sampling reproducibility, dispose, option errors. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, OptionError, DisposedError, OutOfMemoryError, UnsupportedError, GGUFFormatError } from '../engine/index.js';
import type { Model } from '../engine/index.js';
import { Sampler, resolveSampling, topKIds } from '../engine/generate/sampling.js';
import { StopMatcher } from '../engine/generate/stop.js';
import { MODELS, readReference } from './shared-paths.js';
import { iq4nlTinyLlama, retype } from './retype.js';
import { makeTinyLlama } from '../engine/gguf/synth.js';
import { GGMLType } from '../engine/gguf/types.js';

const STORIES = join(MODELS, 'stories260K.gguf');

describe('stories260K through the library API', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(STORIES);
  });
  afterAll(() => model.dispose());

  it('exposes info and tokenizes like llama.cpp', () => {
    expect(model.info.architecture).toBe('llama');
    expect(model.info.hparams?.nKVHeads).toBe(4);
    expect(model.info.tensors.length).toBe(48);
    const ref = readReference('stories260K.p2.json');
    expect(model.tokenize(ref.prompt, { special: true })).toEqual(ref.prompt_ids);
    expect(model.tokenize(ref.prompt)).toEqual(ref.prompt_ids.slice(1));
    expect(model.detokenize(model.tokenize(ref.prompt))).toBe(ref.prompt);
  });

  it('session.eval: last row equals the matching row of all; chunked feeding equals one call; reset restarts', async () => {
    const ref = readReference('stories260K.p3.json');
    const ids = ref.prompt_ids;
    const V = ref.n_vocab;
    const a = model.createSession();
    const all = await a.eval(ids, { logits: 'all' });
    expect(all.length).toBe(ids.length * V);
    expect(a.length).toBe(ids.length);
    const b = model.createSession();
    let last = new Float32Array();
    for (let i = 0; i < ids.length; i += 7) last = await b.eval(ids.slice(i, i + 7));
    expect(Array.from(last)).toEqual(Array.from(all.subarray((ids.length - 1) * V)));
    b.reset();
    expect(b.length).toBe(0);
    const again = await b.eval(ids.slice(0, 3), { logits: 'all' });
    expect(Array.from(again)).toEqual(Array.from(all.subarray(0, 3 * V)));
    a.dispose();
    b.dispose();
  });

  it('every KV policy gives exactly the same logits', async () => {
    const ref = readReference('stories260K.p3.json');
    const ids = [...ref.prompt_ids, ...ref.greedy_ids.slice(0, -1)];
    const outs: Float32Array[] = [];
    for (const kv of [{ policy: 'static' as const }, { policy: 'concat' as const }, { policy: 'bmc' as const, r: 5 }]) {
      const m = await loadModel(STORIES, { kv, contextLength: 512, batchSize: 16 });
      const s = m.createSession();
      // Mixed feeding: a prefill chunk, then token by token, so that growth happens in both modes.
      const first = await s.eval(ids.slice(0, 40), { logits: 'all' });
      const rest: number[] = [];
      for (let i = 40; i < ids.length; i++) rest.push(...(await s.eval([ids[i]!])));
      outs.push(Float32Array.from([...first, ...rest]));
      const st = s.kvStats();
      if (kv.policy === 'concat') expect(st.capacity).toBe(ids.length);
      if (kv.policy === 'static') expect(st.capacity).toBe(512);
      if (kv.policy === 'bmc') expect(st.capacity).toBeLessThanOrEqual(ids.length + 5);
      m.dispose();
    }
    expect(Array.from(outs[1]!)).toEqual(Array.from(outs[0]!));
    expect(Array.from(outs[2]!)).toEqual(Array.from(outs[0]!));
  });

  it('generate: greedy is deterministic, seeds reproduce, stop strings cut, maxTokens bounds', async () => {
    const g = async (opts: object) => {
      const gen = model.generate('Once upon a time', opts);
      const pieces = [];
      for await (const p of gen) pieces.push(p);
      return { text: pieces.map((p) => p.text).join(''), tokens: pieces.map((p) => p.token), stats: gen.stats };
    };
    const a = await g({ temperature: 0, maxTokens: 20 });
    expect(a.tokens.length).toBe(20);
    expect(a.stats.stopReason).toBe('length');
    expect(a.text.startsWith(', there was a little girl')).toBe(true);
    const s1 = await g({ temperature: 1, seed: 42, maxTokens: 30 });
    const s2 = await g({ temperature: 1, seed: 42, maxTokens: 30 });
    const s3 = await g({ temperature: 1, seed: 43, maxTokens: 30 });
    expect(s2.tokens).toEqual(s1.tokens);
    expect(s3.tokens).not.toEqual(s1.tokens);
    const st = await g({ temperature: 0, maxTokens: 60, stop: ['Lily'] });
    expect(st.stats.stopReason).toBe('stop');
    expect(st.text).toBe(', there was a little girl named ');
  });

  it('generate honours an AbortSignal', async () => {
    const ac = new AbortController();
    const gen = model.generate('Once upon a time', { temperature: 0, maxTokens: 200, ignoreEos: true, signal: ac.signal });
    let n = 0;
    for await (const _ of gen) {
      if (++n === 5) ac.abort();
    }
    expect(n).toBe(5);
    expect(gen.stats.stopReason).toBe('abort');
  });

  it('rejects bad options with errors naming them', async () => {
    expect(() => model.generate('x', { temperature: -1 })).toThrow(/temperature/);
    expect(() => model.generate('x', { topP: 2 })).toThrow(OptionError);
    expect(() => model.generate('x', { maxTokens: 1.5 })).toThrow(/maxTokens/);
    expect(() => model.generate('x', { stop: [''] })).toThrow(/stop/);
    await expect(loadModel(STORIES, { contextLength: 0 })).rejects.toThrow(/contextLength/);
    await expect(loadModel(STORIES, { kv: { policy: 'nope' as 'bmc' } })).rejects.toThrow(/kv.policy/);
    await expect(loadModel(STORIES, { memoryLimit: 1 << 20 })).rejects.toBeInstanceOf(OutOfMemoryError);
    await expect(loadModel(join(MODELS, 'missing.gguf'))).rejects.toThrow(/no such file/);
    const iq = loadModel(iq4nlTinyLlama());
    await expect(iq).rejects.toBeInstanceOf(UnsupportedError);
    await expect(iq).rejects.toThrow(/tensor "blk\.0\.ffn_down\.weight" has type IQ4_NL/);
    // A K-quant row must hold whole 256-value super-blocks: a Q4_K tensor of 288 columns is not valid GGUF.
    const q4k = retype(makeTinyLlama({ type: 'Q4_0', dim: 288, heads: 4, ffn: 256, layers: 1 }), 'blk.0.attn_q.weight', GGMLType.Q4_K);
    await expect(loadModel(q4k)).rejects.toBeInstanceOf(GGUFFormatError);
    await expect(loadModel(q4k)).rejects.toThrow(/288 is not a multiple of the Q4_K block size 256/);
    const s = model.createSession();
    await expect(s.eval([1, 99999])).rejects.toThrow(/outside the vocabulary/);
    await expect(s.eval([])).rejects.toThrow(OptionError);
  });

  it('refuses a context overflow with a clear error', async () => {
    const m = await loadModel(STORIES, { contextLength: 8 });
    const s = m.createSession();
    await s.eval([1, 2, 3, 4, 5]);
    await expect(s.eval([1, 2, 3, 4])).rejects.toThrow(/context length 8/);
    m.dispose();
  });
});

describe('loading from every kind of source', () => {
  it('path, bytes, ArrayBuffer, ReadableStream and Response give the same logits', async () => {
    const bytes = readFileSync(STORIES);
    const sources = [
      STORIES,
      new Uint8Array(bytes),
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      new Blob([bytes]).stream(),
      new Response(new Blob([bytes])),
    ];
    let first: number[] | undefined;
    for (const src of sources) {
      const m = await loadModel(src as never);
      const s = m.createSession();
      const out = Array.from(await s.eval([1, 403, 407]));
      if (first) expect(out).toEqual(first);
      else first = out;
      m.dispose();
    }
  });

  it('vocabOnly loads the tokenizer of a vocab-only GGUF and refuses sessions', async () => {
    const m = await loadModel(join(MODELS, 'vocab/ggml-vocab-llama-spm.gguf'), { vocabOnly: true });
    expect(m.tokenize('Hello world')).toEqual([15043, 3186]);
    expect(() => m.createSession()).toThrow(/vocabOnly/);
    m.dispose();
    expect(() => m.tokenize('x')).toThrow(DisposedError);
  });

  it('a file that is not GGUF is a GGUFFormatError naming the magic', async () => {
    await expect(loadModel(new TextEncoder().encode('hello, this is not a model file'))).rejects.toThrow(GGUFFormatError);
    await expect(loadModel(new TextEncoder().encode('hello, this is not a model file'))).rejects.toThrow(/magic/);
  });
});

describe('dispose returns the arena', () => {
  it('load, generate and dispose many times: bytes in use return to where they started', async () => {
    const m0 = await loadModel(STORIES);
    const base = m0.memoryStats()!;
    m0.dispose();
    for (let i = 0; i < 5; i++) {
      const m = await loadModel(STORIES);
      await m.generate('Once upon a time', { maxTokens: 10, seed: i }).text();
      const stats = m.memoryStats()!;
      expect(stats.bytesInUse).toBe(base.bytesInUse);
      m.dispose();
    }
  });

  it('sessions hold their KV until disposed; dispose of the model frees them', async () => {
    const m = await loadModel(STORIES);
    const before = m.memoryStats()!.bytesInUse;
    const s = m.createSession();
    await s.eval([1, 403, 407, 261, 378]);
    expect(m.memoryStats()!.bytesInUse).toBeGreaterThan(before);
    s.dispose();
    expect(m.memoryStats()!.bytesInUse).toBe(before);
    m.dispose();
  });
});

describe('sampling', () => {
  it('topKIds finds the k largest', () => {
    const l = Float32Array.from([0.1, 5, -2, 3, 3, 9, 0]);
    expect(topKIds(l, 3).sort()).toEqual([1, 3, 5]);
  });
  it('temperature 0 is argmax; penalties lower repeated tokens', () => {
    const s = new Sampler(resolveSampling({ temperature: 0, repeatPenalty: 1 }));
    expect(s.sample(Float32Array.from([1, 3, 2]), [])).toBe(1);
    const p = new Sampler(resolveSampling({ temperature: 0, repeatPenalty: 2 }));
    expect(p.sample(Float32Array.from([1, 3, 2]), [1])).toBe(2);
  });
  it('sampled frequencies follow the softmax', () => {
    const s = new Sampler(resolveSampling({ temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, seed: 7 }));
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    const counts = [0, 0, 0];
    const N = 20000;
    for (let i = 0; i < N; i++) counts[s.sample(logits, [])]!++;
    expect(counts[0]! / N).toBeCloseTo(0.5, 1);
    expect(counts[1]! / N).toBeCloseTo(0.3, 1);
    expect(counts[2]! / N).toBeCloseTo(0.2, 1);
  });
  it('top-p and min-p cut the tail', () => {
    const logits = Float32Array.from([Math.log(0.6), Math.log(0.3), Math.log(0.1)]);
    const s = new Sampler(resolveSampling({ temperature: 1, topK: 0, topP: 0.8, minP: 0, repeatPenalty: 1, seed: 1 }));
    const m = new Sampler(resolveSampling({ temperature: 1, topK: 0, topP: 1, minP: 0.4, repeatPenalty: 1, seed: 1 }));
    for (let i = 0; i < 2000; i++) {
      expect(s.sample(logits, [])).not.toBe(2);
      expect(m.sample(logits, [])).not.toBe(2);
    }
  });
});

describe('stop strings', () => {
  it('holds back possible prefixes and cuts at the match', () => {
    const m = new StopMatcher(['END', 'xyz']);
    expect(m.push('abc E')).toEqual({ text: 'abc ', stopped: false });
    expect(m.push('N')).toEqual({ text: '', stopped: false });
    expect(m.push('x')).toEqual({ text: 'EN', stopped: false });
    expect(m.push('yzzz')).toEqual({ text: '', stopped: true });
  });
});
