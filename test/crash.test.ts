// Kill -9 at each step of the storage engine, then restart: no acknowledged write may be
// missing and no command may be in the log twice. Each case runs real `rana kv` processes;
// RANA_CRASH_AT (test only, see src/shared/file-system.ts) makes the process SIGKILL itself
// at the named point.

import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import { KvCluster } from './support/kv-cluster.js';
import { SegmentFileCache, SegmentLog } from '../src/main/storage/segment-store.js';
import { WalClient } from '../src/main/storage/wal-client.js';
import { loadNewestSnapshot } from '../src/main/storage/snapshot-store.js';
import { silentLogger } from '../src/main/logger.js';
import type { LogEntry } from '../src/main/raft/types.js';
import fs from 'node:fs';
import { once } from 'node:events';

let cluster: KvCluster | null = null;

afterEach(async () => {
  delete process.env.RANA_CRASH_AT;
  await cluster?.stop();
  cluster = null;
});

/**
 * Runs `start` with RANA_CRASH_AT set, so the processes it spawns inherit it. Vitest runs each
 * test file in its own process, and this file spawns nothing else meanwhile.
 */
async function withCrashPoint<T>(point: string, start: () => Promise<T>): Promise<T> {
  process.env.RANA_CRASH_AT = point;
  try {
    return await start();
  } finally {
    delete process.env.RANA_CRASH_AT;
  }
}

/** Writes key-1, key-2, ... one at a time until the node dies or `max` writes; returns the acknowledged keys. */
async function writeUntilDeath(cluster: KvCluster, id: string, max: number): Promise<number[]> {
  const acknowledged: number[] = [];
  for (let i = 1; i <= max; i++) {
    let status: number;
    try {
      const response = await cluster.put(id, `key-${i}`, `value-${i}`);
      await response.text();
      status = response.status;
    } catch {
      break; // connection refused or reset: the process is gone
    }
    if (status === 204) acknowledged.push(i);
    if (cluster.node(id).process === null) break;
  }
  // The HTTP connection fails as the process dies; its exit event may come a moment later.
  const child = cluster.node(id).process;
  if (child !== null) {
    await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 10_000))]);
  }
  return acknowledged;
}

/**
 * Reads a stopped node's log of its one group: segments, then the WAL above them. Returns the
 * keys of every put above the snapshot, in log order, and the snapshot index.
 */
async function putKeysInLog(dataDir: string): Promise<{ keys: string[]; snapshotIndex: number }> {
  const serversDir = path.join(dataDir, 'default', 'servers');
  const [uid] = fs.readdirSync(serversDir);
  const serverDir = path.join(serversDir, uid);
  const snapshot = loadNewestSnapshot(path.join(serverDir, 'snapshots'), silentLogger());
  const snapshotIndex = snapshot?.index ?? 0;
  const segments = new SegmentLog(path.join(serverDir, 'segments'), new SegmentFileCache());
  const { wal, recovered } = await WalClient.open({ dir: path.join(dataDir, 'default', 'wal') });
  await wal.close();
  const walEntries = (recovered.get(uid) ?? []).filter((e) => e.index > snapshotIndex);
  const walFirst = walEntries[0]?.index ?? segments.lastIndex() + 1;
  const segmentFirst = Math.max(snapshotIndex + 1, segments.firstIndex());
  const fromSegments: LogEntry[] = walFirst - 1 >= segmentFirst ? segments.entries(segmentFirst, walFirst - 1) : [];
  const log = [...fromSegments, ...walEntries];
  for (let i = 1; i < log.length; i++) expect(log[i].index, 'log indexes are contiguous').toBe(log[i - 1].index + 1);
  const keys = log.filter((e) => e.kind === 'command').map((e) => (unpack(e.data) as { key: string }).key);
  return { keys, snapshotIndex };
}

