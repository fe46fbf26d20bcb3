import { defineConfig } from 'vitest/config';

// Runs only the long chaos run; see test/chaos/cli.mjs.
export default defineConfig({
  test: {
    include: ['test/chaos/long.run.ts'],
    pool: 'forks',
    maxWorkers: 1,
  },
});
