// A follower server receiving a snapshot from its leader, with a real WAL and real files and
// the leader's messages fed in by hand: a completed install, a new leader mid-transfer, and a
// transfer that stops making progress.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crc32 from 'crc-32';
import { pack } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/main/logger.js';
import { createKvMachine } from '../../src/main/machines/kv.js';
import type { InstallSnapshotReply, RaftMessage } from '../../src/main/raft/types.js';
import { RaftServer, type ServerHost } from '../../src/main/server.js';
import { MetaStore } from '../../src/main/storage/meta-store.js';
import { SnapshotPool } from '../../src/main/storage/snapshot-store.js';
import { WalClient } from '../../src/main/storage/wal-client.js';
import { encodeSnapshotHeader, snapshotDirName } from '../../src/shared/snapshot-format.js';

const CHUNK_BYTES = 1024;
const TIMEOUT_MS = 5_000;

interface Harness {
  server: RaftServer;
  wal: WalClient;
  sent: { to: string; message: RaftMessage }[];
  snapshotsDir: string;
  walDir: string;
  uid: string;
  setNow(ms: number): void;
  cleanup(): Promise<void>;
}

const harnesses: Harness[] = [];

afterEach(async () => {
  for (const harness of harnesses.splice(0)) await harness.cleanup();
});

async function follower(): Promise<Harness> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-install-'));
  const uid = 'g_test';
  const serverDir = path.join(root, 'servers', uid);
  fs.mkdirSync(serverDir, { recursive: true });
  const walDir = path.join(root, 'wal');
  const { wal } = await WalClient.open({ dir: walDir });
  const sent: { to: string; message: RaftMessage }[] = [];
  let nowMs = 0;
  const pool = new SnapshotPool();
  const host: ServerHost = {
    nodeId: 'c', wal, logger: silentLogger(),
    send: (to, _cluster, message) => sent.push({ to, message }),
    setTicking: () => {}, nowMs: () => nowMs, random: () => 0.5,
    serverDir, snapshotPool: pool, snapshotWritten: () => {}, syncMethod: 'datasync',
    snapshotChunkBytes: CHUNK_BYTES, receiveSnapshotTimeoutMs: TIMEOUT_MS,
  };
  const members = ['a', 'b', 'c'].map((id) => ({ id, membership: 'voter' as const }));
  const server = new RaftServer({ name: 'g', uid, machine: 'kv', members }, createKvMachine(), host, MetaStore.open(path.join(serverDir, 'meta')),
    { snapshot: null, storage: null, entries: [] });
  const harness: Harness = {
    server, wal, sent, uid, walDir, snapshotsDir: path.join(serverDir, 'snapshots'),
    setNow: (ms) => {
      nowMs = ms;
    },
    cleanup: async () => {
      server.stop('test end');
      await wal.close().catch(() => {});
      await pool.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  harnesses.push(harness);
  return harness;
}

/** A KV snapshot file at index 50, term 2, holding `keys` keys. */
function snapshotFile(keys: number): Uint8Array {
  const state = Array.from({ length: keys }, (_, i) => [`key-${i}`, `value-${i}`]);
  const data = pack(state).slice();
  const header = encodeSnapshotHeader(50, 2, data);
  const file = new Uint8Array(header.byteLength + data.byteLength);
  file.set(header, 0);
  file.set(data, header.byteLength);
  return file;
}

function sendChunk(harness: Harness, file: Uint8Array, offset: number, from = 'a', term = 2): void {
  const data = file.subarray(offset, offset + CHUNK_BYTES);
  harness.server.receive(from, {
    type: 'install_snapshot', term, leaderId: from, snapshotIndex: 50, snapshotTerm: 2, offset,
    totalBytes: file.byteLength, data, chunkCrc: crc32.buf(data) >>> 0, done: offset + data.byteLength >= file.byteLength,
  });
}

function snapshotReplies(harness: Harness): InstallSnapshotReply[] {
  return harness.sent.flatMap((s) => (s.message.type === 'install_snapshot_reply' ? [s.message] : []));
}

const partialDir = (harness: Harness): string => path.join(harness.snapshotsDir, `${snapshotDirName(50, 2)}.receiving`);

describe('snapshot install on a follower', () => {
  it('installs a chunked snapshot and marks the WAL', async () => {
    const harness = await follower();
    const file = snapshotFile(200);
    expect(file.byteLength).toBeGreaterThan(2 * CHUNK_BYTES);
    for (let offset = 0; offset < file.byteLength; offset += CHUNK_BYTES) sendChunk(harness, file, offset);

    const replies = snapshotReplies(harness);
    expect(replies.slice(0, -1).every((r) => r.status === 'next')).toBe(true);
    expect(replies.at(-1)).toMatchObject({ status: 'installed', matchIndex: 50 });
    expect(harness.server.snapshotIndex).toBe(50);
    expect(harness.server.localQuery((state) => (state as Map<string, string>).get('key-199'))).toBe('value-199');
    expect(fs.existsSync(path.join(harness.snapshotsDir, snapshotDirName(50, 2)))).toBe(true);

    await harness.wal.close();
    const reopened = await WalClient.open({ dir: harness.walDir });
    expect(reopened.resets.get(harness.uid)).toEqual({ index: 50, term: 2 });
    await reopened.wal.close();
  });

  it('drops a partial snapshot when a new leader appears', async () => {
    const harness = await follower();
    const file = snapshotFile(200);
    sendChunk(harness, file, 0);
    expect(fs.existsSync(partialDir(harness))).toBe(true);

    harness.server.receive('b', { type: 'append_entries', term: 3, leaderId: 'b', prevIndex: 0, prevTerm: 0, entries: [], leaderCommit: 0, seq: 1 });
    expect(fs.existsSync(partialDir(harness))).toBe(false);
    // A late chunk of the old transfer starts nothing: its term is stale now.
    sendChunk(harness, file, CHUNK_BYTES);
    expect(fs.existsSync(partialDir(harness))).toBe(false);
    expect(snapshotReplies(harness).at(-1)).toMatchObject({ status: 'rejected', term: 3 });
  });

  it('drops a transfer with no progress for receiveSnapshotTimeoutMs', async () => {
    const harness = await follower();
    const file = snapshotFile(200);
    sendChunk(harness, file, 0);
    harness.server.tick(TIMEOUT_MS - 1);
    expect(fs.existsSync(partialDir(harness))).toBe(true);
    harness.server.tick(TIMEOUT_MS);
    expect(fs.existsSync(partialDir(harness))).toBe(false);
    // The leader's retry of the next chunk is answered with offset 0: the transfer restarts.
    sendChunk(harness, file, CHUNK_BYTES);
    expect(snapshotReplies(harness).at(-1)).toMatchObject({ status: 'next', nextOffset: 0 });
  });

  it('asks again for a chunk that arrives out of order', async () => {
    const harness = await follower();
    const file = snapshotFile(200);
    sendChunk(harness, file, 0);
    sendChunk(harness, file, 2 * CHUNK_BYTES);
    expect(snapshotReplies(harness).at(-1)).toMatchObject({ status: 'next', nextOffset: CHUNK_BYTES });
  });
});
