// One cluster node of an end-to-end benchmark, run as a child process of the controller: a
// rana Node with one system (`default`) and the KV machine. The controller drives it over IPC.

import { Node, createLogger, kvMachine, type System } from '../../dist/main/index.js';
import { serveIpc } from './ipc.js';
import { sampleProcess, type WalSample } from './sample.js';

export interface NodeStartArgs {
  id: string;
  listen: string;
  peers: Record<string, string>;
  dataDir: string;
  syncMethod: 'datasync' | 'sync' | 'none';
}

export interface FormArgs {
  groups: string[];
  /** Node ids holding a member of every group. */
  members: string[];
  /** startCluster calls in flight at once. */
  concurrency: number;
}

/**
 * Attempts per group. startCluster is idempotent, so a group whose member did not start
 * (typically because a busy peer was suspected for a moment) is started again once the
 * peers are back up.
 */
const FORM_ATTEMPTS_MAX = 5;

export interface LeaderCounts {
  /** Local members that know a leader. */
  withLeader: number;
  /** Local members that are the leader. */
  leading: number;
  total: number;
}

let node: Node | null = null;
let system: System | null = null;

function walSample(): WalSample | null {
  if (system === null) return null;
  const c = system.wal.counters;
  return { batches: c.batches, entries: c.entries, bytes: c.bytes, fsyncs: c.fsyncs };
}

async function start(args: NodeStartArgs): Promise<null> {
  // Lines go to the process's log file; RANA_LOG_LEVEL overrides the level.
  node = await Node.start({ id: args.id, listen: args.listen, peers: args.peers, logger: createLogger({}) });
  system = await node.startSystem({ name: 'default', dataDir: args.dataDir, wal: { syncMethod: args.syncMethod } });
  system.registerMachine('kv', kvMachine);
  return null;
}

/** Resolves once every listed peer's connection is up. */
async function waitForPeers(peers: string[]): Promise<null> {
  const current = requireNode();
  if (peers.every((peer) => current.transport.isUp(peer))) return null;
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (!peers.every((peer) => current.transport.isUp(peer))) return;
      current.transport.off('peer_up', check);
      resolve();
    };
    current.transport.on('peer_up', check);
  });
  return null;
}

/**
 * Starts every group with a member on each listed node; `concurrency` bounds calls in flight.
 * Returns how many startCluster calls were repeated after a member failed to start.
 */
async function form(args: FormArgs): Promise<{ retries: number }> {
  const current = requireSystem();
  const peers = args.members.filter((member) => member !== requireNode().id);
  let next = 0;
  let retries = 0;
  const worker = async (): Promise<void> => {
    while (next < args.groups.length) {
      const name = args.groups[next++];
      const servers = args.members.map((member) => ({ name, node: member }));
      for (let attempt = 1; ; attempt++) {
        const { notStarted } = await current.startCluster(name, { machine: 'kv' }, servers);
        if (notStarted.length === 0) break;
        const failures = notStarted.map((n) => `${n.server.node} (${n.error.message})`).join(', ');
        if (attempt >= FORM_ATTEMPTS_MAX) throw new Error(`group ${name} did not start after ${attempt} attempts: ${failures}`);
        requireNode().logger.warn({ group: name, attempt, failures }, 'group did not start on every member; retrying once the peers are up');
        retries++;
        await waitForPeers(peers);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, args.concurrency) }, worker));
  return { retries };
}

function leaders(): LeaderCounts {
  const counts: LeaderCounts = { withLeader: 0, leading: 0, total: 0 };
  for (const server of requireSystem().servers()) {
    counts.total++;
    if (server.leaderNode !== null) counts.withLeader++;
    if (server.role === 'leader') counts.leading++;
  }
  return counts;
}

async function stop(): Promise<null> {
  await node?.stop();
  node = null;
  system = null;
  // Exit after the response is sent, so a --cpu-prof profile is written.
  setTimeout(() => process.exit(0), 50);
  return null;
}

function requireNode(): Node {
  if (node === null) throw new Error('node not started; send start first');
  return node;
}

function requireSystem(): System {
  if (system === null) throw new Error('system not started; send start first');
  return system;
}

serveIpc({
  start,
  waitForPeers,
  form,
  leaders,
  sample: () => sampleProcess(node, walSample),
  stop,
});
