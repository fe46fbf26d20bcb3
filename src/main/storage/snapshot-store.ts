// A server's snapshots: loading the newest one that verifies at start (falling back to older
// ones), writing new ones through the system's snapshot pool, and receiving one streamed by
// the leader.

import fs from 'node:fs';
import path from 'node:path';
import crc32 from 'crc-32';
import { Piscina } from 'piscina';
import { StorageError } from '../errors.js';
import type { Logger } from '../logger.js';
import { faultPoint, readFully, syncDirectory, writeFully } from '../../shared/file-system.js';
import { SNAPSHOT_FILE_NAME, parseSnapshot, parseSnapshotDirName, snapshotDirName, type ParsedSnapshot } from '../../shared/snapshot-format.js';
import { workerFileUrl } from '../../shared/worker-path.js';
import type { WriteSnapshotResult, WriteSnapshotTask } from '../../workers/snapshot.js';

/** Snapshots kept per server: the newest plus one to fall back to when the newest fails its check. */
export const SNAPSHOTS_KEPT = 2;

export interface LoadedSnapshot extends ParsedSnapshot {
  dir: string;
}

/**
 * Returns the newest snapshot in `snapshotsDir` whose checksums verify, or null. A snapshot that
 * fails is logged and skipped, so the server starts from the previous one and catches up from
 * its log or its leader. Leftover `.partial` and `.receiving` directories are deleted.
 */
export function loadNewestSnapshot(snapshotsDir: string, logger: Logger): LoadedSnapshot | null {
  let names: string[];
  try {
    names = fs.readdirSync(snapshotsDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  for (const name of names) {
    if (name.endsWith('.partial') || name.endsWith('.receiving')) {
      fs.rmSync(path.join(snapshotsDir, name), { recursive: true, force: true });
    }
  }
  const candidates = names
    .map((name) => ({ name, parsed: parseSnapshotDirName(name) }))
    .filter((c) => c.parsed !== null)
    .sort((a, b) => b.parsed!.index - a.parsed!.index);
  for (const { name, parsed } of candidates) {
    const dir = path.join(snapshotsDir, name);
    const file = path.join(dir, SNAPSHOT_FILE_NAME);
    try {
      const snapshot = parseSnapshot(file, fs.readFileSync(file));
      if (snapshot.index !== parsed!.index || snapshot.term !== parsed!.term) {
        throw new StorageError(`snapshot file ${file} holds index ${snapshot.index} term ${snapshot.term}, but its directory is named for index ${parsed!.index} term ${parsed!.term}`);
      }
      return { ...snapshot, dir };
    } catch (error) {
      logger.warn({ err: error, snapshot: dir }, 'snapshot failed verification; trying an older one');
    }
  }
  return null;
}

/** The system's pool for snapshot writes: one thread, so snapshots of all servers queue behind each other. */
export class SnapshotPool {
  #pool: Piscina | null = null;

  write(task: WriteSnapshotTask): Promise<WriteSnapshotResult> {
    this.#pool ??= new Piscina({ filename: workerFileUrl('snapshot').href, minThreads: 0, maxThreads: 1, idleTimeout: 30_000 });
    // Copied, not transferred: the encoder may return a view into a buffer it reuses (msgpackr does).
    return this.#pool.run(task) as Promise<WriteSnapshotResult>;
  }

  async close(): Promise<void> {
    await this.#pool?.destroy();
    this.#pool = null;
  }
}

/**
 * A snapshot arriving in chunks from the leader, written aside into `<name>.receiving/`.
 * Bounded by the leader's totalBytes; chunks must arrive in order, and a chunk at another
 * offset gets the expected offset back.
 */
export class SnapshotReceiver {
  readonly leader: string;
  readonly term: number;
  readonly index: number;
  readonly snapshotTerm: number;
  readonly totalBytes: number;
  receivedBytes = 0;
  lastProgressMs: number;
  readonly #snapshotsDir: string;
  readonly #partialDir: string;
  readonly #fd: number;

  constructor(snapshotsDir: string, leader: string, term: number, index: number, snapshotTerm: number, totalBytes: number, nowMs: number) {
    this.leader = leader;
    this.term = term;
    this.index = index;
    this.snapshotTerm = snapshotTerm;
    this.totalBytes = totalBytes;
    this.lastProgressMs = nowMs;
    this.#snapshotsDir = snapshotsDir;
    fs.mkdirSync(snapshotsDir, { recursive: true });
    this.#partialDir = path.join(snapshotsDir, `${snapshotDirName(index, snapshotTerm)}.receiving`);
    fs.rmSync(this.#partialDir, { recursive: true, force: true });
    fs.mkdirSync(this.#partialDir);
    this.#fd = fs.openSync(path.join(this.#partialDir, SNAPSHOT_FILE_NAME), 'w+');
  }

  /** Writes a chunk that starts at the received offset. Returns false when its CRC does not match its data. */
  writeChunk(data: Uint8Array, chunkCrc: number, nowMs: number): boolean {
    if ((crc32.buf(data) >>> 0) !== chunkCrc) return false;
    if (this.receivedBytes + data.byteLength > this.totalBytes) return false;
    writeFully(this.#fd, data, this.receivedBytes);
    this.receivedBytes += data.byteLength;
    this.lastProgressMs = nowMs;
    if (this.receivedBytes * 2 >= this.totalBytes) faultPoint('install-mid-write');
    return true;
  }

  /** Syncs, verifies the whole file and renames it into place. Throws StorageError when it does not verify. */
  finish(): LoadedSnapshot {
    fs.fsyncSync(this.#fd);
    const bytes = readFully(this.#fd, this.totalBytes, 0);
    fs.closeSync(this.#fd);
    const file = path.join(this.#partialDir, SNAPSHOT_FILE_NAME);
    const snapshot = parseSnapshot(file, bytes);
    if (snapshot.index !== this.index || snapshot.term !== this.snapshotTerm) {
      throw new StorageError(`received snapshot holds index ${snapshot.index} term ${snapshot.term}, but the leader announced index ${this.index} term ${this.snapshotTerm}`);
    }
    syncDirectory(this.#partialDir);
    faultPoint('install-before-rename');
    const finalDir = path.join(this.#snapshotsDir, snapshotDirName(this.index, this.snapshotTerm));
    fs.rmSync(finalDir, { recursive: true, force: true });
    fs.renameSync(this.#partialDir, finalDir);
    syncDirectory(this.#snapshotsDir);
    // Older snapshots describe a log this member no longer has.
    for (const name of fs.readdirSync(this.#snapshotsDir)) {
      const parsed = parseSnapshotDirName(name);
      if (parsed !== null && parsed.index !== this.index) fs.rmSync(path.join(this.#snapshotsDir, name), { recursive: true, force: true });
    }
    return { ...snapshot, dir: finalDir };
  }

  /** Stops the transfer and deletes what arrived. */
  abort(): void {
    try {
      fs.closeSync(this.#fd);
    } catch {
      // already closed by finish()
    }
    fs.rmSync(this.#partialDir, { recursive: true, force: true });
  }
}
