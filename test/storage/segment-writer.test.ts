// The segment writer thread on real WAL files: overwritten entries, deleted servers, entries
// covered by a snapshot, and a WAL file handed over twice.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentFileCache, SegmentLog } from '../../src/main/storage/segment-store.js';
import { SegmentWriterClient, type FlushedRange } from '../../src/main/storage/segment-writer-client.js';
import { WalClient } from '../../src/main/storage/wal-client.js';
import type { LogEntry } from '../../src/main/raft/types.js';
import { parseWalFileName } from '../../src/shared/wal-format.js';
import { waitUntil } from '../support/wait.js';

const roots: string[] = [];

afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function entry(index: number, term: number): LogEntry {
  return { index, term, kind: 'command', data: Uint8Array.from([index, term]) };
}

interface Setup {
  root: string;
  serversDir: string;
  walDir: string;
}

function setup(uids: string[]): Setup {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-segment-writer-'));
  roots.push(root);
  const serversDir = path.join(root, 'servers');
  for (const uid of uids) fs.mkdirSync(path.join(serversDir, uid), { recursive: true });
  return { root, serversDir, walDir: path.join(root, 'wal') };
}

/** Writes each batch of entries into its own closed WAL file and returns the closed files' paths. */
async function writeWalFiles(walDir: string, files: { uid: string; entries: LogEntry[] }[][]): Promise<string[]> {
  const total = files.reduce((sum, file) => sum + file.reduce((n, part) => n + part.entries.length, 0), 0);
  const { wal } = await WalClient.open({ dir: walDir, maxEntries: 1 });
  const rolled: string[] = [];
  wal.onRolled((file) => rolled.push(file));
  let written = 0;
  wal.onWritten((_writer, _term, from, to) => {
    written += to - from + 1;
  });
  // maxEntries 1 rolls after every batch; one batch per file, so each file is closed alone.
  for (const file of files) {
    const before = rolled.length;
    for (const part of file) {
      const writer = wal.registerWriter(part.uid);
      for (const e of part.entries) wal.append(writer, e);
    }
    const deadline = Date.now() + 10_000;
    while (rolled.length === before) {
      if (Date.now() > deadline) throw new Error('WAL did not roll over');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  expect(written).toBe(total);
  await wal.close();
  return rolled;
}

async function flushAll(writer: SegmentWriterClient, files: string[]): Promise<FlushedRange[][]> {
  const reports: FlushedRange[][] = [];
  writer.onFlushed((_walPath, ranges) => reports.push(ranges));
  for (const file of files) writer.flush(file);
  await writer.whenIdle();
  return reports;
}


function walFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => parseWalFileName(name) !== null);
}

describe('segment writer', () => {
  it('writes an overwrite after a leader change to a newer file', async () => {
    const { serversDir, walDir } = setup(['a']);
    const files = await writeWalFiles(walDir, [
      [{ uid: 'a', entries: Array.from({ length: 10 }, (_, i) => entry(i + 1, 1)) }],
      [{ uid: 'a', entries: [entry(6, 2), entry(7, 2), entry(8, 2)] }],
    ]);
    const writer = SegmentWriterClient.start(serversDir, 'datasync', { maxEntries: 4 });
    const reports = await flushAll(writer, files);
    expect(reports).toEqual([
      [{ uid: 'a', fromIndex: 1, toIndex: 10, term: 1 }],
      [{ uid: 'a', fromIndex: 6, toIndex: 8, term: 2 }],
    ]);
    const segments = new SegmentLog(path.join(serversDir, 'a', 'segments'), new SegmentFileCache());
    expect(segments.lastIndex()).toBe(8);
    expect(segments.entries(1, 8).map((e) => [e.index, e.term])).toEqual([
      [1, 1], [2, 1], [3, 1], [4, 1], [5, 1], [6, 2], [7, 2], [8, 2],
    ]);
    // The writer deletes a WAL file right after reporting its ranges.
    await waitUntil('the segment writer', () => Number(writer.counters.get('walFilesDeleted')) === 2);
    expect(files.every((file) => !fs.existsSync(file))).toBe(true);
    // Only the WAL file still open for writes is left.
    expect(walFiles(walDir)).toHaveLength(1);
    await writer.close();
  });

  it('skips deleted servers and snapshot-covered entries', async () => {
    const { serversDir, walDir } = setup(['a', 'b']);
    const files = await writeWalFiles(walDir, [
      [{ uid: 'a', entries: Array.from({ length: 6 }, (_, i) => entry(i + 1, 1)) }, { uid: 'b', entries: [entry(1, 1), entry(2, 1)] }],
    ]);
    fs.rmSync(path.join(serversDir, 'b'), { recursive: true });
    const writer = SegmentWriterClient.start(serversDir, 'datasync', { maxEntries: 4 });
    writer.snapshotWritten('a', 4);
    const reports = await flushAll(writer, files);
    expect(reports).toEqual([[{ uid: 'a', fromIndex: 5, toIndex: 6, term: 1 }]]);
    expect(fs.existsSync(path.join(serversDir, 'b'))).toBe(false);
    const segments = new SegmentLog(path.join(serversDir, 'a', 'segments'), new SegmentFileCache());
    expect(segments.firstIndex()).toBe(5);
    expect(segments.entries(5, 6).map((e) => e.index)).toEqual([5, 6]);
    await writer.close();
  });

  it('skips a WAL file handed over twice', async () => {
    const { serversDir, walDir } = setup(['a']);
    const files = await writeWalFiles(walDir, [[{ uid: 'a', entries: [entry(1, 1), entry(2, 1)] }]]);
    const writer = SegmentWriterClient.start(serversDir, 'datasync');
    const reports = await flushAll(writer, [files[0], files[0]]);
    expect(reports).toEqual([[{ uid: 'a', fromIndex: 1, toIndex: 2, term: 1 }], []]);
    expect(Number(writer.counters.get('entries'))).toBe(2);
    await writer.close();
  });
});
