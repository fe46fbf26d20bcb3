// A follower's side of a snapshot transfer on real files: chunks are checked and written
// aside, the whole is verified before it is renamed into place, and an abort leaves nothing.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crc32 from 'crc-32';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageError } from '../../src/main/errors.js';
import { SnapshotReceiver } from '../../src/main/storage/snapshot-store.js';
import { SNAPSHOT_FILE_NAME, encodeSnapshotHeader, snapshotDirName } from '../../src/shared/snapshot-format.js';

const roots: string[] = [];

afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function snapshotsDir(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-receiver-'));
  roots.push(root);
  return path.join(root, 'snapshots');
}

function snapshotFile(index: number, term: number, dataBytes: number): Uint8Array {
  const data = Uint8Array.from({ length: dataBytes }, (_, i) => i % 251);
  const header = encodeSnapshotHeader(index, term, data);
  const file = new Uint8Array(header.byteLength + data.byteLength);
  file.set(header, 0);
  file.set(data, header.byteLength);
  return file;
}

function crcOf(bytes: Uint8Array): number {
  return crc32.buf(bytes) >>> 0;
}

describe('SnapshotReceiver', () => {
  it('installs a snapshot received in chunks', () => {
    const dir = snapshotsDir();
    fs.mkdirSync(path.join(dir, snapshotDirName(5, 1)), { recursive: true });
    const file = snapshotFile(40, 3, 10_000);
    const receiver = new SnapshotReceiver(dir, 'a', 3, 40, 3, file.byteLength, 0);
    for (let offset = 0; offset < file.byteLength; offset += 4096) {
      const chunk = file.subarray(offset, offset + 4096);
      expect(receiver.writeChunk(chunk, crcOf(chunk), offset)).toBe(true);
    }
    const loaded = receiver.finish();
    expect(loaded.index).toBe(40);
    expect(loaded.term).toBe(3);
    expect(loaded.data.byteLength).toBe(10_000);
    // The older snapshot describes a log the member no longer has.
    expect(fs.readdirSync(dir)).toEqual([snapshotDirName(40, 3)]);
    expect(fs.existsSync(path.join(dir, snapshotDirName(40, 3), SNAPSHOT_FILE_NAME))).toBe(true);
  });

  it('rejects a chunk whose CRC does not match', () => {
    const file = snapshotFile(40, 3, 100);
    const receiver = new SnapshotReceiver(snapshotsDir(), 'a', 3, 40, 3, file.byteLength, 0);
    expect(receiver.writeChunk(file, crcOf(file) ^ 1, 1)).toBe(false);
    expect(receiver.receivedBytes).toBe(0);
    receiver.abort();
  });

  it('refuses a corrupt whole and aborts cleanly', () => {
    const dir = snapshotsDir();
    const file = snapshotFile(40, 3, 100);
    file[file.byteLength - 1] ^= 0xff; // the chunk CRC is computed over the damaged bytes, so only the whole fails
    const receiver = new SnapshotReceiver(dir, 'a', 3, 40, 3, file.byteLength, 0);
    expect(receiver.writeChunk(file, crcOf(file), 1)).toBe(true);
    expect(() => receiver.finish()).toThrow(StorageError);
    receiver.abort();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('rejects a snapshot other than the one announced', () => {
    const file = snapshotFile(41, 3, 100);
    const receiver = new SnapshotReceiver(snapshotsDir(), 'a', 3, 40, 3, file.byteLength, 0);
    expect(receiver.writeChunk(file, crcOf(file), 1)).toBe(true);
    expect(() => receiver.finish()).toThrow('received snapshot holds index 41 term 3, but the leader announced index 40 term 3');
    receiver.abort();
  });
});
