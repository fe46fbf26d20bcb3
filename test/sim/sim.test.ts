// Deterministic cluster simulation: fixed regression seeds, then a time-boxed sweep of fresh
// seeds. A failure prints the seed and settings; `SIM_SEED=<seed>` reruns only that seed.

import { describe, expect, it } from 'vitest';
import { runSeed } from './scenario.js';
import { runSeedTwice, sweep } from './sweep.js';

/** Seeds run on every `npm test`. Add each seed that finds a bug here once it is fixed. */
const REGRESSION_SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/** Wall-clock budget of the random sweep in `npm test`. */
const SWEEP_BUDGET_MS = Number(process.env.SIM_SWEEP_MS ?? 60_000);
const onlySeed = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);

describe.runIf(onlySeed !== undefined)('simulation of one seed', () => {
  it(`seed ${onlySeed} passes twice with one trace`, () => {
    const result = runSeedTwice(onlySeed!);
    console.log(`seed ${onlySeed}: ${JSON.stringify(result.stats)} digest ${result.digest.toString(16)}`);
  }, 600_000);
});

describe.runIf(onlySeed === undefined)('cluster simulation', () => {
  for (const seed of REGRESSION_SEEDS) {
    it(`regression seed ${seed}`, () => {
      const result = runSeedTwice(seed);
      expect(result.stats.commandsAcknowledged).toBeGreaterThan(0);
    });
  }

  it('long fault phase converges', () => {
    const result = runSeed(101, { faultDurationMs: 60_000 });
    expect(result.stats.commandsAcknowledged).toBeGreaterThan(100);
  });

  it('random seeds stay safe', () => {
    const firstSeed = (Date.now() % 1_000_000_000) * 7 + 1_000;
    console.log(`simulation sweep starts at seed ${firstSeed} for ${SWEEP_BUDGET_MS} ms`);
    const summary = sweep({ firstSeed, seedsMax: 1_000_000, budgetMs: SWEEP_BUDGET_MS });
    console.log(`simulation sweep: ${JSON.stringify(summary)}`);
    expect(summary.seedsRun).toBeGreaterThan(0);
  }, SWEEP_BUDGET_MS + 120_000);
});
