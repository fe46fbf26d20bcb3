// The segment writer thread of one system. For each WAL file the WAL worker closed, it moves
// every server's entries into that server's segment files, syncs them and their directory,
// reports to the main thread which ranges segments now contain, and only then deletes the WAL file.
// Files are handled one at a time, in the order they were closed.
//
// Per server and per WAL file:
// - A snapshot marker (a follower installed a snapshot) deletes every segment file of the
//   server first; only the entries after the marker are written.
// - Entries at or below the server's snapshot index are skipped: the snapshot covers them.
// - A server whose directory is gone (deleted while its data was in flight) is skipped.
// - An entry already in segments with the same index and term is skipped (a WAL file flushed
//   again after a crash between the segment sync and the WAL delete). One with another term
//   is an overwrite after a leader change: a new segment file starts at its index and wins
//   over the older files for every index from there on.
// - Entries in one segment file are contiguous, so a segment never has a hole.

import fs from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { CounterSet, SEGMENT_WRITER_COUNTER_NAMES, type SegmentWriterCounterName } from '../shared/counters.js';
import { faultPoint, readFully, syncDirectory, writeFully } from '../shared/file-system.js';
import {
  SEGMENT_HEADER_BYTES,
  SEGMENT_SLOT_BYTES,
  checkSlotData,
  dataAreaOffset,
  encodeSegmentHeader,
  parseSegmentFileName,
  scanSegmentIndex,
  segmentFileName,
  writeSlot,
} from '../shared/segment-format.js';
import { SNAPSHOT_DIR_PATTERN } from '../shared/snapshot-format.js';
import { ENTRY_KIND_SNAPSHOT_MARKER, WalReplay, readU64, scanWalFile, type ReplayedEntry } from '../shared/wal-format.js';

export interface SegmentWriterData {
  /** `<dataDir>/<system>/servers`: one directory per server uid. */
  serversDir: string;
  /** Maximum entries per segment file (its slot count). */
  maxEntries: number;
  /** A segment file takes no more entries once its size would pass this, unless it is empty. */
  maxSizeBytes: number;
  syncMethod: 'datasync' | 'sync' | 'none';
  counters: SharedArrayBuffer;
}

/** Entries `fromIndex..toIndex` of server `uid` are synced in segments; the entry at toIndex has `term`. */
export interface FlushedRange {
  uid: string;
  fromIndex: number;
  toIndex: number;
  term: number;
}

export type SegmentWriterRequest =
  | { type: 'flush'; walPath: string }
  | { type: 'snapshot'; uid: string; index: number }
  | { type: 'close' };

export type SegmentWriterMessage =
  | { type: 'flushed'; walPath: string; ranges: FlushedRange[] }
  | { type: 'failed'; message: string }
  | { type: 'closed' };

interface SegmentFile {
  fileNumber: number;
  path: string;
  firstIndex: number;
  lastIndex: number;
}

/** The segment file that takes appends, with the writes of the current flush not yet on disk. */
interface OpenSegment extends SegmentFile {
  fd: number;
  slotCount: number;
  used: number;
  dataEnd: number;
  /** Terms of the entries in this file, by slot. */
  terms: number[];
  pendingData: Uint8Array[];
  pendingSlots: Uint8Array[];
  pendingFirstSlot: number;
}

interface ServerSegments {
  uid: string;
  dir: string;
  /** Every segment file, oldest first; the last one is `open` when open is not null. */
  files: SegmentFile[];
  open: OpenSegment | null;
  snapshotIndex: number;
  nextFileNumber: number;
}

class SegmentWriter {
  readonly #options: SegmentWriterData;
  readonly #counters: CounterSet<SegmentWriterCounterName>;
  readonly #servers = new Map<string, ServerSegments>();
  // Files and directories written during the current flush, synced before it is reported.
  readonly #dirtyFiles = new Set<OpenSegment>();
  readonly #dirtyDirs = new Set<string>();

  constructor(options: SegmentWriterData) {
    this.#options = options;
    this.#counters = new CounterSet(SEGMENT_WRITER_COUNTER_NAMES, options.counters);
  }

