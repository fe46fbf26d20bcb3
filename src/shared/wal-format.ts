// On-disk format of the shared write-ahead log, used by the WAL worker, recovery and tools.
// All integers are little-endian.
//
// File header, 32 bytes:
//   0  magic "RANAWAL\0" (8 bytes)
//   8  u32 format version (1)
//  12  u32 header length in bytes (32)
//  16  u64 file number (the number in the file name)
//  24  u32 CRC-32 of bytes 0..24
//  28  u32 reserved, 0
//
// Then records, back to back with no padding. Every record starts with a type byte and a flags
// byte. Flag bit 0 set means the record's CRC-32 field is computed. Clear means the field is 0
// and is not verified, which is what the WAL option computeChecksums: false writes.
//
// Writer registration, 12 bytes + uid. It binds a writer id to a server uid for the records
// that follow it in the same file. Every file registers a writer before that writer's first
// entry in the file; a later registration of the same id rebinds it (a restarted WAL client
// hands out ids afresh and appends to the same file).
//   0  u8  type 1
//   1  u8  flags
//   2  u16 uid length in bytes (UTF-8), 1..WAL_UID_MAX_BYTES
//   4  u32 writer id
//   8  u32 CRC-32 of bytes 0..8 and the uid bytes
//  12  uid
//
// Entry, 32 bytes + data:
//   0  u8  type 2
//   1  u8  flags
//   2  u8  kind: 0 noop, 1 command, 2 snapshot marker
//   3  u8  reserved, 0
//   4  u32 writer id
//   8  u64 index (at most 2^53 - 1)
//  16  u64 term (at most 2^53 - 1)
//  24  u32 data length in bytes
//  28  u32 CRC-32 of bytes 0..28 and the data
//  32  data
//
// A snapshot marker is an entry with no data written after a follower installs a snapshot
// received from its leader: its index and term are the snapshot's. Replay treats it like any
// entry at that index, so every older entry above the snapshot (a diverged tail) is dropped,
// and the server's log restarts after the marker.
//
// A closed WAL file (every file but the newest) never ends with a torn write: the worker rolls
// over only after a batch is synced.
//
// Reading a file classifies what follows the last valid record:
// - Nothing, or a record that cannot be valid (cut short, wrong CRC, zero bytes, garbage) with
//   no valid checksummed record at any later offset: a torn final write, dropped. It was never
//   synced, so it was never acknowledged.
// - Anything else: corruption before the tail. The reader throws StorageError with the file
//   and the byte offset, and never truncates silently.

import crc32 from 'crc-32';
import { StorageError } from '../main/errors.js';

export const WAL_MAGIC = Uint8Array.from([0x52, 0x41, 0x4e, 0x41, 0x57, 0x41, 0x4c, 0x00]); // "RANAWAL\0"
export const WAL_FORMAT_VERSION = 1;
export const WAL_FILE_HEADER_BYTES = 32;
export const WAL_REGISTRATION_HEADER_BYTES = 12;
export const WAL_ENTRY_HEADER_BYTES = 32;
/** Maximum length of a server uid in a registration record, in UTF-8 bytes. */
export const WAL_UID_MAX_BYTES = 1024;

export const RECORD_TYPE_REGISTRATION = 1;
export const RECORD_TYPE_ENTRY = 2;
export const RECORD_FLAG_CHECKSUM = 1;

export const ENTRY_KIND_NOOP = 0;
export const ENTRY_KIND_COMMAND = 1;
export const ENTRY_KIND_SNAPSHOT_MARKER = 2;

// Byte offsets inside an entry record.
export const ENTRY_OFFSET_FLAGS = 1;
export const ENTRY_OFFSET_KIND = 2;
export const ENTRY_OFFSET_WRITER_ID = 4;
export const ENTRY_OFFSET_INDEX = 8;
export const ENTRY_OFFSET_TERM = 16;
export const ENTRY_OFFSET_DATA_LENGTH = 24;
export const ENTRY_OFFSET_CRC = 28;

const TWO_POW_32 = 2 ** 32;
// High word bound of a u64 that is still a safe integer (< 2^53).
const SAFE_HIGH_WORD_LIMIT = 2 ** 21;

