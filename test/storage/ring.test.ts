import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ByteRing, RingCapacityError } from '../../src/shared/ring.js';

function payloadOf(sequence: number, lengthBytes: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) bytes[i] = (sequence * 31 + i) & 0xff;
  return bytes;
}

describe('ByteRing', () => {
  it('keeps order and content across many wrap-arounds', () => {
    const ring = ByteRing.create(1024);
    let written = 0;
    let read = 0;
    // Lengths 0..99 in turn, so records of every alignment meet the end of the area.
    while (read < 2000) {
      while (written < 2000 && ring.tryWrite(payloadOf(written, written % 100))) written++;
      let payload = ring.read();
      let readThisRound = 0;
      while (payload !== null && readThisRound < 3) {
        expect(payload).toEqual(payloadOf(read, read % 100));
        read++;
        readThisRound++;
        payload = readThisRound < 3 ? ring.read() : null;
      }
      ring.releaseRead();
    }
    expect(written).toBe(2000);
    expect(ring.read()).toBeNull();
  });

  it('returns false when full and writes nothing', () => {
    const ring = ByteRing.create(256);
    let count = 0;
    while (ring.tryWrite(payloadOf(count, 20))) count++;
    // 256 bytes less the 8 kept free, at 24 bytes per record (4-byte header, 20-byte payload).
    expect(count).toBe(10);
    expect(ring.tryWrite(payloadOf(99, 20))).toBe(false);
    expect(ring.tryWrite(new Uint8Array(0))).toBe(true);
    expect(ring.tryWrite(new Uint8Array(0))).toBe(false);

    for (let i = 0; i < count; i++) expect(ring.read()).toEqual(payloadOf(i, 20));
    expect(ring.read()).toEqual(new Uint8Array(0));
    expect(ring.read()).toBeNull();
    // Space comes back only when the consumer releases it.
    expect(ring.tryWrite(payloadOf(7, 20))).toBe(false);
    ring.releaseRead();
    expect(ring.tryWrite(payloadOf(7, 20))).toBe(true);
  });

  it('rejects records above maxRecordBytes', () => {
    const ring = ByteRing.create(1024);
    expect(ring.maxRecordBytes).toBe(252);
    expect(() => ring.tryWrite(new Uint8Array(253))).toThrow(RingCapacityError);
    expect(ring.tryWrite(new Uint8Array(252))).toBe(true);
  });

  it('moves many records to a real worker', async () => {
    const ring = ByteRing.create(64 * 1024);
    const reply = ByteRing.create(1024);
    const recordCount = 200_000;
    const ringUrl = pathToFileURL(path.resolve('dist/shared/ring.js')).href;
    // The worker reads every record, checks its sequence number and reports a checksum of all lengths.
    const source = `
      const { workerData } = require('node:worker_threads');
      import(${JSON.stringify(ringUrl)}).then(({ ByteRing }) => {
        const ring = ByteRing.attach(workerData.ring);
        const reply = ByteRing.attach(workerData.reply);
        let expected = 0;
        let lengthSum = 0;
        while (expected < workerData.recordCount) {
          if (!ring.waitForData(5000)) throw new Error('timed out waiting for record ' + expected);
          let payload;
          while ((payload = ring.read()) !== null) {
            const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
            const sequence = view.getUint32(0, true);
            if (sequence !== expected) throw new Error('record ' + sequence + ' arrived, expected ' + expected);
            lengthSum += payload.byteLength;
            expected++;
          }
          ring.releaseRead();
        }
        const out = new Uint8Array(8);
        new DataView(out.buffer).setFloat64(0, lengthSum, true);
        reply.tryWrite(out);
        reply.notifyConsumer();
      });
    `;
    const worker = new Worker(source, { eval: true, workerData: { ring: ring.buffer, reply: reply.buffer, recordCount } });
    const failed = new Promise<never>((_, reject) => worker.once('error', reject));

    let expectedLengthSum = 0;
    let sequence = 0;
    const produce = async (): Promise<void> => {
      while (sequence < recordCount) {
        const length = 4 + (sequence % 200);
        const payload = new Uint8Array(length);
        new DataView(payload.buffer).setUint32(0, sequence, true);
        if (ring.tryWrite(payload)) {
          expectedLengthSum += length;
          sequence++;
          continue;
        }
        ring.notifyConsumer();
        await ring.waitForSpaceAsync(5000);
      }
      ring.notifyConsumer();
    };
    await Promise.race([produce(), failed]);
    await Promise.race([reply.waitForDataAsync(10_000), failed]);
    const result = reply.read();
    expect(result).not.toBeNull();
    expect(new DataView(result!.buffer, result!.byteOffset, 8).getFloat64(0, true)).toBe(expectedLengthSum);
    await worker.terminate();
  });
});
