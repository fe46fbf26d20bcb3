// Single-producer single-consumer byte ring over a SharedArrayBuffer. One thread writes
// variable-length records, another thread reads them in the same order. Neither side locks:
// each side owns one position and publishes it with Atomics.store, and the other side reads it
// with Atomics.load.
//
//   SharedArrayBuffer
//   +---------------------+---------------------+--------------------------------------+
//   | Int32 slot 0:       | Int32 slot 16:      | data area: capacityBytes, a multiple |
//   | write position      | read position       | of 8                                 |
//   | (producer stores)   | (consumer stores)   |                                      |
//   +---------------------+---------------------+--------------------------------------+
//   byte 0                byte 64               byte 128
//
//   Data area just after the producer wrapped around:
//   offset 0                                                             capacityBytes
//   | len | payload | pad | free ...      | len | payload | pad | WRAP | skipped |
//                         ^ write position ^ read position
//
// - A record is a u32 length followed by the payload, padded to 8 bytes, so every record
//   header is 4-byte aligned and never split by the end of the area.
// - When a record does not fit between the write position and the end of the area, the
//   producer writes the wrap marker (length 0xFFFFFFFF) and puts the record at offset 0.
// - Read position == write position means empty. The producer keeps 8 bytes free, so a full
//   ring never looks empty; the usable space is capacityBytes - 8.
// - The consumer sleeps with Atomics.wait (a worker) or Atomics.waitAsync (the main thread)
//   on the write position, and the producer wakes it with notifyConsumer(). The producer can
//   wait for space the same way on the read position.

const WRITE_POSITION_SLOT = 0;
// The positions sit 64 bytes apart so that the two threads do not share a cache line.
const READ_POSITION_SLOT = 16;
const CONTROL_BYTES = 128;
const ALIGN_BYTES = 8;
const RECORD_HEADER_BYTES = 4;
const WRAP_MARKER = 0xffffffff;

/** Smallest data area a ring accepts, in bytes. */
export const RING_CAPACITY_MIN_BYTES = 256;
/** Largest data area a ring accepts, in bytes: positions are Int32 values. */
export const RING_CAPACITY_MAX_BYTES = 1 << 30;

// Atomics.waitAsync exists in Node 20 (V8 8.7+) but is typed only from TypeScript's ES2024 lib.
type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const atomicsWaitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): WaitAsyncResult;
}).waitAsync;

function alignUp(n: number): number {
  return (n + ALIGN_BYTES - 1) & ~(ALIGN_BYTES - 1);
}

export class RingCapacityError extends Error {
  readonly code = 'RING_CAPACITY';
}

export class ByteRing {
  /** The shared memory, to hand to the other thread, which calls `ByteRing.attach`. */
  readonly buffer: SharedArrayBuffer;
  /** Size of the data area in bytes. At most capacityBytes - 8 bytes of records fit at once. */
  readonly capacityBytes: number;
  /**
   * Largest payload `tryWrite` and `tryReserve` accept: a quarter of the data area minus the
   * record header. Callers send larger payloads another way.
   */
  readonly maxRecordBytes: number;
  /** The data area. A payload returned by `read` or `tryReserve` is a view into it. */
  readonly bytes: Uint8Array;
  readonly #control: Int32Array;
  readonly #lengths: Uint32Array;
  // Producer side: the write position not yet published (tryReserve before publishWrite).
  #pendingWritePosition = -1;
  // Producer side: the read position seen by the last tryReserve. Waiting for space compares
  // against it, so a release between a failed tryReserve and the wait is not missed.
  #lastSeenReadPosition = 0;
  // Consumer side: the position after the records read but not yet released.
  #readCursor: number;
  #peekedNextCursor = -1;

  private constructor(buffer: SharedArrayBuffer) {
    const capacityBytes = buffer.byteLength - CONTROL_BYTES;
    if (capacityBytes < RING_CAPACITY_MIN_BYTES || capacityBytes > RING_CAPACITY_MAX_BYTES || capacityBytes % ALIGN_BYTES !== 0) {
      throw new RingCapacityError(
        `ring data area of ${capacityBytes} bytes is invalid; use a multiple of ${ALIGN_BYTES} between ${RING_CAPACITY_MIN_BYTES} and ${RING_CAPACITY_MAX_BYTES}`,
      );
    }
    this.buffer = buffer;
    this.capacityBytes = capacityBytes;
    this.maxRecordBytes = Math.floor(capacityBytes / 4) - RECORD_HEADER_BYTES;
    this.bytes = new Uint8Array(buffer, CONTROL_BYTES, capacityBytes);
    this.#control = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    this.#lengths = new Uint32Array(buffer, CONTROL_BYTES, capacityBytes / 4);
    this.#readCursor = Atomics.load(this.#control, READ_POSITION_SLOT);
  }

  /** Allocates a ring whose data area is `capacityBytes`, rounded up to a multiple of 8. */
  static create(capacityBytes: number): ByteRing {
    return new ByteRing(new SharedArrayBuffer(CONTROL_BYTES + alignUp(capacityBytes)));
  }

  /** Opens the other end of a ring made by `create`, usually in another thread. */
  static attach(buffer: SharedArrayBuffer): ByteRing {
    return new ByteRing(buffer);
  }

  // ---- producer ----

