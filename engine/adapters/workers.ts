/**
 * Starting kernel workers in each runtime. Browsers, Deno and Bun have the web `Worker` (module workers from a Blob
 * URL); Node has `worker_threads` (an eval worker). Both wrap the pool's worker function (runtime/pool-worker.ts) in
 * a few lines that hand it the init message and report readiness; the spawn resolves once the worker is ready, or
 * rejects with the worker's error.
 */
import type { SpawnWorker, WorkerHandle } from '../runtime/pool.js';
import type { WorkerInit } from '../runtime/pool-worker.js';

/** Cores this runtime reports (navigator.hardwareConcurrency or os.availableParallelism), at least 1. */
export async function hardwareThreads(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (nav?.hardwareConcurrency && nav.hardwareConcurrency > 0) return nav.hardwareConcurrency;
  if (isNode()) {
    const os = await import('node:os');
    return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  }
  return 1;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string' && typeof (globalThis as { Deno?: unknown }).Deno === 'undefined';
}

/** Whether this runtime can share a WebAssembly memory between threads at all. */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

/** The worker spawner for this runtime, or undefined where there is none. */
export function workerSpawner(): SpawnWorker | undefined {
  if (isNode()) return spawnNode;
  if (typeof (globalThis as { Worker?: unknown }).Worker === 'function') return spawnWeb;
  return undefined;
}

const spawnNode: SpawnWorker = async (source, init) => {
  const { Worker } = await import('node:worker_threads');
  const code = `const { parentPort } = require('node:worker_threads');
parentPort.once('message', (init) => {
  try { (${source})(init, () => parentPort.postMessage({ ready: true })); }
  catch (e) { parentPort.postMessage({ error: String(e && e.stack || e) }); }
});`;
  const w = new Worker(code, { eval: true });
  await new Promise<void>((resolve, reject) => {
    w.once('message', (m: { ready?: boolean; error?: string }) => (m.ready ? resolve() : reject(new Error(`kernel worker: ${m.error}`))));
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`kernel worker exited (code ${code}) before it was ready`)));
    w.postMessage(init);
  });
  w.removeAllListeners();
  w.on('error', () => { /* reported to the main thread through the control block */ });
  w.unref(); // idle workers never keep the process alive
  return { terminate: () => void w.terminate() };
};

const spawnWeb: SpawnWorker = async (source, init) => {
  const code = `self.onmessage = (ev) => {
  self.onmessage = null;
  try { (${source})(ev.data, () => self.postMessage({ ready: true })); }
  catch (e) { self.postMessage({ error: String(e && e.stack || e) }); }
};`;
  const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
  const W = (globalThis as unknown as { Worker: new (u: string, o: { type: string }) => Worker }).Worker;
  const w = new W(url, { type: 'module' });
  try {
    await new Promise<void>((resolve, reject) => {
      w.onmessage = (ev: MessageEvent<{ ready?: boolean; error?: string }>) =>
        (ev.data.ready ? resolve() : reject(new Error(`kernel worker: ${ev.data.error}`)));
      w.onerror = (ev) => reject(new Error(`kernel worker: ${(ev as ErrorEvent).message ?? 'failed to start'}`));
      w.postMessage(init satisfies WorkerInit);
    });
  } finally {
    URL.revokeObjectURL(url);
  }
  return { terminate: () => w.terminate() } satisfies WorkerHandle;
};
