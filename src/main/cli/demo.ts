// `rana demo` (`npm start`): starts three `rana kv` child processes on 127.0.0.1, drives a
// mixed key-value workload over HTTP, kills and restarts the busiest leader halfway through,
// checks every key's final value against what was acknowledged, and prints a report.

import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import os from 'node:os';
import path from 'node:path';
import { InvalidConfigError } from '../errors.js';
import { cliFilePath } from '../../shared/worker-path.js';
import { LocalCluster } from './demo/cluster.js';
import { killLeaderAndRestart, type FaultTimeline } from './demo/fault.js';
import { WriteHistory } from './demo/history.js';
import { KvHttpClient } from './demo/kv-http.js';
import { pickFreePorts } from './demo/ports.js';
import { formatCheck, formatErrorsTable, formatFault, formatOpsTable, formatProgress } from './demo/report.js';
import { WorkloadStats } from './demo/stats.js';
import { waitForLeaders } from './demo/status.js';
import { checkFinalValues } from './demo/verify.js';
import { Workload } from './demo/workload.js';

export interface DemoOptions {
  /** How long the workload runs, in seconds. */
  durationS: number;
  /** Concurrent HTTP clients, each with one request in flight. */
  clients: number;
  /** Raft groups the keys are spread over (`rana kv --groups`). */
  groups: number;
  /** Kill the node leading the most groups halfway through and restart it 3 s later. */
  kill: boolean;
  /** Keep the temporary data directory (node data and logs) instead of removing it. */
  keepData: boolean;
  /** Number of distinct keys the workload uses, 1,000 by default. */
  keyCount?: number;
  /** Stream that receives the progress line and the report, process.stdout by default. */
  output?: NodeJS.WritableStream;
  /** Command that runs one node, before its `--id ...` options. The default is `[node, dist/main/cli/rana.js, 'kv']`. */
  kvCommand?: readonly string[];
}

/** Options as commander passes them for `demo --duration <s> --clients <n> --groups <n> --no-kill --keep-data`. */
export interface DemoCliOptions {
  duration: string | number;
  clients: string | number;
  groups: string | number;
  kill: boolean;
  keepData?: boolean;
}

const nodeIds = ['n1', 'n2', 'n3'] as const;
const readyTimeoutMs = 30_000;
const restartDelayMs = 3_000;
const requestTimeoutMs = 5_000;
const stopTimeoutMs = 5_000;
/** How long the failover probe keeps polling after the workload ends. */
const failoverGraceMs = 5_000;
const defaultKeyCount = 1_000;

/** Converts and validates commander's option values. Raises InvalidConfigError naming the invalid option. */
export function demoOptionsFromCli(cli: DemoCliOptions): DemoOptions {
  return {
    durationS: parseNumber('--duration', cli.duration, 1, 3_600),
    clients: parseNumber('--clients', cli.clients, 1, 1_024),
    groups: parseNumber('--groups', cli.groups, 1, 10_000),
    kill: cli.kill,
    keepData: cli.keepData === true,
  };
}

function parseNumber(option: string, raw: string | number, min: number, max: number): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidConfigError(`${option} ${String(raw)} is invalid: pass a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Writes event lines and the progress line. On a TTY the progress line is rewritten in place. */
class DemoOutput {
  readonly #stream: NodeJS.WritableStream;
  readonly #isTty: boolean;
  #progressShown = false;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
    this.#isTty = (stream as { isTTY?: boolean }).isTTY === true;
  }

  line(text: string): void {
    this.#stream.write(`${this.#clearProgress()}${text}\n`);
  }

  /** Shows a progress line: rewritten every call on a TTY, printed every second call otherwise. */
  progress(text: string, tick: number): void {
    if (this.#isTty) {
      this.#stream.write(`\r\x1b[2K${text}`);
      this.#progressShown = true;
    } else if (tick % 2 === 0) {
      this.#stream.write(`${text}\n`);
    }
  }

  #clearProgress(): string {
    if (!this.#progressShown) {
      return '';
    }
    this.#progressShown = false;
    return '\r\x1b[2K';
  }
}

