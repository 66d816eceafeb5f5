// bmc-llm on Cloudflare Workers: one model per isolate, text streamed over HTTP as it is generated.
//
//   GET  /?prompt=Once%20upon%20a%20time&n=64&temp=0     -> text/plain, streamed
//   POST /  {"prompt": "...", "maxTokens": 64, "temperature": 0.8, "seed": 1}
//   GET  /info                                           -> JSON: model, kernel build, threads, arena bytes
//
// Workers refuse to compile WebAssembly from bytes at run time, so the kernels come in as a wasm module import
// (compiled when the Worker is deployed) and go to loadModel as `wasmModule`. The model comes from a binding:
// MODELS (an R2 bucket, or a service/fetcher) with key MODEL_FILE, or from the URL in MODEL_URL.
import { loadModel, BmcError, OptionError } from 'bmc-llm';
import kernels from 'bmc-llm/wasm/kernels-relaxed.wasm'; // relaxed SIMD: Workers run a current V8

// The isolate has 128 MB for everything: the arena (weights + KV cache + scratch) gets at most 64 MB.
const LOAD_OPTIONS = { wasmModule: kernels, threads: 1, memoryLimit: 64 << 20, contextLength: 512 };

let loading; // Promise<Model>, shared by every request this isolate serves

async function modelSource(env) {
  const key = env.MODEL_FILE ?? 'stories260K.gguf';
  if (env.MODELS?.get && !env.MODELS.fetch) { // R2 bucket
    const obj = await env.MODELS.get(key);
    if (!obj) throw new Error(`${key}: not in the MODELS bucket`);
    return new Response(obj.body, { headers: { 'content-length': String(obj.size) } });
  }
  if (env.MODELS?.fetch) return env.MODELS.fetch(`http://models/${encodeURIComponent(key)}`); // service binding
  if (env.MODEL_URL) return env.MODEL_URL;
  throw new Error('no model: bind MODELS (R2 bucket or service) or set MODEL_URL');
}

function model(env) {
  loading ??= modelSource(env).then((src) => loadModel(src, LOAD_OPTIONS)).catch((e) => {
    loading = undefined; // a failed load is retried by the next request
    throw e;
  });
  return loading;
}

async function readRequest(request) {
  const url = new URL(request.url);
  if (request.method === 'POST') {
    const b = await request.json();
    return { prompt: b.prompt, maxTokens: b.maxTokens, temperature: b.temperature, seed: b.seed };
  }
  const num = (k) => (url.searchParams.has(k) ? Number(url.searchParams.get(k)) : undefined);
  return { prompt: url.searchParams.get('prompt') ?? 'Once upon a time', maxTokens: num('n'), temperature: num('temp'), seed: num('seed') };
}

const json = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

export default {
  async fetch(request, env) {
    try {
      const m = await model(env);
      if (new URL(request.url).pathname === '/info') {
        const { file, architecture, simd, threads, contextLength } = m.info;
        return json({ file, architecture, simd, threads, contextLength, memoryLimit: LOAD_OPTIONS.memoryLimit, arena: m.memoryStats() });
      }
      const { prompt, ...opts } = await readRequest(request);
      if (typeof prompt !== 'string' || prompt === '') return json({ error: 'prompt: expected a non-empty string' }, 400);
      const pieces = m.generate(prompt, { maxTokens: opts.maxTokens ?? 128, temperature: opts.temperature, seed: opts.seed, signal: request.signal })[Symbol.asyncIterator]();
      const first = await pieces.next(); // option errors surface here, before the 200 goes out
      const encoder = new TextEncoder();
      const body = new ReadableStream({
        start(controller) {
          if (first.done) controller.close();
          else controller.enqueue(encoder.encode(first.value.text));
        },
        async pull(controller) {
          const { done, value } = await pieces.next();
          if (done) controller.close();
          else if (value.text) controller.enqueue(encoder.encode(value.text));
        },
        cancel() { return pieces.return(); }, // the client went away: stop generating
      });
      return new Response(body, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
    } catch (e) {
      return json({ error: e instanceof Error ? e.message : String(e), code: e instanceof BmcError ? e.code : undefined }, e instanceof OptionError ? 400 : 500);
    }
  },
};
