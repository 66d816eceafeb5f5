// A static server for the chat page with the two headers that make it cross-origin isolated (so that it gets
// SharedArrayBuffer, a shared WebAssembly memory, and threads). Serves this checkout (the page and dist/), and
// /models/ from a folder of GGUF files.
//   node examples/web/serve.mjs [--port 8080] [--models DIR]   -> http://127.0.0.1:8080/examples/web/
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.map': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png', '.svg': 'image/svg+xml' };

/** The file under `dir` that a URL path names, or undefined for paths that leave it. */
function inside(dir, path) {
  const file = normalize(join(dir, decodeURIComponent(path)));
  return file === dir || file.startsWith(dir + sep) ? file : undefined;
}

/** Starts the server; resolves to { url, close }. `isolate: false` leaves the COOP/COEP headers out. */
export function startServer({ port = 8080, host = '127.0.0.1', models = join(ROOT, 'models'), isolate = true } = {}) {
  const server = createServer(async (req, res) => {
    const headers = isolate ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
    try {
      const path = new URL(req.url, 'http://x').pathname;
      let file = path.startsWith('/models/') ? inside(resolve(models), path.slice('/models/'.length)) : inside(ROOT, path === '/' ? '/examples/web/' : path);
      let st = file && await stat(file);
      if (st?.isDirectory()) st = await stat(file = join(file, 'index.html'));
      if (!st || !st.isFile()) throw new Error('not found');
      res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': st.size });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end('not found');
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok({
      url: `http://${host}:${server.address().port}`,
      close: () => new Promise((done) => { server.closeAllConnections(); server.close(() => done()); }),
    }));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
  const { url } = await startServer({ port: Number(arg('--port') ?? 8080), models: arg('--models') ?? join(ROOT, 'models') });
  console.log(`${url}/examples/web/  (models from ${resolve(arg('--models') ?? join(ROOT, 'models'))} under /models/)`);
}
