import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Packr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import { encodeFrame, FrameDecoder, FrameType, PROTOCOL_VERSION, type Frame } from '../../src/main/transport/frame.js';
import { Transport, type TransportOptions, type TransportEvents } from '../../src/main/transport/transport.js';

export const HOST = '127.0.0.1';

/** Fast timings so failure-detector tests finish in well under a second each. */
export const FAST = {
  heartbeatIntervalMs: 20,
  suspectAfterMs: 300,
  reconnectMinMs: 10,
  reconnectMaxMs: 100,
} as const;

export const packr = new Packr({ useRecords: false });

/** Transports and sockets a test opened; `closeAll` closes them in afterEach. */
export class Resources {
  readonly transports: Transport[] = [];
  readonly sockets: net.Socket[] = [];
  readonly servers: net.Server[] = [];

  async startTransport(nodeId: string, options: Partial<TransportOptions> = {}): Promise<Transport> {
    const transport = new Transport({ nodeId, listen: { host: HOST, port: 0 }, peers: {}, ...FAST, ...options });
    this.transports.push(transport);
    await transport.start();
    return transport;
  }

  async closeAll(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(this.transports.map((transport) => transport.close()));
    await Promise.all(
      this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
}

/** Introduces two started transports to each other; the acceptor first, so the dialer's HELLO finds a known id. */
export function introduce(first: Transport, second: Transport): void {
  const [dialer, acceptor] = first.nodeId < second.nodeId ? [first, second] : [second, first];
  acceptor.setPeer(dialer.nodeId, dialer.address());
  dialer.setPeer(acceptor.nodeId, acceptor.address());
}

/** Resolves with the arguments of the first `event` whose arguments pass `filter`. */
export function nextEvent<K extends keyof TransportEvents>(
  transport: Transport,
  event: K,
  filter: (...args: TransportEvents[K]) => boolean = () => true,
): Promise<TransportEvents[K]> {
  return new Promise((resolve) => {
    const listener = (...args: TransportEvents[K]): void => {
      if (!filter(...args)) return;
      (transport.off as (event: K, listener: (...args: TransportEvents[K]) => void) => void)(event, listener);
      resolve(args);
    };
    (transport.on as (event: K, listener: (...args: TransportEvents[K]) => void) => void)(event, listener);
  });
}

/** Resolves with the first `count` messages that `transport` receives from `fromNode`. */
export function collectMessages(transport: Transport, fromNode: string, count: number): Promise<unknown[]> {
  return new Promise((resolve) => {
    const received: unknown[] = [];
    const listener = (from: string, message: unknown): void => {
      if (from !== fromNode) return;
      received.push(message);
      if (received.length === count) {
        transport.off('message', listener);
        resolve(received);
      }
    };
    transport.on('message', listener);
  });
}

/** Creates a pino logger at debug level that keeps its parsed lines in `lines` and emits each as a 'line' event. */
export function captureLogger(): { logger: Logger; lines: Array<Record<string, unknown>>; events: EventEmitter } {
  const lines: Array<Record<string, unknown>> = [];
  const events = new EventEmitter();
  const logger = pino(
    { level: 'debug' },
    {
      write(text: string): void {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        events.emit('line', line);
      },
    },
  );
  return { logger, lines, events };
}

export function nextLogLine(
  capture: ReturnType<typeof captureLogger>,
  filter: (line: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  const found = capture.lines.find(filter);
  if (found !== undefined) return Promise.resolve(found);
  return new Promise((resolve) => {
    const listener = (line: Record<string, unknown>): void => {
      if (!filter(line)) return;
      capture.events.off('line', listener);
      resolve(line);
    };
    capture.events.on('line', listener);
  });
}

/** A hand-driven TCP peer that speaks the wire format, for faults a real Transport never produces. */
export class RawPeer {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  readonly #decoder = new FrameDecoder(64 * 1024 * 1024);
  readonly #events = new EventEmitter();
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#decoder.push(chunk);
      for (let frame = this.#decoder.next(); frame !== null; frame = this.#decoder.next()) {
        this.frames.push(frame);
        this.#events.emit('frame', frame);
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(resources: Resources, port: number): Promise<RawPeer> {
    const socket = net.connect({ host: HOST, port });
    resources.sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawPeer(socket);
  }

  static fromAccepted(resources: Resources, socket: net.Socket): RawPeer {
    resources.sockets.push(socket);
    return new RawPeer(socket);
  }

  sendHello(nodeId: string, toNodeId: string, protocolVersion: number = PROTOCOL_VERSION): void {
    this.socket.write(encodeFrame(FrameType.HELLO, packr.pack({ nodeId, toNodeId, protocolVersion })));
  }

  nextFrame(type: number): Promise<Frame> {
    const found = this.frames.find((frame) => frame.type === type);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve) => {
      const listener = (frame: Frame): void => {
        if (frame.type !== type) return;
        this.#events.off('frame', listener);
        resolve(frame);
      };
      this.#events.on('frame', listener);
    });
  }
}

export function decodePayload(frame: Frame): unknown {
  return packr.unpack(frame.payload);
}
