// Durable current term and voted-for of one server, in `<serverDir>/meta`. Raft requires both
// to be on disk before the server replies to a vote request or starts an election.
//
// The file contains two fixed 512-byte slots, A at offset 0 and B at offset 512. A write goes to
// the slot that does not hold the newest valid state, with a higher sequence number, and is
// fdatasync'd before write() returns. A torn write can only damage that slot, so the other one
// still holds the previous state. Read takes the valid slot with the higher sequence.
//
// Slot layout, little-endian:
//   0  u32 magic "RMET"
//   4  u16 format version (1)
//   6  u16 voted-for length in UTF-8 bytes, 0xFFFF for none
//   8  u64 sequence number
//  16  u64 term
//  24  voted-for bytes, at most META_VOTED_FOR_MAX_BYTES
// 508  u32 CRC-32 of bytes 0..508

import fs from 'node:fs';
import path from 'node:path';
import crc32 from 'crc-32';
import { InvalidConfigError, StorageError } from '../errors.js';

const SLOT_BYTES = 512;
const SLOT_COUNT = 2;
const MAGIC = 0x54454d52; // "RMET" read as a little-endian u32
const FORMAT_VERSION = 1;
const NO_VOTE = 0xffff;
const VOTED_FOR_OFFSET = 24;
const CRC_OFFSET = SLOT_BYTES - 4;
/** Maximum length of the voted-for peer id in the meta file, in UTF-8 bytes. */
export const META_VOTED_FOR_MAX_BYTES = CRC_OFFSET - VOTED_FOR_OFFSET;

const TWO_POW_32 = 2 ** 32;

export interface MetaState {
  term: number;
  votedFor: string | null;
}

interface SlotState extends MetaState {
  sequence: number;
}

export class MetaStore {
  readonly filePath: string;
  #fd: number;
  #state: MetaState;
  #sequence: number;
  // Slot that contains the newest valid state, or -1 for a new file.
  #currentSlot: number;

  private constructor(filePath: string, fd: number, state: SlotState, currentSlot: number) {
    this.filePath = filePath;
    this.#fd = fd;
    this.#state = { term: state.term, votedFor: state.votedFor };
    this.#sequence = state.sequence;
    this.#currentSlot = currentSlot;
  }