/** File name of WAL file number `fileNumber`: 16 decimal digits, so names sort by number. */
export function walFileName(fileNumber: number): string {
  return `${String(fileNumber).padStart(16, '0')}.wal`;
}

/** Parses a WAL file name; returns its number, or null for any other name. */
export function parseWalFileName(name: string): number | null {
  const match = /^(\d{16})\.wal$/.exec(name);
  return match ? Number(match[1]) : null;
}

export function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % TWO_POW_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_POW_32), true);
}

/** Reads a u64 as a number, or returns -1 when it is not a safe integer. */
export function readU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset + 4, true);
  if (high >= SAFE_HIGH_WORD_LIMIT) return -1;
  return high * TWO_POW_32 + view.getUint32(offset, true);
}

/** CRC-32 of `bytes[start, headerEnd)` followed by `bytes[dataStart, dataEnd)`, as an unsigned number. */
function crcOf(bytes: Uint8Array, start: number, headerEnd: number, dataStart: number, dataEnd: number): number {
  const headerCrc = crc32.buf(bytes.subarray(start, headerEnd));
  return crc32.buf(bytes.subarray(dataStart, dataEnd), headerCrc) >>> 0;
}

export function encodeFileHeader(fileNumber: number): Uint8Array {
  const bytes = new Uint8Array(WAL_FILE_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(WAL_MAGIC, 0);
  view.setUint32(8, WAL_FORMAT_VERSION, true);
  view.setUint32(12, WAL_FILE_HEADER_BYTES, true);
  writeU64(view, 16, fileNumber);
  view.setUint32(24, crc32.buf(bytes.subarray(0, 24)) >>> 0, true);
  return bytes;
}

/** Encodes a writer registration record, with its CRC when `computeChecksums`. */
export function encodeRegistration(writerId: number, uid: string, computeChecksums: boolean): Uint8Array {
  const uidBytes = new TextEncoder().encode(uid);
  if (uidBytes.byteLength < 1 || uidBytes.byteLength > WAL_UID_MAX_BYTES) {
    throw new RangeError(`server uid "${uid}" is ${uidBytes.byteLength} bytes; use 1 to ${WAL_UID_MAX_BYTES} bytes of UTF-8`);
  }
  const bytes = new Uint8Array(WAL_REGISTRATION_HEADER_BYTES + uidBytes.byteLength);
  const view = new DataView(bytes.buffer);
  bytes[0] = RECORD_TYPE_REGISTRATION;
  bytes[1] = computeChecksums ? RECORD_FLAG_CHECKSUM : 0;
  view.setUint16(2, uidBytes.byteLength, true);
  view.setUint32(4, writerId, true);
  bytes.set(uidBytes, WAL_REGISTRATION_HEADER_BYTES);
  if (computeChecksums) {
    view.setUint32(8, crcOf(bytes, 0, 8, WAL_REGISTRATION_HEADER_BYTES, bytes.byteLength), true);
  }
  return bytes;
}

/**
 * Writes the header of an entry record at `offset`, CRC field 0 and flags 0. The data goes at
 * offset + WAL_ENTRY_HEADER_BYTES; `sealEntry` computes the CRC once it is there.
 */
export function writeEntryHeader(
  view: DataView,
  offset: number,
  writerId: number,
  index: number,
  term: number,
  kind: number,
  dataLength: number,
): void {
  view.setUint32(offset, RECORD_TYPE_ENTRY | (kind << 16), true); // type, flags 0, kind, reserved 0
  view.setUint32(offset + ENTRY_OFFSET_WRITER_ID, writerId, true);
  writeU64(view, offset + ENTRY_OFFSET_INDEX, index);
  writeU64(view, offset + ENTRY_OFFSET_TERM, term);
  view.setUint32(offset + ENTRY_OFFSET_DATA_LENGTH, dataLength, true);
  view.setUint32(offset + ENTRY_OFFSET_CRC, 0, true);
}

/** Sets the checksum flag and CRC of the complete entry record at `bytes[offset...]`. */
export function sealEntry(bytes: Uint8Array, view: DataView, offset: number): void {
  const dataLength = view.getUint32(offset + ENTRY_OFFSET_DATA_LENGTH, true);
  bytes[offset + ENTRY_OFFSET_FLAGS] = RECORD_FLAG_CHECKSUM;
  const dataStart = offset + WAL_ENTRY_HEADER_BYTES;
  const crc = crcOf(bytes, offset, offset + ENTRY_OFFSET_CRC, dataStart, dataStart + dataLength);
  view.setUint32(offset + ENTRY_OFFSET_CRC, crc, true);
}

export type WalRecord =
  | { type: 'registration'; offset: number; end: number; writerId: number; uid: string }
  | {
      type: 'entry';
      offset: number;
      end: number;
      writerId: number;
      index: number;
      term: number;
      kind: number;
      dataOffset: number;
      dataLength: number;
      checksummed: boolean;
    };

type ParseResult = WalRecord | { type: 'invalid'; reason: string };

/** Parses the record at `offset`. Never throws; an unusable record comes back as 'invalid' with the reason. */
export function parseRecordAt(bytes: Uint8Array, view: DataView, offset: number): ParseResult {
  const remaining = bytes.byteLength - offset;
  const type = bytes[offset];
  const flags = bytes[offset + 1];
  if (type !== RECORD_TYPE_ENTRY && type !== RECORD_TYPE_REGISTRATION) {
    return { type: 'invalid', reason: `unknown record type ${type}` };
  }
  if (flags > RECORD_FLAG_CHECKSUM) return { type: 'invalid', reason: `unknown record flags ${flags}` };
  const checksummed = flags === RECORD_FLAG_CHECKSUM;

  if (type === RECORD_TYPE_REGISTRATION) {
    if (remaining < WAL_REGISTRATION_HEADER_BYTES) return { type: 'invalid', reason: 'registration header cut short' };
    const uidLength = view.getUint16(offset + 2, true);
    if (uidLength < 1 || uidLength > WAL_UID_MAX_BYTES) return { type: 'invalid', reason: `uid length ${uidLength} out of range` };
    const end = offset + WAL_REGISTRATION_HEADER_BYTES + uidLength;
    if (end > bytes.byteLength) return { type: 'invalid', reason: 'registration cut short' };
    const storedCrc = view.getUint32(offset + 8, true);
    if (checksummed) {
      const crc = crcOf(bytes, offset, offset + 8, offset + WAL_REGISTRATION_HEADER_BYTES, end);
      if (crc !== storedCrc) return { type: 'invalid', reason: `registration CRC mismatch (stored ${storedCrc}, computed ${crc})` };
    } else if (storedCrc !== 0) {
      return { type: 'invalid', reason: 'registration without checksum flag has a non-zero CRC field' };
    }
    const uid = new TextDecoder().decode(bytes.subarray(offset + WAL_REGISTRATION_HEADER_BYTES, end));
    return { type: 'registration', offset, end, writerId: view.getUint32(offset + 4, true), uid };
  }

  if (remaining < WAL_ENTRY_HEADER_BYTES) return { type: 'invalid', reason: 'entry header cut short' };
  const kind = bytes[offset + ENTRY_OFFSET_KIND];
  if (kind !== ENTRY_KIND_NOOP && kind !== ENTRY_KIND_COMMAND && kind !== ENTRY_KIND_SNAPSHOT_MARKER) return { type: 'invalid', reason: `unknown entry kind ${kind}` };
  if (bytes[offset + 3] !== 0) return { type: 'invalid', reason: 'entry reserved byte is not 0' };
  const index = readU64(view, offset + ENTRY_OFFSET_INDEX);
  const term = readU64(view, offset + ENTRY_OFFSET_TERM);
  if (index < 1) return { type: 'invalid', reason: 'entry index is 0 or above 2^53' };
  if (term < 0) return { type: 'invalid', reason: 'entry term is above 2^53' };
  const dataLength = view.getUint32(offset + ENTRY_OFFSET_DATA_LENGTH, true);
  const dataOffset = offset + WAL_ENTRY_HEADER_BYTES;
  const end = dataOffset + dataLength;
  if (end > bytes.byteLength) return { type: 'invalid', reason: `entry data of ${dataLength} bytes cut short` };
  const storedCrc = view.getUint32(offset + ENTRY_OFFSET_CRC, true);
  if (checksummed) {
    const crc = crcOf(bytes, offset, offset + ENTRY_OFFSET_CRC, dataOffset, end);
    if (crc !== storedCrc) return { type: 'invalid', reason: `entry CRC mismatch (stored ${storedCrc}, computed ${crc})` };
  } else if (storedCrc !== 0) {
    return { type: 'invalid', reason: 'entry without checksum flag has a non-zero CRC field' };
  }
  const writerId = view.getUint32(offset + ENTRY_OFFSET_WRITER_ID, true);
  return { type: 'entry', offset, end, writerId, index, term, kind, dataOffset, dataLength, checksummed };
}

/**
 * Returns the offset of the first checksummed valid record after `offset`, or -1.
 * NOTE: a torn record whose data embeds a complete checksummed WAL record is reported as
 * corruption, because the embedded record looks valid. The scan checks every byte offset.
 */
function findValidRecordAfter(bytes: Uint8Array, view: DataView, offset: number): number {
  for (let candidate = offset + 1; candidate < bytes.byteLength; candidate++) {
    const type = bytes[candidate];
    if (type !== RECORD_TYPE_ENTRY && type !== RECORD_TYPE_REGISTRATION) continue;
    if (bytes[candidate + 1] !== RECORD_FLAG_CHECKSUM) continue;
    const parsed = parseRecordAt(bytes, view, candidate);
    if (parsed.type !== 'invalid') return candidate;
  }
  return -1;
}

export interface WalScanResult {
  fileNumber: number;
  /** Offset just past the last valid record: where appends continue. */
  validEndOffset: number;
  /** Bytes after validEndOffset that were classified as a torn final write and dropped. */
  tornTailBytes: number;
}

/**
 * Scans one WAL file held in `bytes` and calls `onRecord` for each valid record in order.
 * Drops a torn final write (see the file comment) and throws StorageError naming `filePath`
 * and the byte offset for corruption before it.
 *
 * NOTE: records written with computeChecksums false have no CRC, so a damaged one is caught
 * only when its fields are out of range, and it does not count as a valid record after damage.
 */
export function scanWalFile(filePath: string, bytes: Uint8Array, onRecord: (record: WalRecord) => void): WalScanResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const corrupt = (offset: number, reason: string): StorageError =>
    new StorageError(
      `WAL file ${filePath} is corrupt at byte offset ${offset}: ${reason}. ` +
        'This is not a torn final write, so rana will not truncate it; restore the member from a replica ' +
        '(delete its data directory and add it back) or inspect the file with a WAL dump tool',
    );

  if (bytes.byteLength < WAL_FILE_HEADER_BYTES) {
    throw corrupt(0, `file header cut short (${bytes.byteLength} of ${WAL_FILE_HEADER_BYTES} bytes)`);
  }
  for (let i = 0; i < WAL_MAGIC.byteLength; i++) {
    if (bytes[i] !== WAL_MAGIC[i]) throw corrupt(0, 'wrong magic number, this is not a rana WAL file');
  }
  const version = view.getUint32(8, true);
  if (version !== WAL_FORMAT_VERSION) throw corrupt(8, `unsupported format version ${version}, this build reads ${WAL_FORMAT_VERSION}`);
  const headerCrc = crc32.buf(bytes.subarray(0, 24)) >>> 0;
  if (view.getUint32(24, true) !== headerCrc) throw corrupt(24, 'file header CRC mismatch');
  const headerLength = view.getUint32(12, true);
  if (headerLength !== WAL_FILE_HEADER_BYTES) throw corrupt(12, `unexpected file header length ${headerLength}`);
  const fileNumber = readU64(view, 16);

  let offset = WAL_FILE_HEADER_BYTES;
  while (offset < bytes.byteLength) {
    const record = parseRecordAt(bytes, view, offset);
    if (record.type === 'invalid') {
      const validAfter = findValidRecordAfter(bytes, view, offset);
      if (validAfter !== -1) throw corrupt(offset, `${record.reason}, and a valid record follows at offset ${validAfter}`);
      return { fileNumber, validEndOffset: offset, tornTailBytes: bytes.byteLength - offset };
    }
    onRecord(record);
    offset = record.end;
  }
  return { fileNumber, validEndOffset: offset, tornTailBytes: 0 };
}

