import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { META_VOTED_FOR_MAX_BYTES, MetaStore } from '../../src/main/storage/meta-store.js';
import { InvalidConfigError, StorageError } from '../../src/main/errors.js';

const SLOT_BYTES = 512;
const tempDirs: string[] = [];

function metaPath(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-meta-'));
  tempDirs.push(dir);
  return path.join(dir, 'meta');
}

afterEach(() => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** Overwrites `length` bytes of slot `slot` from `offsetInSlot` with garbage, as a torn write would. */
function tearSlot(file: string, slot: number, offsetInSlot: number, length: number): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(length, 0xa5), 0, length, slot * SLOT_BYTES + offsetInSlot);
  fs.closeSync(fd);
}

describe('MetaStore', () => {
  it('starts at term 0 with no vote', () => {
    const file = metaPath();
    const store = MetaStore.open(file);
    expect(store.read()).toEqual({ term: 0, votedFor: null });
    store.close();
    expect(fs.statSync(file).size).toBe(SLOT_BYTES);
  });

  it('persists term and vote across reopen', () => {
    const file = metaPath();
    const store = MetaStore.open(file);
    store.write(3, 'n2');
    store.write(4, null);
    store.write(5, 'nœud-5');
    store.close();
    const reopened = MetaStore.open(file);
    expect(reopened.read()).toEqual({ term: 5, votedFor: 'nœud-5' });
    reopened.close();
  });

  it('survives a torn slot write', () => {
    const file = metaPath();
    const store = MetaStore.open(file);
    store.write(7, 'n1');
    store.write(8, 'n3');
    store.close();
    // Writes alternate: the initial state went to slot A, term 7 to B, term 8 to A. The next
    // write goes to B; tearing B keeps term 8.
    for (const [offset, length] of [[0, 4], [16, 8], [24, 2], [200, 300], [508, 4]]) {
      tearSlot(file, 1, offset, length);
      const reopened = MetaStore.open(file);
      expect(reopened.read(), `torn at ${offset}+${length}`).toEqual({ term: 8, votedFor: 'n3' });
      reopened.close();
    }
    // Term 9 goes to the torn slot B, so A (term 8) is now the older slot. Tearing A leaves B
    // as the only valid slot, and the next write must go to A, never over B.
    const restore = MetaStore.open(file);
    restore.write(9, 'n2');
    restore.close();
    tearSlot(file, 0, 100, 10);
    const reopened = MetaStore.open(file);
    expect(reopened.read()).toEqual({ term: 9, votedFor: 'n2' });
    reopened.write(10, null);
    reopened.close();
    const again = MetaStore.open(file);
    expect(again.read()).toEqual({ term: 10, votedFor: null });
    again.close();
  });

  it('rejects a file with both slots invalid', () => {
    const file = metaPath();
    const store = MetaStore.open(file);
    store.write(2, 'n1');
    store.close();
    tearSlot(file, 0, 30, 1);
    tearSlot(file, 1, 30, 1);
    expect(() => MetaStore.open(file)).toThrow(StorageError);
    expect(() => MetaStore.open(file)).toThrow(`meta file ${file} is corrupt`);
  });

  it('rejects a voted-for id above the bound', () => {
    const store = MetaStore.open(metaPath());
    expect(() => store.write(1, 'x'.repeat(META_VOTED_FOR_MAX_BYTES + 1))).toThrow(InvalidConfigError);
    store.write(1, 'x'.repeat(META_VOTED_FOR_MAX_BYTES));
    expect(store.read().votedFor).toHaveLength(META_VOTED_FOR_MAX_BYTES);
    store.close();
  });
});
