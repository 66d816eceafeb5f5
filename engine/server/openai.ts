/**
 * An OpenAI-compatible HTTP API over one loaded model, as a web-standard `(Request) => Promise<Response>` handler:
 * Node (engine/adapters/node-http.ts), Deno.serve and Bun.serve all run it as it is.
 *
 *   GET  /health                  {"status":"ok", activeRequests, waiting, sessions}
 *   GET  /v1/models               the loaded model
 *   POST /v1/completions          prompt (text or token ids) -> text
 *   POST /v1/chat/completions     messages -> the model's chat template -> text
 *
 * Both POST endpoints stream as server-sent events with `"stream": true` (ending with `data: [DONE]`). Each request
 * gets its own Session (at most `parallel` at once, the others wait in line); all of them take turns on the model
 * one token step at a time (TurnQueue). A client that
 * goes away (request signal aborted, or the response stream cancelled) stops its generation and frees its session.
 */
import { BmcError, OptionError } from '../errors.js';
import type { Model } from '../model.js';
import type { GenerateOptions, Generation, StopReason } from '../generate/generate.js';
import { ChatTemplate } from '../chat/template.js';
import type { ChatMessage } from '../chat/template.js';
import { Slots, TurnQueue } from './turns.js';
import { RequestError, onlyNeutral, optBool, optInt, optNumber, optString, stopStrings } from './validate.js';
import type { Body } from './validate.js';

export interface ServerOptions {
  /** The id /v1/models reports and responses carry. Default: the model's general.name, else "bmc-llm". */
  modelId?: string;
  /** A Jinja chat template to use instead of the model's own. */
  chatTemplate?: string;
  /** Largest request body accepted, in bytes. Default 4 MiB. */
  maxBodyBytes?: number;
  /** Generations running at once; later requests wait for a slot. Default 4. */
  parallel?: number;
  /** Called with one line per finished request (method, path, status, tokens). */
  log?: (line: string) => void;
}

export interface OpenAIServer {
  /** The request handler. */
  fetch(request: Request): Promise<Response>;
  /** Requests being answered now. */
  readonly activeRequests: number;
}

/** The request field behind each engine option, for errors the engine raises itself. */
const FIELD: Record<string, string> = {
  temperature: 'temperature', topP: 'top_p', topK: 'top_k', minP: 'min_p', repeatPenalty: 'repeat_penalty', seed: 'seed', maxTokens: 'max_tokens', stop: 'stop',
};

const CORS = { 'access-control-allow-origin': '*', 'access-control-allow-headers': 'content-type, authorization' };

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json', ...CORS } });
}

function errorResponse(e: RequestError): Response {
  return json({ error: { message: e.message, type: e.type, param: e.param, code: null } }, e.status);
}

/** OpenAI's finish_reason for a stop reason (context: the model ran out of room, which OpenAI calls length). */
function finishReason(r: StopReason | undefined): 'stop' | 'length' | null {
  return r === 'eos' || r === 'stop' ? 'stop' : r === 'length' || r === 'context' ? 'length' : null;
}

interface Job {
  kind: 'completion' | 'chat';
  ids: number[];
  gen: GenerateOptions;
  stream: boolean;
  includeUsage: boolean;
}

