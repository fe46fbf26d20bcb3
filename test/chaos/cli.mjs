#!/usr/bin/env node
// `npm run test:chaos -- [--minutes M] [--seed S] [--round-fault-ms MS]` runs chaos rounds
// against real `rana kv` processes for M minutes (default 5). Run `npm run build` first: the
// nodes run the compiled CLI from dist/.

import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    seed: { type: 'string' },
    'round-fault-ms': { type: 'string' },
  },
});

const env = { ...process.env, CHAOS_MINUTES: values.minutes };
if (values.seed !== undefined) env.CHAOS_SEED = values.seed;
if (values['round-fault-ms'] !== undefined) env.CHAOS_ROUND_FAULT_MS = values['round-fault-ms'];
const child = spawn('npx', ['vitest', 'run', '--config', 'test/chaos/vitest.long.config.ts'], { env, stdio: 'inherit' });
child.on('exit', (code) => {
  process.exitCode = code ?? 1;
});
