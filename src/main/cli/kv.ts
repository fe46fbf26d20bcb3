// `rana kv`: one node of a replicated key-value service with an HTTP API. Keys are spread over
// a fixed number of Raft groups; every node hosts one member of every group.
//
// HTTP API:
//   GET    /kv/:key   200 with the value, 404 when missing. Linearizable (read index round).
//   PUT    /kv/:key   urlencoded body `value=V` stores V (204). With `expected=E` it is a
//                     compare-and-set that stores V only when the current value is E; with
//                     `expectedMissing=1` only when the key is missing. 204 on success, 409
//                     with the current value on mismatch (header x-rana-missing: 1 when missing).
//   DELETE /kv/:key   204.
//   GET    /status    the node's groups with role, term, commit index and leader, as JSON.
// Errors: 400 on bad input, 413 on a body over the limit, 503 with a reason on a timeout (the
// outcome is unknown), no leader, no quorum or overload, 500 on anything else.

import http from 'node:http';
import { once } from 'node:events';
import { ClusterNotFoundError, InvalidConfigError, NotLeaderError, RanaError, TimeoutError } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import { createKvMachine, kvStateDigest, type KvCommand, type KvReply, type KvState } from '../machines/kv.js';
import { groupName, groupOfKey } from '../machines/kv-groups.js';
import { Node, parseAddress } from '../node.js';
import type { System } from '../system.js';

export interface KvServiceOptions {
  id: string;
  listen: string;
  http: string;
  peers: Record<string, string>;
  dataDir: string;
  groups: number;
  syncMethod: 'datasync' | 'sync' | 'none';
  walMaxBatchSize?: number;
  /** WAL roll-over size in bytes. */
  walMaxSizeBytes?: number;
  /** WAL roll-over entry count. */
  walMaxEntries?: number;
  /** Entries per segment file. */
  segmentMaxEntries?: number;
  /** Commands between two snapshots of each group. */
  snapshotInterval?: number;
  /** Bytes per chunk when streaming a snapshot to a follower. */
  snapshotChunkBytes?: number;
  timeoutMs: number;
  logLevel?: string;
}

/** Maximum key length, in bytes of UTF-8. */
const KEY_BYTES_MAX = 1024;
/** How long formation retries a peer that is still starting or briefly unreachable. */
const FORMATION_RETRY_MS = 60_000;
/** Largest request body accepted; values are limited by it. */
const BODY_BYTES_MAX = 1024 * 1024;

export interface KvService {
  node: Node;
  httpAddress: { host: string; port: number };
  /** Settles once the groups are rejoined or formed; rejects when they cannot be (the node is then useless). */
  ready: Promise<void>;
  stop(): Promise<void>;
}

export async function startKvService(options: KvServiceOptions): Promise<KvService> {
  const logger = createLogger({}, options.logLevel);

  // The HTTP port is bound first, so a port in use fails before any data is written.
  let node: Node | null = null;
  const failedGroups = new Map<string, string>();
  const httpServer = http.createServer((request, response) => {
    if (!node) {
      respond(response, 503, 'the node is starting\n');
      return;
    }
    handleRequest(node, options, failedGroups, request, response).catch((error: unknown) => {
      if (request.destroyed || response.destroyed) {
        // The client disconnected mid-request, so there is no one to reply to and no fault here.
        node!.logger.debug({ err: error, url: request.url }, 'HTTP client disconnected');
        return;
      }
      node!.logger.error({ err: error, url: request.url }, 'HTTP request failed');
      if (!response.headersSent) respond(response, 500, `internal error: ${String(error)}\n`);
    });
  });
  httpServer.keepAliveTimeout = 30_000;
  const httpAddress = parseAddress(options.http, 'http');
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', (error: NodeJS.ErrnoException) => {
      reject(new InvalidConfigError(`cannot listen for HTTP on ${options.http}: ${error.code ?? error.message}; pick a free port with --http`));
    });
    httpServer.listen(httpAddress.port, httpAddress.host, () => resolve());
  });
  const bound = httpServer.address();
  const actualHttp = typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : httpAddress;

  try {
    node = await Node.start({ id: options.id, listen: options.listen, peers: options.peers, logger, defaultTimeoutMs: options.timeoutMs });
    const system = await node.startSystem({
      name: 'default',
      dataDir: options.dataDir,
      wal: { syncMethod: options.syncMethod, maxBatchSize: options.walMaxBatchSize, maxSizeBytes: options.walMaxSizeBytes, maxEntries: options.walMaxEntries },
      segment: { maxEntries: options.segmentMaxEntries },
      snapshotChunkBytes: options.snapshotChunkBytes,
    });
    const kv = createKvMachine({ snapshotInterval: options.snapshotInterval });
    system.registerMachine('kv', {
      ...kv,
      // Every member of every group carries the group count it was formed with, so a node
      // started with another --groups routes no key to the wrong group: its members refuse to start.
      init(args: unknown) {
        const groups = (args as { groups?: unknown } | undefined)?.groups;
        if (groups !== options.groups) {
          throw new InvalidConfigError(
            `the KV groups were formed with --groups ${String(groups)}, but this node runs with --groups ${options.groups}; ` +
              'start every node with the same --groups, or use fresh data directories for a new count',
          );
        }
        return kv.init(args);
      },
    });

    const ready = formOrRejoinGroups(node, system, options, failedGroups, logger);
    logger.info({ http: actualHttp, groups: options.groups }, 'KV service listening');
    const started = node;
    return {
      node: started,
      httpAddress: actualHttp,
      ready,
      async stop() {
        httpServer.closeAllConnections();
        httpServer.close();
        await started.stop();
      },
    };
  } catch (error) {
    httpServer.close();
    await node?.stop();
    throw error;
  }
}

