// Tasks of a system's snapshot pool (piscina): write a snapshot that a server's machine asked
// for, off the main thread. The data arrives encoded. This thread computes the CRCs and writes
// the file into a `.partial` directory, then syncs it and renames the directory into place.
// Last it syncs the parent and deletes the snapshots older than the newest `keep`.

import fs from 'node:fs';
import path from 'node:path';
import { faultPoint, syncDirectory, writeFully } from '../shared/file-system.js';
import { SNAPSHOT_FILE_NAME, encodeSnapshotHeader, parseSnapshotDirName, snapshotDirName } from '../shared/snapshot-format.js';

export interface WriteSnapshotTask {
  snapshotsDir: string;
  index: number;
  term: number;
  data: Uint8Array;
  /** How many snapshots to keep, this one included; older ones are deleted. At least 1. */
  keep: number;
  syncMethod: 'datasync' | 'sync' | 'none';
}

export interface WriteSnapshotResult {
  dir: string;
  bytes: number;
  deleted: string[];
}

export default function writeSnapshot(task: WriteSnapshotTask): WriteSnapshotResult {
  const { snapshotsDir, index, term, data, keep, syncMethod } = task;
  fs.mkdirSync(snapshotsDir, { recursive: true });
  const finalDir = path.join(snapshotsDir, snapshotDirName(index, term));
  if (fs.existsSync(finalDir)) return { dir: finalDir, bytes: 0, deleted: [] };
  const partialDir = `${finalDir}.partial`;
  fs.rmSync(partialDir, { recursive: true, force: true });
  fs.mkdirSync(partialDir);
  const fd = fs.openSync(path.join(partialDir, SNAPSHOT_FILE_NAME), 'w');
  const header = encodeSnapshotHeader(index, term, data);
  try {
    writeFully(fd, header, 0);
    const half = Math.floor(data.byteLength / 2);
    writeFully(fd, data.subarray(0, half), header.byteLength);
    faultPoint('snapshot-mid-write');
    writeFully(fd, data.subarray(half), header.byteLength + half);
    if (syncMethod !== 'none') fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (syncMethod !== 'none') syncDirectory(partialDir);
  faultPoint('snapshot-before-rename');
  fs.renameSync(partialDir, finalDir);
  if (syncMethod !== 'none') syncDirectory(snapshotsDir);

  const older = fs.readdirSync(snapshotsDir)
    .map((name) => ({ name, parsed: parseSnapshotDirName(name) }))
    .filter((s): s is { name: string; parsed: { index: number; term: number } } => s.parsed !== null)
    .sort((a, b) => b.parsed.index - a.parsed.index)
    .slice(Math.max(keep, 1));
  const deleted: string[] = [];
  for (const { name } of older) {
    fs.rmSync(path.join(snapshotsDir, name), { recursive: true, force: true });
    deleted.push(name);
  }
  return { dir: finalDir, bytes: header.byteLength + data.byteLength, deleted };
}
