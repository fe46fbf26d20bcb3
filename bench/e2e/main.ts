// Entry point of `npm run bench`: runs named scenarios and baselines (the default set when no
// name is given), shows a progress bar, writes a results JSON under bench/results/ and, for a
// full default run or with --report, regenerates docs/benchmarks.md.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { naiveQueue, probeDisk, rawFdatasync } from './baselines.js';
import { DEFAULT_SET, PRESETS } from './presets.js';
import { writeReport } from './report.js';
import type { RunResult } from './results.js';
import { activeRoots, runScenario, type ScenarioParams, type ScenarioResult } from './scenarios.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const resultsDir = path.join(repoRoot, 'bench/results');
const microDir = path.resolve(here, '../micro');

/** Time limit for one micro benchmark file, whose tinybench tasks run a second or two each. */
const MICRO_TIMEOUT_MS = 120_000;
/** Baseline (a) and (b) run this long. */
const BASELINE_DURATION_S = 5;

const BASELINE_NAMES = ['disk-probe', 'micro', 'raw-fdatasync', 'naive-queue'];

interface CliOptions {
  groups?: number;
  active?: number;
  clients?: number;
  inflight?: number;
  payload?: number;
  duration?: number;
  warmup?: number;
  nodes?: number;
  sync?: ScenarioParams['syncMethod'];
  killAt?: number;
  cpuProf: boolean;
  keepLogs: boolean;
  report: boolean;
  note?: string;
}

function nonNegativeInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new InvalidArgumentError(`${value} is not a non-negative integer`);
  return parsed;
}

function nonNegativeNumber(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new InvalidArgumentError(`${value} is not a non-negative number`);
  return parsed;
}

function applyOverrides(params: ScenarioParams, options: CliOptions): ScenarioParams {
  const merged = { ...params };
  if (options.groups !== undefined) {
    merged.groups = options.groups;
    // A preset where every hosted group is active stays so; others keep their active count.
    merged.active = params.active === params.groups ? options.groups : Math.min(params.active, options.groups);
  }
  if (options.active !== undefined) merged.active = Math.min(options.active, merged.groups);
  if (options.clients !== undefined) merged.clientsPerGroup = options.clients;
  if (options.inflight !== undefined) merged.inflightPerClient = options.inflight;
  if (options.payload !== undefined) merged.payloadBytes = options.payload;
  if (options.duration !== undefined) merged.durationS = options.duration;
  if (options.warmup !== undefined) merged.warmupS = options.warmup;
  if (options.nodes !== undefined) merged.nodes = options.nodes;
  if (options.sync !== undefined) merged.syncMethod = options.sync;
  if (options.killAt !== undefined) merged.killAtS = options.killAt;
  return merged;
}

function gitCommit(): { commit: string; dirty: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot, encoding: 'utf8' });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return { commit: 'unknown', dirty: false };
  }
}

function machineInfo(): RunResult['machine'] {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    tmpdir: os.tmpdir(),
  };
}

