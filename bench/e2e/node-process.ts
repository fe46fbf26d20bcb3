// One cluster node of an end-to-end benchmark, run as a child process of the controller: a
// rana Node with one system (`default`) and the KV machine. The controller drives it over IPC.

import { Node, kvMachine, type System } from '../../dist/main/index.js';
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
  node = await Node.start({ id: args.id, listen: args.listen, peers: args.peers });
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

/** Starts every group with a member on each listed node; `concurrency` bounds calls in flight. */
async function form(args: FormArgs): Promise<null> {
  const current = requireSystem();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < args.groups.length) {
      const name = args.groups[next++];
      const servers = args.members.map((member) => ({ name, node: member }));
      const { notStarted } = await current.startCluster(name, { machine: 'kv' }, servers);
      if (notStarted.length > 0) {
        throw new Error(`group ${name} did not start on ${notStarted.map((n) => `${n.server.node} (${n.error.message})`).join(', ')}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, args.concurrency) }, worker));
  return null;
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