const SINGLE_NODE_CASES: { point: string; args: string[] }[] = [
  { point: 'wal-mid-batch:150', args: [] },
  { point: 'wal-before-rename:3', args: [] },
  { point: 'wal-after-rename:3', args: [] },
  { point: 'segment-mid-write:3', args: [] },
  { point: 'segment-after-fsync:3', args: [] },
  { point: 'segment-after-wal-delete:3', args: [] },
  { point: 'snapshot-mid-write:2', args: ['--snapshot-interval', '60'] },
  { point: 'snapshot-before-rename:2', args: ['--snapshot-interval', '60'] },
];

describe('kill -9 at each storage step', () => {
  it.each(SINGLE_NODE_CASES)('$point loses and repeats nothing', async ({ point, args }) => {
    const extraArgs = ['--wal-max-entries', '40', '--segment-max-entries', '16', '--snapshot-interval', '100000', ...args];
    cluster = await withCrashPoint(point, () => KvCluster.start({ nodes: 1, groups: 1, extraArgs }));
    const acknowledged = await writeUntilDeath(cluster, 'n1', 2000);
    expect(cluster.node('n1').process, `n1 should have died at ${point}`).toBeNull();
    expect(acknowledged.length).toBeGreaterThan(0);

    cluster.startNode('n1');
    await cluster.waitForLeaders();
    for (const i of acknowledged) {
      const response = await cluster.get('n1', `key-${i}`);
      expect(await response.text(), `key-${i}`).toBe(`value-${i}`);
    }
    await cluster.kill('n1', 'SIGTERM');

    const { keys, snapshotIndex } = await putKeysInLog(cluster.node('n1').dataDir);
    expect(new Set(keys).size, 'a command appears twice in the log').toBe(keys.length);
    if (snapshotIndex === 0) {
      // Without a snapshot the whole log is there: every acknowledged put, plus at most the
      // one in flight at the crash.
      expect(keys.length).toBeGreaterThanOrEqual(acknowledged.length);
      expect(keys.length).toBeLessThanOrEqual(acknowledged.length + 1);
    }
  });

  it.each(['install-mid-write', 'install-before-rename'])('%s on a follower loses nothing', async (point) => {
    const WRITES = 1000;
    cluster = await KvCluster.start({
      groups: 1,
      extraArgs: ['--wal-max-entries', '200', '--segment-max-entries', '64', '--snapshot-interval', '200', '--snapshot-chunk-bytes', '4096'],
    });
    await cluster.kill('n3', 'SIGKILL');
    await cluster.waitForLeaders();
    let next = 1;
    const client = async (): Promise<void> => {
      while (next <= WRITES) {
        const i = next++;
        const response = await cluster!.put(i % 2 === 0 ? 'n1' : 'n2', `key-${i}`, `value-${i}`);
        expect(response.status, await response.text()).toBe(204);
      }
    };
    await Promise.all(Array.from({ length: 8 }, client));
    const exited = await withCrashPoint(point, async () => {
      cluster!.startNode('n3');
      return new Promise((resolve) => cluster!.node('n3').process!.once('exit', resolve));
    });
    expect(exited, `n3 should have been killed at ${point}`).toBe(null);

    cluster.startNode('n3');
    await cluster.waitFor('n3 to apply every write', async () => {
      const groups = await cluster!.status('n3');
      const leader = await cluster!.status('n1');
      if (!groups?.[0] || !leader?.[0]) return undefined;
      return groups[0].lastApplied >= leader[0].commitIndex - 1 && groups[0].lastApplied > WRITES ? true : undefined;
    }, 60_000);
    const status = await (await fetch(`http://127.0.0.1:${cluster.node('n3').httpPort}/status?digest=1`)).json() as { groups: { keys: number }[] };
    expect(status.groups[0].keys).toBe(WRITES);
    const log = fs.readFileSync(cluster.node('n3').logFile, 'utf8');
    expect(log).toContain('snapshot installed');
  });
});
