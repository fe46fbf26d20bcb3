// End-to-end scenarios: each starts a fresh cluster of child processes, forms its groups,
// drives load through the load generator's rana Node, and measures one window.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { probeDisk } from './baselines.js';
import { BenchCluster, LOAD_NODE_ID, type ClusterSample } from './cluster.js';
import type { LatencySummary, LoadCollectResult, LoadRunArgs } from './load-process.js';
import { ProgressBar } from './progress.js';
import type { ProcessSample } from './sample.js';

export interface ScenarioParams {
  /** Cluster nodes; 1 gives rana with a single member per group (no replication). */
  nodes: number;
  /** Groups hosted on the cluster. */
  groups: number;
  /** Groups that receive load, the first `active` of the hosted ones. 0 means no load (idle). */
  active: number;
  clientsPerGroup: number;
  inflightPerClient: number;
  payloadBytes: number;
  warmupS: number;
  durationS: number;
  syncMethod: 'datasync' | 'sync' | 'none';
  /** SIGKILL the node leading the most groups this far into the window; null for no kill. */
  killAtS: number | null;
  timeoutMs: number;
}

export interface NodeFigures {
  cpuPercent: number;
  peakRssMiB: number;
  fsyncsPerS: number;
  entriesPerFsync: number | null;
  /** Bytes this node sent to other cluster nodes per second (load generator traffic excluded). */
  sentBytesPerS: number;
  sentMessagesPerS: number;
}

export interface FailoverFigures {
  killedNode: string;
  /** Groups the killed node led just before the kill. */
  groupsLedByKilled: number;
  /** From the kill until the last group completes a command again. */
  recoveryMs: number | null;
  /** From the kill until half the groups complete a command again. */
  recoveryMedianMs: number | null;
  groupsNotRecovered: number;
}

export interface ScenarioFigures {
  windowS: number;
  setupS: number;
  /** startCluster calls repeated during setup because a member did not start (a peer was suspected). */
  formRetries: number;
  committed: number;
  /** Commands committed from the start of the load to the end of the window, warm-up included. */
  committedSinceStart: number;
  commandsPerS: number;
  errors: Record<string, number>;
  latency: LatencySummary | null;
  /** CPU seconds per 1,000 committed commands, summed over the nodes and the load generator. */
  cpuSecondsPer1000: number | null;
  /** As cpuSecondsPer1000, nodes only. */
  nodeCpuSecondsPer1000: number | null;
  loadCpuPercent: number | null;
  nodes: Record<string, NodeFigures>;
  fsyncsPerS: number;
  entriesPerFsync: number | null;
  /** Mean bytes per WAL entry record, header included, as written. */
  walRecordBytes: number | null;
  interNodeBytesPerS: number;
  interNodeMessagesPerS: number;
  failover: FailoverFigures | null;
}

/** The state of the machine around one scenario, to judge how much other work disturbed it. */
export interface ScenarioConditions {
  /** `os.loadavg()[0]` when the window opened and when it closed. */
  loadAverage1mStart: number;
  loadAverage1mEnd: number;
  /** A 0.5 s disk probe just before the cluster started. */
  diskSyncsPerS: number;
  diskP50Ms: number;
  diskRegime: 'normal' | 'slow';
}

export interface ScenarioResult {
  name: string;
  params: ScenarioParams;
  figures: ScenarioFigures;
  conditions: ScenarioConditions;
}

export interface RunContext {
  cpuProfDir: string | null;
  /** Where the processes' log files are kept when a scenario fails, or always with keepLogs. */
  logDir: string;
  keepLogs: boolean;
}

/**
 * startCluster calls in flight while forming groups. Each start makes its node fsync a config
 * file, two directories and a meta file on the main thread. With 64 in flight, one frame of
 * start requests blocked a node for over a second on a busy disk, and its peers suspected it.
 */
const GROUP_FORM_CONCURRENCY = 16;

/** Data directories of the scenarios running now, so an interrupted run can remove them. */
export const activeRoots = new Set<string>();

function groupNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `g${i}`);
}

