// Three `rana kv` processes on loopback TCP: replication, leader failure, catch-up and loss
// of quorum, end to end through the HTTP API.

import { afterEach, describe, expect, it } from 'vitest';
import { KvCluster } from './support/kv-cluster.js';

let cluster: KvCluster | null = null;

afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

describe('three-node KV cluster', () => {
  it('commits writes and reads them back through any node', async () => {
    cluster = await KvCluster.start({ groups: 4 });
    for (let i = 0; i < 20; i++) {
      const writer = cluster.nodes[i % 3].id;
      const response = await cluster.put(writer, `key-${i}`, `value-${i}`);
      expect(response.status, await response.text()).toBe(204);
    }
    for (let i = 0; i < 20; i++) {
      for (const node of cluster.nodes) {
        const response = await cluster.get(node.id, `key-${i}`);
        expect(response.status).toBe(200);
        expect(await response.text()).toBe(`value-${i}`);
      }
    }
    expect((await cluster.get('n1', 'never-written')).status).toBe(404);

    const cas = await cluster.put('n2', 'key-0', 'next', 'wrong');
    expect(cas.status).toBe(409);
    expect(await cas.text()).toBe('value-0');
    expect((await cluster.put('n3', 'key-0', 'next', 'value-0')).status).toBe(204);
    expect(await (await cluster.get('n1', 'key-0')).text()).toBe('next');
  });

  it('elects a new leader after SIGKILL and keeps acknowledged writes', async () => {
    cluster = await KvCluster.start({ groups: 4 });
    const acknowledged = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const response = await cluster.put(cluster.nodes[i % 3].id, `k${i}`, `v${i}`);
      expect(response.status).toBe(204);
      acknowledged.set(`k${i}`, `v${i}`);
    }

    const victim = await cluster.busiestLeader();
    await cluster.kill(victim, 'SIGKILL');
    const leaders = await cluster.waitForLeaders();
    for (const leader of leaders.values()) expect(leader).not.toBe(victim);

    const survivor = cluster.nodes.find((n) => n.id !== victim)!.id;
    for (const [key, value] of acknowledged) {
      const response = await cluster.get(survivor, key);
      expect(response.status, `${key} after killing ${victim}`).toBe(200);
      expect(await response.text()).toBe(value);
    }
    expect((await cluster.put(survivor, 'after-kill', 'yes')).status).toBe(204);
  });

  it('catches up a restarted node', async () => {
    cluster = await KvCluster.start({ groups: 2 });
    const lagging = 'n3';
    await cluster.kill(lagging, 'SIGKILL');
    await cluster.waitForLeaders();
    for (let i = 0; i < 50; i++) {
      expect((await cluster.put('n1', `late-${i}`, `x${i}`)).status).toBe(204);
    }

    cluster.startNode(lagging);
    await cluster.waitForLeaders();
    const caughtUp = await cluster.waitFor('n3 to apply what the leaders committed', async () => {
      const mine = await cluster!.status(lagging);
      const theirs = await cluster!.status('n1');
      if (!mine || !theirs) return undefined;
      for (const group of theirs) {
        const local = mine.find((g) => g.name === group.name);
        if (!local || local.lastApplied < group.commitIndex) return undefined;
      }
      return mine;
    });
    expect(caughtUp).toHaveLength(2);
    for (let i = 0; i < 50; i += 7) {
      expect(await (await cluster.get(lagging, `late-${i}`)).text()).toBe(`x${i}`);
    }
  });

  it('times out writes without a quorum', async () => {
    cluster = await KvCluster.start({ groups: 1, extraArgs: ['--timeout-ms', '1500'] });
    expect((await cluster.put('n1', 'before', '1')).status).toBe(204);
    // A follower learns the new commit index a moment after the leader replies, so wait until
    // every member reports the same one.
    const before = await cluster.waitFor('every member to learn the commit index', async () => {
      const indexes = await Promise.all(cluster!.nodes.map(async (n) => (await cluster!.status(n.id))?.[0]?.commitIndex));
      return indexes.every((index) => index !== undefined && index === indexes[0]) ? indexes[0] : undefined;
    });

    await cluster.kill('n2', 'SIGKILL');
    await cluster.kill('n3', 'SIGKILL');
    const response = await cluster.put('n1', 'lost', '2');
    expect(response.status).toBe(503);
    const after = (await cluster.status('n1'))![0];
    expect(after.commitIndex).toBe(before);

    // With a quorum back, the cluster serves again. The timed-out write may or may not have
    // committed, because its outcome was unknown, but nothing acknowledged is lost.
    cluster.startNode('n2');
    await cluster.waitForLeaders();
    expect(await (await cluster.get('n2', 'before')).text()).toBe('1');
  });
});
