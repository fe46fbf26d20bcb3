// Node-to-node TCP transport and node-level failure detector.
//
// One TCP connection per node pair carries the messages of every Raft group. Messages that
// `send()` queues for one peer during one event-loop turn go out as one BATCH frame, written
// with one `socket.write` (see frame.ts for the wire format).
//
// Connection rule: of two nodes, the one whose id sorts first (JavaScript `<` on the id
// strings) dials and the other only accepts. The dialer sends HELLO with its node id, the id
// it expects to reach and the protocol version. The acceptor checks all three and the rule,
// then replies HELLO_ACK or REJECT. When a HELLO arrives from a node that already has a
// connection (the dialer restarted, or it gave up on a connection the acceptor still holds),
// the new connection replaces the old one, and the acceptor emits `peer_down` then `peer_up`.
//
// Failure detection, per node pair: both ends write a PING frame every `heartbeatIntervalMs`
// on every established connection. A peer is down when its connection closes (a killed
// process resets it at once) or when no byte has arrived for `suspectAfterMs` (a stopped or
// partitioned process). The detector then closes the connection, and the dialer reconnects
// with exponential backoff and jitter. When this node's own event loop was blocked past the
// check's due time, the check waits for one poll phase, so bytes that arrived meanwhile count.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Packr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import { InvalidConfigError } from '../errors.js';
import { reconnectDelayMs } from './backoff.js';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
  FrameType,
  HANDSHAKE_FRAME_BYTES_MAX,
  PROTOCOL_VERSION,
  type Frame,
} from './frame.js';
import { ARRAY_HEADER_BYTES_MAX, OutboundQueue } from './outbound-queue.js';

export interface PeerAddress {
  host: string;
  port: number;
}

export interface TransportOptions {
  nodeId: string;
  /** Port 0 picks a free port; `address()` returns the bound one. */
  listen: PeerAddress;
  /** Addresses of the other nodes. An entry for this node's own id is ignored, so every node can share one address book. */
  peers: Record<string, PeerAddress>;
  /** Bound on encoded, unsent message bytes per peer; default 64 MiB. Messages over it are dropped and counted. */
  maxQueueBytes?: number;
  /** Bound on the length prefix of a frame, in both directions; default 64 MiB. */
  maxFrameBytes?: number;
  /** Interval between PING frames on each connection; default 100 ms. */
  heartbeatIntervalMs?: number;
  /** Silence after which a peer is down; default 1000 ms. Must exceed `heartbeatIntervalMs`. */
  suspectAfterMs?: number;
  /** First reconnect delay; default 50 ms. */
  reconnectMinMs?: number;
  /** Largest reconnect delay; default 2000 ms. */
  reconnectMaxMs?: number;
  /** Logger for connection events; silent when absent. */
  logger?: Logger;
}

/** Counters for one peer. Byte counts include frame headers and PING frames; `queuedBytes` is a current value. */
export interface PeerStats {
  up: boolean;
  sentMessages: number;
  sentBytes: number;
  /** BATCH frames written; many messages sent in one event-loop turn make one batch. */
  sentBatches: number;
  receivedMessages: number;
  receivedBytes: number;
  receivedBatches: number;
  /** Messages dropped because the queue was full, the message was larger than a frame, or the transport was closed. */
  droppedMessages: number;
  queuedBytes: number;
  /** Connections established to this peer after the first one. */
  reconnects: number;
  /** Failed dial attempts, counted on the dialing side only. */
  connectFailures: number;
}

export interface TransportEvents {
  message: [fromNode: string, message: unknown];
  peer_up: [nodeId: string];
  peer_down: [nodeId: string];
}

export const TRANSPORT_DEFAULTS = {
  maxQueueBytes: 64 * 1024 * 1024,
  maxFrameBytes: 64 * 1024 * 1024,
  heartbeatIntervalMs: 100,
  suspectAfterMs: 1000,
  reconnectMinMs: 50,
  reconnectMaxMs: 2000,
} as const;

/**
 * Bound on accepted connections that have not finished the handshake. Each also closes after
 * `suspectAfterMs`; this bound keeps a flood of idle connections from growing without limit.
 */
