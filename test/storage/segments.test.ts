// WAL roll-over, the segment writer, segment reads and snapshots, on real files with real
// worker threads: a single-member group in one process, restarted on the same data directory.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Node, StorageError, type System } from '../../src/main/index.js';
import { createKvMachine } from '../../src/main/machines/kv.js';
import { SegmentFileCache, SegmentLog } from '../../src/main/storage/segment-store.js';
import { WalClient } from '../../src/main/storage/wal-client.js';
import type { LogEntry } from '../../src/main/raft/types.js';
import { parseWalFileName } from '../../src/shared/wal-format.js';
import { parseSnapshotDirName, SNAPSHOT_FILE_NAME } from '../../src/shared/snapshot-format.js';
import { freePorts } from '../support/kv-cluster.js';
import { spawnSync } from 'node:child_process';
import { cliFilePath } from '../../src/shared/worker-path.js';
import { waitUntil } from '../support/wait.js';

/** Runs `rana ARGS` and returns its exit code and output. */
function rana(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cliFilePath(), ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const roots: string[] = [];
const nodes: Node[] = [];

afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-segments-'));
  roots.push(root);
  return root;
}


function walFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => parseWalFileName(name) !== null).sort();
}

function command(index: number, term = 1): LogEntry {
  return { index, term, kind: 'command', data: Uint8Array.from([index % 256, 1, 2, 3]) };
}

interface SingleNode {
  node: Node;
  system: System;
  uid: string;
}

async function startSingle(dataDir: string, options: { walMaxEntries?: number; walMaxSizeBytes?: number; segmentMaxEntries?: number; snapshotInterval?: number } = {}): Promise<SingleNode> {
  const [port] = await freePorts(1);
  const node = await Node.start({ id: 'n1', listen: `127.0.0.1:${port}` });
  nodes.push(node);
  const system = await node.startSystem({
    name: 'default',
    dataDir,
    wal: { maxEntries: options.walMaxEntries, maxSizeBytes: options.walMaxSizeBytes },
    segment: { maxEntries: options.segmentMaxEntries },
  });
  system.registerMachine('kv', createKvMachine({ snapshotInterval: options.snapshotInterval ?? 1_000_000 }));
  const known = system.knownServerNames();
  if (known.length > 0) system.restartServer('g');
  else await system.startServer('g', 'kv', [{ id: 'n1', membership: 'voter' }]);
  const server = system.server('g')!;
  await server.waitForLeaderOtherThan(null, 10_000);
  return { node, system, uid: server.config.uid };
}

async function putMany(node: Node, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) {
    await node.processCommand({ name: 'g', node: 'n1' }, { op: 'put', key: `k${i}`, value: `v${i}` });
  }
}

async function stopNode(single: SingleNode): Promise<void> {
  await single.node.stop();
  nodes.splice(nodes.indexOf(single.node), 1);
}