  /** Moves one closed WAL file into segments; returns null when the file is gone (moved already). */
  flush(walPath: string): FlushedRange[] | null {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(walPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    const replay = new WalReplay();
    replay.startFile();
    scanWalFile(walPath, bytes, (record) => replay.apply(walPath, bytes, record));

    const ranges: FlushedRange[] = [];
    for (const [uid, replayed] of replay.entriesByUid) {
      const serverDir = path.join(this.#options.serversDir, uid);
      if (!fs.existsSync(serverDir)) {
        this.#forget(uid);
        continue;
      }
      const server = this.#load(uid);
      let entries = replayed;
      const markerAt = findLastMarker(entries);
      if (markerAt !== -1) {
        this.#deleteFiles(server, () => true);
        server.snapshotIndex = Math.max(server.snapshotIndex, entries[markerAt].index);
        entries = entries.slice(markerAt + 1);
      }
      entries = entries.filter((entry) => entry.index > server.snapshotIndex);
      if (entries.length === 0) continue;
      this.#writeEntries(server, entries);
      const last = entries[entries.length - 1];
      ranges.push({ uid, fromIndex: entries[0].index, toIndex: last.index, term: last.term });
    }
    this.#syncDirty();
    faultPoint('segment-after-fsync');
    return ranges;
  }

  /** Deletes the WAL file, after its ranges were posted to the main thread. */
  deleteWalFile(walPath: string): void {
    fs.unlinkSync(walPath);
    syncDirectory(path.dirname(walPath));
    this.#counters.add('walFilesDeleted', 1);
    faultPoint('segment-after-wal-delete');
  }

  /** Records a snapshot at `index` and deletes the segment files it covers whole. */
  snapshot(uid: string, index: number): void {
    if (!fs.existsSync(path.join(this.#options.serversDir, uid))) return;
    const server = this.#load(uid);
    server.snapshotIndex = Math.max(server.snapshotIndex, index);
    this.#deleteFiles(server, (file) => file.lastIndex <= index);
    this.#syncDirty();
  }

  close(): void {
    for (const server of this.#servers.values()) {
      if (server.open !== null) fs.closeSync(server.open.fd);
      server.open = null;
    }
  }

  #forget(uid: string): void {
    const server = this.#servers.get(uid);
    if (server?.open) fs.closeSync(server.open.fd);
    this.#servers.delete(uid);
  }

  // Loads a server's segment files from disk the first time one of its entries arrives.
  #load(uid: string): ServerSegments {
    const known = this.#servers.get(uid);
    if (known !== undefined) return known;
    const serverDir = path.join(this.#options.serversDir, uid);
    const dir = path.join(serverDir, 'segments');
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(dir);
      syncDirectory(serverDir);
    }
    const server: ServerSegments = { uid, dir, files: [], open: null, snapshotIndex: newestSnapshotIndex(serverDir), nextFileNumber: 1 };
    const numbers = fs.readdirSync(dir).map(parseSegmentFileName).filter((n): n is number => n !== null).sort((a, b) => a - b);
    for (const fileNumber of numbers) {
      const filePath = path.join(dir, segmentFileName(fileNumber));
      server.nextFileNumber = fileNumber + 1;
      const isNewest = fileNumber === numbers[numbers.length - 1];
      const opened = this.#openExisting(filePath, fileNumber, isNewest);
      if (opened === null) {
        // Created, but a crash came before its first entry reached disk: nothing to keep.
        fs.unlinkSync(filePath);
        this.#dirtyDirs.add(dir);
        continue;
      }
      server.files.push(opened.file);
      if (isNewest) server.open = opened.open;
    }
    this.#servers.set(uid, server);
    return server;
  }

  // Reads a segment's slots. The newest file is verified entry by entry and stays open for
  // appends after its last good entry: a crash before its sync can leave a torn tail, whose
  // entries are still in a WAL file that is flushed again.
  #openExisting(filePath: string, fileNumber: number, verify: boolean): { file: SegmentFile; open: OpenSegment | null } | null {
    const sizeBytes = fs.statSync(filePath).size;
    if (sizeBytes < SEGMENT_HEADER_BYTES) return null;
    const fd = fs.openSync(filePath, verify ? 'r+' : 'r');
    try {
      const header = readFully(fd, SEGMENT_HEADER_BYTES, 0);
      const slotCount = new DataView(header.buffer, header.byteOffset).getUint32(16, true);
      const indexArea = readFully(fd, Math.min(dataAreaOffset(slotCount), sizeBytes), 0);
      let slots = scanSegmentIndex(filePath, indexArea, sizeBytes).slots;
      if (verify) {
        const bytes = readFully(fd, sizeBytes, 0);
        const firstBad = slots.findIndex((slot) => {
          try {
            checkSlotData(filePath, slot, bytes.subarray(slot.slotOffset, slot.slotOffset + SEGMENT_SLOT_BYTES),
              bytes.subarray(slot.dataOffset, slot.dataOffset + slot.dataLength));
            return false;
          } catch {
            return true;
          }
        });
        if (firstBad !== -1) slots = slots.slice(0, firstBad);
      }
      if (slots.length === 0) {
        fs.closeSync(fd);
        return null;
      }
      const file: SegmentFile = { fileNumber, path: filePath, firstIndex: slots[0].index, lastIndex: slots[slots.length - 1].index };
      if (!verify) {
        fs.closeSync(fd);
        return { file, open: null };
      }
      const last = slots[slots.length - 1];
      const open: OpenSegment = {
        ...file,
        fd,
        slotCount,
        used: slots.length,
        dataEnd: last.dataOffset + last.dataLength,
        terms: slots.map((slot) => slot.term),
        pendingData: [],
        pendingSlots: [],
        pendingFirstSlot: slots.length,
      };
      return { file: open, open };
    } catch (error) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
      throw error;
    }
  }

  #writeEntries(server: ServerSegments, entries: ReplayedEntry[]): void {
    let lastIndex = server.files.length === 0 ? 0 : server.files[server.files.length - 1].lastIndex;
    let overwriting = false;
    for (const entry of entries) {
      if (!overwriting && entry.index <= lastIndex) {
        if (this.#termInSegments(server, entry.index) === entry.term) continue; // already there
        overwriting = true;
      }
      this.#append(server, entry);
      lastIndex = entry.index;
    }
    if (server.open !== null) this.#writePending(server.open);
  }

  #append(server: ServerSegments, entry: ReplayedEntry): void {
    const { maxSizeBytes } = this.#options;
    let open = server.open;
    const fits = open !== null &&
      open.used < open.slotCount &&
      entry.index === open.firstIndex + open.used &&
      (open.used === 0 || open.dataEnd + entry.data.byteLength <= maxSizeBytes);
    if (!fits) {
      if (open !== null) this.#closeOpen(server);
      open = this.#createFile(server, entry.index);
    }
    const file = open!;
    const slot = new Uint8Array(SEGMENT_SLOT_BYTES);
    writeSlot(new DataView(slot.buffer), 0, { index: entry.index, term: entry.term, dataOffset: file.dataEnd, dataLength: entry.data.byteLength, kind: entry.kind }, entry.data);
    file.pendingData.push(entry.data);
    file.pendingSlots.push(slot);
    file.dataEnd += entry.data.byteLength;
    file.terms[file.used] = entry.term;
    file.used++;
    file.lastIndex = entry.index;
    this.#counters.add('entries', 1);
  }

