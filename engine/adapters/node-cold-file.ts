/**
 * Node/Deno/Bun adapter: temporary files for the tiered KV cache's cold tier (engine/kv/cold-store.ts), with
 * positional synchronous reads and writes (node:fs, which Deno and Bun provide too). A file is created exclusively
 * in `dir` (default: the OS temp directory) and removed when its store is disposed. node:fs is imported lazily (by
 * tempColdFiles, at model load), so that the bundle also loads where it does not exist.
 */
import { OptionError } from '../errors.js';
import type { SyncFile } from '../kv/cold-store.js';

let serial = 0;

/** Resolves to a synchronous opener of temporary cold-tier files. */
export async function tempColdFiles(): Promise<(dir: string | undefined) => SyncFile> {
  const fs = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  return (dir) => {
    const where = dir ?? tmpdir();
    const path = join(where, `bmc-llm-kv-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${serial++}.bin`);
    let fd: number;
    try {
      fd = fs.openSync(path, 'wx+', 0o600);
    } catch (e) {
      throw new OptionError('kv.coldPath', `cannot create a cold-tier file in ${where}: ${(e as Error).message}`);
    }
    let open = true;
    return {
      kind: 'file',
      read(dst, at) {
        let got = 0;
        while (got < dst.length) {
          const n = fs.readSync(fd, dst, got, dst.length - got, at + got);
          if (n === 0) break;
          got += n;
        }
        return got;
      },
      write(src, at) {
        let put = 0;
        while (put < src.length) put += fs.writeSync(fd, src, put, src.length - put, at + put);
      },
      close() {
        if (!open) return;
        open = false;
        fs.closeSync(fd);
        try { fs.unlinkSync(path); } catch { /* already gone */ }
      },
    };
  };
}
