import { spawnSync } from 'node:child_process';
import { defineConfig } from 'vitest/config';

// Relaxed SIMD: the kernel tests run both kernel builds (plain and relaxed SIMD). Node 22+ has relaxed SIMD by
// default; Node 20 has it behind a V8 flag, which the test forks get here (only where the runtime needs and knows it).
const RELAXED_FLAG = '--experimental-wasm-relaxed-simd';
const RELAXED_PROBE = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 8, 1, 0x60, 3, 0x7b, 0x7b, 0x7b, 1, 0x7b, 3, 2, 1, 0,
  10, 13, 1, 11, 0, 0x20, 0, 0x20, 1, 0x20, 2, 0xfd, 0x93, 2, 0x0b]);
const needsFlag = !WebAssembly.validate(RELAXED_PROBE) && spawnSync(process.execPath, [RELAXED_FLAG, '-e', '']).status === 0;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    poolOptions: { forks: { execArgv: needsFlag ? [RELAXED_FLAG] : [] } },
    // Test files already run in parallel forks, one per core: models default to one kernel thread here so that
    // forks do not oversubscribe the cores; the thread tests ask for their thread counts explicitly.
    env: { BMC_LLM_THREADS: process.env.BMC_LLM_THREADS ?? '1' },
    reporters: ['default'],
  },
});
