// The OpenAI handler of the library build served by the runtime's own HTTP server (Deno.serve or Bun.serve) on
// 127.0.0.1, any free port. Prints "listening on URL" on stderr. Usage: <runtime> serve-native.mjs MODEL
import { createOpenAIServer, loadModel } from '../../dist/index.js';

const file = globalThis.Deno ? Deno.args[0] : process.argv[2];
const model = await loadModel(file, { threads: 1 });
const api = createOpenAIServer(model, { modelId: 'native' });
if (globalThis.Deno) {
  Deno.serve({ port: 0, hostname: '127.0.0.1', onListen: ({ port }) => console.error(`listening on http://127.0.0.1:${port}`) }, api.fetch);
} else {
  const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: api.fetch });
  console.error(`listening on http://127.0.0.1:${server.port}`);
}
