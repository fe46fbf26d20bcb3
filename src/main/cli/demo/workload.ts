import type { LocalCluster } from './cluster.js';
import type { HttpOutcome, KvHttpClient } from './kv-http.js';
import type { WriteHistory, WriteOutcome } from './history.js';
import type { ErrorKind, OpKind, WorkloadStats } from './stats.js';

export interface WorkloadConfig {
  clients: number;
  keyCount: number;
  durationMs: number;
}

/** Share of each operation kind. A compare-and-set on a key with no value seen yet is sent as a put. */
export const opMix: Readonly<Record<OpKind, number>> = { put: 0.45, get: 0.35, cas: 0.15, delete: 0.05 };

/** Pause of a client after a 503 or after every node refused it, so a leaderless cluster is not flooded. */
const backoffMs = 20;

/** Returns the name of key number `index`. The demo uses keys `k0000` to `k<keyCount - 1>`. */
export function keyName(index: number): string {
  return `k${String(index).padStart(4, '0')}`;
}

function pickKind(): OpKind {
  let roll = Math.random();
  for (const [kind, share] of Object.entries(opMix) as [OpKind, number][]) {
    roll -= share;
    if (roll < 0) {
      return kind;
    }
  }
  return 'get';
}

/**
 * Closed-loop clients, each with one request in flight, sending random operations on random
 * keys to the nodes in turn. Every write carries a value no other write uses (`c3-1234`) and
 * is recorded in the write history with its outcome.
 */
export class Workload {
  readonly #cluster: LocalCluster;
  readonly #client: KvHttpClient;
  readonly #stats: WorkloadStats;
  readonly #history: WriteHistory;
  readonly #config: WorkloadConfig;
  /** Last value each key was seen with (read or 409 body); at most `keyCount` entries. */
  readonly #lastSeen = new Map<string, string>();

  constructor(cluster: LocalCluster, client: KvHttpClient, stats: WorkloadStats, history: WriteHistory, config: WorkloadConfig) {
    this.#cluster = cluster;
    this.#client = client;
    this.#stats = stats;
    this.#history = history;
    this.#config = config;
  }

  /** Runs every client until `durationMs` has passed or `signal` aborts, then waits for requests in flight. */
  async run(signal: AbortSignal): Promise<void> {
    const endMs = performance.now() + this.#config.durationMs;
    const clients = Array.from({ length: this.#config.clients }, (_, i) => this.#runClient(i, endMs, signal));
    await Promise.all(clients);
  }

  async #runClient(clientIndex: number, endMs: number, signal: AbortSignal): Promise<void> {
    let sequence = 0;
    let nodeIndex = clientIndex % this.#cluster.nodes.length;
    while (performance.now() < endMs && !signal.aborted) {
      const key = keyName(Math.floor(Math.random() * this.#config.keyCount));
      nodeIndex = (nodeIndex + 1) % this.#cluster.nodes.length;
      const kind = pickKind();
      const value = `c${clientIndex}-${sequence++}`;

      let pause: boolean;
      if (kind === 'get') {
        pause = await this.#get(nodeIndex, key);
      } else if (kind === 'delete') {
        pause = await this.#delete(nodeIndex, key);
      } else {
        pause = await this.#put(nodeIndex, key, value, kind === 'cas' ? this.#lastSeen.get(key) : undefined);
      }
      if (pause) {
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
      }
    }
  }

  /** Sends a request to the node at `nodeIndex`, moving on to the next node when the connection is refused. */
  async #send(kind: OpKind, nodeIndex: number, request: (address: string) => Promise<HttpOutcome>): Promise<HttpOutcome> {
    const nodes = this.#cluster.nodes;
    for (let attempt = 0; attempt < nodes.length; attempt++) {
      const outcome = await request(nodes[(nodeIndex + attempt) % nodes.length].http);
      if (outcome.kind !== 'refused') {
        return outcome;
      }
      this.#stats.recordError(kind, 'refused');
    }
    return { kind: 'refused' };
  }

  /** Counts a failed request. Returns the write outcome it implies and whether the client should pause. */
  #recordFailure(kind: OpKind, outcome: HttpOutcome): { write: WriteOutcome; pause: boolean } {
    let error: ErrorKind;
    let write: WriteOutcome = 'unknown';
    if (outcome.kind === 'refused') {
      // #send already counted each refused attempt.
      return { write: 'failed', pause: true };
    } else if (outcome.kind === 'lost' || outcome.kind === 'timeout') {
      error = outcome.kind;
    } else if (outcome.status === 503) {
      error = 'unavailable';
    } else {
      error = 'unexpected';
      if (outcome.status === 400) {
        write = 'failed';
      }
    }
    this.#stats.recordError(kind, error);
    return { write, pause: error === 'unavailable' };
  }

  async #get(nodeIndex: number, key: string): Promise<boolean> {
    const startMs = performance.now();
    const outcome = await this.#send('get', nodeIndex, (address) => this.#client.get(address, key));
    if (outcome.kind === 'response' && (outcome.status === 200 || outcome.status === 404)) {
      if (outcome.status === 200) {
        this.#lastSeen.set(key, outcome.body);
      } else {
        this.#lastSeen.delete(key);
      }
      this.#stats.recordSuccess('get', performance.now() - startMs);
      return false;
    }
    return this.#recordFailure('get', outcome).pause;
  }

  /** Puts `value`, or compares-and-sets it when `expected` is given. */
  async #put(nodeIndex: number, key: string, value: string, expected: string | undefined): Promise<boolean> {
    const kind: OpKind = expected === undefined ? 'put' : 'cas';
    const startMs = performance.now();
    const outcome = await this.#send(kind, nodeIndex, (address) => this.#client.put(address, key, value, expected));
    const endMs = performance.now();

    if (outcome.kind === 'response' && outcome.status === 204) {
      this.#history.recordPut(key, value, startMs, endMs, 'acked');
      this.#stats.recordSuccess(kind, endMs - startMs);
      return false;
    }
    if (kind === 'cas' && outcome.kind === 'response' && outcome.status === 409) {
      if (outcome.headers['x-rana-missing'] === '1') {
        this.#lastSeen.delete(key);
      } else {
        this.#lastSeen.set(key, outcome.body);
      }
      this.#stats.recordSuccess(kind, endMs - startMs, true);
      return false;
    }
    const failure = this.#recordFailure(kind, outcome);
    this.#history.recordPut(key, value, startMs, endMs, failure.write);
    return failure.pause;
  }

  async #delete(nodeIndex: number, key: string): Promise<boolean> {
    const startMs = performance.now();
    const outcome = await this.#send('delete', nodeIndex, (address) => this.#client.delete(address, key));
    const endMs = performance.now();

    if (outcome.kind === 'response' && outcome.status === 204) {
      this.#history.recordDelete(key, startMs, endMs, 'acked');
      this.#stats.recordSuccess('delete', endMs - startMs);
      return false;
    }
    const failure = this.#recordFailure('delete', outcome);
    this.#history.recordDelete(key, startMs, endMs, failure.write);
    return failure.pause;
  }
}
