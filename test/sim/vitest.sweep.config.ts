import { defineConfig } from 'vitest/config';

// Runs only the long simulation sweep; see test/sim/cli.mjs.
export default defineConfig({
  test: {
    include: ['test/sim/sweep.run.ts'],
    pool: 'forks',
    maxWorkers: 1,
  },
});
