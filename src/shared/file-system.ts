// The thin file-system layer that the WAL worker, the segment writer and the snapshot code use
// for every write, sync, rename and delete that matters for durability. Each call names a
// fault point, so a test can make the process fail or die exactly there.
//
// Fault points are disabled unless the environment variable RANA_CRASH_AT or RANA_FAIL_AT is
// set. Both are for tests only:
//   RANA_CRASH_AT=<point>[:<n>]  the process kills itself with SIGKILL at the nth time (default
//                                1st) it reaches <point>, as a power cut or kill -9 would.
//   RANA_FAIL_AT=<point>[:<n>]   the call at <point> throws an EIO error instead of running.
//   RANA_EXIT_THREAD_AT=<point>[:<n>]  the thread calls process.exit(70) there: in a worker
//                                thread that ends only the worker, as a crash of it would.
// Points are named `<component>-<step>`, for example `segment-after-fsync`; the list is
// FAULT_POINTS below. A point is checked before the call when its name contains `before` or
// when it is a plain step name, and after the call when its name contains `after`.

import fs from 'node:fs';

export const FAULT_POINTS = [
  'wal-mid-batch',
  'wal-before-rename',
  'wal-after-rename',
  'segment-mid-write',
  'segment-after-fsync',
  'segment-after-wal-delete',
  'snapshot-mid-write',
  'snapshot-before-rename',
  'install-mid-write',
  'install-before-rename',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

interface FaultSetting {
  point: string;
  hitsBefore: number;
}

function parseSetting(text: string | undefined): FaultSetting | null {
  if (text === undefined || text === '') return null;
  const [point, count] = text.split(':');
  const n = count === undefined ? 1 : Number(count);
  if (!(FAULT_POINTS as readonly string[]).includes(point) || !Number.isInteger(n) || n < 1) {
    throw new Error(`fault setting "${text}" is invalid; use one of ${FAULT_POINTS.join(', ')} with an optional ":n" (n >= 1)`);
  }
  return { point, hitsBefore: n };
}

const crashAt = parseSetting(process.env.RANA_CRASH_AT);
const failAt = parseSetting(process.env.RANA_FAIL_AT);
const exitThreadAt = parseSetting(process.env.RANA_EXIT_THREAD_AT);
const hits = new Map<string, number>();

/** Marks that execution reached `point`: kills the process or throws when a test asked for it. */
export function faultPoint(point: FaultPoint): void {
  if (crashAt === null && failAt === null && exitThreadAt === null) return;
  const count = (hits.get(point) ?? 0) + 1;
  hits.set(point, count);
  if (crashAt !== null && crashAt.point === point && crashAt.hitsBefore === count) {
    process.kill(process.pid, 'SIGKILL');
  }
  if (exitThreadAt !== null && exitThreadAt.point === point && exitThreadAt.hitsBefore === count) {
    process.exit(70);
  }
  if (failAt !== null && failAt.point === point && failAt.hitsBefore === count) {
    throw Object.assign(new Error(`EIO: i/o error at fault point ${point} (injected by RANA_FAIL_AT)`), { code: 'EIO' });
  }
}

/** Writes all of `bytes` at `position`, looping over short writes. */
export function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  let written = 0;
  while (written < bytes.byteLength) {
    const n = fs.writeSync(fd, bytes, written, bytes.byteLength - written, position + written);
    if (n <= 0) throw new Error(`write of ${bytes.byteLength - written} bytes made no progress`);
    written += n;
  }
}

/** Reads exactly `length` bytes at `position`; throws when the file is shorter. */
export function readFully(fd: number, length: number, position: number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  let read = 0;
  while (read < length) {
    const n = fs.readSync(fd, buffer, read, length - read, position + read);
    if (n <= 0) throw new Error(`file ended ${length - read} bytes short of a ${length}-byte read at offset ${position}`);
    read += n;
  }
  return buffer;
}

export function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes `bytes` to `finalPath` so that a crash leaves either no file or the whole file: a
 * temporary file is written and fsync'd, renamed into place, and the directory is fsync'd.
 */
export function writeFileAtomically(finalPath: string, bytes: Uint8Array, before?: FaultPoint, after?: FaultPoint): void {
  const tempPath = `${finalPath}.tmp`;
  const fd = fs.openSync(tempPath, 'w');
  try {
    writeFully(fd, bytes, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (before) faultPoint(before);
  fs.renameSync(tempPath, finalPath);
  if (after) faultPoint(after);
  syncDirectory(finalPath.slice(0, Math.max(finalPath.lastIndexOf('/'), 0)) || '.');
}
