#!/usr/bin/env node
// `npm run test:sim -- [--seeds N] [--minutes M] [--seed S] [--first-seed S] [--jobs J] [--fault-ms MS] [--profile P]`
// runs the simulation sweep in J vitest processes (default 1), each with its own seed range,
// and exits non-zero if any fails. `--seed S` reruns one seed (twice, comparing trace digests).
// `--profile` is default, harsh or mixed (the sweep's default: every fourth seed harsh); a
// single `--seed` runs with default unless told otherwise.

import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string' },
    minutes: { type: 'string', default: '1' },
    seed: { type: 'string' },
    'first-seed': { type: 'string' },
    jobs: { type: 'string', default: '1' },
    'fault-ms': { type: 'string' },
    profile: { type: 'string' },
  },
});

const jobs = values.seed === undefined ? Math.max(1, Number(values.jobs)) : 1;
const firstSeed = Number(values['first-seed'] ?? (Date.now() % 1_000_000_000) * 7 + 1_000);
const seedsPerJob = values.seeds === undefined ? undefined : Math.ceil(Number(values.seeds) / jobs);

const runs = [];
for (let job = 0; job < jobs; job++) {
  const env = { ...process.env, SIM_MINUTES: values.minutes };
  // Jobs take disjoint seed ranges: job j starts 100 million seeds after job j - 1.
  env.SIM_FIRST_SEED = String(firstSeed + job * 100_000_000);
  if (seedsPerJob !== undefined) env.SIM_SEEDS = String(seedsPerJob);
  if (values.seed !== undefined) env.SIM_SEED = values.seed;
  if (values['fault-ms'] !== undefined) env.SIM_FAULT_MS = values['fault-ms'];
  if (values.profile !== undefined) env.SIM_PROFILE = values.profile;
  const child = spawn('npx', ['vitest', 'run', '--config', 'test/sim/vitest.sweep.config.ts'], { env, stdio: 'inherit' });
  runs.push(new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1))));
}
const codes = await Promise.all(runs);
process.exitCode = codes.some((code) => code !== 0) ? 1 : 0;