  #createFile(server: ServerSegments, firstIndex: number): OpenSegment {
    const fileNumber = server.nextFileNumber++;
    const filePath = path.join(server.dir, segmentFileName(fileNumber));
    const slotCount = this.#options.maxEntries;
    const fd = fs.openSync(filePath, 'wx+');
    writeFully(fd, encodeSegmentHeader(slotCount), 0);
    // The file spans its whole index area from the start, so a slot of an empty entry (a noop)
    // never points past the end of the file.
    fs.ftruncateSync(fd, dataAreaOffset(slotCount));
    const open: OpenSegment = {
      fileNumber, path: filePath, firstIndex, lastIndex: firstIndex - 1, fd, slotCount, used: 0,
      dataEnd: dataAreaOffset(slotCount), terms: [], pendingData: [], pendingSlots: [], pendingFirstSlot: 0,
    };
    server.files.push(open);
    server.open = open;
    this.#dirtyDirs.add(server.dir);
    this.#counters.add('files', 1);
    return open;
  }

  // Writes a file's pending data, then its slots: a slot never points at data not yet written.
  #writePending(file: OpenSegment): void {
    if (file.pendingSlots.length === 0) return;
    const data = Buffer.concat(file.pendingData);
    const dataStart = file.dataEnd - data.byteLength;
    writeFully(file.fd, data, dataStart);
    faultPoint('segment-mid-write');
    const slots = Buffer.concat(file.pendingSlots);
    writeFully(file.fd, slots, SEGMENT_HEADER_BYTES + file.pendingFirstSlot * SEGMENT_SLOT_BYTES);
    this.#counters.add('bytes', data.byteLength + slots.byteLength);
    file.pendingData = [];
    file.pendingSlots = [];
    file.pendingFirstSlot = file.used;
    this.#dirtyFiles.add(file);
  }

  // Writes and syncs the open file, then stops appending to it.
  #closeOpen(server: ServerSegments): void {
    const open = server.open!;
    this.#writePending(open);
    this.#syncFile(open);
    this.#dirtyFiles.delete(open);
    fs.closeSync(open.fd);
    const index = server.files.indexOf(open);
    server.files[index] = { fileNumber: open.fileNumber, path: open.path, firstIndex: open.firstIndex, lastIndex: open.lastIndex };
    server.open = null;
  }

  #syncFile(file: OpenSegment): void {
    const { syncMethod } = this.#options;
    if (syncMethod === 'datasync') fs.fdatasyncSync(file.fd);
    else if (syncMethod === 'sync') fs.fsyncSync(file.fd);
  }

  #syncDirty(): void {
    for (const file of this.#dirtyFiles) this.#syncFile(file);
    this.#dirtyFiles.clear();
    for (const dir of this.#dirtyDirs) syncDirectory(dir);
    this.#dirtyDirs.clear();
  }

  #termInSegments(server: ServerSegments, index: number): number | undefined {
    for (let k = server.files.length - 1; k >= 0; k--) {
      const file = server.files[k];
      if (index < file.firstIndex || index > file.lastIndex) continue;
      if (file === server.open) return server.open.terms[index - file.firstIndex];
      const fd = fs.openSync(file.path, 'r');
      try {
        const slot = readFully(fd, SEGMENT_SLOT_BYTES, SEGMENT_HEADER_BYTES + (index - file.firstIndex) * SEGMENT_SLOT_BYTES);
        return readU64(new DataView(slot.buffer, slot.byteOffset, slot.byteLength), 8);
      } finally {
        fs.closeSync(fd);
      }
    }
    return undefined;
  }

  #deleteFiles(server: ServerSegments, covered: (file: SegmentFile) => boolean): void {
    const remaining: SegmentFile[] = [];
    for (const file of server.files) {
      if (!covered(file)) {
        remaining.push(file);
        continue;
      }
      if (file === server.open) {
        this.#dirtyFiles.delete(server.open);
        fs.closeSync(server.open.fd);
        server.open = null;
      }
      fs.unlinkSync(file.path);
      this.#dirtyDirs.add(server.dir);
      this.#counters.add('filesDeleted', 1);
    }
    server.files = remaining;
  }
}

