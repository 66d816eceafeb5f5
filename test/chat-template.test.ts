/** Chat templates: real models' Jinja templates (../shared/models/templates) and the default, rendered and tokenized. */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate, DEFAULT_CHAT_TEMPLATE, OptionError, loadModel } from '../engine/index.js';
import type { Model } from '../engine/index.js';
import { MODELS } from './shared-paths.js';

let model: Model;
beforeAll(async () => { model = await loadModel(join(MODELS, 'stories260K.gguf'), { vocabOnly: true }); });
afterAll(() => model.dispose());

const withTemplate = (file: string) => ChatTemplate.fromModel(
  new Map([['tokenizer.chat_template', readFileSync(join(MODELS, 'templates', file), 'utf8')]]), model.tokenizer);

describe('ChatTemplate', () => {
  it('renders Qwen2.5\'s template (ChatML with its default system prompt)', () => {
    const t = withTemplate('Qwen-Qwen2.5-7B-Instruct.jinja');
    expect(t.isDefault).toBe(false);
    expect(t.render([{ role: 'user', content: 'Hi' }])).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(t.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }], { addGenerationPrompt: false }))
      .toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n');
  });

  it('passes the model\'s BOS text to templates that start with it (Gemma 2), and refusals become OptionErrors', () => {
    const t = withTemplate('google-gemma-2-2b-it.jinja');
    const bos = model.tokenizer.tokenText(model.tokenizer.bos!);
    expect(t.render([{ role: 'user', content: 'Hi' }])).toBe(`${bos}<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n`);
    expect(() => t.render([{ role: 'system', content: 'x' }, { role: 'user', content: 'Hi' }])).toThrow(OptionError);
    expect(() => t.render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }])).toThrow(/alternate/);
  });

  it('encodes a rendered prompt with one BOS whether or not the template wrote it', () => {
    const t = withTemplate('google-gemma-2-2b-it.jinja');
    const ids = t.encode(t.render([{ role: 'user', content: 'Hi' }]));
    expect(model.tokenizer.addBos).toBe(true);
    expect(ids[0]).toBe(model.tokenizer.bos);
    expect(ids[1]).not.toBe(model.tokenizer.bos);
    const d = ChatTemplate.fromModel(new Map(), model.tokenizer);
    const plain = d.encode('user: Hi\nassistant:');
    expect(plain[0]).toBe(model.tokenizer.bos);
    expect(plain.filter((x) => x === model.tokenizer.bos)).toHaveLength(1);
  });

  it('uses "role: text" lines when the model has no template', () => {
    const t = ChatTemplate.fromModel(model.info.metadata, model.tokenizer);
    expect(t.isDefault).toBe(true);
    expect(t.source).toBe(DEFAULT_CHAT_TEMPLATE);
    expect(t.render([{ role: 'system', content: 'S' }, { role: 'user', content: 'Hi' }])).toBe('system: S\nuser: Hi\nassistant:');
    expect(t.stop).toContain('\nuser:');
  });

  it('renders every chat template in ../shared/models/templates that needs no tools', () => {
    // The tool-use variants and function-calling models' templates expect a `tools` list; the server has no tools.
    const files = readdirSync(join(MODELS, 'templates')).filter((f) => f.endsWith('.jinja') && !/tool_use|firefunction|functionary/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const f of files) {
      const out = withTemplate(f).render([{ role: 'user', content: 'What is 2+2?' }]);
      expect(out, f).toContain('What is 2+2?');
    }
  });
});
