// The long chaos run behind `npm run test:chaos -- --minutes M`: alternates 3- and 5-node
// clusters, each round with a longer fault phase, until the time is used up, and stops at the
// first lost set element or non-linearizable history. Not a `*.test.ts` file, so plain
// `npm test` skips it; test/chaos/cli.mjs runs it with test/chaos/vitest.long.config.ts.

import { expect, it } from 'vitest';
import { runChaos, SHORT_PROFILE_3, SHORT_PROFILE_5 } from './run.js';

const minutes = Number(process.env.CHAOS_MINUTES ?? 5);
const firstSeed = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);
const roundFaultMs = Number(process.env.CHAOS_ROUND_FAULT_MS ?? 60_000);
const budgetMs = minutes * 60_000;

it(`chaos rounds for ${minutes} min from seed ${firstSeed}`, async () => {
  const startMs = Date.now();
  const totals = { rounds: 0, operations: 0, operationsOk: 0, operationsUnknown: 0, setAcknowledged: 0, faults: 0, unknownVerdicts: 0 };
  for (let round = 0; Date.now() - startMs < budgetMs; round++) {
    const base = round % 2 === 0 ? SHORT_PROFILE_3 : SHORT_PROFILE_5;
    const seed = firstSeed + round;
    const report = await runChaos({ ...base, seed, faultDurationMs: roundFaultMs }, console.log);
    expect(report.setMissing, `acknowledged set elements lost (seed ${seed})`).toEqual([]);
    expect(report.verdict, `register history (seed ${seed}):\n${report.details.join('\n')}`).not.toBe('invalid');
    totals.rounds += 1;
    totals.operations += report.operations;
    totals.operationsOk += report.operationsOk;
    totals.operationsUnknown += report.operationsUnknown;
    totals.setAcknowledged += report.setAcknowledged;
    totals.faults += Object.entries(report.faults).filter(([kind]) => kind !== 'heal').reduce((sum, [, n]) => sum + n, 0);
    if (report.verdict === 'unknown') totals.unknownVerdicts += 1;
    console.log(`chaos totals after round ${round + 1}: ${JSON.stringify(totals)}`);
  }
}, budgetMs + 600_000);
