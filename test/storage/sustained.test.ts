// Sustained load with small log limits: entries in memory, WAL files, segment files and bytes
// on disk stay bounded however long the group runs. The long run with RSS over time is a
// benchmark (docs/benchmarks.md); this test checks the bounds on a short one.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Node } from '../../src/main/index.js';
import { createKvMachine } from '../../src/main/machines/kv.js';
import { freePorts } from '../support/kv-cluster.js';

const WAL_MAX_ENTRIES = 200;
const SEGMENT_MAX_ENTRIES = 64;
const SNAPSHOT_INTERVAL = 300;
const KEYS = 500;
const ROUNDS = 6;
const COMMANDS_PER_ROUND = 3000;
const CLIENTS = 64;

let root: string | null = null;
let node: Node | null = null;

afterEach(async () => {
  await node?.stop();
  node = null;
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = null;
});

/**
 * Lists a directory while the system runs. Segment files and old snapshots are deleted
 * concurrently, so an entry that vanished between listing and reading counts as absent.
 */
function listLive(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

function sizeLive(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

function diskBytes(dir: string): number {
  let total = 0;
  for (const entry of listLive(dir)) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? diskBytes(full) : sizeLive(full);
  }
  return total;
}

function countFiles(dir: string, suffix: string): number {
  let total = 0;
  for (const entry of listLive(dir)) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += countFiles(full, suffix);
    else if (entry.name.endsWith(suffix)) total++;
  }
  return total;
}

describe('sustained load', () => {
  it('keeps memory and disk use flat with small limits', async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-sustained-'));
    const [port] = await freePorts(1);
    node = await Node.start({ id: 'n1', listen: `127.0.0.1:${port}` });
    const system = await node.startSystem({
      name: 'default',
      dataDir: root,
      wal: { maxEntries: WAL_MAX_ENTRIES },
      segment: { maxEntries: SEGMENT_MAX_ENTRIES },
    });
    system.registerMachine('kv', createKvMachine({ snapshotInterval: SNAPSHOT_INTERVAL }));
    await system.startServer('g', 'kv', [{ id: 'n1', membership: 'voter' }]);
    await system.server('g')!.waitForLeaderOtherThan(null, 10_000);

    const samples: { commands: number; disk: number; memoryEntries: number; walFiles: number; segmentFiles: number }[] = [];
    let written = 0;
    for (let round = 0; round < ROUNDS; round++) {
      let next = 0;
      const client = async (): Promise<void> => {
        while (next < COMMANDS_PER_ROUND) {
          const i = written + next++;
          await node!.processCommand({ name: 'g', node: 'n1' }, { op: 'put', key: `k${i % KEYS}`, value: `value-${i}` });
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, client));
      written += COMMANDS_PER_ROUND;
      await system.segmentWriter.whenIdle();
      const status = system.server('g')!.status();
      samples.push({
        commands: written,
        disk: diskBytes(root),
        memoryEntries: status.lastIndex - status.memoryFirstIndex + 1,
        walFiles: countFiles(path.join(root, 'default', 'wal'), '.wal'),
        segmentFiles: countFiles(path.join(root, 'default', 'servers'), '.segment'),
      });
    }

    // Entries in memory: at most what the WAL files not yet moved can hold, plus one batch.
    for (const sample of samples) {
      expect(sample.memoryEntries, JSON.stringify(sample)).toBeLessThanOrEqual(3 * WAL_MAX_ENTRIES + CLIENTS);
      expect(sample.walFiles, JSON.stringify(sample)).toBeLessThanOrEqual(3);
      // Segments hold at most the entries since the older of the two kept snapshots.
      expect(sample.segmentFiles, JSON.stringify(sample)).toBeLessThanOrEqual(Math.ceil((2 * SNAPSHOT_INTERVAL + 3 * WAL_MAX_ENTRIES) / SEGMENT_MAX_ENTRIES) + 2);
    }
    // Disk use does not grow with the number of commands. Unbounded, the log alone would take
    // about 18,000 x 60 bytes (1.1 MB); the bound is a quarter of that at every sample, and the
    // sample size swings with where the WAL and the snapshots are in their cycle.
    for (const sample of samples) expect(sample.disk, JSON.stringify(samples)).toBeLessThan(270_000);
    expect(await node.consistentQuery({ name: 'g', node: 'n1' }, 'size', null)).toBe(KEYS);
  });
});
