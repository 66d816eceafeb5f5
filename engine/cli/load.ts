/**
 * Loading a model for a command: the flags every model command shares (-m, --ctx-size, --threads, --kv), a progress
 * bar on stderr while the weights stream in (when stderr is a terminal, or when asked with --progress or
 * BMC_LLM_PROGRESS=1), and the one "loaded ..." line.
 */
import { loadModel } from '../model.js';
import type { LoadOptions, Model, ProgressInfo } from '../model.js';
import { parseKVFlag } from '../kv/options.js';
import { progressBar, resolveModelPath } from '../adapters/model-cache.js';
import type { FlagSpec } from './args.js';

const err = (s: string) => process.stderr.write(s);

export const MODEL_FLAGS: FlagSpec[] = [
  { name: 'model', short: 'm', type: 'string', help: 'GGUF file or URL (default: $BMC_LLM_MODEL, models/*.gguf, then a downloaded TinyStories model)' },
  { name: 'ctx-size', short: 'c', type: 'int', help: 'context length (default: the model\'s)' },
  { name: 'threads', short: 't', type: 'int', help: 'threads (default: $BMC_LLM_THREADS or the number of cores)' },
  { name: 'kv', type: 'string', help: 'KV cache policy: concat | static | bmc:R | paged:B | auto (default auto)' },
  { name: 'progress', type: 'bool', help: 'draw the loading progress bar even when stderr is not a terminal' },
];

/** Whether progress bars go to stderr: a terminal, or asked for. */
export function showProgress(asked = false): boolean {
  return asked || process.stderr.isTTY === true || process.env.BMC_LLM_PROGRESS === '1';
}

/** An onProgress callback drawing a bar on one stderr line (redrawn per whole percent), and the call that clears it. */
export function progressReporter(enabled: boolean, label = 'loading'): { onProgress: (p: ProgressInfo) => void; end: () => void } {
  let last = -1;
  let drawn = false;
  return {
    onProgress: (p) => {
      if (!enabled || p.status !== 'progress') return;
      const pct = Math.floor(p.progress ?? 0);
      if (pct === last) return;
      last = pct;
      drawn = true;
      err(`\r${label} ${progressBar(p.loaded ?? 0, p.total ?? 0)}`);
    },
    end: () => { if (drawn) err(process.stderr.isTTY ? '\r\x1b[K' : '\n'); },
  };
}

export async function loadForCommand(flags: Record<string, string | number | boolean>, extra: LoadOptions = {}): Promise<{ model: Model; path: string }> {
  const kv = flags.kv === undefined ? undefined : parseKVFlag(flags.kv as string);
  const path = await resolveModelPath(flags.model as string | undefined, err);
  const bar = progressReporter(showProgress(flags.progress === true));
  const t0 = performance.now();
  const model = await loadModel(path, {
    contextLength: flags['ctx-size'] as number | undefined,
    threads: flags.threads as number | undefined,
    kv, onProgress: bar.onProgress, ...extra,
  });
  bar.end();
  const hp = model.info.hparams!;
  if (model.info.threadsFallback) err(`note: running on 1 thread: ${model.info.threadsFallback}\n`);
  err(`loaded ${model.info.name ?? path} (${hp.nLayers} layers, dim ${hp.dim}, vocab ${hp.nVocab}, ${model.info.threads} thread${model.info.threads === 1 ? '' : 's'}) in ${(performance.now() - t0).toFixed(0)} ms\n`);
  return { model, path };
}
