import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WalClient, type WalOptions } from '../../src/main/storage/wal-client.js';
import { StorageError } from '../../src/main/errors.js';
import type { LogEntry } from '../../src/main/raft/types.js';

const tempDirs: string[] = [];

function tempWalDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-wal-'));
  tempDirs.push(dir);
  return path.join(dir, 'wal');
}

afterEach(() => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function command(index: number, term: number, fill = index): LogEntry {
  return { index, term, kind: 'command', data: new Uint8Array(100).fill(fill & 0xff) };
}

interface Written {
  writerId: number;
  term: number;
  fromIndex: number;
  toIndex: number;
}

/** Collects `written` notifications and resolves waits once a writer has reached an index. */
function trackWritten(wal: WalClient): { all: Written[]; until(writerId: number, index: number): Promise<void> } {
  const all: Written[] = [];
  const highest = new Map<number, number>();
  const waiters: { writerId: number; index: number; resolve: () => void }[] = [];
  wal.onWritten((writerId, term, fromIndex, toIndex) => {
    all.push({ writerId, term, fromIndex, toIndex });
    highest.set(writerId, toIndex);
    for (const waiter of waiters.splice(0)) {
      if ((highest.get(waiter.writerId) ?? 0) >= waiter.index) waiter.resolve();
      else waiters.push(waiter);
    }
  });
  return {
    all,
    until(writerId, index) {
      if ((highest.get(writerId) ?? 0) >= index) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ writerId, index, resolve }));
    },
  };
}

async function openWal(options: WalOptions): Promise<Awaited<ReturnType<typeof WalClient.open>>> {
  return WalClient.open(options);
}