export interface ReplayedEntry {
  index: number;
  term: number;
  kind: number;
  /** A view into the scanned file's bytes. */
  data: Uint8Array;
}

/**
 * Rebuilds each writer's log from scanned records, in file order. For one uid, an entry whose
 * index is at or below the last one replaces that index and drops everything after it (the
 * later record wins). An entry above last index + 1 starts the log afresh from that index, as
 * after a snapshot install, so every writer's entries stay contiguous.
 */
export class WalReplay {
  readonly entriesByUid = new Map<string, ReplayedEntry[]>();
  #uidByWriterId = new Map<number, string>();

  /** Starts a new file: writer ids are bound per file. */
  startFile(): void {
    this.#uidByWriterId = new Map();
  }

  /** Applies one record from `scanWalFile`; throws StorageError for an entry of a writer the file never registered. */
  apply(filePath: string, bytes: Uint8Array, record: WalRecord): void {
    if (record.type === 'registration') {
      this.#uidByWriterId.set(record.writerId, record.uid);
      return;
    }
    const uid = this.#uidByWriterId.get(record.writerId);
    if (uid === undefined) {
      throw new StorageError(
        `WAL file ${filePath} is corrupt at byte offset ${record.offset}: entry of writer id ${record.writerId}, which this file never registered; ` +
          'restore the member from a replica',
      );
    }
    let entries = this.entriesByUid.get(uid);
    if (entries === undefined) {
      entries = [];
      this.entriesByUid.set(uid, entries);
    }
    const entry: ReplayedEntry = {
      index: record.index,
      term: record.term,
      kind: record.kind,
      data: bytes.subarray(record.dataOffset, record.dataOffset + record.dataLength),
    };
    if (entries.length > 0) {
      const firstIndex = entries[0].index;
      const lastIndex = firstIndex + entries.length - 1;
      if (entry.index <= lastIndex) {
        entries.length = Math.max(0, entry.index - firstIndex);
      } else if (entry.index > lastIndex + 1) {
        entries.length = 0;
      }
    }
    entries.push(entry);
  }
}

