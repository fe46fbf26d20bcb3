// Short chaos profile for npm test: 3 and 5 real `rana kv` processes under kills, pauses,
// partitions and delays. CHAOS_SEED fixes the nemesis and workload choices.

import { describe, expect, it } from 'vitest';
import { runChaos, SHORT_PROFILE_3, SHORT_PROFILE_5, type ChaosReport } from './run.js';

const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);

function expectSafe(report: ChaosReport): void {
  expect(report.setMissing, `acknowledged set elements lost (seed ${seed})`).toEqual([]);
  expect(report.verdict, `register history (seed ${seed}):\n${report.details.join('\n')}`).not.toBe('invalid');
  // The run must have exercised something for its verdict to mean anything.
  expect(report.operationsOk).toBeGreaterThan(50);
  expect(report.setAcknowledged).toBeGreaterThan(10);
}

describe('chaos against real processes', () => {
  it('three nodes stay linearizable', async () => {
    const report = await runChaos({ ...SHORT_PROFILE_3, seed }, console.log);
    expectSafe(report);
  }, 150_000);

  it('five nodes stay linearizable', async () => {
    const report = await runChaos({ ...SHORT_PROFILE_5, seed: seed + 1 }, console.log);
    expectSafe(report);
  }, 150_000);
});