export const PENDING_HANDSHAKES_MAX = 64;

/** The largest value the u32 length prefix can carry. */
const LENGTH_PREFIX_MAX = 0xffff_ffff;

interface PeerLink {
  readonly nodeId: string;
  address: PeerAddress;
  /** True when this node dials the peer, false when it waits for the peer to dial. */
  readonly dialer: boolean;
  /** The established connection, set between HELLO_ACK and close. */
  socket: net.Socket | null;
  /** A dial in progress, before HELLO_ACK (dialing side only). */
  dialSocket: net.Socket | null;
  up: boolean;
  /** True after `socket.write` returned false, until the socket emits 'drain'. */
  blocked: boolean;
  readonly queue: OutboundQueue;
  lastReceivedAtMs: number;
  suspectTimer: NodeJS.Timeout | null;
  /** When the suspect timer was due; a timer that runs much later means this event loop was blocked. */
  suspectDueAtMs: number;
  reconnectTimer: NodeJS.Timeout | null;
  /** Failed dials since the peer was last up; sets the backoff step. */
  failuresSinceUp: number;
  everUp: boolean;
  /** Messages dropped since the queue last accepted one, so a full queue logs once, not per message. */
  droppedSinceAccepted: number;
  readonly stats: Omit<PeerStats, 'up' | 'queuedBytes'>;
}

interface Connection {
  readonly socket: net.Socket;
  readonly decoder: FrameDecoder;
  /** The peer this node dialed; null on an accepted connection until its HELLO names the peer. */
  readonly dialLink: PeerLink | null;
  /** The peer after the handshake. */
  link: PeerLink | null;
  handshakeTimer: NodeJS.Timeout | null;
  lastError: Error | null;
}

export class Transport extends EventEmitter<TransportEvents> {
  readonly nodeId: string;

  readonly #listen: PeerAddress;
  readonly #maxQueueBytes: number;
  readonly #maxFrameBytes: number;
  readonly #heartbeatIntervalMs: number;
  readonly #suspectAfterMs: number;
  readonly #reconnectMinMs: number;
  readonly #reconnectMaxMs: number;
  readonly #log: Logger;
  // Records off: the two ends share no structure table, so any frame decodes on its own,
  // including after a reconnect to a restarted peer.
  readonly #packr = new Packr({ useRecords: false });

  readonly #links = new Map<string, PeerLink>();
  /** Every open socket, accepted or dialed, so close() can destroy them all. */
  readonly #sockets = new Set<net.Socket>();
  readonly #linksToFlush = new Set<PeerLink>();
  #pendingHandshakes = 0;
  #flushImmediate: NodeJS.Immediate | null = null;
  #heartbeatTimer: NodeJS.Timeout | null = null;
  #server: net.Server | null = null;
  #closing = false;
  #closePromise: Promise<void> | null = null;

