// Main-thread reads of segment files: the entries a lagging follower or the apply loop needs
// after they left memory. Reads are synchronous (the Raft core's LogStorage contract, as in
// etcd's raft) and go through a small cache of open file descriptors shared by a system.
//
// Only each file's index range and its runs of equal terms stay in memory. Slots and data are
// read from disk on demand, and every entry read is checked against its slot CRC.

import fs from 'node:fs';
import path from 'node:path';
import type { LogEntry, LogStorage } from '../raft/types.js';
import { readFully } from '../../shared/file-system.js';
import {
  SEGMENT_HEADER_BYTES,
  SEGMENT_SLOT_BYTES,
  dataAreaOffset,
  checkSlotData,
  parseSegmentFileName,
  parseSegmentHeader,
  scanSegmentIndex,
  segmentCorrupt,
} from '../../shared/segment-format.js';
import { readU64 } from '../../shared/wal-format.js';
import { ENTRY_KIND_NOOP } from '../../shared/wal-format.js';

/** Default bound of open segment files per system. */
export const SEGMENT_OPEN_FILES_MAX = 32;

/** Least-recently-used cache of read-only file descriptors; it closes the oldest past its bound. */
export class SegmentFileCache {
  readonly #maxOpenFiles: number;
  // Map iteration order is insertion order, so the first key is the least recently used.
  readonly #fds = new Map<string, number>();

  constructor(maxOpenFiles = SEGMENT_OPEN_FILES_MAX) {
    this.#maxOpenFiles = maxOpenFiles;
  }

  get openFiles(): number {
    return this.#fds.size;
  }

  acquire(filePath: string): number {
    const cached = this.#fds.get(filePath);
    if (cached !== undefined) {
      this.#fds.delete(filePath);
      this.#fds.set(filePath, cached);
      return cached;
    }
    const fd = fs.openSync(filePath, 'r');
    this.#fds.set(filePath, fd);
    if (this.#fds.size > this.#maxOpenFiles) {
      const [oldestPath, oldestFd] = this.#fds.entries().next().value as [string, number];
      this.#fds.delete(oldestPath);
      fs.closeSync(oldestFd);
    }
    return fd;
  }

  /** Closes the descriptor of a file that changed or was deleted, so the next read reopens it. */
  forget(filePath: string): void {
    const fd = this.#fds.get(filePath);
    if (fd === undefined) return;
    this.#fds.delete(filePath);
    fs.closeSync(fd);
  }

  closeAll(): void {
    for (const fd of this.#fds.values()) fs.closeSync(fd);
    this.#fds.clear();
  }
}

interface SegmentFileInfo {
  fileNumber: number;
  path: string;
  sizeBytes: number;
  slotCount: number;
  firstIndex: number;
  lastIndex: number;
  /** Runs of equal terms: termRuns[k] = [first index of the run, term]. */
  termRuns: [number, number][];
  /** Highest index of this file that no newer file overrides (firstIndex - 1 when none). */
  effectiveLastIndex: number;
}

/** The segment files of one server, read as a LogStorage. */
export class SegmentLog implements LogStorage {
  readonly dir: string;
  readonly #cache: SegmentFileCache;
  /** Files with at least one entry, oldest first. */
  #files: SegmentFileInfo[] = [];

  constructor(dir: string, cache: SegmentFileCache) {
    this.dir = dir;
    this.#cache = cache;
    this.refresh();
  }

  /** Rereads the directory: new files, grown files and deleted files. Cheap for unchanged files. */
  refresh(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') names = [];
      else throw error;
    }
    const known = new Map(this.#files.map((f) => [f.path, f]));
    const files: SegmentFileInfo[] = [];
    for (const name of names) {
      const fileNumber = parseSegmentFileName(name);
      if (fileNumber === null) continue;
      const filePath = path.join(this.dir, name);
      let sizeBytes: number;
      try {
        sizeBytes = fs.statSync(filePath).size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted by the segment writer meanwhile
        throw error;
      }
      const previous = known.get(filePath);
      if (previous !== undefined && previous.sizeBytes === sizeBytes) {
        files.push(previous);
        known.delete(filePath);
        continue;
      }
      this.#cache.forget(filePath);
      let info: SegmentFileInfo | null;
      try {
        info = this.#readFileInfo(filePath, fileNumber, sizeBytes);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        info = null; // deleted by the segment writer (a snapshot covers it) between the listing and the open
      }
      if (info !== null) files.push(info);
      known.delete(filePath);
    }
    for (const deletedPath of known.keys()) this.#cache.forget(deletedPath);
    files.sort((a, b) => a.fileNumber - b.fileNumber);
    // A newer file overrides every index from its first one on in older files.
    let limit = Number.POSITIVE_INFINITY;
    for (let k = files.length - 1; k >= 0; k--) {
      const file = files[k];
      file.effectiveLastIndex = Math.min(file.lastIndex, limit - 1);
      limit = Math.min(limit, file.firstIndex);
    }
    this.#files = files;
  }