/**
 * Restarts the groups found in the data directory, then forms any of the `--groups` groups
 * that are missing once every peer is connected. Forming is idempotent and every node names the
 * same members, so nodes that form at once, or a formation cut short by a crash and resumed,
 * converge on one configuration.
 */
async function formOrRejoinGroups(
  node: Node,
  system: System,
  options: KvServiceOptions,
  failedGroups: Map<string, string>,
  logger: Logger,
): Promise<void> {
  for (const name of system.knownServerNames()) {
    const groups = (system.serverConfig(name)?.machineArgs as { groups?: unknown } | undefined)?.groups;
    if (groups !== options.groups) {
      throw new InvalidConfigError(
        `data directory ${options.dataDir} was formed with --groups ${String(groups)}; ` +
          `start this node with --groups ${String(groups)}, or use a fresh data directory for --groups ${options.groups}`,
      );
    }
  }
  for (const [name, error] of system.brokenServers()) failedGroups.set(name, error.message);

  let rejoined = 0;
  for (const name of system.knownServerNames()) {
    try {
      system.restartServer(name);
      rejoined++;
    } catch (error) {
      // One damaged group must not take the others down; it is reported in /status.
      failedGroups.set(name, (error as Error).message);
      logger.error({ err: error, group: name }, 'group could not restart');
    }
  }
  if (rejoined > 0) logger.info({ groups: rejoined }, 'rejoined groups from the data directory');

  const missing: string[] = [];
  for (let group = 0; group < options.groups; group++) {
    const name = groupName(group);
    if (system.serverConfig(name) === undefined && !failedGroups.has(name)) missing.push(name);
  }
  if (missing.length === 0) return;

  const peers = Object.keys(options.peers);
  logger.info({ peers, missing: missing.length }, 'waiting for every peer before forming the missing groups');
  await waitForPeers(node, peers);
  const members = [options.id, ...peers].sort();
  const machine = { machine: 'kv', args: { groups: options.groups } };
  for (const name of missing) {
    const servers = members.map((id) => ({ name, node: id }));
    // A peer may still be starting (no system yet) or be briefly suspected; retry those for up
    // to FORMATION_RETRY_MS. A configuration or storage error will not go away by retrying.
    const deadline = Date.now() + FORMATION_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      const { notStarted } = await node.startCluster('default', name, machine, servers);
      if (notStarted.length === 0) break;
      const permanent = notStarted.find((n) => n.error instanceof RanaError && (n.error.code === 'INVALID_CONFIG' || n.error.code === 'STORAGE'));
      if (permanent || Date.now() > deadline) {
        const reasons = notStarted.map((n) => `${n.server.node}: ${n.error.message}`).join('; ');
        throw new RanaError(permanent ? (permanent.error as RanaError).code : 'NO_QUORUM', `could not form group ${name}: ${reasons}`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * attempt)));
    }
  }
  logger.info({ groups: missing.length, members }, 'formed the missing KV groups');
}

function waitForPeers(node: Node, peers: string[]): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (peers.every((peer) => node.transport.isUp(peer))) {
        node.transport.off('peer_up', check);
        resolve();
      }
    };
    node.transport.on('peer_up', check);
    check();
  });
}

