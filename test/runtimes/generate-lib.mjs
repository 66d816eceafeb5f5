// Greedy generation through the library build (dist/index.js), run unchanged by Node, Deno and Bun from the runtime
// tests. Usage: <runtime> generate-lib.mjs MODEL PROMPT N THREADS; prints one JSON line.
import { loadModel } from '../../dist/index.js';

const args = globalThis.Deno ? Deno.args : process.argv.slice(2);
const [file, prompt, n, threads] = args;
const model = await loadModel(file, { threads: Number(threads), contextLength: 256 });
try {
  const gen = model.generate(prompt, { maxTokens: Number(n), temperature: 0, ignoreEos: true });
  const text = await gen.text();
  console.log(JSON.stringify({ text, threads: model.info.threads, fallback: model.info.threadsFallback ?? null, simd: model.info.simd, stop: gen.stats.stopReason }));
} finally {
  model.dispose();
}