function findLastMarker(entries: ReplayedEntry[]): number {
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i].kind === ENTRY_KIND_SNAPSHOT_MARKER) return i;
  return -1;
}

/** Returns the index of the newest snapshot directory of a server, 0 when it has none. */
export function newestSnapshotIndex(serverDir: string): number {
  let newest = 0;
  let names: string[];
  try {
    names = fs.readdirSync(path.join(serverDir, 'snapshots'));
  } catch {
    return 0;
  }
  for (const name of names) {
    const match = SNAPSHOT_DIR_PATTERN.exec(name);
    if (match) newest = Math.max(newest, Number(match[1]));
  }
  return newest;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function main(): void {
  const options = workerData as SegmentWriterData;
  const writer = new SegmentWriter(options);
  let failed = false;
  parentPort!.on('message', (request: SegmentWriterRequest) => {
    if (failed) return;
    try {
      switch (request.type) {
        case 'flush': {
          const ranges = writer.flush(request.walPath);
          parentPort!.postMessage({ type: 'flushed', walPath: request.walPath, ranges: ranges ?? [] } satisfies SegmentWriterMessage);
          if (ranges !== null) writer.deleteWalFile(request.walPath);
          break;
        }
        case 'snapshot':
          writer.snapshot(request.uid, request.index);
          break;
        case 'close':
          writer.close();
          parentPort!.postMessage({ type: 'closed' } satisfies SegmentWriterMessage);
          break;
      }
    } catch (error) {
      // A failed write or sync leaves the files in an unknown state: stop, as the WAL does.
      failed = true;
      const what = request.type === 'flush' ? `moving WAL file ${request.walPath} into segments` : `handling "${request.type}"`;
      parentPort!.postMessage({ type: 'failed', message: `segment writer failed while ${what}: ${describe(error)}` } satisfies SegmentWriterMessage);
    }
  });
}

main();
