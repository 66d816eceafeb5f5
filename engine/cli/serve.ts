/** `bmc-llm serve`: the OpenAI-compatible API (engine/server/openai.ts) on node:http until SIGINT or SIGTERM. */
import { readFile } from 'node:fs/promises';
import { OptionError } from '../errors.js';
import { createOpenAIServer } from '../server/openai.js';
import { serveNode } from '../adapters/node-http.js';
import { helpText, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';
import { MODEL_FLAGS, loadForCommand } from './load.js';

export const SERVE_FLAGS: FlagSpec[] = [
  ...MODEL_FLAGS,
  { name: 'port', type: 'int', help: 'TCP port (default 8080; 0 picks a free one)' },
  { name: 'host', type: 'string', help: 'address to listen on (default 127.0.0.1)' },
  { name: 'parallel', short: 'np', type: 'int', help: 'requests generating at once, each with its own KV cache; others wait (default 4)' },
  { name: 'alias', type: 'string', help: 'model id reported by /v1/models (default: the model\'s name)' },
  { name: 'chat-template', type: 'string', help: 'Jinja file to use instead of the model\'s chat template' },
  { name: 'help', short: 'h', type: 'bool', help: 'show this help' },
];

export async function cmdServe(argv: string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv, SERVE_FLAGS);
  if (flags.help) {
    process.stdout.write(`usage: bmc-llm serve [-m FILE] [--port P] [--host H]\n\n${helpText(SERVE_FLAGS)}\n`);
    return;
  }
  if (positional.length > 0) throw new OptionError(positional[0]!, 'unexpected argument (the model goes after -m)');
  const port = (flags.port as number | undefined) ?? 8080;
  if (port < 0 || port > 65535) throw new OptionError('--port', `${port} is not in [0, 65535]`);
  const host = (flags.host as string | undefined) ?? '127.0.0.1';
  const parallel = flags.parallel as number | undefined;
  if (parallel !== undefined && (parallel < 1 || parallel > 1024)) throw new OptionError('--parallel', `${parallel} is not in [1, 1024]`);
  let chatTemplate: string | undefined;
  if (flags['chat-template'] !== undefined) {
    try {
      chatTemplate = await readFile(flags['chat-template'] as string, 'utf8');
    } catch (e) {
      throw new OptionError('--chat-template', `cannot read ${String(flags['chat-template'])}: ${(e as Error).message}`);
    }
  }
  const { model } = await loadForCommand(flags);
  const api = createOpenAIServer(model, {
    modelId: flags.alias as string | undefined, chatTemplate, parallel, log: (line) => process.stderr.write(`${line}\n`),
  });
  let server;
  try {
    server = await serveNode(api.fetch, { port, host });
  } catch (e) {
    model.dispose();
    throw new OptionError('--port', `cannot listen on ${host}:${port}: ${(e as Error).message}`);
  }
  process.stderr.write(`listening on ${server.url} (OpenAI API at ${server.url}/v1)\n`);
  await new Promise<void>((resolve) => {
    const stop = () => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve(); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  model.dispose();
}