export function createOpenAIServer(model: Model, options: ServerOptions = {}): OpenAIServer {
  const turns = new TurnQueue();
  const parallel = options.parallel ?? 4;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 1024) throw new OptionError('parallel', `${String(parallel)} is not an integer in [1, 1024]`);
  const slots = new Slots(parallel);
  const template = ChatTemplate.fromModel(model.info.metadata, model.tokenizer, options.chatTemplate);
  const modelId = options.modelId ?? model.info.name ?? 'bmc-llm';
  const maxBody = options.maxBodyBytes ?? 4 << 20;
  const created = Math.floor(Date.now() / 1000);
  const contextLength = model.info.contextLength ?? 0;
  let active = 0;

  async function readBody(request: Request): Promise<Body> {
    if (!request.body) throw new RequestError(null, 'the request has no body (expected a JSON object)');
    const reader = request.body.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBody) {
        await reader.cancel();
        throw new RequestError(null, `the request body is larger than ${maxBody} bytes`, 413);
      }
      parts.push(value);
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const p of parts) { bytes.set(p, at); at += p.byteLength; }
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new RequestError(null, `the request body is not valid JSON: ${(e as Error).message}`);
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RequestError(null, 'the request body must be a JSON object');
    return body as Body;
  }

  /** Sampling and length options common to both endpoints, with OpenAI's defaults. */
  function generateOptions(b: Body, maxTokens: number): GenerateOptions {
    onlyNeutral(b);
    optString(b, 'model');
    optString(b, 'user');
    return {
      maxTokens,
      temperature: optNumber(b, 'temperature', 0, 2) ?? 1,
      topP: optNumber(b, 'top_p', Number.MIN_VALUE, 1) ?? 1,
      topK: optInt(b, 'top_k', 0, 1 << 20) ?? 0,
      minP: optNumber(b, 'min_p', 0, 1) ?? 0,
      repeatPenalty: optNumber(b, 'repeat_penalty', 0.01, 100),
      seed: optInt(b, 'seed', 0, 0xffffffff),
      stop: stopStrings(b),
      ignoreEos: optBool(b, 'ignore_eos') ?? false,
    };
  }

  function streamOptions(b: Body): { stream: boolean; includeUsage: boolean } {
    const stream = optBool(b, 'stream') ?? false;
    const so = b.stream_options;
    if (so !== undefined && so !== null) {
      if (!stream) throw new RequestError('stream_options', 'stream_options needs "stream": true');
      if (typeof so !== 'object') throw new RequestError('stream_options', 'stream_options must be an object');
      optBool(so as Body, 'include_usage');
    }
    return { stream, includeUsage: (so as { include_usage?: boolean } | undefined)?.include_usage === true };
  }

  /** Room left in the context after the prompt, checked so that the client gets a 400 and not a truncated reply. */
  function room(ids: number[], param: string): number {
    if (ids.length === 0) throw new RequestError(param, `${param} has no tokens`);
    const left = contextLength - ids.length;
    if (left < 1) throw new RequestError(param, `${param} has ${ids.length} tokens, which leaves no room in the context of ${contextLength}`);
    return left;
  }

  function completionJob(b: Body): Job {
    const p = b.prompt;
    let ids: number[];
    if (typeof p === 'string') ids = model.tokenize(p, { special: true });
    else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') ids = model.tokenize(p[0], { special: true });
    else if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0 && t < model.tokenizer.vocabSize)) ids = p as number[];
    else throw new RequestError('prompt', `prompt must be a string or an array of token ids in [0, ${model.tokenizer.vocabSize}) (one prompt per request)`);
    const left = room(ids, 'prompt');
    const maxTokens = optInt(b, 'max_tokens', 0, 1 << 24) ?? 16;
    return { kind: 'completion', ids, gen: generateOptions(b, Math.min(maxTokens, left)), ...streamOptions(b) };
  }

  function chatJob(b: Body): Job {
    const raw = b.messages;
    if (!Array.isArray(raw) || raw.length === 0) throw new RequestError('messages', 'messages must be a non-empty array of {role, content}');
    const messages: ChatMessage[] = raw.map((m, i) => {
      const param = `messages[${i}]`;
      if (m === null || typeof m !== 'object') throw new RequestError(param, `${param} must be an object with role and content`);
      const { role, content } = m as { role?: unknown; content?: unknown };
      if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'developer') {
        throw new RequestError(`${param}.role`, `${param}.role must be "system", "developer", "user" or "assistant", got ${JSON.stringify(role)}`);
      }
      let text: string;
      if (typeof content === 'string') text = content;
      else if (Array.isArray(content) && content.every((c) => c && c.type === 'text' && typeof c.text === 'string')) text = content.map((c) => c.text).join('');
      else throw new RequestError(`${param}.content`, `${param}.content must be a string or an array of text parts`);
      return { role: role === 'developer' ? 'system' : role, content: text };
    });
    let ids: number[];
    try {
      ids = template.encode(template.render(messages));
    } catch (e) {
      if (e instanceof OptionError) throw new RequestError('messages', e.message);
      throw e;
    }
    const left = room(ids, 'messages');
    const maxTokens = optInt(b, 'max_completion_tokens', 0, 1 << 24) ?? optInt(b, 'max_tokens', 0, 1 << 24) ?? left;
    const gen = generateOptions(b, Math.min(maxTokens, left));
    gen.stop = [...gen.stop!, ...template.stop];
    return { kind: 'chat', ids, gen, ...streamOptions(b) };
  }

  function run(job: Job, signal: AbortSignal) {
    return model.generate(job.ids, { ...job.gen, signal, schedule: turns.schedule });
  }

  function usage(job: Job, generated: number) {
    return { prompt_tokens: job.ids.length, completion_tokens: generated, total_tokens: job.ids.length + generated };
  }

  async function answer(job: Job, requestSignal: AbortSignal): Promise<Response> {
    const id = `${job.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID().replace(/-/g, '')}`;
    const object = job.kind === 'chat' ? 'chat.completion' : 'text_completion';
    const base = () => ({ id, object, created: Math.floor(Date.now() / 1000), model: modelId });
    let release: () => void;
    try {
      release = await slots.acquire(requestSignal);
    } catch {
      active--;
      throw new RequestError(null, 'the client went away while waiting', 499);
    }
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    requestSignal.addEventListener('abort', onAbort, { once: true });
    const done = (gen?: Generation) => {
      requestSignal.removeEventListener('abort', onAbort);
      release();
      active--;
      const s = gen?.stats;
      options.log?.(`${id} ${job.kind}${job.stream ? ' stream' : ''}: prompt ${job.ids.length} tokens, completion ${s?.generatedTokens ?? 0} tokens, stopped by ${s?.stopReason ?? (ac.signal.aborted ? 'abort' : 'error')}`);
    };

    if (!job.stream) {
      let gen: Generation | undefined;
      try {
        gen = run(job, ac.signal);
        const text = await gen.text();
        const finish = finishReason(gen.stats.stopReason);
        const choice = job.kind === 'chat'
          ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }
          : { index: 0, text, logprobs: null, finish_reason: finish };
        return json({ ...base(), choices: [choice], usage: usage(job, gen.stats.generatedTokens) });
      } finally {
        done(gen);
      }
    }

    const enc = new TextEncoder();
    const event = (v: unknown) => enc.encode(`data: ${JSON.stringify(v)}\n\n`);
    const chunkObject = job.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (delta: string | { role?: string; content?: string }, finish: string | null) => ({
      id, object: chunkObject, created: Math.floor(Date.now() / 1000), model: modelId,
      choices: [job.kind === 'chat'
        ? { index: 0, delta: typeof delta === 'string' ? { content: delta } : delta, logprobs: null, finish_reason: finish }
        : { index: 0, text: delta as string, logprobs: null, finish_reason: finish }],
    });
    let cancelled = false;
    let gen: Generation;
    try {
      gen = run(job, ac.signal); // option errors surface here, before any byte is sent, as a 400
    } catch (e) {
      done();
      throw e;
    }
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        void (async () => {
          try {
            if (job.kind === 'chat') controller.enqueue(event(chunk({ role: 'assistant', content: '' }, null)));
            for await (const piece of gen) {
              if (cancelled) break;
              if (piece.text) controller.enqueue(event(chunk(piece.text, null)));
            }
            if (cancelled) return;
            controller.enqueue(event(chunk(job.kind === 'chat' ? {} : '', finishReason(gen.stats.stopReason))));
            if (job.includeUsage) controller.enqueue(event({ ...chunk('', null), choices: [], usage: usage(job, gen.stats.generatedTokens) }));
            controller.enqueue(enc.encode('data: [DONE]\n\n'));
            controller.close();
          } catch (e) {
            // Headers are gone: the error travels as an event, as OpenAI's API does mid-stream.
            if (!cancelled) {
              const message = e instanceof BmcError ? e.message : 'internal error';
              if (!(e instanceof BmcError)) options.log?.(`internal error: ${(e as Error)?.stack ?? String(e)}`);
              controller.enqueue(event({ error: { message, type: 'server_error', param: null, code: null } }));
              controller.close();
            }
          } finally {
            done(gen);
          }
        })();
      },
      cancel() {
        cancelled = true;
        ac.abort();
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...CORS } });
  }

  async function route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (request.method === 'OPTIONS') return new Response(null, { status: 204, headers: { ...CORS, 'access-control-allow-methods': 'GET, POST, OPTIONS' } });
    const endpoints: Record<string, string> = {
      '/health': 'GET', '/v1/models': 'GET', '/v1/completions': 'POST', '/v1/chat/completions': 'POST',
    };
    const method = endpoints[path];
    if (!method) throw new RequestError(null, `no endpoint ${path} (try /v1/models, /v1/completions, /v1/chat/completions, /health)`, 404, 'not_found_error');
    if (request.method !== method) throw new RequestError(null, `${path} takes ${method}, not ${request.method}`, 405);
    if (path === '/health') return json({ status: 'ok', model: modelId, activeRequests: active, waiting: slots.waiting, sessions: model.activeSessions, queuedSteps: turns.queued });
    if (path === '/v1/models') return json({ object: 'list', data: [{ id: modelId, object: 'model', created, owned_by: 'bmc-llm' }] });
    const body = await readBody(request);
    let job: Job;
    try {
      job = path === '/v1/completions' ? completionJob(body) : chatJob(body);
    } catch (e) {
      // The engine's own checks of sampling options name the engine's option; report the request's field instead.
      if (e instanceof OptionError) throw new RequestError(FIELD[e.option] ?? null, e.message);
      throw e;
    }
    active++;
    return answer(job, request.signal);
  }

  return {
    async fetch(request: Request): Promise<Response> {
      try {
        return await route(request);
      } catch (e) {
        if (e instanceof RequestError) return errorResponse(e);
        if (e instanceof OptionError) return errorResponse(new RequestError(FIELD[e.option] ?? e.option, e.message));
        options.log?.(`internal error: ${(e as Error)?.stack ?? String(e)}`);
        return errorResponse(new RequestError(null, e instanceof BmcError ? e.message : 'internal error', 500, 'server_error'));
      }
    },
    get activeRequests() {
      return active;
    },
  };
}
