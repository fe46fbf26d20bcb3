// The public API in one process: three Nodes over real loopback TCP, each with a real WAL
// worker writing to a temporary directory.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidConfigError, Node, NotLeaderError, RanaError, kvMachine, type System } from '../src/main/index.js';
import { freePorts } from './support/kv-cluster.js';

interface Running {
  nodes: Node[];
  systems: System[];
  root: string;
}

let running: Running | null = null;

afterEach(async () => {
  if (!running) return;
  await Promise.all(running.nodes.map((n) => n.stop()));
  fs.rmSync(running.root, { recursive: true, force: true });
  running = null;
});

async function startNodes(count: number): Promise<Running> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-api-'));
  const ports = await freePorts(count);
  const ids = ports.map((_, i) => `n${i + 1}`);
  const nodes = await Promise.all(
    ids.map((id, i) =>
      Node.start({
        id,
        listen: `127.0.0.1:${ports[i]}`,
        peers: Object.fromEntries(ids.filter((other) => other !== id).map((other) => [other, `127.0.0.1:${ports[ids.indexOf(other)]}`])),
      }),
    ),
  );
  const systems = await Promise.all(nodes.map((node, i) => node.startSystem({ name: 'default', dataDir: path.join(root, ids[i]) })));
  for (const system of systems) system.registerMachine('kv', kvMachine);
  running = { nodes, systems, root };
  return running;
}

async function waitForLeader(node: Node, name: string): Promise<string> {
  const server = node.system()!.server(name)!;
  const leader = await server.waitForLeaderOtherThan(null, 10_000);
  if (leader === null) throw new Error(`no leader for ${name} within 10 s`);
  return leader;
}

describe('public API', () => {
  it('replicates commands and reads linearizably', async () => {
    const { nodes, systems } = await startNodes(3);
    const servers = nodes.map((n) => ({ name: 'orders', node: n.id }));
    const { started, notStarted } = await systems[0].startCluster('orders', { machine: 'kv' }, servers);
    expect(notStarted).toEqual([]);
    expect(started).toHaveLength(3);

    const leader = await waitForLeader(nodes[0], 'orders');
    const follower = nodes.find((n) => n.id !== leader)!;
    const result = await follower.processCommand({ name: 'orders', node: follower.id }, { op: 'put', key: 'a', value: '1' });
    expect(result.reply).toEqual({ ok: true });
    expect(result.leader.node).toBe(leader);

    for (const node of nodes) {
      expect(await node.consistentQuery({ name: 'orders', node: node.id }, 'get', 'a')).toBe('1');
    }
    const members = nodes[0].members({ name: 'orders', node: nodes[0].id });
    expect(members.members.map((m) => m.node).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(members.leader?.node).toBe(leader);
  });

  it('restarts a stopped server with its log', async () => {
    const { nodes, systems } = await startNodes(3);
    await systems[0].startCluster('orders', { machine: 'kv' }, nodes.map((n) => ({ name: 'orders', node: n.id })));
    const leader = await waitForLeader(nodes[0], 'orders');
    const leaderNode = nodes.find((n) => n.id === leader)!;
    for (let i = 0; i < 20; i++) {
      await leaderNode.processCommand({ name: 'orders', node: leader }, { op: 'put', key: `k${i}`, value: `v${i}` });
    }

    const restarted = nodes.find((n) => n.id !== leader)!;
    const system = restarted.system()!;
    system.stopServer('orders');
    expect(system.server('orders')).toBeUndefined();
    system.restartServer('orders');
    const size = await restarted.consistentQuery({ name: 'orders', node: restarted.id }, 'size');
    expect(size).toBe(20);
    // The restarted member's own state catches up through replication, not just the leader's.
    await restarted.system()!.server('orders')!.waitForLeaderOtherThan(null, 10_000);
    const local = () => restarted.localQuery({ name: 'orders', node: restarted.id }, (state) => (state as Map<string, string>).size);
    for (let attempt = 0; attempt < 100 && local() < 20; attempt++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(local()).toBe(20);
  });

  it('rejects bad configuration with clear errors', async () => {
    const { nodes, systems } = await startNodes(1);
    await expect(systems[0].startCluster('bad name', { machine: 'kv' }, [{ name: 'bad name', node: 'n1' }])).rejects.toThrow(InvalidConfigError);
    await expect(systems[0].startCluster('x', { machine: 'kv' }, [{ name: 'y', node: 'n1' }])).rejects.toThrow(/must be named x/);
    const result = await systems[0].startCluster('x', { machine: 'missing' }, [{ name: 'x', node: 'n1' }]);
    expect(result.notStarted[0].error.message).toMatch(/machine missing is not registered/);
    await expect(nodes[0].processCommand({ name: 'nope', node: 'n1' }, {})).rejects.toMatchObject({ code: 'CLUSTER_NOT_FOUND' });
    await expect(Node.start({ id: 'n9', listen: 'localhost' })).rejects.toThrow(/expected host:port/);
  });

  it('single-member cluster commits alone and names its query errors', async () => {
    const { nodes, systems } = await startNodes(1);
    await systems[0].startCluster('solo', { machine: 'kv' }, [{ name: 'solo', node: 'n1' }]);
    const ref = { name: 'solo', node: 'n1' };
    const { reply } = await nodes[0].processCommand(ref, { op: 'cas', key: 'k', expected: null, value: 'v' });
    expect(reply).toEqual({ ok: true, previous: null });
    const { reply: mismatch } = await nodes[0].processCommand(ref, { op: 'cas', key: 'k', expected: 'other', value: 'w' });
    expect(mismatch).toEqual({ ok: false, current: 'v' });
    await expect(nodes[0].consistentQuery(ref, 'nope')).rejects.toThrow(/has no query "nope"/);
    expect(NotLeaderError.prototype).toBeInstanceOf(RanaError);
  });

  it('stops every server when an fdatasync fails', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-api-'));
    const [port] = await freePorts(1);
    const node = await Node.start({ id: 'n1', listen: `127.0.0.1:${port}` });
    running = { nodes: [node], systems: [], root };
    const system = await node.startSystem({ name: 'default', dataDir: root, wal: { faultInjection: { failSyncAfter: 3 } } });
    system.registerMachine('kv', kvMachine);
    await system.startCluster('solo', { machine: 'kv' }, [{ name: 'solo', node: 'n1' }]);
    const ref = { name: 'solo', node: 'n1' };

    // Sequential puts, so each needs its own sync; the third sync fails.
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      try {
        await node.processCommand(ref, { op: 'put', key: `k${i}`, value: 'v' }, { timeoutMs: 3000 });
        outcomes.push('ok');
      } catch (error) {
        outcomes.push((error as RanaError).code);
      }
    }
    expect(outcomes.slice(0, 1)).toEqual(['ok']);
    expect(outcomes).toContain('STOPPED');
    expect(outcomes.at(-1)).toBe('CLUSTER_NOT_FOUND');
    expect(system.failure?.code).toBe('STORAGE');
    expect(system.server('solo')).toBeUndefined();
    await expect(system.startCluster('again', { machine: 'kv' }, [{ name: 'again', node: 'n1' }])).resolves.toMatchObject({
      notStarted: [{ error: { code: 'STORAGE' } }],
    });
  });
});
