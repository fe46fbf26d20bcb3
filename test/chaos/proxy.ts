// A TCP proxy for one node-to-node link, so a test can cut or delay each direction. The
// transport has one connection per node pair, dialled by the node whose id sorts first, so
// one proxy in front of the accepting node carries both directions of the pair: `forward` is
// dialer to acceptor, `backward` the reverse.
//
// A cut direction discards the bytes it receives. TCP never delivers a stream with a hole, so
// when a direction that discarded bytes is healed, the proxy closes that connection (as a
// partition long enough to time out TCP would) instead of resuming the stream mid-frame.

import net from 'node:net';
import { once } from 'node:events';

export type Direction = 'forward' | 'backward';

interface ProxiedConnection {
  client: net.Socket;
  upstream: net.Socket;
  /** Directions that discarded bytes while cut. */
  lostBytes: Set<Direction>;
}

/** Bound on bytes held back by a delay per direction and connection; past it the connection is closed. */
const DELAYED_BYTES_MAX = 64 * 1024 * 1024;

export class LinkProxy {
  readonly targetPort: number;
  readonly #server: net.Server;
  readonly #connections = new Set<ProxiedConnection>();
  readonly #cut: Record<Direction, boolean> = { forward: false, backward: false };
  readonly #delayMs: Record<Direction, number> = { forward: 0, backward: 0 };
  #port = 0;

  private constructor(targetPort: number) {
    this.targetPort = targetPort;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Starts a proxy on 127.0.0.1 (`listenPort` 0 picks a free port) that forwards to `targetPort`. */
  static async start(targetPort: number, listenPort = 0): Promise<LinkProxy> {
    const proxy = new LinkProxy(targetPort);
    proxy.#server.listen(listenPort, '127.0.0.1');
    await once(proxy.#server, 'listening');
    proxy.#port = (proxy.#server.address() as net.AddressInfo).port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** Cuts (or heals, with `cut` false) one direction. */
  setCut(direction: Direction, cut: boolean): void {
    this.#cut[direction] = cut;
    if (cut) return;
    for (const connection of [...this.#connections]) {
      if (connection.lostBytes.has(direction)) this.#close(connection);
    }
  }

  /** Adds a fixed delay to every chunk in one direction; 0 removes it. */
  setDelay(direction: Direction, delayMs: number): void {
    this.#delayMs[direction] = delayMs;
  }

  heal(): void {
    this.setCut('forward', false);
    this.setCut('backward', false);
    this.setDelay('forward', 0);
    this.setDelay('backward', 0);
  }

  /** Closes every proxied connection, as a network reset would. */
  resetConnections(): void {
    for (const connection of [...this.#connections]) this.#close(connection);
  }

  async close(): Promise<void> {
    this.resetConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    const connection: ProxiedConnection = { client, upstream, lostBytes: new Set() };
    this.#connections.add(connection);
    this.#pipe(connection, client, upstream, 'forward');
    this.#pipe(connection, upstream, client, 'backward');
    const close = (): void => this.#close(connection);
    for (const socket of [client, upstream]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  }

  #pipe(connection: ProxiedConnection, from: net.Socket, to: net.Socket, direction: Direction): void {
    // Delayed chunks keep their order: each waits until its own due time and the previous chunk.
    let delayedBytes = 0;
    let tail: Promise<void> = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (this.#cut[direction]) {
        connection.lostBytes.add(direction);
        return;
      }
      const delayMs = this.#delayMs[direction];
      if (delayMs === 0 && delayedBytes === 0) {
        to.write(chunk);
        return;
      }
      delayedBytes += chunk.length;
      if (delayedBytes > DELAYED_BYTES_MAX) {
        this.#close(connection);
        return;
      }
      const dueMs = Date.now() + delayMs;
      tail = tail.then(async () => {
        const waitMs = dueMs - Date.now();
        if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
        delayedBytes -= chunk.length;
        if (!to.destroyed) to.write(chunk);
      });
    });
  }

  #close(connection: ProxiedConnection): void {
    if (!this.#connections.delete(connection)) return;
    connection.client.destroy();
    connection.upstream.destroy();
  }
}