  constructor(options: TransportOptions) {
    super();
    this.nodeId = options.nodeId;
    this.#listen = options.listen;
    this.#maxQueueBytes = options.maxQueueBytes ?? TRANSPORT_DEFAULTS.maxQueueBytes;
    this.#maxFrameBytes = options.maxFrameBytes ?? TRANSPORT_DEFAULTS.maxFrameBytes;
    this.#heartbeatIntervalMs = options.heartbeatIntervalMs ?? TRANSPORT_DEFAULTS.heartbeatIntervalMs;
    this.#suspectAfterMs = options.suspectAfterMs ?? TRANSPORT_DEFAULTS.suspectAfterMs;
    this.#reconnectMinMs = options.reconnectMinMs ?? TRANSPORT_DEFAULTS.reconnectMinMs;
    this.#reconnectMaxMs = options.reconnectMaxMs ?? TRANSPORT_DEFAULTS.reconnectMaxMs;
    this.#log = (options.logger ?? pino({ level: 'silent' })).child({ node: options.nodeId });
    validateOptions(options, this);

    for (const [nodeId, address] of Object.entries(options.peers)) {
      this.setPeer(nodeId, address);
    }
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  get heartbeatIntervalMs(): number {
    return this.#heartbeatIntervalMs;
  }

  get suspectAfterMs(): number {
    return this.#suspectAfterMs;
  }

  get reconnectMinMs(): number {
    return this.#reconnectMinMs;
  }

  get reconnectMaxMs(): number {
    return this.#reconnectMaxMs;
  }

  get maxQueueBytes(): number {
    return this.#maxQueueBytes;
  }

  /** Listens, then starts dialing the peers this node dials. Resolves once listening, not once peers are up. */
  async start(): Promise<void> {
    if (this.#server !== null || this.#closing) {
      throw new InvalidConfigError(`transport of node ${this.nodeId} was already started; create a new Transport to start again`);
    }
    const server = net.createServer((socket) => this.#onAccept(socket));
    this.#server = server;

    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(
          new InvalidConfigError(
            `node ${this.nodeId} failed to listen on ${this.#listen.host}:${this.#listen.port}: ${err.message}; choose a free port`,
          ),
        );
      };
      server.once('error', onError);
      server.listen(this.#listen.port, this.#listen.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.#log.error({ err }, 'listening socket failed'));

    this.#heartbeatTimer = setInterval(() => this.#sendPings(), this.#heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
    this.#log.info({ address: this.address() }, 'transport listening');

    for (const link of this.#links.values()) {
      if (link.dialer) this.#dial(link);
    }
  }

  address(): PeerAddress {
    const info = this.#server?.address();
    if (info === null || info === undefined || typeof info === 'string') {
      throw new InvalidConfigError(`transport of node ${this.nodeId} is not listening; call start() first`);
    }
    return { host: info.address, port: info.port };
  }

  /**
   * Adds a peer or changes its address. An established connection stays open, and the new
   * address is used from the next dial. That dial starts at once if the peer is down and this
   * node is the one that dials it.
   * TODO: there is no removePeer, so a node that leaves for good stays in the address book and is redialed.
   */
  setPeer(nodeId: string, address: PeerAddress): void {
    if (nodeId === this.nodeId) return;
    validateAddress(`peers.${nodeId}`, address);
    if (nodeId.length === 0) {
      throw new InvalidConfigError('peer node id is empty; give every node a non-empty id');
    }

    const existing = this.#links.get(nodeId);
    if (existing !== undefined) {
      existing.address = { host: address.host, port: address.port };
      if (existing.dialer && !existing.up && existing.dialSocket === null && this.#server !== null && !this.#closing) {
        this.#clearReconnectTimer(existing);
        this.#dial(existing);
      }
      return;
    }

    const link: PeerLink = {
      nodeId,
      address: { host: address.host, port: address.port },
      dialer: this.nodeId < nodeId,
      socket: null,
      dialSocket: null,
      up: false,
      blocked: false,
      queue: new OutboundQueue(this.#maxQueueBytes),
      lastReceivedAtMs: 0,
      suspectTimer: null,
      suspectDueAtMs: 0,
      reconnectTimer: null,
      failuresSinceUp: 0,
      everUp: false,
      droppedSinceAccepted: 0,
      stats: {
        sentMessages: 0,
        sentBytes: 0,
        sentBatches: 0,
        receivedMessages: 0,
        receivedBytes: 0,
        receivedBatches: 0,
        droppedMessages: 0,
        reconnects: 0,
        connectFailures: 0,
      },
    };
    this.#links.set(nodeId, link);
    if (link.dialer && this.#server !== null && !this.#closing) this.#dial(link);
  }

  /**
   * Queues a message for `toNode` and flushes the queue at the end of this event-loop turn.
   * Never throws for a down peer: the message waits in the queue (bounded by `maxQueueBytes`)
   * until the connection is up. Over the bound, after close(), or when one message is larger
   * than a frame, the message is dropped and counted in `droppedMessages`.
   * Throws InvalidConfigError for a node id with no address, and passes on the error msgpackr
   * throws for a value it cannot encode.
   */
  send(toNode: string, message: unknown): void {
    const link = this.#links.get(toNode);
    if (link === undefined) {
      const fix = toNode === this.nodeId ? 'deliver messages to servers on this node directly' : 'add its address with setPeer';
      throw new InvalidConfigError(`node ${this.nodeId} has no peer ${toNode} to send to; ${fix}`);
    }
    if (this.#closing) {
      link.stats.droppedMessages += 1;
      return;
    }

    const encoded = this.#packr.pack(message);
    if (encoded.length + 1 + ARRAY_HEADER_BYTES_MAX > this.#maxFrameBytes) {
      link.stats.droppedMessages += 1;
      this.#log.error(
        { peer: toNode, messageBytes: encoded.length, maxFrameBytes: this.#maxFrameBytes },
        'dropped a message larger than the frame bound; split it or raise maxFrameBytes',
      );
      return;
    }

    if (!link.queue.push(encoded)) {
      link.stats.droppedMessages += 1;
      if (link.droppedSinceAccepted === 0) {
        this.#log.warn(
          { peer: toNode, queuedBytes: link.queue.queuedBytes, maxQueueBytes: this.#maxQueueBytes },
          'send queue full; dropping new messages until it drains',
        );
      }
      link.droppedSinceAccepted += 1;
      return;
    }
    if (link.droppedSinceAccepted > 0) {
      this.#log.info({ peer: toNode, droppedMessages: link.droppedSinceAccepted }, 'send queue accepts messages again');
      link.droppedSinceAccepted = 0;
    }

    if (link.up && !link.blocked) this.#scheduleFlush(link);
  }

  isUp(nodeId: string): boolean {
    return this.#links.get(nodeId)?.up ?? false;
  }

  stats(): Record<string, PeerStats> {
    const result: Record<string, PeerStats> = {};
    for (const link of this.#links.values()) {
      result[link.nodeId] = { up: link.up, ...link.stats, queuedBytes: link.queue.queuedBytes };
    }
    return result;
  }

  /**
   * Destroys every socket, stops listening and clears every timer, so the process can exit.
   * Queued messages are discarded. No event is emitted once close() has been called.
   */
  close(): Promise<void> {
    if (this.#closePromise !== null) return this.#closePromise;
    this.#closing = true;

    if (this.#heartbeatTimer !== null) clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
    if (this.#flushImmediate !== null) clearImmediate(this.#flushImmediate);
    this.#flushImmediate = null;
    this.#linksToFlush.clear();

    for (const link of this.#links.values()) {
      this.#clearReconnectTimer(link);
      this.#clearSuspectTimer(link);
      link.up = false;
      link.socket = null;
      link.dialSocket = null;
    }
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();

    const server = this.#server;
    this.#closePromise = new Promise<void>((resolve) => {
      if (server === null || !server.listening) {
        resolve();
        return;
      }
      server.close(() => resolve());
    });
    this.#log.info('transport closed');
    return this.#closePromise;
  }

  // ---- connections ----

  #dial(link: PeerLink): void {
    link.reconnectTimer = null;
    if (this.#closing || link.up || link.dialSocket !== null) return;

    const { host, port } = link.address;
    const socket = net.connect({ host, port });
    link.dialSocket = socket;
    this.#track(socket, link);
    socket.once('connect', () => {
      const hello = this.#packr.pack({ nodeId: this.nodeId, toNodeId: link.nodeId, protocolVersion: PROTOCOL_VERSION });
      socket.write(encodeFrame(FrameType.HELLO, hello));
    });
  }

  #onAccept(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    if (this.#pendingHandshakes >= PENDING_HANDSHAKES_MAX) {
      this.#log.warn(
        { remote: remoteOf(socket), pendingHandshakesMax: PENDING_HANDSHAKES_MAX },
        'closed an accepted connection: too many connections are waiting for their handshake',
      );
      socket.destroy();
      return;
    }
    this.#pendingHandshakes += 1;
    this.#track(socket, null);
  }

  /** Registers handlers on a new socket and bounds the time it may take to finish the handshake. */
  #track(socket: net.Socket, dialLink: PeerLink | null): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const connection: Connection = {
      socket,
      decoder: new FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX),
      dialLink,
      link: null,
      handshakeTimer: null,
      lastError: null,
    };