/** Setup time allowed for forming groups and electing their leaders (an estimate with a wide margin). */
function setupTimeoutMs(groups: number): number {
  return 60_000 + groups * 30;
}

export async function runScenario(name: string, params: ScenarioParams, context: RunContext): Promise<ScenarioResult> {
  const bar = new ProgressBar(name);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `rana-bench-${name}-`));
  activeRoots.add(root);
  const withLoad = params.active > 0;
  let cluster: BenchCluster | null = null;
  try {
    const disk = probeDisk(0.5, 2000, null);
    const setupStartMs = performance.now();
    bar.status(`starting ${params.nodes} node(s)${withLoad ? ' and the load generator' : ''}`);
    cluster = await BenchCluster.start({ nodes: params.nodes, withLoad, root, syncMethod: params.syncMethod, cpuProfDir: context.cpuProfDir });
    bar.status(`forming ${params.groups} group(s)`);
    const groups = groupNames(params.groups);
    const formRetries = await cluster.form(groups, GROUP_FORM_CONCURRENCY, setupTimeoutMs(params.groups));
    bar.status('waiting for leaders');
    await cluster.waitForLeaders(params.groups, setupTimeoutMs(params.groups));
    const setupS = (performance.now() - setupStartMs) / 1000;

    const loadAverage1mStart = os.loadavg()[0];
    const figures = withLoad
      ? await measureLoad(cluster, groups.slice(0, params.active), params, bar)
      : await measureIdle(cluster, params, bar);
    figures.setupS = setupS;
    figures.formRetries = formRetries;
    const conditions: ScenarioConditions = {
      loadAverage1mStart,
      loadAverage1mEnd: os.loadavg()[0],
      diskSyncsPerS: disk.syncsPerS,
      diskP50Ms: disk.p50Ms,
      diskRegime: disk.regime,
    };
    bar.done(`${summarize(figures)}, load average ${conditions.loadAverage1mEnd.toFixed(1)}`);
    return { name, params, figures, conditions };
  } catch (error) {
    bar.done(`failed: ${(error as Error).message.split('\n')[0]}`);
    await cluster?.stop();
    cluster = null;
    keepLogs(root, path.join(context.logDir, name));
    throw error;
  } finally {
    if (cluster !== null) {
      await cluster.stop();
      if (context.keepLogs) keepLogs(root, path.join(context.logDir, name));
    }
    fs.rmSync(root, { recursive: true, force: true });
    activeRoots.delete(root);
  }
}

/** Copies the processes' log files out of a scenario's directory before it is removed. */
function keepLogs(root: string, target: string): void {
  fs.mkdirSync(target, { recursive: true });
  for (const file of fs.readdirSync(root).filter((f) => f.endsWith('.log'))) fs.copyFileSync(path.join(root, file), path.join(target, file));
  process.stderr.write(`process logs kept in ${target}\n`);
}

async function measureLoad(cluster: BenchCluster, active: string[], params: ScenarioParams, bar: ProgressBar): Promise<ScenarioFigures> {
  const load = cluster.load!;
  const runArgs: LoadRunArgs = {
    groups: active,
    nodes: cluster.nodeIds,
    clientsPerGroup: params.clientsPerGroup,
    inflightPerClient: params.inflightPerClient,
    payloadBytes: params.payloadBytes,
    timeoutMs: params.timeoutMs,
  };
  await load.call('run', runArgs);
  await tick(params.warmupS * 1000, (elapsedMs) => bar.update(0, `warm-up ${(elapsedMs / 1000).toFixed(0)}/${params.warmupS} s`));

  const before = await cluster.sample();
  const loadBefore = await load.call<ProcessSample>('mark');
  let failover: { killedNode: string; groupsLedByKilled: number; killEpochMs: number } | null = null;
  const totalMs = params.durationS * 1000;

  await tick(totalMs, async (elapsedMs) => {
    const { committed, errors } = await load.call<{ committed: number; errors: number }>('progress');
    const rate = committed / Math.max(0.001, elapsedMs / 1000);
    bar.update(elapsedMs / totalMs, `${formatCount(rate)} cmd/s${errors > 0 ? `, ${errors} errors` : ''}${failover ? `, killed ${failover.killedNode}` : ''}`);
    if (params.killAtS !== null && failover === null && elapsedMs >= params.killAtS * 1000) {
      failover = await killBusiestLeader(cluster);
      await load.call('watch', { sinceEpochMs: failover.killEpochMs });
    }
  });

  const collected = await load.call<LoadCollectResult>('collect');
  const after = await cluster.sample();
  await load.call('stopLoad', { timeoutMs: params.timeoutMs + 1000 }, params.timeoutMs + 5000);
  const figures = computeFigures(before, after, loadBefore, collected.sample, collected.committed);
  figures.errors = collected.errors;
  figures.committedSinceStart = collected.committedSinceStart;
  figures.latency = collected.latency;
  if (failover !== null) figures.failover = failoverFigures(failover, collected, active.length);
  return figures;
}

