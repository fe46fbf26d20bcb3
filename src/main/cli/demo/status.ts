import type { KvHttpClient } from './kv-http.js';
import type { KvNode, LocalCluster } from './cluster.js';

/** One group as `GET /status` reports it. */
export interface GroupStatus {
  name: string;
  role: string;
  term: number;
  commitIndex: number;
  lastApplied: number;
  /** Node id of the leader as this node sees it, or null when it has none. */
  leader: string | null;
}

export interface NodeStatus {
  node: string;
  groups: GroupStatus[];
}

/** Interval between `/status` polls while waiting for leaders. */
export const statusPollIntervalMs = 100;

/** Fetches and validates `GET /status` from a node. Returns null when the request fails or the body is not a valid status. */
export async function fetchStatus(client: KvHttpClient, node: KvNode): Promise<NodeStatus | null> {
  const outcome = await client.status(node.http);
  if (outcome.kind !== 'response' || outcome.status !== 200) {
    return null;
  }
  try {
    const parsed = JSON.parse(outcome.body) as Partial<NodeStatus>;
    if (typeof parsed.node !== 'string' || !Array.isArray(parsed.groups)) {
      return null;
    }
    return parsed as NodeStatus;
  } catch {
    return null;
  }
}

/** True when the status lists `groups` groups and every one has a leader. */
export function allGroupsLed(status: NodeStatus | null, groups: number): boolean {
  return status !== null && status.groups.length >= groups && status.groups.every((group) => group.leader !== null);
}

/** Raised when the cluster does not elect leaders in time, or a node exits while the demo waits. */
export class ClusterNotReadyError extends Error {
  readonly code = 'CLUSTER_NOT_READY';

  constructor(message: string) {
    super(message);
    this.name = 'ClusterNotReadyError';
  }
}

/**
 * Polls `/status` on `nodes` every `statusPollIntervalMs` until each lists a leader for every
 * group. Raises ClusterNotReadyError after `timeoutMs`, when a node exits, or on abort.
 */
export async function waitForLeaders(
  cluster: LocalCluster,
  client: KvHttpClient,
  nodes: readonly KvNode[],
  groups: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const deadlineMs = performance.now() + timeoutMs;
  for (;;) {
    for (const node of nodes) {
      if (!cluster.isAlive(node)) {
        throw new ClusterNotReadyError(`node ${node.id} exited before every group had a leader (${node.unexpectedExit ?? 'stopped'}); its log ends with:\n${cluster.logTail(node)}`);
      }
    }
    const statuses = await Promise.all(nodes.map((node) => fetchStatus(client, node)));
    if (statuses.every((status) => allGroupsLed(status, groups))) {
      return;
    }
    if (signal.aborted) {
      throw new ClusterNotReadyError('interrupted while waiting for leaders');
    }
    if (performance.now() >= deadlineMs) {
      const lagging = nodes.filter((_, i) => !allGroupsLed(statuses[i], groups));
      const tails = lagging.map((node) => `--- ${node.id} (${node.logFile}):\n${cluster.logTail(node)}`).join('\n');
      throw new ClusterNotReadyError(
        `nodes ${lagging.map((node) => node.id).join(', ')} did not report a leader for all ${groups} groups within ${timeoutMs} ms; their logs end with:\n${tails}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, statusPollIntervalMs));
  }
}

/**
 * Merges the statuses of several nodes: for each group, the leader reported by most nodes and
 * the highest commit index seen.
 */
export function mergeStatuses(statuses: readonly (NodeStatus | null)[]): Map<string, { leader: string | null; commitIndex: number }> {
  const votes = new Map<string, Map<string, number>>();
  const commitIndexes = new Map<string, number>();
  for (const status of statuses) {
    for (const group of status?.groups ?? []) {
      commitIndexes.set(group.name, Math.max(commitIndexes.get(group.name) ?? 0, group.commitIndex));
      const groupVotes = votes.get(group.name) ?? new Map<string, number>();
      votes.set(group.name, groupVotes);
      if (group.leader !== null) {
        groupVotes.set(group.leader, (groupVotes.get(group.leader) ?? 0) + 1);
      }
    }
  }
  const merged = new Map<string, { leader: string | null; commitIndex: number }>();
  for (const [name, groupVotes] of votes) {
    let leader: string | null = null;
    let best = 0;
    for (const [candidate, count] of groupVotes) {
      if (count > best) {
        leader = candidate;
        best = count;
      }
    }
    merged.set(name, { leader, commitIndex: commitIndexes.get(name) ?? 0 });
  }
  return merged;
}
