// On-disk format of segment files: the per-server files that the segment writer fills from
// closed WAL files. All integers are little-endian.
//
//   offset 0                 64                         64 + slots * 32
//   | header (64 bytes)      | index area: fixed slots  | data area: entry data back to back |
//
// Header, 64 bytes:
//   0  magic "RANASEG\0" (8 bytes)
//   8  u32 format version (1)
//  12  u32 header length in bytes (64)
//  16  u32 slot count: the most entries this file can hold
//  20  u32 reserved, 0
//  24  u32 CRC-32 of bytes 0..24
//  28  36 bytes reserved, 0
//
// Slot, 32 bytes, one per entry in index order; an unused slot is all zero:
//   0  u64 index (at most 2^53 - 1)
//   8  u64 term
//  16  u32 data offset in the file
//  20  u32 data length in bytes
//  24  u8  kind: 0 noop, 1 command
//  25  3 bytes reserved, 0
//  28  u32 CRC-32 of slot bytes 0..28 and the data
//
// Entries in one file are contiguous: slot k contains index firstIndex + k, and data offsets
// increase. Across the files of one server a newer file (higher number in its name) wins over
// an older one for any index both contain: an overwrite after a leader change starts a new
// file at the overwritten index. The writer writes the data, then the slots, then fdatasyncs.
// A crash can leave a torn tail (slots that are zero, or whose data runs past the end of the
// file), which readers drop; the WAL file that held those entries still exists then, because
// it is deleted only after the segment is synced.

import crc32 from 'crc-32';
import { StorageError } from '../main/errors.js';
import { readU64, writeU64 } from './wal-format.js';

export const SEGMENT_MAGIC = Uint8Array.from([0x52, 0x41, 0x4e, 0x41, 0x53, 0x45, 0x47, 0x00]); // "RANASEG\0"
export const SEGMENT_FORMAT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = 64;
export const SEGMENT_SLOT_BYTES = 32;
/** Largest slot count a segment file may declare. */
export const SEGMENT_SLOTS_MAX = 1 << 20;
/** Largest segment file, in bytes: data offsets are u32. */
export const SEGMENT_FILE_BYTES_MAX = 2 ** 32 - 1;

const SLOT_OFFSET_INDEX = 0;
const SLOT_OFFSET_TERM = 8;
const SLOT_OFFSET_DATA_OFFSET = 16;
const SLOT_OFFSET_DATA_LENGTH = 20;
const SLOT_OFFSET_KIND = 24;
const SLOT_OFFSET_CRC = 28;

/** File name of segment number `fileNumber` of one server: 16 decimal digits, so names sort by number. */
export function segmentFileName(fileNumber: number): string {
  return `${String(fileNumber).padStart(16, '0')}.segment`;
}

export function parseSegmentFileName(name: string): number | null {
  const match = /^(\d{16})\.segment$/.exec(name);
  return match ? Number(match[1]) : null;
}

export function dataAreaOffset(slotCount: number): number {
  return SEGMENT_HEADER_BYTES + slotCount * SEGMENT_SLOT_BYTES;
}

export function encodeSegmentHeader(slotCount: number): Uint8Array {
  const bytes = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(SEGMENT_MAGIC, 0);
  view.setUint32(8, SEGMENT_FORMAT_VERSION, true);
  view.setUint32(12, SEGMENT_HEADER_BYTES, true);
  view.setUint32(16, slotCount, true);
  view.setUint32(24, crc32.buf(bytes.subarray(0, 24)) >>> 0, true);
  return bytes;
}