async function measureIdle(cluster: BenchCluster, params: ScenarioParams, bar: ProgressBar): Promise<ScenarioFigures> {
  // Let the elections' last messages and WAL writes finish before the window opens.
  await tick(params.warmupS * 1000, (elapsedMs) => bar.update(0, `settling ${(elapsedMs / 1000).toFixed(0)}/${params.warmupS} s`));
  const before = await cluster.sample();
  const totalMs = params.durationS * 1000;
  await tick(totalMs, (elapsedMs) => bar.update(elapsedMs / totalMs, `idle ${(elapsedMs / 1000).toFixed(0)}/${params.durationS} s`));
  const after = await cluster.sample();
  return computeFigures(before, after, null, null, 0);
}

async function killBusiestLeader(cluster: BenchCluster): Promise<{ killedNode: string; groupsLedByKilled: number; killEpochMs: number }> {
  const counts = await cluster.leaderCounts();
  let killedNode = cluster.nodeIds[0];
  for (const [id, c] of Object.entries(counts)) if (c.leading > counts[killedNode].leading) killedNode = id;
  const killEpochMs = performance.timeOrigin + performance.now();
  await cluster.kill(killedNode);
  return { killedNode, groupsLedByKilled: counts[killedNode].leading, killEpochMs };
}

function failoverFigures(kill: { killedNode: string; groupsLedByKilled: number; killEpochMs: number }, collected: LoadCollectResult, groups: number): FailoverFigures {
  const delaysMs = Object.values(collected.firstCommitAfterWatchMs).map((t) => t - kill.killEpochMs).sort((a, b) => a - b);
  const recovered = delaysMs.length;
  return {
    killedNode: kill.killedNode,
    groupsLedByKilled: kill.groupsLedByKilled,
    recoveryMs: recovered === groups ? delaysMs[recovered - 1] : null,
    recoveryMedianMs: recovered * 2 >= groups && recovered > 0 ? delaysMs[Math.ceil(groups / 2) - 1] : null,
    groupsNotRecovered: groups - recovered,
  };
}

/** Calls `onTick` every 500 ms until `durationMs` has passed. */
async function tick(durationMs: number, onTick: (elapsedMs: number) => unknown): Promise<void> {
  const startMs = performance.now();
  for (;;) {
    const elapsedMs = performance.now() - startMs;
    if (elapsedMs >= durationMs) return;
    await onTick(elapsedMs);
    await new Promise((resolve) => setTimeout(resolve, Math.min(500, Math.max(1, durationMs - (performance.now() - startMs)))));
  }
}

function cpuSeconds(before: ProcessSample, after: ProcessSample): number {
  return (after.cpuUserUs + after.cpuSystemUs - before.cpuUserUs - before.cpuSystemUs) / 1e6;
}