  lastIndex(): number {
    const newest = this.#files[this.#files.length - 1];
    return newest === undefined ? 0 : newest.lastIndex;
  }

  /** Lowest index any file holds, 0 when there are none. */
  firstIndex(): number {
    return this.#files.length === 0 ? 0 : Math.min(...this.#files.map((f) => f.firstIndex));
  }

  get fileCount(): number {
    return this.#files.length;
  }

  term(index: number): number | undefined {
    const file = this.#fileFor(index);
    if (file === undefined) return undefined;
    let term = file.termRuns[0][1];
    for (const [first, runTerm] of file.termRuns) {
      if (first > index) break;
      term = runTerm;
    }
    return term;
  }

  entries(fromIndex: number, toIndex: number): LogEntry[] {
    const out: LogEntry[] = [];
    let index = fromIndex;
    while (index <= toIndex) {
      const file = this.#fileFor(index);
      if (file === undefined) {
        throw segmentCorrupt(this.dir, 0, `no segment file holds entry ${index} (range ${fromIndex}..${toIndex} requested); the log has a hole`);
      }
      const last = Math.min(toIndex, file.effectiveLastIndex);
      this.#readRange(file, index, last, out);
      index = last + 1;
    }
    return out;
  }

  #fileFor(index: number): SegmentFileInfo | undefined {
    for (let k = this.#files.length - 1; k >= 0; k--) {
      const file = this.#files[k];
      if (index >= file.firstIndex && index <= file.effectiveLastIndex) return file;
    }
    return undefined;
  }

  #readRange(file: SegmentFileInfo, fromIndex: number, toIndex: number, out: LogEntry[]): void {
    const fd = this.#cache.acquire(file.path);
    const firstSlot = fromIndex - file.firstIndex;
    const count = toIndex - fromIndex + 1;
    const slotsOffset = SEGMENT_HEADER_BYTES + firstSlot * SEGMENT_SLOT_BYTES;
    const slotBytes = readFully(fd, count * SEGMENT_SLOT_BYTES, slotsOffset);
    const slotView = new DataView(slotBytes.buffer, slotBytes.byteOffset, slotBytes.byteLength);
    const dataStart = slotView.getUint32(16, true);
    const lastSlot = (count - 1) * SEGMENT_SLOT_BYTES;
    const dataEnd = slotView.getUint32(lastSlot + 16, true) + slotView.getUint32(lastSlot + 20, true);
    const data = readFully(fd, dataEnd - dataStart, dataStart);
    for (let k = 0; k < count; k++) {
      const at = k * SEGMENT_SLOT_BYTES;
      const slot = {
        index: readU64(slotView, at),
        term: readU64(slotView, at + 8),
        dataOffset: slotView.getUint32(at + 16, true),
        dataLength: slotView.getUint32(at + 20, true),
        kind: slotBytes[at + 24],
        crc: slotView.getUint32(at + 28, true),
        slotOffset: slotsOffset + at,
      };
      if (slot.index !== fromIndex + k) {
        throw segmentCorrupt(file.path, slot.slotOffset, `slot holds index ${slot.index} where ${fromIndex + k} belongs`);
      }
      const entryData = data.subarray(slot.dataOffset - dataStart, slot.dataOffset - dataStart + slot.dataLength);
      checkSlotData(file.path, slot, slotBytes.subarray(at, at + SEGMENT_SLOT_BYTES), entryData);
      out.push({ index: slot.index, term: slot.term, kind: slot.kind === ENTRY_KIND_NOOP ? 'noop' : 'command', data: entryData });
    }
  }

  #readFileInfo(filePath: string, fileNumber: number, sizeBytes: number): SegmentFileInfo | null {
    const fd = this.#cache.acquire(filePath);
    const header = readFully(fd, SEGMENT_HEADER_BYTES, 0);
    const slotCount = parseSegmentHeader(filePath, header);
    const indexBytes = Math.min(dataAreaOffset(slotCount), sizeBytes);
    const indexArea = readFully(fd, indexBytes, 0);
    const scan = scanSegmentIndex(filePath, indexArea, sizeBytes);
    if (scan.slots.length === 0) return null;
    const termRuns: [number, number][] = [];
    for (const slot of scan.slots) {
      if (termRuns.length === 0 || termRuns[termRuns.length - 1][1] !== slot.term) termRuns.push([slot.index, slot.term]);
    }
    const firstIndex = scan.slots[0].index;
    const lastIndex = scan.slots[scan.slots.length - 1].index;
    return { fileNumber, path: filePath, sizeBytes, slotCount, firstIndex, lastIndex, termRuns, effectiveLastIndex: lastIndex };
  }
}