/** Runs every compiled micro benchmark as its own process and keeps its output lines. */
async function runMicro(): Promise<Record<string, string[]>> {
  const output: Record<string, string[]> = {};
  const files = fs.readdirSync(microDir).filter((f) => f.endsWith('.bench.js')).sort();
  for (const file of files) {
    process.stderr.write(`${`micro ${file.replace('.bench.js', '')}`.padEnd(22)} running\n`);
    const child = spawn(process.execPath, [path.join(microDir, file)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), MICRO_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    const lines = text.split('\n').filter((line) => line.trim().length > 0);
    if (code !== 0) lines.push(`exited with code ${code}`);
    for (const line of lines) process.stderr.write(`  ${line}\n`);
    output[file.replace('.bench.js', '')] = lines;
  }
  return output;
}

/**
 * Removes the running scenario's data on Ctrl-C or SIGTERM. The child processes exit by
 * themselves when their IPC channel to this process closes.
 */
function removeDataOnSignal(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping; the results of this run are not written\n`);
      for (const root of activeRoots) fs.rmSync(root, { recursive: true, force: true });
      process.exit(130);
    });
  }
}

async function main(): Promise<void> {
  removeDataOnSignal();
  const program = new Command('npm run bench --')
    .description(`Runs rana's benchmarks. Names: ${[...Object.keys(PRESETS), ...BASELINE_NAMES, 'report'].join(', ')}. No name runs the default set.`)
    .argument('[names...]', 'scenarios and baselines to run')
    .option('--groups <n>', 'groups hosted on the cluster', nonNegativeInteger)
    .option('--active <n>', 'groups that receive load', nonNegativeInteger)
    .option('--clients <n>', 'clients per active group', nonNegativeInteger)
    .option('--inflight <n>', 'commands each client keeps in flight', nonNegativeInteger)
    .option('--payload <bytes>', 'size of one encoded command in bytes', nonNegativeInteger)
    .option('--duration <s>', 'length of the measured window in seconds', nonNegativeNumber)
    .option('--warmup <s>', 'load before the window opens, in seconds', nonNegativeNumber)
    .option('--nodes <n>', 'cluster nodes (1 = no replication)', nonNegativeInteger)
    .option('--sync <method>', 'WAL sync method: datasync, sync or none')
    .option('--kill-at <s>', 'SIGKILL the node leading the most groups this many seconds into the window', nonNegativeNumber)
    .option('--cpu-prof', 'run every process with node --cpu-prof; profiles go to bench/results/profiles/', false)
    .option('--keep-logs', 'keep every process log under bench/results/logs/, not only those of failed scenarios', false)
    .option('--report', 'regenerate docs/benchmarks.md from this run even when it is not the default set', false)
    .option('--note <text>', 'note stored with the run and shown in the report, such as other work running on the machine')
    .parse();

  const options = program.opts<CliOptions>();
  const names: string[] = program.args.length === 0 ? DEFAULT_SET : program.args;
  if (options.sync !== undefined && !['datasync', 'sync', 'none'].includes(options.sync)) {
    program.error(`--sync ${options.sync} is invalid; use datasync, sync or none`);
  }
  fs.mkdirSync(resultsDir, { recursive: true });

  if (names[0] === 'report') {
    // `report <file>` regenerates from that results file, `report` from the newest one.
    const latest = names[1] !== undefined ? path.resolve(names[1]) : latestResultsFile();
    writeReport(JSON.parse(fs.readFileSync(latest, 'utf8')) as RunResult, repoRoot);
    process.stderr.write(`docs/benchmarks.md regenerated from ${path.relative(repoRoot, latest)}\n`);
    return;
  }
  for (const name of names) {
    if (!(name in PRESETS) && !BASELINE_NAMES.includes(name)) {
      program.error(`unknown scenario ${name}; known: ${[...Object.keys(PRESETS), ...BASELINE_NAMES, 'report'].join(', ')}`);
    }
  }

  const startedAt = new Date();
  const runId = startedAt.toISOString().replace(/[:.]/g, '-');
  const cpuProfDir = options.cpuProf ? path.join(resultsDir, 'profiles', runId) : null;
  if (cpuProfDir !== null) fs.mkdirSync(cpuProfDir, { recursive: true });
  const result: RunResult = {
    version: 1,
    runId,
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    defaultSet: program.args.length === 0,
    argv: process.argv.slice(2),
    machine: machineInfo(),
    nodeVersion: process.version,
    git: gitCommit(),
    note: options.note ?? null,
    loadAverage: { start: os.loadavg(), end: [] },
    diskProbe: null,
    micro: null,
    scenarios: [],
    rawFdatasync: null,
    naiveQueue: null,
    naiveQueueSerial: null,
    failures: [],
  };
  process.stderr.write(`rana benchmarks ${runId}: ${names.join(', ')}\n`);
  process.stderr.write(`machine: ${result.machine.cores} x ${result.machine.cpuModel}, Node ${process.version}, commit ${result.git.commit.slice(0, 12)}${result.git.dirty ? ' (dirty)' : ''}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);

  for (const name of names) {
    try {
      if (name === 'disk-probe') result.diskProbe = probeDisk();
      else if (name === 'micro') result.micro = await runMicro();
      else if (name === 'raw-fdatasync') {
        const reference = result.scenarios.find((s) => s.name === 'single-group')?.figures;
        const recordBytes = reference?.walRecordBytes ?? 132;
        const batchSize = reference?.entriesPerFsync ?? 1024;
        const source = reference ? 'record size and entries per fdatasync of single-group in this run' : 'no single-group in this run: 132 B records, 1,024 per fdatasync';
        result.rawFdatasync = rawFdatasync(recordBytes, batchSize, BASELINE_DURATION_S, source);
      } else if (name === 'naive-queue') {
        const single = applyOverrides(PRESETS['single-group'].params, options);
        result.naiveQueue = await naiveQueue('naive-queue', single.clientsPerGroup * single.inflightPerClient, single.payloadBytes, BASELINE_DURATION_S);
        result.naiveQueueSerial = await naiveQueue('naive-queue-serial', 1, single.payloadBytes, BASELINE_DURATION_S);
      } else {
        const params = applyOverrides(PRESETS[name].params, options);
        result.scenarios.push(await runScenario(name, params, { cpuProfDir, logDir: path.join(resultsDir, 'logs', runId), keepLogs: options.keepLogs }));
      }
    } catch (error) {
      result.failures.push({ name, error: (error as Error).message });
      process.stderr.write(`${name} failed: ${(error as Error).stack}\n`);
    }
  }

  result.finishedAt = new Date().toISOString();
  result.loadAverage.end = os.loadavg();
  const file = path.join(resultsDir, `${runId}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(`results: ${path.relative(repoRoot, file)}\n`);
  if (cpuProfDir !== null) process.stderr.write(`CPU profiles: ${path.relative(repoRoot, cpuProfDir)}\n`);
  if (result.defaultSet || options.report) {
    writeReport(result, repoRoot);
    process.stderr.write('docs/benchmarks.md regenerated\n');
  }
  if (result.failures.length > 0) process.exitCode = 1;
}

function latestResultsFile(): string {
  const files = fs.readdirSync(resultsDir).filter((f) => f.endsWith('.json')).sort();
  if (files.length === 0) throw new Error(`no results in ${resultsDir}; run npm run bench first`);
  return path.join(resultsDir, files[files.length - 1]);
}

await main();

export type { ScenarioResult };
