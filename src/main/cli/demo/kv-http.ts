import http from 'node:http';

/** `host:port` of a node's HTTP API, as passed to `rana kv --http`. */
export type HttpAddress = string;

/**
 * Result of one HTTP request. `refused` means the connection was never made, so the request
 * was not sent and a write is known not to have happened. `lost` (connection reset, socket
 * hang up) and `timeout` leave a write's outcome unknown.
 */
export type HttpOutcome =
  | { kind: 'response'; status: number; body: string; headers: http.IncomingHttpHeaders }
  | { kind: 'refused' }
  | { kind: 'lost'; message: string }
  | { kind: 'timeout' };

/** HTTP/1.1 client with keep-alive connections to a set of `rana kv` nodes. */
export class KvHttpClient {
  readonly #agent: http.Agent;
  readonly #requestTimeoutMs: number;

  /** `maxSocketsPerNode` bounds the open connections to each node. */
  constructor(requestTimeoutMs: number, maxSocketsPerNode: number) {
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: maxSocketsPerNode });
  }

  get(address: HttpAddress, key: string): Promise<HttpOutcome> {
    return this.request(address, 'GET', kvPath(key));
  }

  /** Writes `value`; with `expected` set, a compare-and-set that only writes when the current value equals it. */
  put(address: HttpAddress, key: string, value: string, expected?: string): Promise<HttpOutcome> {
    const form = new URLSearchParams({ value });
    if (expected !== undefined) {
      form.set('expected', expected);
    }
    return this.request(address, 'PUT', kvPath(key), form.toString());
  }

  delete(address: HttpAddress, key: string): Promise<HttpOutcome> {
    return this.request(address, 'DELETE', kvPath(key));
  }

  status(address: HttpAddress): Promise<HttpOutcome> {
    return this.request(address, 'GET', '/status');
  }

  /** Sends one request and reads the whole response body. Never rejects: failures are outcomes. */
  request(address: HttpAddress, method: string, path: string, formBody?: string): Promise<HttpOutcome> {
    const [host, port] = splitAddress(address);
    const headers: http.OutgoingHttpHeaders = {};
    if (formBody !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = Buffer.byteLength(formBody);
    }

    return new Promise<HttpOutcome>((resolve) => {
      let timedOut = false;
      const req = http.request({ host, port, method, path, headers, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          resolve({ kind: 'response', status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers });
        });
        res.on('error', (error) => resolve(timedOut ? { kind: 'timeout' } : { kind: 'lost', message: error.message }));
      });
      req.setTimeout(this.#requestTimeoutMs, () => {
        timedOut = true;
        req.destroy();
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (timedOut) {
          resolve({ kind: 'timeout' });
        } else if (error.code === 'ECONNREFUSED') {
          resolve({ kind: 'refused' });
        } else {
          resolve({ kind: 'lost', message: error.code ?? error.message });
        }
      });
      req.end(formBody);
    });
  }

  /** Closes all kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}

function kvPath(key: string): string {
  return `/kv/${encodeURIComponent(key)}`;
}

function splitAddress(address: HttpAddress): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}
