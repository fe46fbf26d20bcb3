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
import { ClusterNotFoundError, NotLeaderError, RanaError, TimeoutError } from '../errors.js';
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

/** Longest key accepted, in bytes of UTF-8. */
const KEY_BYTES_MAX = 1024;
/** Largest request body accepted; values are limited by it. */
const BODY_BYTES_MAX = 1024 * 1024;

export interface KvService {
  node: Node;
  httpAddress: { host: string; port: number };
  stop(): Promise<void>;
}

export async function startKvService(options: KvServiceOptions): Promise<KvService> {
  const logger = createLogger({}, options.logLevel);
  const node = await Node.start({ id: options.id, listen: options.listen, peers: options.peers, logger, defaultTimeoutMs: options.timeoutMs });
  const system = await node.startSystem({
    name: 'default',
    dataDir: options.dataDir,
    wal: { syncMethod: options.syncMethod, maxBatchSize: options.walMaxBatchSize, maxSizeBytes: options.walMaxSizeBytes, maxEntries: options.walMaxEntries },
    segment: { maxEntries: options.segmentMaxEntries },
    snapshotChunkBytes: options.snapshotChunkBytes,
  });
  system.registerMachine('kv', createKvMachine({ snapshotInterval: options.snapshotInterval }));

  const httpServer = http.createServer((request, response) => {
    handleRequest(node, options, request, response).catch((error: unknown) => {
      node.logger.error({ err: error, url: request.url }, 'HTTP request failed');
      if (!response.headersSent) respond(response, 500, `internal error: ${String(error)}\n`);
    });
  });
  httpServer.keepAliveTimeout = 30_000;
  const httpAddress = parseAddress(options.http, 'http');
  httpServer.listen(httpAddress.port, httpAddress.host);
  await once(httpServer, 'listening');
  const bound = httpServer.address();
  const actualHttp = typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : httpAddress;

  void formOrRejoinGroups(node, system, options, logger).catch((error: unknown) => {
    logger.fatal({ err: error }, 'could not form or rejoin the KV groups');
    process.exitCode = 1;
  });

  logger.info({ http: actualHttp, groups: options.groups }, 'KV service listening');
  return {
    node,
    httpAddress: actualHttp,
    async stop() {
      httpServer.closeAllConnections();
      httpServer.close();
      await node.stop();
    },
  };
}

/**
 * Restarts the groups found in the data directory, or, on an empty data directory, forms them
 * once every peer answers. Every node may form at once: starting a member is idempotent and all
 * nodes name the same members, so concurrent formation converges on one configuration.
 */
async function formOrRejoinGroups(node: Node, system: System, options: KvServiceOptions, logger: Logger): Promise<void> {
  const known = system.knownServerNames();
  if (known.length > 0) {
    for (const name of known) system.restartServer(name);
    logger.info({ groups: known.length }, 'rejoined groups from the data directory');
    return;
  }
  const peers = Object.keys(options.peers);
  logger.info({ peers }, 'empty data directory: waiting for every peer before forming the groups');
  await waitForPeers(node, peers);
  const members = [options.id, ...peers].sort();
  for (let group = 0; group < options.groups; group++) {
    const name = groupName(group);
    const servers = members.map((id) => ({ name, node: id }));
    // A peer that formed first may already be running the member; retry the others briefly.
    for (let attempt = 1; ; attempt++) {
      const { notStarted } = await node.startCluster('default', name, { machine: 'kv' }, servers);
      if (notStarted.length === 0) break;
      if (attempt >= 20) {
        throw new Error(`could not start ${name} on ${notStarted.map((n) => `${n.server.node} (${n.error.message})`).join(', ')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  logger.info({ groups: options.groups, members }, 'formed the KV groups');
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

async function handleRequest(node: Node, options: KvServiceOptions, request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://localhost');
  if (url.pathname === '/status' && request.method === 'GET') {
    // With ?digest=1 each group also reports a CRC-32 of its local state, so tests can check
    // that members agree; it costs a pass over every key.
    const withDigest = url.searchParams.get('digest') === '1';
    const groups = node.overview().map((s) => ({
      name: s.name, role: s.role, term: s.term, commitIndex: s.commitIndex, lastApplied: s.lastApplied, leader: s.leader,
      snapshotIndex: s.snapshotIndex, keys: s.machine?.keys,
      digest: withDigest ? node.system()?.server(s.name)?.localQuery((state) => kvStateDigest(state as KvState)) : undefined,
    }));
    respond(response, 200, JSON.stringify({ node: node.id, groups }), 'application/json');
    return;
  }
  if (!url.pathname.startsWith('/kv/')) {
    respond(response, 404, `no route ${request.method} ${url.pathname}; use /kv/:key or /status\n`);
    return;
  }

  let key: string;
  try {
    key = decodeURIComponent(url.pathname.slice('/kv/'.length));
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
          respond(response, 413, `request body is over ${BODY_BYTES_MAX} bytes\n`);
          return;
        }
        const form = new URLSearchParams(body);
        const value = form.get('value');
        if (value === null) {
          respond(response, 400, 'missing value: send an urlencoded body value=V (and expected=E for compare-and-set)\n');
          return;
        }
        let command: KvCommand;
        if (form.get('expectedMissing') === '1') command = { op: 'cas', key, expected: null, value };
        else if (form.has('expected')) command = { op: 'cas', key, expected: form.get('expected'), value };
        else command = { op: 'put', key, value };
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
      if (bytes > BODY_BYTES_MAX) overflow = true;
      else chunks.push(chunk);
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
