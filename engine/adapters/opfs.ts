/**
 * Browser adapter: an OPFS (origin private file system) file for the tiered KV cache's cold tier
 * (engine/kv/cold-store.ts). Synchronous positional I/O on OPFS exists only through FileSystemSyncAccessHandle, which
 * browsers offer in dedicated workers alone: run the engine in a dedicated Worker, open the file there with
 * `const cold = await openOpfsColdFile('kv-session-1.bin')` and pass `kv: { policy: 'tiered', budgetBytes, cold }` to
 * createSession. The handle serves one session; disposing the session closes it and removes the file.
 * Elsewhere (the main thread, shared or service workers) opening fails with an OptionError naming kv.cold.
 */
import { OptionError } from '../errors.js';
import type { SyncFile } from '../kv/cold-store.js';

/** The parts of the OPFS API used here (lib.dom does not declare the worker-only sync handle). */
interface SyncAccessHandle {
  read(buffer: Uint8Array, opts: { at: number }): number;
  write(buffer: Uint8Array, opts: { at: number }): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}
interface OpfsFile { createSyncAccessHandle?: () => Promise<SyncAccessHandle> }
interface OpfsDir {
  getFileHandle(name: string, opts: { create: boolean }): Promise<OpfsFile>;
  removeEntry(name: string): Promise<void>;
}

/** Opens (creating or emptying) `name` in `dir` (default: the OPFS root) as a cold-tier file. */
export async function openOpfsColdFile(name: string, dir?: OpfsDir): Promise<SyncFile> {
  if (typeof name !== 'string' || name === '' || name.includes('/')) throw new OptionError('kv.cold', `OPFS file name ${JSON.stringify(name)} must be a non-empty name without "/"`);
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?: () => Promise<OpfsDir> } } }).navigator?.storage;
  if (!dir && typeof storage?.getDirectory !== 'function') throw new OptionError('kv.cold', 'OPFS is not available in this runtime (navigator.storage.getDirectory)');
  const root = dir ?? await storage!.getDirectory!();
  const file = await root.getFileHandle(name, { create: true });
  if (typeof file.createSyncAccessHandle !== 'function') {
    throw new OptionError('kv.cold', 'OPFS sync access handles exist only in dedicated workers: run the engine in a Worker to use an OPFS cold tier');
  }
  const h = await file.createSyncAccessHandle();
  h.truncate(0);
  let open = true;
  return {
    kind: 'opfs',
    read(dst, at) {
      let got = 0;
      while (got < dst.length) {
        const n = h.read(dst.subarray(got), { at: at + got });
        if (n === 0) break;
        got += n;
      }
      return got;
    },
    write(src, at) {
      let put = 0;
      while (put < src.length) put += h.write(src.subarray(put), { at: at + put });
    },
    close() {
      if (!open) return;
      open = false;
      h.truncate(0);
      h.close();
      void root.removeEntry(name).catch(() => { /* the emptied file may stay if removal fails */ });
    },
  };
}
