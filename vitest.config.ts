import { defineConfig } from 'vitest/config';

// Cluster tests start child processes and real fdatasync calls, so they get generous
// time limits; the limits bound a hung test, they do not measure speed.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