    connection.handshakeTimer = setTimeout(() => {
      this.#endHandshake(connection);
      this.#log.debug(
        { peer: dialLink?.nodeId, remote: remoteOf(socket), timeoutMs: this.#suspectAfterMs },
        'connection handshake timed out; closing it',
      );
      socket.destroy();
    }, this.#suspectAfterMs);
    connection.handshakeTimer.unref();

    socket.on('data', (chunk: Buffer) => this.#onData(connection, chunk));
    socket.on('drain', () => this.#onDrain(connection));
    socket.on('error', (err) => {
      connection.lastError = err;
    });
    socket.on('close', () => this.#onClose(connection));
  }

  #onData(connection: Connection, chunk: Buffer): void {
    const { socket, decoder } = connection;
    const link = connection.link;
    if (link !== null && link.socket === socket) {
      link.lastReceivedAtMs = performance.now();
      link.stats.receivedBytes += chunk.length;
    }

    decoder.push(chunk);
    try {
      // A rejected HELLO ends the socket's writable side; nothing after it is read.
      while (!socket.destroyed && !socket.writableEnded && !this.#closing) {
        const frame = decoder.next();
        if (frame === null) break;
        this.#onFrame(connection, frame);
      }
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      const peer = connection.link?.nodeId ?? connection.dialLink?.nodeId;
      this.#log.error(
        { peer, remote: remoteOf(socket), code: err.code, err },
        `closing the connection with ${peer === undefined ? 'an unidentified node' : `node ${peer}`}: ${err.message}`,
      );
      socket.destroy();
    }
  }

  #onFrame(connection: Connection, frame: Frame): void {
    const link = connection.link;
    if (link === null) {
      if (connection.dialLink !== null) {
        this.#onHandshakeReply(connection, connection.dialLink, frame);
      } else {
        this.#onHello(connection, frame);
      }
      return;
    }

    if (frame.type === FrameType.PING) return;
    if (frame.type !== FrameType.BATCH) {
      throw new FrameError('FRAME_INVALID', `received frame type ${frame.type} after the handshake; expected BATCH or PING`);
    }

    const messages = this.#decodePayload(frame);
    if (!Array.isArray(messages)) {
      throw new FrameError('FRAME_INVALID', `received a BATCH frame whose payload is not a msgpack array`);
    }
    link.stats.receivedBatches += 1;
    link.stats.receivedMessages += messages.length;
    for (const message of messages) {
      // A listener may close the transport or this connection; stop delivering then.
      // NOTE: an exception thrown by a listener is not caught here and surfaces as an uncaught exception.
      if (this.#closing || link.socket !== connection.socket) return;
      this.emit('message', link.nodeId, message);
    }
  }

  /**
   * Accepting side: checks the dialer's HELLO, then adopts the connection or rejects it.
   * TODO: no authentication or TLS; any process that reaches the port and names a known node id is accepted.
   */
  #onHello(connection: Connection, frame: Frame): void {
    const { socket } = connection;
    if (frame.type !== FrameType.HELLO) {
      throw new FrameError('FRAME_INVALID', `received frame type ${frame.type} before the handshake; expected HELLO`);
    }
    const hello = this.#decodePayload(frame) as { nodeId?: unknown; toNodeId?: unknown; protocolVersion?: unknown };
    if (typeof hello !== 'object' || hello === null || typeof hello.nodeId !== 'string') {
      throw new FrameError('FRAME_INVALID', 'received a HELLO frame without a node id');
    }
    const nodeId = hello.nodeId;

    const reason = this.#checkHello(nodeId, hello.toNodeId, hello.protocolVersion);
    if (reason !== null) {
      this.#log.error({ peer: nodeId, remote: remoteOf(socket) }, `rejected a connection: ${reason}`);
      socket.end(encodeFrame(FrameType.REJECT, this.#packr.pack({ reason })));
      return;
    }

    const link = this.#links.get(nodeId) as PeerLink;
    const previous = link.socket;
    if (previous !== null) {
      link.socket = null;
      this.#markDown(link, 'replaced by a new connection from the same node');
      previous.destroy();
    }

    this.#establish(connection, link);
    socket.write(encodeFrame(FrameType.HELLO_ACK, this.#packr.pack({ nodeId: this.nodeId, protocolVersion: PROTOCOL_VERSION })));
    this.#markUp(link);
  }

  /** Returns why a HELLO must be rejected, or null when it is valid. */
  #checkHello(nodeId: string, toNodeId: unknown, protocolVersion: unknown): string | null {
    if (protocolVersion !== PROTOCOL_VERSION) {
      return `node ${nodeId} speaks protocol version ${String(protocolVersion)}, this node speaks ${PROTOCOL_VERSION}; run the same rana version on both`;
    }
    if (toNodeId !== this.nodeId) {
      return `node ${nodeId} expected node ${String(toNodeId)} at this address, but this is node ${this.nodeId}; fix the peer address on ${nodeId}`;
    }
    const link = this.#links.get(nodeId);
    if (link === undefined) {
      return `node ${nodeId} is not a known peer of node ${this.nodeId}; add it with setPeer`;
    }
    if (link.dialer) {
      return `node ${nodeId} dialed node ${this.nodeId}, but the node whose id sorts first (${this.nodeId}) dials; check that both run the same rana version`;
    }
    return null;
  }

  /** Dialing side: handles HELLO_ACK or REJECT. */
  #onHandshakeReply(connection: Connection, link: PeerLink, frame: Frame): void {
    const { socket } = connection;
    if (frame.type === FrameType.REJECT) {
      const reject = this.#decodePayload(frame) as { reason?: unknown } | null;
      this.#log.error({ peer: link.nodeId, reason: reject?.reason }, `node ${link.nodeId} rejected the connection`);
      socket.destroy();
      return;
    }
    if (frame.type !== FrameType.HELLO_ACK) {
      throw new FrameError('FRAME_INVALID', `received frame type ${frame.type} before the handshake; expected HELLO_ACK`);
    }

    const ack = this.#decodePayload(frame) as { nodeId?: unknown; protocolVersion?: unknown } | null;
    if (ack?.protocolVersion !== PROTOCOL_VERSION || ack.nodeId !== link.nodeId) {
      this.#log.error(
        { peer: link.nodeId, ackNodeId: ack?.nodeId, ackProtocolVersion: ack?.protocolVersion },
        `HELLO_ACK does not match node ${link.nodeId} at protocol version ${PROTOCOL_VERSION}; check the peer address`,
      );
      socket.destroy();
      return;
    }

    link.dialSocket = null;
    this.#establish(connection, link);
    this.#markUp(link);
  }

  #establish(connection: Connection, link: PeerLink): void {
    this.#endHandshake(connection);
    connection.link = link;
    connection.decoder.maxFrameBytes = this.#maxFrameBytes;
    link.socket = connection.socket;
  }

