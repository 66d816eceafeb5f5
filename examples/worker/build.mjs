// Bundles worker.js the way wrangler does: bmc-llm inlined (here from this checkout's dist/), each .wasm import kept
// as a module of its own beside the bundle (build/). Usage: node examples/worker/build.mjs (after npm run build).
import { copyFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const out = join(here, 'build');
mkdirSync(out, { recursive: true });

const wasmModules = {
  name: 'wasm-modules',
  setup(b) {
    b.onResolve({ filter: /^bmc-llm\/wasm\/.*\.wasm$/ }, (args) => {
      const file = basename(args.path);
      copyFileSync(join(root, 'dist/wasm', file), join(out, file));
      return { path: `./${file}`, external: true };
    });
  },
};

await esbuild.build({
  entryPoints: [join(here, 'worker.js')],
  outfile: join(out, 'worker.js'),
  bundle: true, format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'warning',
  alias: { 'bmc-llm': join(root, 'dist/index.js') },
  external: ['node:*'], // reached only under Node (file paths, worker_threads); never in a Worker
  plugins: [wasmModules],
});