/** Returns the slot count of a segment header, or throws StorageError naming `filePath` and the offset. */
export function parseSegmentHeader(filePath: string, header: Uint8Array): number {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (header.byteLength < SEGMENT_HEADER_BYTES) throw segmentCorrupt(filePath, 0, `header cut short (${header.byteLength} bytes)`);
  for (let i = 0; i < SEGMENT_MAGIC.byteLength; i++) {
    if (header[i] !== SEGMENT_MAGIC[i]) throw segmentCorrupt(filePath, 0, 'wrong magic number, this is not a rana segment file');
  }
  const version = view.getUint32(8, true);
  if (version !== SEGMENT_FORMAT_VERSION) throw segmentCorrupt(filePath, 8, `unsupported format version ${version}, this build reads ${SEGMENT_FORMAT_VERSION}`);
  if (view.getUint32(24, true) !== crc32.buf(header.subarray(0, 24)) >>> 0) throw segmentCorrupt(filePath, 24, 'header CRC mismatch');
  const slotCount = view.getUint32(16, true);
  if (slotCount < 1 || slotCount > SEGMENT_SLOTS_MAX) throw segmentCorrupt(filePath, 16, `slot count ${slotCount} is outside 1..${SEGMENT_SLOTS_MAX}`);
  return slotCount;
}

export function segmentCorrupt(filePath: string, offset: number, reason: string): StorageError {
  return new StorageError(
    `segment file ${filePath} is corrupt at byte offset ${offset}: ${reason}. ` +
      'rana does not skip damaged entries; restore the member from a replica (delete its data directory and add it back) ' +
      'or inspect the file with "rana segment dump"',
  );
}

/** One slot of a segment's index area. */
export interface SegmentSlot {
  index: number;
  term: number;
  dataOffset: number;
  dataLength: number;
  kind: number;
  crc: number;
  /** Byte offset of the slot in the file. */
  slotOffset: number;
}

export function writeSlot(view: DataView, offset: number, slot: Omit<SegmentSlot, 'slotOffset' | 'crc'>, data: Uint8Array): void {
  writeU64(view, offset + SLOT_OFFSET_INDEX, slot.index);
  writeU64(view, offset + SLOT_OFFSET_TERM, slot.term);
  view.setUint32(offset + SLOT_OFFSET_DATA_OFFSET, slot.dataOffset, true);
  view.setUint32(offset + SLOT_OFFSET_DATA_LENGTH, slot.dataLength, true);
  view.setUint32(offset + SLOT_OFFSET_KIND, slot.kind, true);
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  const crc = crc32.buf(data, crc32.buf(bytes.subarray(offset, offset + SLOT_OFFSET_CRC))) >>> 0;
  view.setUint32(offset + SLOT_OFFSET_CRC, crc, true);
}

/** Computes the CRC a slot must hold for `data`. */
export function slotCrc(slotBytes: Uint8Array, data: Uint8Array): number {
  return crc32.buf(data, crc32.buf(slotBytes.subarray(0, SLOT_OFFSET_CRC))) >>> 0;
}

export interface SegmentIndexScan {
  slotCount: number;
  slots: SegmentSlot[];
  /** Bytes of slots dropped as a torn tail (set but unusable, with only zero slots after them). */
  tornSlots: number;
}

/**
 * Parses the index area (`indexArea` contains the header and every slot) of a segment whose file
 * is `fileSizeBytes` long. Stops at the first zero slot. A slot that is out of sequence or
 * points past the end of the file is a torn tail when only zero slots follow it, and
 * corruption otherwise. Data CRCs are checked by readers, not here.
 */
