// Seed sweeps shared by the npm test profile and the long `npm run test:sim` runner: run each
// seed twice, compare the trace digests, and stop at the first failure with its seed.

import { runSeed, type RunOptions, type RunResult, type SimProfile } from './scenario.js';

export interface SweepOptions extends Omit<RunOptions, 'profile'> {
  /** `mixed` runs every fourth seed with the harsh network and the others with the default one. */
  profile?: SimProfile | 'mixed';
  /** First seed; later seeds count up from it. */
  firstSeed: number;
  /** Upper bound on seeds run. */
  seedsMax: number;
  /** Wall-clock budget; the sweep stops starting seeds after it. */
  budgetMs: number;
}

export interface SweepSummary {
  seedsRun: number;
  firstSeed: number;
  lastSeed: number;
  steps: number;
  commandsAcknowledged: number;
  readsChecked: number;
  faultsInjected: number;
  elapsedMs: number;
}

/** Runs `seed` twice and throws if the two runs differ in any traced step. */
export function runSeedTwice(seed: number, options: RunOptions = {}): RunResult {
  const first = runSeed(seed, options);
  const second = runSeed(seed, options);
  if (first.digest !== second.digest || first.stats.steps !== second.stats.steps) {
    throw new Error(
      `seed ${seed} is not deterministic: trace digests ${first.digest.toString(16)} and ${second.digest.toString(16)}, ` +
        `${first.stats.steps} and ${second.stats.steps} steps; some input bypasses the seeded generators`,
    );
  }
  return first;
}

export function sweep(options: SweepOptions): SweepSummary {
  const startMs = Date.now();
  const summary: SweepSummary = {
    seedsRun: 0, firstSeed: options.firstSeed, lastSeed: options.firstSeed - 1,
    steps: 0, commandsAcknowledged: 0, readsChecked: 0, faultsInjected: 0, elapsedMs: 0,
  };
  for (let i = 0; i < options.seedsMax && Date.now() - startMs < options.budgetMs; i++) {
    const seed = (options.firstSeed + i) >>> 0;
    let profile: SimProfile = options.profile === 'mixed' ? 'default' : (options.profile ?? 'default');
    if (options.profile === 'mixed' && seed % 4 === 0) profile = 'harsh';
    const result = runSeedTwice(seed, { ...options, profile });
    summary.seedsRun += 1;
    summary.lastSeed = seed;
    summary.steps += result.stats.steps;
    summary.commandsAcknowledged += result.stats.commandsAcknowledged;
    summary.readsChecked += result.stats.readsChecked;
    for (const [kind, count] of Object.entries(result.stats.faults)) {
      if (kind !== 'heal' && kind !== 'restart' && kind !== 'resume' && kind !== 'calm') summary.faultsInjected += count ?? 0;
    }
  }
  summary.elapsedMs = Date.now() - startMs;
  return summary;
}
