// Wire format of the node-to-node transport.
//
//   +----------------+------+---------------------------+
//   | length: u32 LE | type | payload (length - 1 bytes) |
//   +----------------+------+---------------------------+
//
// `length` counts the type byte and the payload, never the 4-byte prefix itself. Payloads are
// msgpack: HELLO, HELLO_ACK and REJECT carry a small map, BATCH carries one msgpack array whose
// elements are the messages, and PING has no payload.

/** Version of this wire format, sent in HELLO and checked by the accepting node. */
export const PROTOCOL_VERSION = 1;

export const FrameType = {
  /** Dialing node to accepting node: `{ nodeId, toNodeId, protocolVersion }`. */
  HELLO: 1,
  /** Accepting node to dialing node after a valid HELLO: `{ nodeId, protocolVersion }`. */
  HELLO_ACK: 2,
  /** Accepting node to dialing node before it closes the connection: `{ reason }`. */
  REJECT: 3,
  /** Liveness signal, sent every heartbeat interval in both directions. */
  PING: 4,
  /** A msgpack array of messages. */
  BATCH: 5,
} as const;

export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export const LENGTH_PREFIX_BYTES = 4;

/** Bytes before the payload: the length prefix and the type byte. */
export const FRAME_HEADER_BYTES = LENGTH_PREFIX_BYTES + 1;

/** Frame size bound before the handshake completes, so an unknown client cannot make a node allocate much. */
export const HANDSHAKE_FRAME_BYTES_MAX = 4096;

/** A frame that breaks the wire format. The connection that carried it must be closed. */
export class FrameError extends Error {
  readonly code: 'FRAME_TOO_LARGE' | 'FRAME_INVALID';

  constructor(code: 'FRAME_TOO_LARGE' | 'FRAME_INVALID', message: string) {
    super(message);
    this.code = code;
    this.name = 'FrameError';
  }
}

export interface Frame {
  type: number;
  payload: Buffer;
}

/** Encodes one frame with its length prefix into a fresh buffer. */
export function encodeFrame(type: FrameTypeValue, payload: Uint8Array | null): Buffer {
  const payloadBytes = payload === null ? 0 : payload.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  frame.writeUInt32LE(1 + payloadBytes, 0);
  frame[LENGTH_PREFIX_BYTES] = type;
  if (payload !== null) frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Splits a byte stream into frames. Chunks go in with `push`, whole frames come out of `next`,
 * one at a time, so the caller can raise `maxFrameBytes` after the handshake frame and have the
 * new bound apply to the very next frame of the same chunk.
 *
 * Bound: the decoder buffers at most one incomplete frame (up to `maxFrameBytes` plus the
 * prefix) and the rest of the last chunk pushed.
 */
export class FrameDecoder {
  /** Largest accepted value of the length prefix. */
  maxFrameBytes: number;

  #chunks: Buffer[] = [];
  #bufferedBytes = 0;

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.length;
  }

  /**
   * Returns the next whole frame, or null when more bytes are needed.
   * Throws FrameError for a zero length or a length above `maxFrameBytes`, checked as soon as
   * the prefix has arrived, before any of the body is buffered.
   */
  next(): Frame | null {
    if (this.#bufferedBytes < LENGTH_PREFIX_BYTES) return null;

    const length = this.#peekLength();
    if (length === 0) {
      throw new FrameError('FRAME_INVALID', 'received a frame with length 0; every frame has at least a type byte');
    }
    if (length > this.maxFrameBytes) {
      throw new FrameError(
        'FRAME_TOO_LARGE',
        `received a frame of ${length} bytes, above the bound of ${this.maxFrameBytes} bytes`,
      );
    }
    if (this.#bufferedBytes < LENGTH_PREFIX_BYTES + length) return null;

    this.#take(LENGTH_PREFIX_BYTES);
    const body = this.#take(length);
    return { type: body[0], payload: body.subarray(1) };
  }

  #peekLength(): number {
    const first = this.#chunks[0];
    if (first.length >= LENGTH_PREFIX_BYTES) return first.readUInt32LE(0);

    // The prefix spans chunks: merge the small leading chunks once.
    const merged = this.#take(this.#bufferedBytes < 64 ? this.#bufferedBytes : 64);
    this.#chunks.unshift(merged);
    this.#bufferedBytes += merged.length;
    return merged.readUInt32LE(0);
  }

  /** Removes `count` buffered bytes; without a copy when they sit in the first chunk. */
  #take(count: number): Buffer {
    const first = this.#chunks[0];
    if (first.length >= count) {
      this.#bufferedBytes -= count;
      if (first.length === count) {
        this.#chunks.shift();
      } else {
        this.#chunks[0] = first.subarray(count);
      }
      return first.subarray(0, count);
    }

    const out = Buffer.allocUnsafe(count);
    let filled = 0;
    while (filled < count) {
      const chunk = this.#chunks[0];
      const copied = Math.min(chunk.length, count - filled);
      chunk.copy(out, filled, 0, copied);
      filled += copied;
      if (copied === chunk.length) {
        this.#chunks.shift();
      } else {
        this.#chunks[0] = chunk.subarray(copied);
      }
    }
    this.#bufferedBytes -= count;
    return out;
  }
}