  /** Clears the handshake timer and releases the connection's pending-handshake slot, once. */
  #endHandshake(connection: Connection): void {
    if (connection.handshakeTimer === null) return;
    clearTimeout(connection.handshakeTimer);
    connection.handshakeTimer = null;
    if (connection.dialLink === null) this.#pendingHandshakes -= 1;
  }

  #decodePayload(frame: Frame): unknown {
    try {
      return this.#packr.unpack(frame.payload);
    } catch (err) {
      throw new FrameError('FRAME_INVALID', `received a frame of type ${frame.type} whose payload is not valid msgpack (${(err as Error).message})`);
    }
  }

  #onClose(connection: Connection): void {
    const { socket } = connection;
    this.#sockets.delete(socket);
    this.#endHandshake(connection);
    if (this.#closing) return;

    const link = connection.link ?? connection.dialLink;
    if (link === null) return;

    if (link.socket === socket) {
      link.socket = null;
      const cause = connection.lastError === null ? 'connection closed' : `connection failed: ${connection.lastError.message}`;
      this.#markDown(link, cause);
    }
    if (link.dialSocket === socket) {
      link.dialSocket = null;
      link.failuresSinceUp += 1;
      link.stats.connectFailures += 1;
      this.#log.debug(
        { peer: link.nodeId, address: link.address, attempt: link.failuresSinceUp, err: connection.lastError?.message },
        'connect to peer failed',
      );
    }
    if (link.dialer && link.socket === null && link.dialSocket === null) this.#scheduleReconnect(link);
  }

  #scheduleReconnect(link: PeerLink): void {
    if (this.#closing || link.reconnectTimer !== null) return;
    const delayMs = reconnectDelayMs(link.failuresSinceUp, this.#reconnectMinMs, this.#reconnectMaxMs, Math.random);
    link.reconnectTimer = setTimeout(() => this.#dial(link), delayMs);
    link.reconnectTimer.unref();
  }

  #clearReconnectTimer(link: PeerLink): void {
    if (link.reconnectTimer !== null) clearTimeout(link.reconnectTimer);
    link.reconnectTimer = null;
  }

  // ---- failure detector ----

  #markUp(link: PeerLink): void {
    link.up = true;
    link.blocked = false;
    link.lastReceivedAtMs = performance.now();
    if (link.everUp) link.stats.reconnects += 1;
    link.everUp = true;
    this.#log.info({ peer: link.nodeId, failedConnectAttempts: link.failuresSinceUp }, 'peer up');
    link.failuresSinceUp = 0;
    this.#armSuspectTimer(link);
    // Flush at the end of the turn, so messages that peer_up listeners send join the queued ones.
    if (link.queue.length > 0) this.#scheduleFlush(link);
    this.emit('peer_up', link.nodeId);
  }

  /**
   * Emits peer_down once per up-to-down transition; the caller closes the socket.
   * NOTE: frames already handed to the closed socket are lost. Only messages still in the
   * queue wait for the next connection, and Raft resends whatever else it needs.
   */
  #markDown(link: PeerLink, cause: string): void {
    if (!link.up) return;
    link.up = false;
    link.blocked = false;
    this.#clearSuspectTimer(link);
    this.#log.info({ peer: link.nodeId, cause, queuedBytes: link.queue.queuedBytes }, 'peer down');
    this.emit('peer_down', link.nodeId);
  }

  /** Arms a timer for the moment the peer's silence would reach `suspectAfterMs`. */
  #armSuspectTimer(link: PeerLink): void {
    const nowMs = performance.now();
    const dueInMs = Math.max(0, Math.ceil(link.lastReceivedAtMs + this.#suspectAfterMs - nowMs));
    link.suspectDueAtMs = nowMs + dueInMs;
    link.suspectTimer = setTimeout(() => this.#checkSilence(link, false), dueInMs);
    link.suspectTimer.unref();
  }

  #clearSuspectTimer(link: PeerLink): void {
    if (link.suspectTimer !== null) clearTimeout(link.suspectTimer);
    link.suspectTimer = null;
  }

  /**
   * Marks the peer down when nothing arrived for `suspectAfterMs`. `afterPoll` is true for the
   * second look that follows a late timer.
   */
  #checkSilence(link: PeerLink, afterPoll: boolean): void {
    link.suspectTimer = null;
    if (!link.up || this.#closing) return;

    const nowMs = performance.now();
    const silentMs = nowMs - link.lastReceivedAtMs;
    if (silentMs < this.#suspectAfterMs) {
      this.#armSuspectTimer(link);
      return;
    }
    if (!afterPoll && nowMs - link.suspectDueAtMs > this.#heartbeatIntervalMs) {
      // The timer ran late, so this event loop was blocked (a long synchronous call or GC), and
      // the peer's bytes may be waiting unread: overdue timers run before the loop polls sockets.
      // Look again after one poll phase has read them; a 0 ms timer runs after that phase.
      link.suspectTimer = setTimeout(() => this.#checkSilence(link, true), 0);
      link.suspectTimer.unref();
      return;
    }
    const socket = link.socket;
    link.socket = null;
    this.#markDown(link, `no bytes received for ${Math.round(silentMs)} ms`);
    // The close handler finds a socket that is no longer the link's, so it only schedules the redial.
    socket?.destroy();
  }

  #sendPings(): void {
    const ping = encodeFrame(FrameType.PING, null);
    for (const link of this.#links.values()) {
      // A blocked socket is not being read; a ping queued behind it would prove nothing.
      if (!link.up || link.blocked || link.socket === null) continue;
      link.stats.sentBytes += FRAME_HEADER_BYTES;
      if (!link.socket.write(ping)) link.blocked = true;
    }
  }

  // ---- sending ----

  #scheduleFlush(link: PeerLink): void {
    this.#linksToFlush.add(link);
    if (this.#flushImmediate === null) {
      this.#flushImmediate = setImmediate(() => this.#flushAll());
    }
  }

  #flushAll(): void {
    this.#flushImmediate = null;
    const links = [...this.#linksToFlush];
    this.#linksToFlush.clear();
    for (const link of links) this.#flush(link);
  }

  /** Writes queued messages as BATCH frames until the queue is empty or the socket is blocked. */
  #flush(link: PeerLink): void {
    const socket = link.socket;
    if (!link.up || socket === null) return;
    while (!link.blocked) {
      const batch = link.queue.takeBatchFrame(this.#maxFrameBytes);
      if (batch === null) return;
      link.stats.sentBatches += 1;
      link.stats.sentMessages += batch.messageCount;
      link.stats.sentBytes += batch.frame.length;
      if (!socket.write(batch.frame)) link.blocked = true;
    }
  }

  #onDrain(connection: Connection): void {
    const link = connection.link;
    if (link === null || link.socket !== connection.socket) return;
    link.blocked = false;
    this.#flush(link);
  }
}

