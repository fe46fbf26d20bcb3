// On-disk format of a snapshot: one directory per snapshot under a server's `snapshots/`,
// named `<index>_<term>` (16 decimal digits each, so names sort by index), holding one file
// `snapshot.dat`. All integers are little-endian.
//
// snapshot.dat:
//   0  magic "RANASNP\0" (8 bytes)
//   8  u32 format version (1)
//  12  u32 header length in bytes (48)
//  16  u64 index of the last entry the snapshot covers
//  24  u64 term of that entry
//  32  u64 data length in bytes
//  40  u32 CRC-32 of the data
//  44  u32 CRC-32 of bytes 0..44
//  48  data: the machine state, encoded by the machine's snapshot codec
//
// A snapshot is written into `<name>.partial/` (or `<name>.receiving/` while a follower
// receives one), synced, and renamed into place, so a directory with the final name is
// always complete. Readers still verify both CRCs before they trust it.

import crc32 from 'crc-32';
import { StorageError } from '../main/errors.js';
import { readU64, writeU64 } from './wal-format.js';

export const SNAPSHOT_MAGIC = Uint8Array.from([0x52, 0x41, 0x4e, 0x41, 0x53, 0x4e, 0x50, 0x00]); // "RANASNP\0"
export const SNAPSHOT_FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 48;
export const SNAPSHOT_FILE_NAME = 'snapshot.dat';
export const SNAPSHOT_DIR_PATTERN = /^(\d{16})_(\d{16})$/;

export function snapshotDirName(index: number, term: number): string {
  return `${String(index).padStart(16, '0')}_${String(term).padStart(16, '0')}`;
}

/** Parses a snapshot directory name; returns its index and term, or null for any other name. */
export function parseSnapshotDirName(name: string): { index: number; term: number } | null {
  const match = SNAPSHOT_DIR_PATTERN.exec(name);
  return match ? { index: Number(match[1]), term: Number(match[2]) } : null;
}

export function encodeSnapshotHeader(index: number, term: number, data: Uint8Array): Uint8Array {
  const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  const view = new DataView(header.buffer);
  header.set(SNAPSHOT_MAGIC, 0);
  view.setUint32(8, SNAPSHOT_FORMAT_VERSION, true);
  view.setUint32(12, SNAPSHOT_HEADER_BYTES, true);
  writeU64(view, 16, index);
  writeU64(view, 24, term);
  writeU64(view, 32, data.byteLength);
  view.setUint32(40, crc32.buf(data) >>> 0, true);
  view.setUint32(44, crc32.buf(header.subarray(0, 44)) >>> 0, true);
  return header;
}

export interface ParsedSnapshot {
  index: number;
  term: number;
  /** A view into the bytes passed in. */
  data: Uint8Array;
}

/** Verifies a whole snapshot file held in `bytes`; throws StorageError naming the file and the byte offset of the first bad field. */
export function parseSnapshot(filePath: string, bytes: Uint8Array): ParsedSnapshot {
  const corrupt = (offset: number, reason: string): StorageError =>
    new StorageError(`snapshot file ${filePath} is corrupt at byte offset ${offset}: ${reason}; rana falls back to an older snapshot, or delete this snapshot directory`);
  if (bytes.byteLength < SNAPSHOT_HEADER_BYTES) throw corrupt(0, `file of ${bytes.byteLength} bytes is shorter than the ${SNAPSHOT_HEADER_BYTES}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < SNAPSHOT_MAGIC.byteLength; i++) {
    if (bytes[i] !== SNAPSHOT_MAGIC[i]) throw corrupt(0, 'wrong magic number, this is not a rana snapshot');
  }
  if (view.getUint32(44, true) !== crc32.buf(bytes.subarray(0, 44)) >>> 0) throw corrupt(44, 'header CRC mismatch');
  const version = view.getUint32(8, true);
  if (version !== SNAPSHOT_FORMAT_VERSION) throw corrupt(8, `unsupported format version ${version}, this build reads ${SNAPSHOT_FORMAT_VERSION}`);
  const index = readU64(view, 16);
  const term = readU64(view, 24);
  const dataLength = readU64(view, 32);
  if (dataLength < 0 || SNAPSHOT_HEADER_BYTES + dataLength !== bytes.byteLength) {
    throw corrupt(32, `data length ${dataLength} does not match the file size ${bytes.byteLength}`);
  }
  const data = bytes.subarray(SNAPSHOT_HEADER_BYTES);
  const crc = crc32.buf(data) >>> 0;
  if (crc !== view.getUint32(40, true)) throw corrupt(SNAPSHOT_HEADER_BYTES, `data CRC mismatch (stored ${view.getUint32(40, true)}, computed ${crc})`);
  return { index, term, data };
}