function computeFigures(
  before: ClusterSample,
  after: ClusterSample,
  loadBefore: ProcessSample | null,
  loadAfter: ProcessSample | null,
  committed: number,
): ScenarioFigures {
  const firstNode = Object.values(before.nodes)[0];
  const lastNode = Object.values(after.nodes)[0];
  const windowS = (lastNode.epochMs - firstNode.epochMs) / 1000;
  const nodes: Record<string, NodeFigures> = {};
  let nodeCpuS = 0;
  let fsyncs = 0;
  let entries = 0;
  let walBytes = 0;
  let sentBytes = 0;
  let sentMessages = 0;
  // NOTE: a node killed during the window has no end sample, so its CPU time and WAL counts
  // are missing from every total below.
  for (const [id, end] of Object.entries(after.nodes)) {
    const start = before.nodes[id];
    const cpuS = cpuSeconds(start, end);
    nodeCpuS += cpuS;
    const nodeFsyncs = (end.wal?.fsyncs ?? 0) - (start.wal?.fsyncs ?? 0);
    const nodeEntries = (end.wal?.entries ?? 0) - (start.wal?.entries ?? 0);
    fsyncs += nodeFsyncs;
    entries += nodeEntries;
    walBytes += (end.wal?.bytes ?? 0) - (start.wal?.bytes ?? 0);
    let nodeSentBytes = 0;
    let nodeSentMessages = 0;
    for (const [peer, traffic] of Object.entries(end.peers)) {
      if (peer === LOAD_NODE_ID) continue;
      nodeSentBytes += traffic.sentBytes - (start.peers[peer]?.sentBytes ?? 0);
      nodeSentMessages += traffic.sentMessages - (start.peers[peer]?.sentMessages ?? 0);
    }
    sentBytes += nodeSentBytes;
    sentMessages += nodeSentMessages;
    nodes[id] = {
      cpuPercent: (cpuS / windowS) * 100,
      peakRssMiB: end.maxRssKb / 1024,
      fsyncsPerS: nodeFsyncs / windowS,
      entriesPerFsync: nodeFsyncs > 0 ? nodeEntries / nodeFsyncs : null,
      sentBytesPerS: nodeSentBytes / windowS,
      sentMessagesPerS: nodeSentMessages / windowS,
    };
  }
  const loadCpuS = loadBefore !== null && loadAfter !== null ? cpuSeconds(loadBefore, loadAfter) : 0;
  return {
    windowS,
    setupS: 0,
    formRetries: 0,
    committed,
    committedSinceStart: committed,
    commandsPerS: committed / windowS,
    errors: {},
    latency: null,
    cpuSecondsPer1000: committed > 0 ? ((nodeCpuS + loadCpuS) / committed) * 1000 : null,
    nodeCpuSecondsPer1000: committed > 0 ? (nodeCpuS / committed) * 1000 : null,
    loadCpuPercent: loadBefore !== null ? (loadCpuS / windowS) * 100 : null,
    nodes,
    fsyncsPerS: fsyncs / windowS,
    entriesPerFsync: fsyncs > 0 ? entries / fsyncs : null,
    // Registration records are a few per window at most; the entries dominate the bytes.
    walRecordBytes: entries > 0 ? walBytes / entries : null,
    interNodeBytesPerS: sentBytes / windowS,
    interNodeMessagesPerS: sentMessages / windowS,
    failover: null,
  };
}

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function summarize(f: ScenarioFigures): string {
  const parts = [];
  if (f.committed > 0) parts.push(`${formatCount(f.commandsPerS)} cmd/s`);
  if (f.latency !== null && f.latency.count > 0) parts.push(`p50 ${(f.latency.percentilesUs['50'] / 1000).toFixed(2)} ms, p99 ${(f.latency.percentilesUs['99'] / 1000).toFixed(2)} ms`);
  const cpu = Object.entries(f.nodes).map(([id, n]) => `${id} ${n.cpuPercent.toFixed(1)}%`).join(' ');
  parts.push(`CPU ${cpu}`);
  if (f.failover) parts.push(`failover ${f.failover.recoveryMs === null ? `${f.failover.groupsNotRecovered} groups not recovered` : `${Math.round(f.failover.recoveryMs)} ms`}`);
  parts.push(`setup ${f.setupS.toFixed(1)} s`);
  return parts.join(', ');
}
