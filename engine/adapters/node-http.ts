/**
 * Node adapter for web-standard request handlers: node:http requests become `Request`s (with a signal that aborts
 * when the client goes away) and `Response`s are written back, their bodies streamed chunk by chunk. Deno and Bun
 * have this built in (Deno.serve, Bun.serve).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FetchHandler = (request: Request) => Promise<Response>;

function toRequest(req: IncomingMessage, signal: AbortSignal, origin: string): Request {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (Array.isArray(v)) for (const x of v) headers.append(k, x);
    else if (v !== undefined) headers.set(k, v);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const body = hasBody
    ? new ReadableStream<Uint8Array>({
      start(c) {
        req.on('data', (d: Buffer) => c.enqueue(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
        req.on('end', () => c.close());
        req.on('error', (e) => c.error(e));
      },
      cancel() { req.destroy(); },
    })
    : undefined;
  return new Request(new URL(req.url ?? '/', origin), {
    method: req.method, headers, body, signal, ...(hasBody ? { duplex: 'half' } : {}),
  } as RequestInit);
}

async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => { headers[k] = v; });
  res.writeHead(response.status, headers);
  if (!response.body) { res.end(); return; }
  const reader = response.body.getReader();
  // The client went away: cancelling the body tells the handler to stop producing it.
  const onClose = () => { if (!res.writableFinished) void reader.cancel().catch(() => undefined); };
  res.on('close', onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise<void>((r) => { res.once('drain', r); res.once('close', r); });
      if (res.destroyed) break;
    }
  } finally {
    res.off('close', onClose);
    res.end();
  }
}

export interface NodeServer {
  server: Server;
  /** The address it listens on, as http://host:port. */
  url: string;
  close(): Promise<void>;
}

/** Serves `handler` on host:port (port 0: any free port). */
export async function serveNode(handler: FetchHandler, opts: { port: number; host: string }): Promise<NodeServer> {
  let origin = `http://${opts.host}`;
  const server = createServer((req, res) => {
    const ac = new AbortController();
    res.on('close', () => { if (!res.writableFinished) ac.abort(); });
    handler(toRequest(req, ac.signal, origin))
      .then((response) => writeResponse(res, response))
      .catch((e) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: String((e as Error)?.message ?? e), type: 'server_error', param: null, code: null } }));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  origin = `http://${host}:${addr.port}`;
  return {
    server, url: origin,
    close: () => new Promise<void>((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}
