// `rana wal|segment|snapshot ...`: read-only tools that print what a WAL file, a segment file
// or a snapshot holds, and verify every checksum. On the first bad record they print the
// error, which names the file and the byte offset, and return exit code 1.

import fs from 'node:fs';
import path from 'node:path';
import { RanaError } from '../errors.js';
import { SEGMENT_SLOT_BYTES, dataAreaOffset, encodeSlotForCheck, parseSegmentHeader, slotCrc, verifySegmentBytes } from '../../shared/segment-format.js';
import { SNAPSHOT_FILE_NAME, parseSnapshot, parseSnapshotDirName } from '../../shared/snapshot-format.js';
import { scanWalFile, type WalRecord } from '../../shared/wal-format.js';

type Print = (line: string) => void;

const KIND_NAMES = ['noop', 'command', 'snapshot-marker'];

function readFileOrFail(file: string, printError: Print): Uint8Array | null {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    printError(`cannot read ${file}: ${(error as Error).message}`);
    return null;
  }
}

/** Runs a check and turns a StorageError into exit code 1 with its message. */
function guarded(printError: Print, run: () => void): number {
  try {
    run();
    return 0;
  } catch (error) {
    if (error instanceof RanaError) {
      printError(error.message);
      return 1;
    }
    throw error;
  }
}

/** `rana wal dump FILE` (dump true) or `rana wal verify FILE`. */
export function walTool(file: string, dump: boolean, print: Print, printError: Print): number {
  const bytes = readFileOrFail(file, printError);
  if (bytes === null) return 1;
  return guarded(printError, () => {
    let entries = 0;
    let registrations = 0;
    const result = scanWalFile(file, bytes, (record: WalRecord) => {
      if (record.type === 'registration') {
        registrations++;
        if (dump) print(`${record.offset}\tregistration\twriter ${record.writerId}\tuid ${record.uid}`);
      } else {
        entries++;
        if (dump) {
          print(`${record.offset}\tentry\twriter ${record.writerId}\tindex ${record.index}\tterm ${record.term}\t${KIND_NAMES[record.kind] ?? record.kind}\t${record.dataLength} bytes\t${record.checksummed ? 'crc ok' : 'no crc'}`);
        }
      }
    });
    const torn = result.tornTailBytes > 0 ? `, torn final write of ${result.tornTailBytes} bytes at offset ${result.validEndOffset} (never synced; recovery drops it)` : '';
    print(`${file}: WAL file ${result.fileNumber}, ${registrations} registrations, ${entries} entries, valid to offset ${result.validEndOffset}${torn}`);
  });
}

/** `rana segment dump FILE` (dump true) or `rana segment verify FILE`. */
export function segmentTool(file: string, dump: boolean, print: Print, printError: Print): number {
  const bytes = readFileOrFail(file, printError);
  if (bytes === null) return 1;
  if (dump) {
    // Print the slots first, each with its own CRC verdict, so a dump shows the damage in place.
    const printed = guarded(printError, () => {
      const slotCount = parseSegmentHeader(file, bytes);
      print(`${file}: ${slotCount} slots, data area at offset ${dataAreaOffset(slotCount)}`);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let k = 0; k < slotCount; k++) {
        const at = 64 + k * SEGMENT_SLOT_BYTES;
        if (at + SEGMENT_SLOT_BYTES > bytes.byteLength) break;
        const index = view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;
        if (index === 0) break;
        const slot = {
          index,
          term: view.getUint32(at + 8, true) + view.getUint32(at + 12, true) * 2 ** 32,
          dataOffset: view.getUint32(at + 16, true),
          dataLength: view.getUint32(at + 20, true),
          kind: bytes[at + 24],
          crc: view.getUint32(at + 28, true),
          slotOffset: at,
        };
        const data = bytes.subarray(slot.dataOffset, slot.dataOffset + slot.dataLength);
        const ok = slot.dataOffset + slot.dataLength <= bytes.byteLength && slotCrc(encodeSlotForCheck(slot), data) === slot.crc;
        print(`${at}\tindex ${slot.index}\tterm ${slot.term}\t${KIND_NAMES[slot.kind] ?? slot.kind}\tdata ${slot.dataOffset}+${slot.dataLength}\t${ok ? 'crc ok' : 'CRC MISMATCH'}`);
      }
    });
    if (printed !== 0) return printed;
  }
  return guarded(printError, () => {
    const scan = verifySegmentBytes(file, bytes);
    const range = scan.slots.length === 0 ? 'no entries' : `entries ${scan.slots[0].index}..${scan.slots[scan.slots.length - 1].index}`;
    const torn = scan.tornSlots > 0 ? ', a torn final slot (dropped by readers)' : '';
    print(`${file}: ok, ${scan.slots.length} of ${scan.slotCount} slots used, ${range}${torn}`);
  });
}

/** `rana snapshot verify DIR`: DIR is one snapshot directory or a server's `snapshots` directory. */
export function snapshotTool(dir: string, print: Print, printError: Print): number {
  const single = path.join(dir, SNAPSHOT_FILE_NAME);
  const dirs = fs.existsSync(single)
    ? [dir]
    : (fs.existsSync(dir) ? fs.readdirSync(dir) : []).filter((name) => parseSnapshotDirName(name) !== null).sort().map((name) => path.join(dir, name));
  if (dirs.length === 0) {
    printError(`${dir} holds no snapshot: expected ${SNAPSHOT_FILE_NAME} or directories named <index>_<term>`);
    return 1;
  }
  let status = 0;
  for (const snapshotDir of dirs) {
    const file = path.join(snapshotDir, SNAPSHOT_FILE_NAME);
    const bytes = readFileOrFail(file, printError);
    if (bytes === null) {
      status = 1;
      continue;
    }
    status = Math.max(status, guarded(printError, () => {
      const snapshot = parseSnapshot(file, bytes);
      print(`${file}: ok, index ${snapshot.index}, term ${snapshot.term}, ${snapshot.data.byteLength} bytes of state`);
    }));
  }
  return status;
}
