import { FRAME_HEADER_BYTES, FrameType, LENGTH_PREFIX_BYTES } from './frame.js';

/** Bytes of the largest msgpack array header (0xdd and a u32 element count). */
export const ARRAY_HEADER_BYTES_MAX = 5;

/**
 * Messages for one peer, each already msgpack-encoded, waiting to be written.
 *
 * Bound: `queuedBytes <= maxQueueBytes`; `push` rejects a message that would cross it, so the
 * caller can drop and count it. Encoding at `push` time makes the bound exact in bytes.
 */
export class OutboundQueue {
  readonly maxQueueBytes: number;

  #messages: Uint8Array[] = [];
  /** Index of the oldest queued message in `#messages`; the array is compacted lazily. */
  #head = 0;
  #queuedBytes = 0;

  constructor(maxQueueBytes: number) {
    this.maxQueueBytes = maxQueueBytes;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  get length(): number {
    return this.#messages.length - this.#head;
  }

  /** Appends an encoded message; returns false and keeps nothing when the bound would be crossed. */
  push(encoded: Uint8Array): boolean {
    if (this.#queuedBytes + encoded.length > this.maxQueueBytes) return false;
    this.#messages.push(encoded);
    this.#queuedBytes += encoded.length;
    return true;
  }

  /**
   * Removes the oldest messages that fit in one frame of at most `maxFrameBytes` (the value of
   * the length prefix) and returns that BATCH frame, or null when the queue is empty.
   * The caller guarantees that every single message fits in a frame on its own.
   */
  takeBatchFrame(maxFrameBytes: number): { frame: Buffer; messageCount: number } | null {
    if (this.length === 0) return null;

    const payloadBytesMax = maxFrameBytes - 1 - ARRAY_HEADER_BYTES_MAX;
    let end = this.#head;
    let messageBytes = 0;
    while (end < this.#messages.length && messageBytes + this.#messages[end].length <= payloadBytesMax) {
      messageBytes += this.#messages[end].length;
      end += 1;
    }
    const messageCount = end - this.#head;
    if (messageCount === 0) {
      throw new RangeError(
        `queued message of ${this.#messages[this.#head].length} bytes does not fit a frame of ${maxFrameBytes} bytes`,
      );
    }

    const arrayHeader = encodeArrayHeader(messageCount);
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + arrayHeader.length + messageBytes);
    frame.writeUInt32LE(1 + arrayHeader.length + messageBytes, 0);
    frame[LENGTH_PREFIX_BYTES] = FrameType.BATCH;
    let offset = FRAME_HEADER_BYTES;
    frame.set(arrayHeader, offset);
    offset += arrayHeader.length;
    for (let i = this.#head; i < end; i++) {
      frame.set(this.#messages[i], offset);
      offset += this.#messages[i].length;
    }

    this.#head = end;
    this.#queuedBytes -= messageBytes;
    this.#compact();
    return { frame, messageCount };
  }

  #compact(): void {
    if (this.#head === this.#messages.length) {
      this.#messages = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#messages.length) {
      this.#messages = this.#messages.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** Encodes a msgpack array header (fixarray, array 16 or array 32) for `count` elements. */
export function encodeArrayHeader(count: number): Uint8Array {
  if (count < 16) return Uint8Array.of(0x90 | count);
  if (count < 0x10000) return Uint8Array.of(0xdc, count >>> 8, count & 0xff);
  return Uint8Array.of(0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff);
}