describe('WalClient', () => {
  it('batches one turn of appends from many writers', async () => {
    const dir = tempWalDir();
    const { wal, recovered } = await openWal({ dir });
    expect(recovered.size).toBe(0);
    const written = trackWritten(wal);
    const writerIds = Array.from({ length: 100 }, (_, i) => wal.registerWriter(`server-${i}`));

    for (let index = 1; index <= 100; index++) {
      for (const writerId of writerIds) wal.append(writerId, command(index, 1));
    }
    await Promise.all(writerIds.map((writerId) => written.until(writerId, 100)));

    expect(wal.counters.entries).toBe(10_000);
    expect(wal.counters.fsyncs).toBeGreaterThan(0);
    expect(wal.counters.fsyncs).toBeLessThan(20);
    expect(wal.counters.batches).toBe(wal.counters.fsyncs);
    expect(wal.counters.fileSizeBytes).toBe(fs.statSync(path.join(dir, '0000000000000001.wal')).size);
    // Each writer's runs cover 1..100 exactly once, in order.
    for (const writerId of writerIds) {
      const runs = written.all.filter((run) => run.writerId === writerId);
      let next = 1;
      for (const run of runs) {
        expect(run.fromIndex).toBe(next);
        expect(run.term).toBe(1);
        next = run.toIndex + 1;
      }
      expect(next).toBe(101);
    }
    await wal.close();
  });

  it('splits written runs where the term changes', async () => {
    const { wal } = await openWal({ dir: tempWalDir() });
    const written = trackWritten(wal);
    const writerId = wal.registerWriter('a');
    for (let index = 1; index <= 5; index++) wal.append(writerId, command(index, index <= 3 ? 1 : 2));
    await written.until(writerId, 5);
    expect(written.all).toEqual([
      { writerId, term: 1, fromIndex: 1, toIndex: 3 },
      { writerId, term: 2, fromIndex: 4, toIndex: 5 },
    ]);
    await wal.close();
  });

  it('recovers entries with overwrites applied', async () => {
    const dir = tempWalDir();
    const first = await openWal({ dir, maxBatchSize: 7 });
    const a = first.wal.registerWriter('uid-a');
    const b = first.wal.registerWriter('uid-b');
    for (let index = 1; index <= 20; index++) {
      first.wal.append(a, command(index, 1));
      first.wal.append(b, command(index, 1));
    }
    // A follower repairing a conflict: a's log from index 11 is replaced in term 2.
    first.wal.append(a, command(11, 2, 211));
    first.wal.append(a, { index: 12, term: 2, kind: 'noop', data: new Uint8Array(0) });
    await first.wal.close();

    const second = await openWal({ dir });
    const recoveredA = second.recovered.get('uid-a')!;
    const recoveredB = second.recovered.get('uid-b')!;
    expect(recoveredA.map((e) => e.index)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(recoveredA[9]).toEqual(command(10, 1));
    expect(recoveredA[10]).toEqual(command(11, 2, 211));
    expect(recoveredA[11]).toEqual({ index: 12, term: 2, kind: 'noop', data: new Uint8Array(0) });
    expect(recoveredB.map((e) => e.index)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));

    // A restarted client hands out writer ids afresh; appending to the same file must keep uids apart.
    const b2 = second.wal.registerWriter('uid-b');
    expect(b2).toBe(1);
    second.wal.append(b2, command(21, 3));
    await second.wal.close();
    const third = await openWal({ dir });
    expect(third.recovered.get('uid-b')!.at(-1)).toEqual(command(21, 3));
    expect(third.recovered.get('uid-a')!.length).toBe(12);
    await third.wal.close();
  });

  it('writes entries larger than the ring in order', async () => {
    const dir = tempWalDir();
    const { wal } = await openWal({ dir, ringBytes: 64 * 1024, maxBatchBytes: 32 * 1024 });
    const written = trackWritten(wal);
    const writerId = wal.registerWriter('big');
    const sizes = [10, 40_000, 20, 200_000, 30, 16_000];
    sizes.forEach((size, i) => wal.append(writerId, { index: i + 1, term: 1, kind: 'command', data: new Uint8Array(size).fill(i + 1) }));
    await written.until(writerId, sizes.length);
    await wal.close();

    const reopened = await openWal({ dir });
    const entries = reopened.recovered.get('big')!;
    expect(entries.map((e) => e.data.byteLength)).toEqual(sizes);
    entries.forEach((entry, i) => expect(entry.data.every((byte) => byte === i + 1)).toBe(true));
    await reopened.wal.close();
  });

  it('queues appends when the ring is full', async () => {
    const dir = tempWalDir();
    const { wal } = await openWal({ dir, ringBytes: 8192, maxPendingBytes: 10_000 });
    const written = trackWritten(wal);
    const writerId = wal.registerWriter('busy');
    for (let index = 1; index <= 2000; index++) wal.append(writerId, command(index, 1));
    expect(wal.counters.pendingBytes).toBeGreaterThan(10_000);
    expect(wal.isOverloaded()).toBe(true);
    await written.until(writerId, 2000);
    expect(wal.counters.pendingBytes).toBe(0);
    expect(wal.isOverloaded()).toBe(false);
    await wal.close();
    const reopened = await openWal({ dir });
    expect(reopened.recovered.get('busy')!.length).toBe(2000);
    await reopened.wal.close();
  });

  it('reports a failed sync as fatal and stops', async () => {
    const dir = tempWalDir();
    const { wal } = await openWal({ dir, faultInjection: { failSyncAfter: 3 } });
    const written = trackWritten(wal);
    const fatal = new Promise<StorageError>((resolve) => wal.onFatal(resolve));
    const writerId = wal.registerWriter('doomed');

    // One append per batch: each waits for the previous written notification.
    wal.append(writerId, command(1, 1));
    await written.until(writerId, 1);
    wal.append(writerId, command(2, 1));
    await written.until(writerId, 2);
    wal.append(writerId, command(3, 1));
    const error = await fatal;
    expect(error).toBeInstanceOf(StorageError);
    expect(error.code).toBe('STORAGE');
    expect(error.message).toContain('fdatasync');
    expect(error.message).toContain(path.join(dir, '0000000000000001.wal'));

    wal.append(writerId, command(4, 1));
    await expect(wal.close()).rejects.toBe(error);
    expect(written.all.map((run) => run.toIndex)).toEqual([1, 2]);
    expect(wal.counters.fsyncs).toBe(2);
  });

  it('matches a model under random appends', async () => {
    const dir = tempWalDir();
    // A small ring and batch bound, so the overflow queue, the large-entry path and batch splits all run.
    const { wal } = await openWal({ dir, ringBytes: 16 * 1024, maxBatchSize: 50, maxBatchBytes: 8 * 1024 });
    const written = trackWritten(wal);
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const model = new Map<string, LogEntry[]>();
    const writerIds = new Map<string, number>();
    for (let w = 0; w < 5; w++) {
      writerIds.set(`w${w}`, wal.registerWriter(`w${w}`));
      model.set(`w${w}`, []);
    }
    for (let turn = 0; turn < 30; turn++) {
      for (let op = 0; op < 100; op++) {
        const uid = `w${random(5)}`;
        const log = model.get(uid)!;
        const last = log.at(-1);
        let index = (last?.index ?? 0) + 1;
        let term = last?.term ?? 1;
        if (log.length > 3 && random(20) === 0) {
          // Overwrite: replace the last 1..3 entries in a higher term.
          index -= 1 + random(3);
          term += 1;
          log.length = index - 1;
        }
        const size = random(40) === 0 ? 4000 + random(3000) : random(200);
        const entry: LogEntry = { index, term, kind: size === 0 ? 'noop' : 'command', data: new Uint8Array(size).fill(random(256)) };
        log.push(entry);
        wal.append(writerIds.get(uid)!, entry);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await wal.close();
    for (const [uid, log] of model) {
      const runs = written.all.filter((run) => run.writerId === writerIds.get(uid));
      expect(runs.at(-1)!.toIndex, uid).toBe(log.at(-1)!.index);
    }

    const reopened = await openWal({ dir });
    expect([...reopened.recovered.keys()].sort()).toEqual([...model.keys()].sort());
    // Field by field: a deep toEqual over thousands of byte arrays takes seconds.
    const describeEntry = (e: LogEntry): string => `${e.index}/${e.term}/${e.kind}/${e.data.byteLength}`;
    for (const [uid, log] of model) {
      const recovered = reopened.recovered.get(uid)!;
      expect(recovered.map(describeEntry), uid).toEqual(log.map(describeEntry));
      const differentData = log.filter((entry, i) => !Buffer.from(entry.data).equals(recovered[i].data)).map((e) => e.index);
      expect(differentData, uid).toEqual([]);
    }
    await reopened.wal.close();
  });

  it('rejects an unknown writer id', async () => {
    const { wal } = await openWal({ dir: tempWalDir() });
    expect(() => wal.append(1, command(1, 1))).toThrow(/not registered/);
    await wal.close();
    expect(() => wal.registerWriter('late')).toThrow(/closed/);
  });
});
