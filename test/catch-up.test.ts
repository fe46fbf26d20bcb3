// A follower stopped during many writes catches up through a snapshot streamed in several
// chunks plus append-entries, on three `rana kv` processes with small log limits. The writes
// count defaults to a size that keeps `npm test` fast; RANA_CATCH_UP_WRITES=200000 runs the
// long version by hand.

import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KvCluster } from './support/kv-cluster.js';

const WRITES = Number(process.env.RANA_CATCH_UP_WRITES ?? 6000);
const CLIENTS = 32;

let cluster: KvCluster | null = null;

afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

interface DigestStatus {
  name: string;
  lastApplied: number;
  snapshotIndex: number;
  keys: number;
  digest: number;
}

async function digests(cluster: KvCluster, id: string): Promise<DigestStatus[] | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${cluster.node(id).httpPort}/status?digest=1`);
    if (!response.ok) return null;
    return ((await response.json()) as { groups: DigestStatus[] }).groups;
  } catch {
    return null;
  }
}

/** Writes keys `from..to` with CLIENTS concurrent HTTP clients through the live nodes, retrying 503s. */
async function writeKeys(cluster: KvCluster, writers: string[], from: number, to: number): Promise<void> {
  let next = from;
  const client = async (c: number): Promise<void> => {
    while (next <= to) {
      const i = next++;
      // Bounded retries: a 503 during an election is retried, anything else fails the test.
      for (let attempt = 1; ; attempt++) {
        const response = await cluster.put(writers[(i + c) % writers.length], `key-${i}`, `value-${i}`);
        const body = await response.text();
        if (response.status === 204) break;
        if (response.status !== 503 || attempt >= 20) throw new Error(`PUT key-${i} failed with ${response.status}: ${body}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
}

describe('follower catch-up', () => {
  it('catches up through a multi-chunk snapshot and append-entries', async () => {
    cluster = await KvCluster.start({
      groups: 2,
      extraArgs: ['--wal-max-entries', '500', '--segment-max-entries', '128', '--snapshot-interval', '500', '--snapshot-chunk-bytes', '16384'],
    });
    await cluster.kill('n3', 'SIGKILL');
    await cluster.waitForLeaders();
    await writeKeys(cluster, ['n1', 'n2'], 1, WRITES);

    cluster.startNode('n3');
    const converged = await cluster.waitFor('every member with equal state', async () => {
      const all = await Promise.all(cluster!.nodes.map((n) => digests(cluster!, n.id)));
      if (all.some((groups) => groups === null || groups.length !== 2)) return undefined;
      for (let g = 0; g < 2; g++) {
        const states = all.map((groups) => groups![g]);
        if (new Set(states.map((s) => `${s.lastApplied}/${s.digest}`)).size !== 1) return undefined;
      }
      return all;
    }, 120_000);

    const keys = converged[0]!.reduce((sum, group) => sum + group.keys, 0);
    expect(keys).toBe(WRITES);
    const log = fs.readFileSync(cluster.node('n3').logFile, 'utf8');
    expect(log).toContain('snapshot installed');
    // More than one chunk: the snapshot of a group contains thousands of keys, a chunk 16 KiB.
    const receiving = log.split('\n').filter((line) => line.includes('receiving snapshot')).map((line) => JSON.parse(line) as { bytes: number });
    expect(receiving.length).toBeGreaterThan(0);
    expect(Math.max(...receiving.map((r) => r.bytes))).toBeGreaterThan(16384);
    // Every group of the follower starts from a snapshot.
    const n3 = converged[2]!;
    expect(n3.every((group) => group.snapshotIndex > 0)).toBe(true);

    // Writes after the catch-up reach n3 through append-entries.
    await writeKeys(cluster, ['n1', 'n2', 'n3'], WRITES + 1, WRITES + 200);
    const response = await cluster.get('n3', `key-${WRITES + 200}`);
    expect(await response.text()).toBe(`value-${WRITES + 200}`);
  });
});
