// A stand-in for `rana kv` that speaks its HTTP contract, for testing the demo driver without
// Raft. Node n1 stores every key and acts as the leader of every group; the other nodes forward
// each request to n1's --listen address. n1 appends every write to <data>/writes.log before it
// replies and replays the file at start, so acknowledged writes survive SIGKILL, unless
// --forget-on-restart is given: then n1 loses its keys on restart, a fault the demo must catch.
// Usage: node fake-kv.mjs [--forget-on-restart] --id n1 --listen H:P --http H:P --peers n2=H:P,n3=H:P --data DIR --groups N

import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    'forget-on-restart': { type: 'boolean' },
    id: { type: 'string' }, listen: { type: 'string' }, http: { type: 'string' },
    peers: { type: 'string' }, data: { type: 'string' }, groups: { type: 'string' },
  },
});
const groups = Number(args.groups);
const isLeader = args.id === 'n1';
const peers = Object.fromEntries(args.peers.split(',').map((peer) => peer.split('=')));
const leaderAddress = isLeader ? args.listen : peers.n1;
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

mkdirSync(args.data, { recursive: true });
const logFile = path.join(args.data, 'writes.log');
const store = new Map();
const commitIndexes = new Array(groups).fill(0);

function groupOf(key) {
  let hash = 0;
  for (const char of key) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return hash % groups;
}

function apply(key, value) {
  if (value === null) store.delete(key); else store.set(key, value);
  commitIndexes[groupOf(key)]++;
}

if (isLeader && !args['forget-on-restart']) {
  let text = '';
  try { text = readFileSync(logFile, 'utf8'); } catch { /* first start */ }
  for (const line of text.split('\n')) {
    if (line !== '') {
      const entry = JSON.parse(line);
      if (entry.noopGroup !== undefined) commitIndexes[entry.noopGroup]++;
      else apply(entry.key, entry.value);
    }
  }
}

// A leader that starts commits an entry in every group, as a new Raft leader commits a no-op.
if (isLeader) {
  for (let i = 0; i < groups; i++) {
    appendFileSync(logFile, `${JSON.stringify({ noopGroup: i })}\n`);
    commitIndexes[i]++;
  }
}

function write(key, value) {
  appendFileSync(logFile, `${JSON.stringify({ key, value })}\n`);
  apply(key, value);
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function status(leader) {
  return {
    node: args.id,
    groups: commitIndexes.map((commitIndex, i) => ({
      name: `g${i}`, role: args.id === leader ? 'leader' : 'follower', term: 1, commitIndex, lastApplied: commitIndex, leader,
    })),
  };
}

async function serveLeader(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/status') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status('n1')));
    return;
  }
  const key = decodeURIComponent(url.pathname.slice('/kv/'.length));
  if (!url.pathname.startsWith('/kv/') || key === '') {
    res.writeHead(400).end('expected /kv/:key');
    return;
  }
  if (req.method === 'GET') {
    if (store.has(key)) res.writeHead(200, { 'content-type': 'text/plain' }).end(store.get(key));
    else res.writeHead(404).end();
  } else if (req.method === 'DELETE') {
    write(key, null);
    res.writeHead(204).end();
  } else if (req.method === 'PUT') {
    const form = new URLSearchParams(await readBody(req));
    const value = form.get('value');
    if (value === null) {
      res.writeHead(400).end('missing value');
      return;
    }
    const expected = form.get('expected');
    if (expected !== null && store.get(key) !== expected) {
      if (store.has(key)) res.writeHead(409).end(store.get(key));
      else res.writeHead(409, { 'x-rana-missing': '1' }).end();
      return;
    }
    write(key, value);
    res.writeHead(204).end();
  } else {
    res.writeHead(400).end(`unsupported method ${req.method}`);
  }
}

async function serveFollower(req, res) {
  const body = await readBody(req);
  const [host, port] = leaderAddress.split(':');
  const forward = http.request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers, agent }, (upstream) => {
    if (req.url === '/status') {
      const chunks = [];
      upstream.on('data', (chunk) => chunks.push(chunk));
      upstream.on('end', () => {
        const leaderStatus = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        leaderStatus.node = args.id;
        for (const group of leaderStatus.groups) group.role = 'follower';
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(leaderStatus));
      });
      return;
    }
    res.writeHead(upstream.statusCode, upstream.headers);
    upstream.pipe(res);
  });
  forward.on('error', (error) => {
    if (req.url === '/status') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status(null)));
    else res.writeHead(503).end('no leader: n1 is unreachable');
  });
  forward.end(body);
}

const handler = (req, res) => (isLeader ? serveLeader(req, res) : serveFollower(req, res));
const servers = [http.createServer(handler)];
if (isLeader) servers.push(http.createServer(handler));
const addresses = isLeader ? [args.http, args.listen] : [args.http];
servers.forEach((server, i) => {
  const [host, port] = addresses[i].split(':');
  server.keepAliveTimeout = 60_000;
  server.listen(Number(port), host);
});
console.log(JSON.stringify({ msg: 'fake kv started', node: args.id, http: args.http }));

process.on('SIGTERM', () => {
  console.log(JSON.stringify({ msg: 'fake kv stopping', node: args.id }));
  for (const server of servers) server.closeAllConnections?.();
  process.exit(0);
});
