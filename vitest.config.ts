import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Test files already run in parallel forks, one per core: models default to one kernel thread here so that
    // forks do not oversubscribe the cores; the thread tests ask for their thread counts explicitly.
    env: { BMC_LLM_THREADS: process.env.BMC_LLM_THREADS ?? '1' },
    reporters: ['default'],
  },
});