// ---- Append ring protocol (WAL client -> WAL worker) ----
// Entry and registration records in the append ring use the on-disk layouts above with flags 0
// and CRC 0; the worker computes checksums. Two more record types exist only in the ring.

/** Ring record standing in for an entry too large for the ring: u8 type, 3 bytes 0, u32 sequence number. The entry itself arrives on the large-record port. */
export const RING_RECORD_LARGE_ENTRY = 3;
export const RING_LARGE_ENTRY_BYTES = 8;
/** Ring record asking the worker to sync and stop: u8 type, 7 bytes 0. */
export const RING_RECORD_CLOSE = 4;
export const RING_CLOSE_BYTES = 8;

/** Message on the large-record port: one complete entry record (header and data), in ring order. */
export interface LargeEntryMessage {
  sequence: number;
  record: Uint8Array;
}

// ---- Notification ring protocol (WAL worker -> WAL client) ----
// One `written` notification: u32 writer id, u32 0, f64 term, f64 first index, f64 last index.
// Writer id 0 (never handed out) marks a roll-over instead: f64 at offset 16 is the number of
// the WAL file just closed. It travels in the same ring so it follows the file's last `written`.
// A u32 of 1 at offset 4 (NOTIFICATION_FLAG_RESEND) marks a resend request instead: the worker
// dropped an entry of the writer past a gap and needs every entry from the f64 at offset 16 on.
export const NOTIFICATION_BYTES = 32;
export const NOTIFICATION_ROLLED_WRITER_ID = 0;
export const NOTIFICATION_FLAG_RESEND = 1;
