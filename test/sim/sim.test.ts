// Deterministic cluster simulation: fixed regression seeds, then a time-boxed sweep of fresh
// seeds. A failure prints the seed and settings; `SIM_SEED=<seed>` reruns only that seed.

import { describe, expect, it } from 'vitest';
import { runSeed, type SimProfile } from './scenario.js';
import { runSeedTwice, sweep } from './sweep.js';

/** Seeds run on every `npm test`. Add each seed that finds a bug here once it is fixed. */
const REGRESSION_SEEDS = [
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
  // A follower never learned the commit index of an idle group (see the harsh seed below).
  20003969,
  // The same, when the follower's rejection of the request carrying the commit index was lost.
  40077194,
];

/** Harsh-network seeds run on every `npm test`. */
const HARSH_REGRESSION_SEEDS = [
  // A follower never learned the commit index of an idle group: the request that carried it
  // overtook the entries before it and was rejected, and the leader did not send it again.
  6569,
];

/** Wall-clock budget of the random sweeps in `npm test`: three quarters default network, one quarter harsh. */
const SWEEP_BUDGET_MS = Number(process.env.SIM_SWEEP_MS ?? 60_000);
const onlySeed = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);
const onlyProfile = (process.env.SIM_PROFILE ?? 'default') as SimProfile;

describe.runIf(onlySeed !== undefined)('simulation of one seed', () => {
  it(`seed ${onlySeed} passes twice with one trace`, () => {
    const result = runSeedTwice(onlySeed!, { profile: onlyProfile });
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

  for (const seed of HARSH_REGRESSION_SEEDS) {
    it(`harsh regression seed ${seed}`, () => {
      const result = runSeedTwice(seed, { profile: 'harsh' });
      expect(result.stats.commandsAcknowledged).toBeGreaterThan(0);
    });
  }

  it('long fault phase converges', () => {
    const result = runSeed(101, { faultDurationMs: 60_000 });
    expect(result.stats.commandsAcknowledged).toBeGreaterThan(100);
  });

  const sweeps: [SimProfile, number][] = [['default', SWEEP_BUDGET_MS * 0.75], ['harsh', SWEEP_BUDGET_MS * 0.25]];
  for (const [profile, budgetMs] of sweeps) {
    it(`random seeds stay safe, ${profile} network`, () => {
      const firstSeed = (Date.now() % 1_000_000_000) * 7 + 1_000;
      console.log(`simulation sweep (${profile} network) starts at seed ${firstSeed} for ${budgetMs} ms`);
      const summary = sweep({ firstSeed, seedsMax: 1_000_000, budgetMs, profile });
      console.log(`simulation sweep (${profile} network): ${JSON.stringify(summary)}`);
      expect(summary.seedsRun).toBeGreaterThan(0);
    }, budgetMs + 120_000);
  }
});