  /**
   * Opens the meta file, creating it with term 0 and no vote (and syncing its directory) when
   * missing. Throws
   * StorageError when the file is not empty and neither slot is valid.
   */
  static open(filePath: string): MetaStore {
    if (!fs.existsSync(filePath)) createMetaFile(filePath);
    const fd = fs.openSync(filePath, 'r+');
    try {
      const bytes = Buffer.alloc(SLOT_BYTES * SLOT_COUNT);
      const length = fs.readSync(fd, bytes, 0, bytes.byteLength, 0);
      const slots = [0, 1].map((slot) => decodeSlot(bytes, slot, length));
      let currentSlot = -1;
      slots.forEach((state, slot) => {
        if (state !== null && (currentSlot === -1 || state.sequence > slots[currentSlot]!.sequence)) currentSlot = slot;
      });
      if (currentSlot === -1 && length > 0) {
        throw new StorageError(
          `meta file ${filePath} is corrupt: neither of its two slots is valid, so the server's term and vote are lost. ` +
            'Do not delete the file to get past this, because the server could vote twice in one term; restore the member from a replica',
        );
      }
      const state = currentSlot === -1 ? { term: 0, votedFor: null, sequence: 0 } : slots[currentSlot]!;
      return new MetaStore(filePath, fd, state, currentSlot);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  /** Returns the last durable term and vote: term 0 and no vote for a new file. */
  read(): MetaState {
    return { term: this.#state.term, votedFor: this.#state.votedFor };
  }

  /** Writes term and vote into the older slot and fdatasyncs it before returning. */
  write(term: number, votedFor: string | null): void {
    if (this.#fd === -1) throw new StorageError(`meta file ${this.filePath} is closed; open it again`);
    if (!Number.isSafeInteger(term) || term < 0) {
      throw new RangeError(`term ${term} is invalid; use a safe integer >= 0`);
    }
    const votedForBytes = votedFor === null ? null : new TextEncoder().encode(votedFor);
    if (votedForBytes !== null && votedForBytes.byteLength > META_VOTED_FOR_MAX_BYTES) {
      throw new InvalidConfigError(
        `voted-for peer id "${votedFor}" is ${votedForBytes.byteLength} bytes; node ids must be at most ${META_VOTED_FOR_MAX_BYTES} bytes of UTF-8`,
      );
    }
    const sequence = this.#sequence + 1;
    const slot = this.#currentSlot === 0 ? 1 : 0;
    const bytes = encodeSlot(sequence, term, votedForBytes);
    try {
      fs.writeSync(this.#fd, bytes, 0, bytes.byteLength, slot * SLOT_BYTES);
      fs.fdatasyncSync(this.#fd);
    } catch (error) {
      // Like the WAL, a failed sync is not retried: the store stays unusable until reopened.
      fs.closeSync(this.#fd);
      this.#fd = -1;
      throw new StorageError(`write of meta file ${this.filePath} failed: ${(error as Error).message}; check the disk and restart the server`, {
        cause: error,
      });
    }
    this.#sequence = sequence;
    this.#currentSlot = slot;
    this.#state = { term, votedFor };
  }

  close(): void {
    if (this.#fd === -1) return;
    fs.closeSync(this.#fd);
    this.#fd = -1;
  }
}

// Creates the file with slot A valid (term 0, no vote), so a torn first write still leaves a
// valid slot. The slot is written to a temporary name and renamed, so a crash during creation
// leaves either no file or a complete one.
function createMetaFile(filePath: string): void {
  const tempPath = `${filePath}.tmp`;
  const initial = encodeSlot(1, 0, null);
  const fd = fs.openSync(tempPath, 'w');
  try {
    fs.writeSync(fd, initial, 0, initial.byteLength, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tempPath, filePath);
  syncDirectory(path.dirname(filePath));
}

function encodeSlot(sequence: number, term: number, votedFor: Uint8Array | null): Buffer {
  const bytes = Buffer.alloc(SLOT_BYTES);
  bytes.writeUInt32LE(MAGIC, 0);
  bytes.writeUInt16LE(FORMAT_VERSION, 4);
  bytes.writeUInt16LE(votedFor === null ? NO_VOTE : votedFor.byteLength, 6);
  writeU64(bytes, 8, sequence);
  writeU64(bytes, 16, term);
  if (votedFor !== null) bytes.set(votedFor, VOTED_FOR_OFFSET);
  bytes.writeUInt32LE(crc32.buf(bytes.subarray(0, CRC_OFFSET)) >>> 0, CRC_OFFSET);
  return bytes;
}

// Returns the slot's state, or null when the slot is missing, torn or not a meta slot.
function decodeSlot(file: Buffer, slot: number, fileLength: number): SlotState | null {
  const start = slot * SLOT_BYTES;
  if (fileLength < start + SLOT_BYTES) return null;
  const bytes = file.subarray(start, start + SLOT_BYTES);
  if (bytes.readUInt32LE(0) !== MAGIC || bytes.readUInt16LE(4) !== FORMAT_VERSION) return null;
  if (bytes.readUInt32LE(CRC_OFFSET) !== crc32.buf(bytes.subarray(0, CRC_OFFSET)) >>> 0) return null;
  const votedForLength = bytes.readUInt16LE(6);
  if (votedForLength !== NO_VOTE && votedForLength > META_VOTED_FOR_MAX_BYTES) return null;
  const votedFor =
    votedForLength === NO_VOTE ? null : new TextDecoder().decode(bytes.subarray(VOTED_FOR_OFFSET, VOTED_FOR_OFFSET + votedForLength));
  return { sequence: readU64(bytes, 8), term: readU64(bytes, 16), votedFor };
}

function writeU64(bytes: Buffer, offset: number, value: number): void {
  bytes.writeUInt32LE(value % TWO_POW_32, offset);
  bytes.writeUInt32LE(Math.floor(value / TWO_POW_32), offset + 4);
}

function readU64(bytes: Buffer, offset: number): number {
  return bytes.readUInt32LE(offset + 4) * TWO_POW_32 + bytes.readUInt32LE(offset);
}

function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