function remoteOf(socket: net.Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

function validateAddress(name: string, address: PeerAddress): void {
  if (typeof address?.host !== 'string' || address.host.length === 0) {
    throw new InvalidConfigError(`${name}.host is ${JSON.stringify(address?.host)}; give a host name or IP address`);
  }
  if (!Number.isInteger(address.port) || address.port < 0 || address.port > 65535) {
    throw new InvalidConfigError(`${name}.port is ${address.port}; give an integer from 0 to 65535`);
  }
}

function validateOptions(options: TransportOptions, transport: Transport): void {
  if (typeof options.nodeId !== 'string' || options.nodeId.length === 0) {
    throw new InvalidConfigError(`nodeId is ${JSON.stringify(options.nodeId)}; give every node a non-empty id`);
  }
  validateAddress('listen', options.listen);

  const positive: Array<[string, number]> = [
    ['maxQueueBytes', transport.maxQueueBytes],
    ['heartbeatIntervalMs', transport.heartbeatIntervalMs],
    ['suspectAfterMs', transport.suspectAfterMs],
    ['reconnectMinMs', transport.reconnectMinMs],
    ['reconnectMaxMs', transport.reconnectMaxMs],
  ];
  for (const [name, value] of positive) {
    if (!Number.isFinite(value) || value <= 0) {
      throw new InvalidConfigError(`${name} is ${value}; give a positive number`);
    }
  }
  if (
    !Number.isInteger(transport.maxFrameBytes) ||
    transport.maxFrameBytes < HANDSHAKE_FRAME_BYTES_MAX ||
    transport.maxFrameBytes > LENGTH_PREFIX_MAX
  ) {
    throw new InvalidConfigError(
      `maxFrameBytes is ${transport.maxFrameBytes}; give an integer from ${HANDSHAKE_FRAME_BYTES_MAX} to ${LENGTH_PREFIX_MAX}`,
    );
  }
  if (transport.suspectAfterMs <= transport.heartbeatIntervalMs) {
    throw new InvalidConfigError(
      `suspectAfterMs (${transport.suspectAfterMs}) must exceed heartbeatIntervalMs (${transport.heartbeatIntervalMs}), ` +
        'or a healthy peer is suspected between two pings; a few heartbeat intervals is typical',
    );
  }
  if (transport.reconnectMinMs > transport.reconnectMaxMs) {
    throw new InvalidConfigError(
      `reconnectMinMs (${transport.reconnectMinMs}) exceeds reconnectMaxMs (${transport.reconnectMaxMs}); swap or fix them`,
    );
  }
}
