/**
 * Node/Deno/Bun adapter: temporary files for the tiered KV cache's cold tier (engine/kv/cold-store.ts), with
 * positional synchronous reads and writes (node:fs, which Deno and Bun provide too). The file is created exclusively
 * in `dir` (default: the OS temp directory) and removed when the store is disposed.
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionError } from '../errors.js';
import type { SyncFile } from '../kv/cold-store.js';

let serial = 0;

export function openTempColdFile(dir: string | undefined): SyncFile {
  const path = join(dir ?? tmpdir(), `bmc-llm-kv-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${serial++}.bin`);
  let fd: number;
  try {
    fd = openSync(path, 'wx+', 0o600);
  } catch (e) {
    throw new OptionError('kv.coldPath', `cannot create a cold-tier file in ${dir ?? tmpdir()}: ${(e as Error).message}`);
  }
  let open = true;
  return {
    kind: 'file',
    read(dst, at) {
      let got = 0;
      while (got < dst.length) {
        const n = readSync(fd, dst, got, dst.length - got, at + got);
        if (n === 0) break;
        got += n;
      }
      return got;
    },
    write(src, at) {
      let put = 0;
      while (put < src.length) put += writeSync(fd, src, put, src.length - put, at + put);
    },
    close() {
      if (!open) return;
      open = false;
      closeSync(fd);
      try { unlinkSync(path); } catch { /* already gone */ }
    },
    get path() { return path; },
  } as SyncFile & { readonly path: string };
}
