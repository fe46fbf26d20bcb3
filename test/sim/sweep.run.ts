// The long simulation sweep behind `npm run test:sim`. It is not a `*.test.ts` file, so plain
// `npm test` skips it; test/sim/cli.mjs runs it with test/sim/vitest.sweep.config.ts and
// passes the settings in environment variables.

import { it } from 'vitest';
import type { SimProfile } from './scenario.js';
import { runSeedTwice, sweep } from './sweep.js';

const minutes = Number(process.env.SIM_MINUTES ?? 1);
const seedsMax = Number(process.env.SIM_SEEDS ?? 1_000_000_000);
const firstSeed = Number(process.env.SIM_FIRST_SEED ?? (Date.now() % 1_000_000_000) * 7 + 1_000);
const faultDurationMs = process.env.SIM_FAULT_MS === undefined ? undefined : Number(process.env.SIM_FAULT_MS);
const onlySeed = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);
const profile = (process.env.SIM_PROFILE ?? 'mixed') as SimProfile | 'mixed';
const budgetMs = minutes * 60_000;

if (onlySeed !== undefined) {
  it(`seed ${onlySeed}`, () => {
    const result = runSeedTwice(onlySeed, { faultDurationMs, profile: profile === 'mixed' ? 'default' : profile });
    console.log(`seed ${onlySeed} passed: ${JSON.stringify(result.stats)} digest ${result.digest.toString(16)}`);
  }, 3_600_000);
} else {
  it(`sweep from seed ${firstSeed}`, () => {
    console.log(`simulation sweep: first seed ${firstSeed}, at most ${seedsMax} seeds, ${minutes} min, ${profile} network`);
    const summary = sweep({ firstSeed, seedsMax, budgetMs, faultDurationMs, profile });
    console.log(`simulation sweep summary: ${JSON.stringify(summary)}`);
  }, budgetMs + 600_000);
}