async function handleRequest(
  node: Node,
  options: KvServiceOptions,
  failedGroups: Map<string, string>,
  request: http.IncomingMessage,
  response: http.ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://localhost');
  // The key comes from the raw path: URL parsing would resolve "." and ".." segments and
  // store /kv/a/../b under "b".
  const rawPath = (request.url ?? '/').split('?')[0];
  if (url.pathname === '/status' && request.method === 'GET') {
    // With ?digest=1 each group also reports a CRC-32 of its local state, so tests can check
    // that members agree; it costs a pass over every key.
    const withDigest = url.searchParams.get('digest') === '1';
    const groups = node.overview().map((s) => ({
      name: s.name, role: s.role, term: s.term, commitIndex: s.commitIndex, lastApplied: s.lastApplied, leader: s.leader,
      snapshotIndex: s.snapshotIndex, keys: s.machine?.keys,
      digest: withDigest ? node.system()?.server(s.name)?.localQuery((state) => kvStateDigest(state as KvState)) : undefined,
    }));
    const failed = [...failedGroups].map(([name, error]) => ({ name, role: 'failed', error }));
    respond(response, 200, JSON.stringify({ node: node.id, groups: [...groups, ...failed] }), 'application/json');
    return;
  }
  if (!rawPath.startsWith('/kv/')) {
    respond(response, 404, `no route ${request.method} ${rawPath}; use /kv/:key or /status\n`);
    return;
  }

  let key: string;
  try {
    key = decodeURIComponent(rawPath.slice('/kv/'.length));
  } catch {
    respond(response, 400, 'invalid key: the path is not valid percent-encoding\n');
    return;
  }
  if (key.length === 0 || Buffer.byteLength(key) > KEY_BYTES_MAX) {
    respond(response, 400, `invalid key: it must be 1 to ${KEY_BYTES_MAX} bytes long\n`);
    return;
  }
  const server = { name: groupName(groupOfKey(key, options.groups)), node: node.id };

  try {
    switch (request.method) {
      case 'GET': {
        const value = await node.consistentQuery<string | null>(server, 'get', key);
        if (value === null) respond(response, 404, 'not found\n');
        else respond(response, 200, value);
        return;
      }
      case 'PUT': {
        const body = await readBody(request);
        if (body === null) {
          response.setHeader('connection', 'close');
          respond(response, 413, `request body is over ${BODY_BYTES_MAX} bytes\n`);
          response.once('finish', () => request.destroy());
          return;
        }
        const parsed = parsePutBody(key, body);
        if (typeof parsed === 'string') {
          respond(response, 400, parsed);
          return;
        }
        const command = parsed;
        const { reply } = await node.processCommand<KvReply>(server, command);
        if (reply.ok) {
          respond(response, 204);
        } else {
          const current = 'current' in reply ? reply.current : null;
          response.setHeader('x-rana-missing', current === null ? '1' : '0');
          respond(response, 409, current ?? '');
        }
        return;
      }
      case 'DELETE':
        await node.processCommand<KvReply>(server, { op: 'delete', key });
        respond(response, 204);
        return;
      default:
        respond(response, 405, `method ${request.method} is not allowed; use GET, PUT or DELETE\n`);
    }
  } catch (error) {
    respondError(response, error);
  }
}

/** Parses a PUT body into a command, or returns the 400 message for a body that is not exact. */
function parsePutBody(key: string, body: string): KvCommand | string {
  const form = new URLSearchParams(body);
  for (const name of new Set(form.keys())) {
    if (name !== 'value' && name !== 'expected' && name !== 'expectedMissing') {
      return `unknown parameter ${JSON.stringify(name)}: send value=V, with expected=E or expectedMissing=1 for compare-and-set\n`;
    }
    if (form.getAll(name).length > 1) return `parameter ${name} is given more than once; send it once\n`;
  }
  const value = form.get('value');
  if (value === null) return 'missing value: send an urlencoded body value=V (and expected=E for compare-and-set)\n';
  const expectedMissing = form.get('expectedMissing');
  if (expectedMissing !== null && expectedMissing !== '1') {
    return `invalid expectedMissing=${JSON.stringify(expectedMissing)}: send expectedMissing=1 or leave it out\n`;
  }
  if (expectedMissing !== null && form.has('expected')) return 'send either expected=E or expectedMissing=1, not both\n';
  if (expectedMissing === '1') return { op: 'cas', key, expected: null, value };
  if (form.has('expected')) return { op: 'cas', key, expected: form.get('expected'), value };
  return { op: 'put', key, value };
}

function respondError(response: http.ServerResponse, error: unknown): void {
  if (error instanceof TimeoutError) {
    respond(response, 503, `timeout: ${error.message}\n`);
  } else if (error instanceof NotLeaderError) {
    respond(response, 503, `no leader: ${error.message}\n`);
  } else if (error instanceof ClusterNotFoundError || (error instanceof RanaError && error.code === 'CLUSTER_NOT_FOUND')) {
    respond(response, 503, `group not running yet: ${error.message}\n`);
  } else if (error instanceof RanaError) {
    if (error.code === 'OVERLOADED') response.setHeader('retry-after', '1');
    respond(response, error.code === 'INVALID_CONFIG' ? 400 : 503, `${error.code.toLowerCase()}: ${error.message}\n`);
  } else {
    throw error;
  }
}

function readBody(request: http.IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let overflow = false;
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= BODY_BYTES_MAX) {
        chunks.push(chunk);
      } else if (!overflow) {
        // Reply at once and stop reading, rather than take in the rest of a large body.
        overflow = true;
        chunks.length = 0;
        resolve(null);
        request.pause();
      }
    });
    request.on('end', () => resolve(overflow ? null : Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function respond(response: http.ServerResponse, status: number, body = '', contentType = 'text/plain; charset=utf-8'): void {
  response.statusCode = status;
  if (body.length > 0) response.setHeader('content-type', contentType);
  response.end(body);
}
