// A WAL worker thread that dies is replaced, and the entries it had not reported written are
// appended again. A gap in a writer's indexes makes the worker request a resend. The tests use
// real worker threads and files, and RANA_EXIT_THREAD_AT (test only) ends the worker thread
// mid-batch.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Node } from '../../src/main/index.js';
import { createKvMachine } from '../../src/main/machines/kv.js';
import { WalClient } from '../../src/main/storage/wal-client.js';
import type { LogEntry } from '../../src/main/raft/types.js';
import { freePorts } from '../support/kv-cluster.js';
import { waitUntil } from '../support/wait.js';

const roots: string[] = [];

afterEach(() => {
  delete process.env.RANA_EXIT_THREAD_AT;
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function tempDir(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-wal-restart-'));
  roots.push(root);
  return root;
}


function entry(index: number): LogEntry {
  return { index, term: 1, kind: 'command', data: Uint8Array.from([index % 256, 7]) };
}

/** Opens a WAL whose worker thread exits at the nth batch, before that batch is synced. */
async function openWithThreadExit(dir: string, batch: number): Promise<WalClient> {
  process.env.RANA_EXIT_THREAD_AT = `wal-mid-batch:${batch}`;
  try {
    return (await WalClient.open({ dir, maxBatchSize: 10 })).wal;
  } finally {
    delete process.env.RANA_EXIT_THREAD_AT;
  }
}

describe('WAL worker restart', () => {
  it('restarts a crashed worker and loses no entry', async () => {
    const dir = tempDir();
    const wal = await openWithThreadExit(dir, 3);
    const writer = wal.registerWriter('a');
    const appended = Array.from({ length: 100 }, (_, i) => entry(i + 1));
    let lastWritten = 0;
    let restarts = 0;
    wal.onWritten((_writer, _term, _from, to) => {
      lastWritten = Math.max(lastWritten, to);
    });
    // The role a server plays: append again everything not reported written.
    wal.onRestarted(() => {
      restarts++;
      for (const e of appended.slice(lastWritten)) wal.append(writer, e);
    });
    for (const e of appended) wal.append(writer, e);
    await waitUntil('100 written', () => lastWritten === 100);
    expect(restarts).toBe(1);
    expect(wal.counters.workerRestarts).toBe(1);
    await wal.close();

    const reopened = await WalClient.open({ dir });
    expect(reopened.recovered.get('a')!.map((e) => e.index)).toEqual(appended.map((e) => e.index));
    expect(reopened.recovered.get('a')!.map((e) => e.data[0])).toEqual(appended.map((e) => e.data[0]));
    await reopened.wal.close();
  });

  it('asks for a resend after a gap', async () => {
    const dir = tempDir();
    const { wal } = await WalClient.open({ dir });
    const writer = wal.registerWriter('a');
    let lastWritten = 0;
    const resends: number[] = [];
    wal.onWritten((_writer, _term, _from, to) => {
      lastWritten = Math.max(lastWritten, to);
    });
    wal.onResend((writerId, fromIndex) => {
      expect(writerId).toBe(writer);
      resends.push(fromIndex);
      for (let i = fromIndex; i <= 8; i++) wal.append(writer, entry(i));
    });
    for (let i = 1; i <= 5; i++) wal.append(writer, entry(i));
    await waitUntil('5 written', () => lastWritten === 5);
    wal.append(writer, entry(8)); // 6 and 7 never reach the WAL
    await waitUntil('8 written', () => lastWritten === 8);
    expect(resends).toEqual([6]);
    await wal.close();

    const reopened = await WalClient.open({ dir });
    expect(reopened.recovered.get('a')!.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await reopened.wal.close();
  });

  it('keeps every acknowledged command of a group across a worker crash', async () => {
    const dataDir = tempDir();
    const [port] = await freePorts(1);
    const start = async (): Promise<Node> => {
      const node = await Node.start({ id: 'n1', listen: `127.0.0.1:${port}` });
      const system = await node.startSystem({ name: 'default', dataDir, wal: { maxBatchSize: 4 } });
      system.registerMachine('kv', createKvMachine());
      if (system.knownServerNames().length > 0) system.restartServer('g');
      else await system.startServer('g', 'kv', [{ id: 'n1', membership: 'voter' }]);
      await system.server('g')!.waitForLeaderOtherThan(null, 10_000);
      return node;
    };
    process.env.RANA_EXIT_THREAD_AT = 'wal-mid-batch:20';
    let node: Node;
    try {
      node = await start();
    } finally {
      delete process.env.RANA_EXIT_THREAD_AT;
    }
    const puts = Array.from({ length: 200 }, (_, i) => node.processCommand({ name: 'g', node: 'n1' }, { op: 'put', key: `k${i}`, value: `v${i}` }));
    const results = await Promise.allSettled(puts);
    const acknowledged = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(acknowledged.length).toBe(200);
    expect(node.system()!.wal.counters.workerRestarts).toBe(1);
    await node.stop();

    const restarted = await start();
    expect(await restarted.consistentQuery({ name: 'g', node: 'n1' }, 'size', null)).toBe(200);
    expect(await restarted.consistentQuery({ name: 'g', node: 'n1' }, 'get', 'k199')).toBe('v199');
    await restarted.stop();
  });
});
