import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WalClient } from '../../src/main/storage/wal-client.js';
import { StorageError } from '../../src/main/errors.js';
import { WalReplay, scanWalFile, type WalRecord } from '../../src/shared/wal-format.js';

const tempDirs: string[] = [];
const WAL_FILE = '0000000000000001.wal';

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-wal-recovery-'));
  tempDirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** Scans and replays `bytes` in-process the way the worker does; returns entry indexes per uid. */
function replayBytes(filePath: string, bytes: Uint8Array): { indexes: Map<string, number[]>; tornTailBytes: number } {
  const replay = new WalReplay();
  const result = scanWalFile(filePath, bytes, (record) => replay.apply(filePath, bytes, record));
  const indexes = new Map<string, number[]>();
  for (const [uid, entries] of replay.entriesByUid) indexes.set(uid, entries.map((e) => e.index));
  return { indexes, tornTailBytes: result.tornTailBytes };
}

function listRecords(filePath: string, bytes: Uint8Array): WalRecord[] {
  const records: WalRecord[] = [];
  scanWalFile(filePath, bytes, (record) => records.push(record));
  return records;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

// A WAL file with writers a (entries 1..10) and b (1..10), written by the real worker.
let sampleBytes: Uint8Array;
let sampleRecords: WalRecord[];

beforeAll(async () => {
  const dir = path.join(tempDir(), 'wal');
  const { wal } = await WalClient.open({ dir, maxBatchSize: 4 });
  const a = wal.registerWriter('a');
  const b = wal.registerWriter('b');
  for (let index = 1; index <= 10; index++) {
    wal.append(a, { index, term: 1, kind: 'command', data: new Uint8Array(100).fill(index) });
    wal.append(b, { index, term: 1, kind: 'command', data: new Uint8Array(100).fill(index) });
  }
  await wal.close();
  sampleBytes = new Uint8Array(fs.readFileSync(path.join(dir, WAL_FILE)));
  sampleRecords = listRecords('sample', sampleBytes);
});

describe('WAL recovery', () => {
  it('reads back every record of the sample', () => {
    const { indexes, tornTailBytes } = replayBytes('sample', sampleBytes);
    expect(indexes.get('a')).toEqual(range(1, 10));
    expect(indexes.get('b')).toEqual(range(1, 10));
    expect(tornTailBytes).toBe(0);
    expect(sampleRecords.at(-1)!.end).toBe(sampleBytes.byteLength);
  });

  it('drops a torn tail cut at every byte of the last record', () => {
    const last = sampleRecords.at(-1)!;
    expect(last.type).toBe('entry');
    for (let cut = last.offset; cut < sampleBytes.byteLength; cut++) {
      const { indexes, tornTailBytes } = replayBytes('cut', sampleBytes.subarray(0, cut));
      expect(indexes.get('a'), `cut at ${cut}`).toEqual(range(1, 10));
      expect(indexes.get('b'), `cut at ${cut}`).toEqual(range(1, 9));
      expect(tornTailBytes, `cut at ${cut}`).toBe(cut - last.offset);
    }
  });

  it('drops a zero-filled tail', () => {
    const last = sampleRecords.at(-1)!;
    for (let cut = last.offset; cut < sampleBytes.byteLength; cut += 7) {
      const bytes = new Uint8Array(sampleBytes.byteLength + 4096);
      bytes.set(sampleBytes.subarray(0, cut));
      const { indexes } = replayBytes('zeroed', bytes);
      expect(indexes.get('b'), `zeroed from ${cut}`).toEqual(range(1, 9));
    }
  });

  it('rejects every flipped bit of a record before the tail', () => {
    // Every bit of the first registration record and of an entry in the middle of the file.
    const middle = sampleRecords[Math.floor(sampleRecords.length / 2)];
    expect(middle.type).toBe('entry');
    for (const record of [sampleRecords[0], middle]) {
      for (let offset = record.offset; offset < record.end; offset++) {
        for (let bit = 0; bit < 8; bit++) {
          const bytes = Uint8Array.from(sampleBytes);
          bytes[offset] ^= 1 << bit;
          const where = `bit ${bit} of byte ${offset}`;
          expect(() => replayBytes('/data/wal/flipped.wal', bytes), where).toThrow(StorageError);
          expect(() => replayBytes('/data/wal/flipped.wal', bytes), where).toThrow(
            `WAL file /data/wal/flipped.wal is corrupt at byte offset ${record.offset}`,
          );
        }
      }
    }
  });

  it('checks the CRC of a record whose header is intact', () => {
    const middle = sampleRecords[5];
    if (middle.type !== 'entry') throw new Error('sample record 5 should be an entry');
    const bytes = Uint8Array.from(sampleBytes);
    bytes[middle.dataOffset + 50] ^= 0xff;
    expect(() => replayBytes('crc', bytes)).toThrow(/entry CRC mismatch/);
  });

  it('refuses to open a WAL with a flipped bit mid-file', async () => {
    const dir = path.join(tempDir(), 'wal');
    fs.mkdirSync(dir);
    const bytes = Uint8Array.from(sampleBytes);
    const middle = sampleRecords[7];
    bytes[middle.offset + 12] ^= 0x10;
    const filePath = path.join(dir, WAL_FILE);
    fs.writeFileSync(filePath, bytes);
    const opening = WalClient.open({ dir });
    await expect(opening).rejects.toThrow(StorageError);
    await expect(opening).rejects.toThrow(`WAL file ${filePath} is corrupt at byte offset ${middle.offset}`);
    // The file is left as it was for inspection.
    expect(new Uint8Array(fs.readFileSync(filePath))).toEqual(bytes);
  });

  it('cuts a torn tail on open and appends after it', async () => {
    const last = sampleRecords.at(-1)!;
    for (const cut of [last.offset + 1, last.offset + 31, last.end - 1]) {
      const dir = path.join(tempDir(), 'wal');
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, WAL_FILE), sampleBytes.subarray(0, cut));

      const first = await WalClient.open({ dir });
      expect(first.recovered.get('b')!.map((e) => e.index), `cut at ${cut}`).toEqual(range(1, 9));
      expect(fs.statSync(path.join(dir, WAL_FILE)).size).toBe(last.offset);
      const b = first.wal.registerWriter('b');
      first.wal.append(b, { index: 10, term: 2, kind: 'noop', data: new Uint8Array(0) });
      await first.wal.close();

      const second = await WalClient.open({ dir });
      const entries = second.recovered.get('b')!;
      expect(entries.map((e) => e.index)).toEqual(range(1, 10));
      expect(entries[9]).toEqual({ index: 10, term: 2, kind: 'noop', data: new Uint8Array(0) });
      await second.wal.close();
    }
  });

  it('round-trips without checksums', async () => {
    const dir = path.join(tempDir(), 'wal');
    const { wal } = await WalClient.open({ dir, computeChecksums: false, syncMethod: 'none' });
    const writerId = wal.registerWriter('plain');
    for (let index = 1; index <= 50; index++) wal.append(writerId, { index, term: 1, kind: 'command', data: new Uint8Array([index]) });
    await wal.close();
    const bytes = new Uint8Array(fs.readFileSync(path.join(dir, WAL_FILE)));
    const entryRecords = listRecords('plain', bytes).filter((record): record is Extract<WalRecord, { type: 'entry' }> => record.type === 'entry');
    expect(entryRecords.length).toBe(50);
    for (const record of entryRecords) expect(record.checksummed).toBe(false);
    const reopened = await WalClient.open({ dir });
    expect(reopened.recovered.get('plain')!.map((e) => e.data[0])).toEqual(range(1, 50));
    await reopened.wal.close();
  });
});