/**
 * Runs the demo scenario and returns the process exit code: 0 when the cluster served the
 * workload and the final check passed, 1 on a failure, 130 when interrupted by SIGINT or
 * SIGTERM. Child processes are stopped on every path, including process exit.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  demoOptionsFromCli({ duration: options.durationS, clients: options.clients, groups: options.groups, kill: options.kill });
  if (options.keyCount !== undefined) {
    parseNumber('keyCount', options.keyCount, 1, 1_000_000);
  }
  const output = new DemoOutput(options.output ?? process.stdout);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'rana-demo-'));
  const ports = await pickFreePorts(2 * nodeIds.length);
  const cluster = new LocalCluster({
    kvCommand: options.kvCommand ?? [process.execPath, cliFilePath(), 'kv'],
    nodeIds,
    ports,
    groups: options.groups,
    dataDir,
  }, (line) => output.line(line));
  const client = new KvHttpClient(requestTimeoutMs, options.clients + 4);
  const abort = new AbortController();

  let signalCount = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalCount++;
    if (signalCount > 1) {
      // The 'exit' handler below still kills the nodes.
      process.exit(130);
    }
    output.line(`received ${signal}: stopping the workload and the nodes (send it again to exit at once)`);
    abort.abort();
  };
  const onExit = (): void => {
    cluster.killAllSync();
    if (!options.keepData) {
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  try {
    output.line(`rana demo: ${nodeIds.length} nodes, ${options.groups} groups, ${options.clients} clients, ${options.durationS} s, data in ${dataDir}`);
    const exitCode = await runScenario(options, cluster, client, output, abort.signal);
    return abort.signal.aborted ? 130 : exitCode;
  } catch (error) {
    output.line(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
    return abort.signal.aborted ? 130 : 1;
  } finally {
    await cluster.stopAll(stopTimeoutMs);
    client.close();
    if (options.keepData) {
      output.line(`data and node logs kept in ${dataDir}`);
    } else {
      await rm(dataDir, { recursive: true, force: true });
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  }
}

async function runScenario(
  options: DemoOptions,
  cluster: LocalCluster,
  client: KvHttpClient,
  output: DemoOutput,
  signal: AbortSignal,
): Promise<number> {
  const keyCount = options.keyCount ?? defaultKeyCount;
  const durationMs = options.durationS * 1000;

  const startMs = performance.now();
  cluster.startAll();
  await waitForLeaders(cluster, client, cluster.nodes, options.groups, readyTimeoutMs, signal);
  output.line(`every group has a leader on every node after ${(performance.now() - startMs).toFixed(0)} ms; starting the workload`);

  const stats = new WorkloadStats();
  const history = new WriteHistory();
  const workload = new Workload(cluster, client, stats, history, { clients: options.clients, keyCount, durationMs });
  const workloadStartMs = performance.now();

  let tick = 0;
  const progressTimer = setInterval(() => {
    tick++;
    const sample = stats.closeSecond((performance.now() - workloadStartMs) / 1000, cluster.aliveCount());
    output.progress(formatProgress(sample, options.durationS, stats.totalErrors(), cluster.nodes.length), tick);
  }, 1000);

  let fault: Promise<FaultTimeline | null> = Promise.resolve(null);
  if (options.kill) {
    const faultConfig = {
      groups: options.groups,
      restartDelayMs,
      failoverDeadlineMs: workloadStartMs + durationMs + failoverGraceMs,
      recoveryTimeoutMs: readyTimeoutMs,
    };
    // An abort rejects the delay, and then no node is killed.
    fault = delay(durationMs / 2, undefined, { signal }).then(() => killLeaderAndRestart(cluster, client, faultConfig, signal), () => null);
  }

  try {
    await workload.run(signal);
  } finally {
    clearInterval(progressTimer);
  }
  const elapsedS = (performance.now() - workloadStartMs) / 1000;
  // The restart or the failover probe can outlast a short workload; both are bounded.
  const faultTimeline = await fault;
  if (signal.aborted) {
    return 130;
  }

  output.line('workload finished; reading every key for the check');
  // Wait for leaders again so that the final reads do not race the restarted node's election.
  const alive = cluster.nodes.filter((node) => cluster.isAlive(node));
  await waitForLeaders(cluster, client, alive, options.groups, readyTimeoutMs, signal).catch((error: Error) => output.line(`before the check: ${error.message}`));
  const check = await checkFinalValues(cluster, client, history, keyCount);

  output.line('');
  output.line(`=== rana demo report: ${cluster.nodes.length} nodes, ${options.groups} groups, ${options.clients} clients, ${keyCount} keys, ${elapsedS.toFixed(1)} s ===`);
  output.line('');
  output.line(formatOpsTable(stats, elapsedS));
  output.line('');
  output.line('errors by kind (a refused connection is retried on the next node; a 409 is not an error)');
  output.line(formatErrorsTable(stats));
  output.line('');
  if (faultTimeline !== null) {
    output.line(formatFault(faultTimeline, stats.series, workloadStartMs));
  } else {
    output.line(options.kill ? 'no node was killed: no node reported its status halfway through' : 'no node was killed (--no-kill)');
  }

  const crashed = cluster.nodes.filter((node) => node.unexpectedExit !== null);
  for (const node of crashed) {
    output.line(`node ${node.id} exited unexpectedly (${node.unexpectedExit}); its log ends with:\n${cluster.logTail(node)}`);
  }
  const clusterRan = stats.totalOps() > 0 && crashed.length === 0;
  if (stats.totalOps() === 0) {
    output.line('the cluster completed no operation');
  }
  output.line('');
  output.line(formatCheck(check, keyCount));
  return check.passed && clusterRan ? 0 : 1;
}