describe('WAL roll-over', () => {
  it('rolls over by entry count', async () => {
    const dir = path.join(tempRoot(), 'wal');
    const { wal } = await WalClient.open({ dir, maxEntries: 10, maxBatchSize: 4 });
    const rolled: string[] = [];
    wal.onRolled((file) => rolled.push(file));
    const writer = wal.registerWriter('a');
    let written = 0;
    wal.onWritten((_w, _t, _from, to) => {
      written = to;
    });
    for (let i = 1; i <= 35; i++) wal.append(writer, command(i));
    await waitUntil('35 written', () => written === 35);
    await waitUntil('3 roll-overs', () => rolled.length === 3);
    expect(wal.counters.files).toBe(4);
    expect(walFiles(dir)).toHaveLength(4);
    await wal.close();

    const reopened = await WalClient.open({ dir, maxEntries: 10 });
    expect(reopened.closedFiles.map((f) => path.basename(f))).toEqual(walFiles(dir).slice(0, 3));
    expect(reopened.recovered.get('a')!.map((e) => e.index)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    await reopened.wal.close();

    const first = path.join(dir, walFiles(dir)[0]);
    const dump = rana('wal', 'dump', first);
    expect(dump.status).toBe(0);
    expect(dump.stdout).toContain('index 10\tterm 1\tcommand\t4 bytes\tcrc ok');
    // The file rolls after the batch that reaches 10 entries, so it contains 10 to 13.
    const entryCount = Number(/WAL file 1, 1 registrations, (\d+) entries/.exec(dump.stdout)?.[1]);
    expect(entryCount).toBeGreaterThanOrEqual(10);
    expect(entryCount).toBeLessThanOrEqual(13);
    // Damage the third entry record: header 32, registration 13, two records of 36.
    const bytes = fs.readFileSync(first);
    bytes[32 + 13 + 2 * 36 + 33] ^= 0xff;
    fs.writeFileSync(first, bytes);
    const verify = rana('wal', 'verify', first);
    expect(verify.status).toBe(1);
    expect(verify.stderr).toContain(`WAL file ${first} is corrupt at byte offset ${32 + 13 + 2 * 36}`);
  });

  it('rolls over by size and accepts an entry above the limit', async () => {
    const dir = path.join(tempRoot(), 'wal');
    const { wal } = await WalClient.open({ dir, maxSizeBytes: 1000, maxBatchSize: 1 });
    const writer = wal.registerWriter('a');
    let written = 0;
    wal.onWritten((_w, _t, _from, to) => {
      written = to;
    });
    for (let i = 1; i <= 40; i++) wal.append(writer, command(i));
    wal.append(writer, { index: 41, term: 1, kind: 'command', data: new Uint8Array(5000) });
    await waitUntil('41 written', () => written === 41);
    // A file contains a 32-byte header, a 13-byte registration and 36-byte entry records, so the
    // first reaches 1000 bytes with entry 27. The second takes 28..40 and the large entry,
    // which passes the limit alone; the third is empty.
    await waitUntil('3 files', () => wal.counters.files === 3);
    expect(walFiles(dir)).toHaveLength(3);
    expect(fs.statSync(path.join(dir, walFiles(dir)[0])).size).toBe(1017);
    expect(wal.counters.fileSizeBytes).toBe(32);
    await wal.close();
  });
});

describe('segment writer', () => {
  it('moves closed WAL files into segments and drops them from memory', async () => {
    const dataDir = tempRoot();
    const single = await startSingle(dataDir, { walMaxEntries: 40, segmentMaxEntries: 32 });
    await putMany(single.node, 1, 300);
    const { system } = single;
    await waitUntil('closed WAL files deleted', () => system.segmentWriter.counters.get('walFilesDeleted') >= BigInt(system.wal.counters.files - 1));
    await system.segmentWriter.whenIdle();

    const walDir = path.join(dataDir, 'default', 'wal');
    expect(walFiles(walDir).length).toBe(1);
    const status = system.server('g')!.status();
    const segments = new SegmentLog(path.join(dataDir, 'default', 'servers', single.uid, 'segments'), new SegmentFileCache());
    // Segments hold exactly a prefix of the log, contiguous from 1.
    const lastInSegments = segments.lastIndex();
    expect(lastInSegments).toBeGreaterThan(200);
    const entries = segments.entries(1, lastInSegments);
    expect(entries.map((e) => e.index)).toEqual(Array.from({ length: lastInSegments }, (_, i) => i + 1));
    expect(entries.every((e) => e.term === status.term)).toBe(true);
    expect(Number(system.segmentWriter.counters.get('entries'))).toBe(lastInSegments);
    // Files hold at most 32 entries each.
    expect(segments.fileCount).toBe(Math.ceil(lastInSegments / 32));

    await stopNode(single);
    const restarted = await startSingle(dataDir, { walMaxEntries: 40, segmentMaxEntries: 32 });
    for (const i of [1, 150, 300]) {
      expect(await restarted.node.consistentQuery({ name: 'g', node: 'n1' }, 'get', `k${i}`)).toBe(`v${i}`);
    }
    expect(await restarted.node.consistentQuery({ name: 'g', node: 'n1' }, 'size', null)).toBe(300);
  });

  it('reports a corrupt segment record with file and offset', async () => {
    const dataDir = tempRoot();
    const single = await startSingle(dataDir, { walMaxEntries: 20, segmentMaxEntries: 16 });
    await putMany(single.node, 1, 60);
    const { system } = single;
    await waitUntil('closed WAL files deleted', () => system.segmentWriter.counters.get('walFilesDeleted') >= 2n);
    await stopNode(single);

    const segmentsDir = path.join(dataDir, 'default', 'servers', single.uid, 'segments');
    const first = path.join(segmentsDir, fs.readdirSync(segmentsDir).sort()[0]);
    const bytes = fs.readFileSync(first);
    // Flip a byte in the data of the fifth entry (slot 4).
    const slotOffset = 64 + 4 * 32;
    const dataOffset = bytes.readUInt32LE(slotOffset + 16);
    bytes[dataOffset] ^= 0xff;
    fs.writeFileSync(first, bytes);

    const segments = new SegmentLog(segmentsDir, new SegmentFileCache());
    expect(() => segments.entries(1, 10)).toThrow(StorageError);
    expect(() => segments.entries(1, 10)).toThrow(`segment file ${first} is corrupt at byte offset ${slotOffset}`);
    expect(segments.entries(1, 4)).toHaveLength(4);

    const verify = rana('segment', 'verify', first);
    expect(verify.status).toBe(1);
    expect(verify.stderr).toContain(`segment file ${first} is corrupt at byte offset ${slotOffset}`);
    const dump = rana('segment', 'dump', first);
    expect(dump.stdout).toContain(`${slotOffset}\tindex 5\t`);
    expect(dump.stdout).toContain('CRC MISMATCH');
    const second = path.join(segmentsDir, fs.readdirSync(segmentsDir).sort()[1]);
    expect(rana('segment', 'verify', second).stdout).toContain('ok, 16 of 16 slots used, entries 17..32');
  });
});

describe('snapshots', () => {
  it('snapshots, deletes covered segments and restarts from the snapshot', async () => {
    const dataDir = tempRoot();
    const single = await startSingle(dataDir, { walMaxEntries: 30, segmentMaxEntries: 16, snapshotInterval: 50 });
    await putMany(single.node, 1, 260);
    const { system } = single;
    const serverDir = path.join(dataDir, 'default', 'servers', single.uid);
    await waitUntil('a snapshot at 200 or above', () => system.server('g')!.snapshotIndex >= 200);
    await waitUntil('closed WAL files deleted', () => system.segmentWriter.counters.get('walFilesDeleted') >= BigInt(system.wal.counters.files - 1));
    await system.segmentWriter.whenIdle();

    // A snapshot write deletes the older ones right after its rename, so wait for that step.
    const snapshotDirs = (): number => fs.readdirSync(path.join(serverDir, 'snapshots')).filter((n) => parseSnapshotDirName(n) !== null).length;
    await waitUntil('at most two snapshots', () => snapshotDirs() <= 2);
    expect(snapshotDirs()).toBeGreaterThan(0);
    const snapshotIndex = system.server('g')!.snapshotIndex;
    const segments = new SegmentLog(path.join(serverDir, 'segments'), new SegmentFileCache());
    // Segment files wholly below the snapshot go once the writer handles the snapshot message.
    await waitUntil('covered segments deleted', () => {
      segments.refresh();
      return segments.fileCount === 0 || segments.lastIndex() > snapshotIndex;
    });
    expect(segments.fileCount).toBeLessThanOrEqual(Math.ceil((260 - snapshotIndex) / 16) + 1);
    expect(Number(system.segmentWriter.counters.get('filesDeleted'))).toBeGreaterThan(0);

    await stopNode(single);
    const restarted = await startSingle(dataDir, { walMaxEntries: 30, segmentMaxEntries: 16, snapshotInterval: 50 });
    // A write in flight at the stop may have added a newer snapshot; the restart loads the newest.
    const newestOnDisk = Math.max(...fs.readdirSync(path.join(serverDir, 'snapshots')).map((n) => parseSnapshotDirName(n)?.index ?? 0));
    expect(newestOnDisk).toBeGreaterThanOrEqual(snapshotIndex);
    expect(restarted.system.server('g')!.snapshotIndex).toBe(newestOnDisk);
    expect(await restarted.node.consistentQuery({ name: 'g', node: 'n1' }, 'size', null)).toBe(260);
    expect(await restarted.node.consistentQuery({ name: 'g', node: 'n1' }, 'get', 'k260')).toBe('v260');
  });

  it('falls back to the previous snapshot when the newest is corrupt', async () => {
    const dataDir = tempRoot();
    const single = await startSingle(dataDir, { walMaxEntries: 1000, snapshotInterval: 40 });
    const serverDir = path.join(dataDir, 'default', 'servers', single.uid);
    const snapshotsDir = path.join(serverDir, 'snapshots');
    const snapshotCount = (): number => (fs.existsSync(snapshotsDir) ? fs.readdirSync(snapshotsDir).filter((n) => parseSnapshotDirName(n) !== null).length : 0);
    // A cursor released while the previous snapshot is still being written is skipped, so
    // write until two snapshots exist (bounded: 50 rounds of 40 commands).
    let written = 0;
    for (let round = 0; round < 50 && snapshotCount() < 2; round++) {
      await putMany(single.node, written + 1, written + 40);
      written += 40;
    }
    await waitUntil('two snapshots', () => snapshotCount() >= 2);
    await stopNode(single);

    const names = fs.readdirSync(snapshotsDir).filter((n) => parseSnapshotDirName(n) !== null).sort();
    // A write in progress at the stop can leave a third snapshot for a moment: use the newest two.
    const [previous, latest] = names.slice(-2);
    const newest = path.join(snapshotsDir, latest, SNAPSHOT_FILE_NAME);
    const bytes = fs.readFileSync(newest);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(newest, bytes);

    const verify = rana('snapshot', 'verify', snapshotsDir);
    expect(verify.status).toBe(1);
    expect(verify.stdout).toContain(`${previous}/${SNAPSHOT_FILE_NAME}: ok`);
    expect(verify.stderr).toContain(`snapshot file ${newest} is corrupt at byte offset 48: data CRC mismatch`);

    const restarted = await startSingle(dataDir, { walMaxEntries: 1000, snapshotInterval: 40 });
    expect(restarted.system.server('g')!.snapshotIndex).toBe(parseSnapshotDirName(previous)!.index);
    expect(await restarted.node.consistentQuery({ name: 'g', node: 'n1' }, 'size', null)).toBe(written);
  });
});
