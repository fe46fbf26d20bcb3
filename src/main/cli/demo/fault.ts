import { setTimeout as delay } from 'node:timers/promises';
import type { KvNode, LocalCluster } from './cluster.js';
import type { KvHttpClient } from './kv-http.js';
import { allGroupsLed, fetchStatus, mergeStatuses, statusPollIntervalMs } from './status.js';

/** Timeline of the kill and restart of one node. Times are `performance.now()` milliseconds. */
export interface FaultTimeline {
  victim: string;
  /** Groups the victim led just before the kill. */
  groupsLed: number;
  killAtMs: number;
  restartAtMs: number | null;
  /**
   * Time from the kill until every group had committed an entry past its pre-kill commit index,
   * or null if that was not seen. NOTE: polled every `statusPollIntervalMs`, so it is late by up
   * to one interval, and it relies on a new leader committing an entry (its no-op) on election.
   */
  failoverMs: number | null;
  /** Time from the restart until the restarted node reported a leader for every group, or null if that was not seen. */
  recoveryMs: number | null;
  notes: string[];
}

export interface FaultConfig {
  groups: number;
  restartDelayMs: number;
  /** `performance.now()` time after which the failover probe stops and failover is reported as not seen. */
  failoverDeadlineMs: number;
  recoveryTimeoutMs: number;
}

/**
 * Kills the node that leads the most groups with SIGKILL, restarts it after `restartDelayMs`
 * with the same arguments and data directory, and measures failover and recovery by polling
 * `/status`. Returns null when no node reported a status before the kill.
 */
export async function killLeaderAndRestart(
  cluster: LocalCluster,
  client: KvHttpClient,
  config: FaultConfig,
  signal: AbortSignal,
): Promise<FaultTimeline | null> {
  const alive = cluster.nodes.filter((node) => cluster.isAlive(node));
  const before = mergeStatuses(await Promise.all(alive.map((node) => fetchStatus(client, node))));
  if (before.size === 0) {
    return null;
  }

  const ledCounts = new Map<string, number>();
  for (const { leader } of before.values()) {
    if (leader !== null) {
      ledCounts.set(leader, (ledCounts.get(leader) ?? 0) + 1);
    }
  }
  let victim = alive[0];
  for (const node of alive) {
    if ((ledCounts.get(node.id) ?? 0) > (ledCounts.get(victim.id) ?? 0)) {
      victim = node;
    }
  }

  await cluster.kill(victim);
  const timeline: FaultTimeline = {
    victim: victim.id,
    groupsLed: ledCounts.get(victim.id) ?? 0,
    killAtMs: performance.now(),
    restartAtMs: null,
    failoverMs: null,
    recoveryMs: null,
    notes: [],
  };
  const baseline = new Map([...before].map(([name, group]) => [name, group.commitIndex]));

  await Promise.all([
    probeFailover(cluster, client, victim, baseline, timeline, config, signal),
    restartAndProbeRecovery(cluster, client, victim, timeline, config, signal),
  ]);
  return timeline;
}

/** Polls the surviving nodes until every group has a leader and a commit index above `baseline`. */
async function probeFailover(
  cluster: LocalCluster,
  client: KvHttpClient,
  victim: KvNode,
  baseline: Map<string, number>,
  timeline: FaultTimeline,
  config: FaultConfig,
  signal: AbortSignal,
): Promise<void> {
  const survivors = cluster.nodes.filter((node) => node !== victim);
  while (!signal.aborted && performance.now() < config.failoverDeadlineMs) {
    const merged = mergeStatuses(await Promise.all(survivors.map((node) => fetchStatus(client, node))));
    let recovered = merged.size >= baseline.size;
    for (const [name, commitIndex] of baseline) {
      const group = merged.get(name);
      if (group === undefined || group.leader === null || group.commitIndex <= commitIndex) {
        recovered = false;
      }
    }
    if (recovered) {
      timeline.failoverMs = performance.now() - timeline.killAtMs;
      return;
    }
    await delay(statusPollIntervalMs);
  }
}

async function restartAndProbeRecovery(
  cluster: LocalCluster,
  client: KvHttpClient,
  victim: KvNode,
  timeline: FaultTimeline,
  config: FaultConfig,
  signal: AbortSignal,
): Promise<void> {
  try {
    await delay(config.restartDelayMs, undefined, { signal });
  } catch {
    // Aborted: the demo is stopping every node anyway.
    return;
  }
  cluster.start(victim);
  timeline.restartAtMs = performance.now();

  const deadlineMs = timeline.restartAtMs + config.recoveryTimeoutMs;
  while (!signal.aborted && performance.now() < deadlineMs) {
    if (!cluster.isAlive(victim)) {
      timeline.notes.push(`recovery: ${victim.id} exited after its restart; its log ends with:\n${cluster.logTail(victim)}`);
      return;
    }
    if (allGroupsLed(await fetchStatus(client, victim), config.groups)) {
      timeline.recoveryMs = performance.now() - timeline.restartAtMs;
      return;
    }
    await delay(statusPollIntervalMs);
  }
  timeline.notes.push(`recovery: ${victim.id} did not report a leader for every group within ${config.recoveryTimeoutMs} ms of its restart`);
}