  /**
   * Reserves room for a payload of `lengthBytes` and returns its offset in `bytes`, or -1 when
   * the ring has no room now. The caller fills `bytes[offset, offset + lengthBytes)` and then
   * calls `publishWrite`. Never waits.
   */
  tryReserve(lengthBytes: number): number {
    if (this.#pendingWritePosition !== -1) {
      throw new Error('tryReserve called twice without publishWrite in between; publish the reserved record first');
    }
    if (!(lengthBytes >= 0 && lengthBytes <= this.maxRecordBytes)) {
      throw new RingCapacityError(
        `record payload of ${lengthBytes} bytes is larger than this ring's maximum of ${this.maxRecordBytes} bytes; send it by another path`,
      );
    }

    const recordBytes = alignUp(RECORD_HEADER_BYTES + lengthBytes);
    const write = Atomics.load(this.#control, WRITE_POSITION_SLOT);
    const read = Atomics.load(this.#control, READ_POSITION_SLOT);
    this.#lastSeenReadPosition = read;
    const usedBytes = write >= read ? write - read : this.capacityBytes - read + write;
    const freeBytes = this.capacityBytes - usedBytes - ALIGN_BYTES;
    const tailBytes = this.capacityBytes - write;

    let start = write;
    if (recordBytes > tailBytes) {
      // The record goes to offset 0 and the tail is lost to the wrap marker.
      if (tailBytes + recordBytes > freeBytes) return -1;
      start = 0;
    } else if (recordBytes > freeBytes) {
      return -1;
    }

    if (start === 0 && write !== 0) {
      this.#lengths[write >> 2] = WRAP_MARKER;
    }
    this.#lengths[start >> 2] = lengthBytes;
    const next = start + recordBytes;
    this.#pendingWritePosition = next === this.capacityBytes ? 0 : next;
    return start + RECORD_HEADER_BYTES;
  }

  /** Makes the record reserved by `tryReserve` visible to the consumer. */
  publishWrite(): void {
    if (this.#pendingWritePosition === -1) throw new Error('publishWrite called without a reserved record');
    Atomics.store(this.#control, WRITE_POSITION_SLOT, this.#pendingWritePosition);
    this.#pendingWritePosition = -1;
  }

  /** Copies `payload` into the ring and publishes it. Returns false, writing nothing, when the ring is full. */
  tryWrite(payload: Uint8Array): boolean {
    const offset = this.tryReserve(payload.byteLength);
    if (offset === -1) return false;
    this.bytes.set(payload, offset);
    this.publishWrite();
    return true;
  }

  /** Wakes a consumer sleeping in `waitForData` or `waitForDataAsync`. */
  notifyConsumer(): void {
    Atomics.notify(this.#control, WRITE_POSITION_SLOT);
  }

  /** Resolves when the consumer has released space since the last tryReserve or tryWrite, or after `timeoutMs`. Main thread. */
  async waitForSpaceAsync(timeoutMs: number): Promise<void> {
    const result = atomicsWaitAsync(this.#control, READ_POSITION_SLOT, this.#lastSeenReadPosition, timeoutMs);
    if (result.async) await result.value;
  }

  /** Blocks until the consumer has released space since the last tryReserve or tryWrite, or `timeoutMs` passed. Worker threads only. */
  waitForSpace(timeoutMs: number): void {
    Atomics.wait(this.#control, READ_POSITION_SLOT, this.#lastSeenReadPosition, timeoutMs);
  }

  // ---- consumer ----

  /** True when records are published that this consumer has not read. */
  hasData(): boolean {
    return Atomics.load(this.#control, WRITE_POSITION_SLOT) !== this.#readCursor;
  }

  /**
   * Returns the next record's payload as a view into `bytes`, or null when none is published.
   * The view stays valid until `releaseRead`; copy it out before then.
   */
  read(): Uint8Array | null {
    const payload = this.peek();
    if (payload !== null) this.advance();
    return payload;
  }

  /** Returns the next record's payload like `read`, without moving past it. */
  peek(): Uint8Array | null {
    const write = Atomics.load(this.#control, WRITE_POSITION_SLOT);
    if (write === this.#readCursor) return null;
    let start = this.#readCursor;
    let lengthBytes = this.#lengths[start >> 2];
    if (lengthBytes === WRAP_MARKER) {
      start = 0;
      lengthBytes = this.#lengths[0];
    }
    const next = start + alignUp(RECORD_HEADER_BYTES + lengthBytes);
    this.#peekedNextCursor = next === this.capacityBytes ? 0 : next;
    return this.bytes.subarray(start + RECORD_HEADER_BYTES, start + RECORD_HEADER_BYTES + lengthBytes);
  }

  /** Moves past the record returned by the last `peek`. */
  advance(): void {
    if (this.#peekedNextCursor === -1) throw new Error('advance called without a peeked record');
    this.#readCursor = this.#peekedNextCursor;
    this.#peekedNextCursor = -1;
  }

  /** Gives the space of every record read so far back to the producer and wakes it if it waits. */
  releaseRead(): void {
    Atomics.store(this.#control, READ_POSITION_SLOT, this.#readCursor);
    Atomics.notify(this.#control, READ_POSITION_SLOT);
  }

  /** Blocks until a record is published or `timeoutMs` passed; returns true when data is ready. Worker threads only. */
  waitForData(timeoutMs: number): boolean {
    if (this.hasData()) return true;
    Atomics.wait(this.#control, WRITE_POSITION_SLOT, this.#readCursor, timeoutMs);
    return this.hasData();
  }

  /** Resolves when a record is published or after `timeoutMs`, without blocking the event loop. Main thread. */
  async waitForDataAsync(timeoutMs: number): Promise<boolean> {
    if (this.hasData()) return true;
    const result = atomicsWaitAsync(this.#control, WRITE_POSITION_SLOT, this.#readCursor, timeoutMs);
    if (result.async) await result.value;
    return this.hasData();
  }
}