export function scanSegmentIndex(filePath: string, indexArea: Uint8Array, fileSizeBytes: number): SegmentIndexScan {
  const slotCount = parseSegmentHeader(filePath, indexArea);
  const view = new DataView(indexArea.buffer, indexArea.byteOffset, indexArea.byteLength);
  const dataStart = dataAreaOffset(slotCount);
  const slots: SegmentSlot[] = [];
  let expectedDataOffset = dataStart;
  const available = Math.min(slotCount, Math.floor((indexArea.byteLength - SEGMENT_HEADER_BYTES) / SEGMENT_SLOT_BYTES));
  for (let k = 0; k < available; k++) {
    const slotOffset = SEGMENT_HEADER_BYTES + k * SEGMENT_SLOT_BYTES;
    if (isZero(indexArea, slotOffset, SEGMENT_SLOT_BYTES)) break;
    const index = readU64(view, slotOffset + SLOT_OFFSET_INDEX);
    const term = readU64(view, slotOffset + SLOT_OFFSET_TERM);
    const dataOffset = view.getUint32(slotOffset + SLOT_OFFSET_DATA_OFFSET, true);
    const dataLength = view.getUint32(slotOffset + SLOT_OFFSET_DATA_LENGTH, true);
    const kind = indexArea[slotOffset + SLOT_OFFSET_KIND];
    let problem: string | null = null;
    if (index < 1 || term < 0) problem = 'index or term out of range';
    else if (slots.length > 0 && index !== slots[0].index + k) problem = `index ${index} does not follow ${slots[k - 1].index}`;
    else if (kind > 1) problem = `unknown entry kind ${kind}`;
    else if (dataOffset !== expectedDataOffset) problem = `data offset ${dataOffset} is not the expected ${expectedDataOffset}`;
    else if (dataOffset + dataLength > fileSizeBytes) problem = `data of ${dataLength} bytes at ${dataOffset} runs past the end of the file (${fileSizeBytes} bytes)`;
    if (problem !== null) {
      for (let rest = k + 1; rest < available; rest++) {
        if (!isZero(indexArea, SEGMENT_HEADER_BYTES + rest * SEGMENT_SLOT_BYTES, SEGMENT_SLOT_BYTES)) {
          throw segmentCorrupt(filePath, slotOffset, `slot ${k}: ${problem}, and slot ${rest} after it is in use`);
        }
      }
      return { slotCount, slots, tornSlots: 1 };
    }
    slots.push({ index, term, dataOffset, dataLength, kind, crc: view.getUint32(slotOffset + SLOT_OFFSET_CRC, true), slotOffset });
    expectedDataOffset = dataOffset + dataLength;
  }
  return { slotCount, slots, tornSlots: 0 };
}

/** Checks an entry's data against its slot CRC; throws StorageError naming the file and offset on a mismatch. */
export function checkSlotData(filePath: string, slot: SegmentSlot, slotBytes: Uint8Array, data: Uint8Array): void {
  const crc = slotCrc(slotBytes, data);
  if (crc !== slot.crc) {
    throw segmentCorrupt(filePath, slot.slotOffset, `entry ${slot.index} CRC mismatch (stored ${slot.crc}, computed ${crc}; data at offset ${slot.dataOffset})`);
  }
}

export function encodeSlotForCheck(slot: SegmentSlot): Uint8Array {
  const bytes = new Uint8Array(SEGMENT_SLOT_BYTES);
  const view = new DataView(bytes.buffer);
  writeU64(view, SLOT_OFFSET_INDEX, slot.index);
  writeU64(view, SLOT_OFFSET_TERM, slot.term);
  view.setUint32(SLOT_OFFSET_DATA_OFFSET, slot.dataOffset, true);
  view.setUint32(SLOT_OFFSET_DATA_LENGTH, slot.dataLength, true);
  view.setUint32(SLOT_OFFSET_KIND, slot.kind, true);
  return bytes;
}

/**
 * Verifies a whole segment file held in `bytes`: the header, every slot and every entry's CRC.
 * Returns the slots; throws StorageError naming the byte offset of the first bad record.
 */
export function verifySegmentBytes(filePath: string, bytes: Uint8Array): SegmentIndexScan {
  if (bytes.byteLength < SEGMENT_HEADER_BYTES) throw segmentCorrupt(filePath, 0, `file of ${bytes.byteLength} bytes is shorter than the header`);
  const slotCount = parseSegmentHeader(filePath, bytes);
  const indexArea = bytes.subarray(0, Math.min(bytes.byteLength, dataAreaOffset(slotCount)));
  const scan = scanSegmentIndex(filePath, indexArea, bytes.byteLength);
  for (const slot of scan.slots) {
    const data = bytes.subarray(slot.dataOffset, slot.dataOffset + slot.dataLength);
    checkSlotData(filePath, slot, encodeSlotForCheck(slot), data);
  }
  return scan;
}

function isZero(bytes: Uint8Array, offset: number, length: number): boolean {
  for (let i = offset; i < offset + length; i++) if (bytes[i] !== 0) return false;
  return true;
}
