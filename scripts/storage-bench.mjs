// Storage engine benchmarks: memory and disk over a long run, restart time of a node with a
// large log, and follower catch-up rate. Run after `npm run build`:
//
//   node scripts/storage-bench.mjs soak [seconds]        RSS and disk every 10 s at full load
//   node scripts/storage-bench.mjs restart [gigabytes]   time until a restarted node serves
//   node scripts/storage-bench.mjs catch-up [writes]     follower catch-up through a snapshot
//
// Everything runs in this process on 127.0.0.1 with data in a fresh temporary directory,
// which is deleted at the end. Results are printed as JSON lines.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { once } from 'node:events';
import { Node } from '../dist/main/index.js';
import { createKvMachine } from '../dist/main/machines/kv.js';

const [mode = 'soak', arg] = process.argv.slice(2);

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function diskBytes(dir) {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? diskBytes(full) : fs.statSync(full).size;
  }
  return total;
}

async function startSingle(dataDir, options) {
  const node = await Node.start({ id: 'n1', listen: `127.0.0.1:${await freePort()}` });
  const system = await node.startSystem({ name: 'default', dataDir, wal: options.wal, segment: options.segment });
  system.registerMachine('kv', createKvMachine({ snapshotInterval: options.snapshotInterval }));
  if (system.knownServerNames().length > 0) system.restartServer('g');
  else await system.startServer('g', 'kv', [{ id: 'n1', membership: 'voter' }]);
  await system.server('g').waitForLeaderOtherThan(null, 30_000);
  return { node, system };
}

/** Runs `clients` loops of puts until `stop()` returns true; returns the number of commands. */
async function load(node, group, clients, keys, value, stop) {
  let done = 0;
  const client = async (c) => {
    for (let i = c; !stop(); i += clients) {
      await node.processCommand({ name: group, node: node.id }, { op: 'put', key: `k${i % keys}`, value });
      done++;
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  return done;
}

async function soak(seconds) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-soak-'));
  const { node, system } = await startSingle(root, { wal: { maxSizeBytes: 64_000_000 }, segment: {}, snapshotInterval: 4096 });
  const value = 'x'.repeat(100);
  const startMs = Date.now();
  let commands = 0;
  const sampler = setInterval(() => {
    const status = system.server('g').status();
    console.log(JSON.stringify({
      seconds: Math.round((Date.now() - startMs) / 1000),
      commands,
      rssMB: Math.round(process.memoryUsage().rss / 1e6),
      heapMB: Math.round(process.memoryUsage().heapUsed / 1e6),
      diskMB: Math.round(diskBytes(root) / 1e6),
      memoryEntries: status.lastIndex - status.memoryFirstIndex + 1,
      walFiles: system.wal.counters.files - Number(system.segmentWriter.counters.get('walFilesDeleted')),
    }));
  }, 10_000);
  const run = load(node, 'g', 64, 10_000, value, () => Date.now() - startMs > seconds * 1000);
  const tally = setInterval(() => {
    commands = system.server('g').status().lastApplied;
  }, 1000);
  const total = await run;
  clearInterval(sampler);
  clearInterval(tally);
  console.log(JSON.stringify({ mode: 'soak', seconds, commands: total, commandsPerSecond: Math.round(total / seconds) }));
  await node.stop();
  fs.rmSync(root, { recursive: true, force: true });
}

async function restart(gigabytes) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-restart-'));
  const options = { wal: { syncMethod: 'none' }, segment: {}, snapshotInterval: 1_000_000_000 };
  const { node, system } = await startSingle(root, options);
  const value = 'v'.repeat(1000);
  const targetBytes = gigabytes * 1e9;
  const startMs = Date.now();
  let logBytes = 0;
  const commands = await load(node, 'g', 256, 100_000, value, () => {
    logBytes = system.wal.counters.bytes;
    return logBytes >= targetBytes;
  });
  await system.segmentWriter.whenIdle();
  console.log(JSON.stringify({ step: 'filled', commands, walBytesWritten: logBytes, diskMB: Math.round(diskBytes(root) / 1e6), seconds: (Date.now() - startMs) / 1000 }));
  await node.stop();

  const t0 = performance.now();
  const restarted = await startSingle(root, { ...options, wal: {} });
  const t1 = performance.now();
  const size = await restarted.node.consistentQuery({ name: 'g', node: 'n1' }, 'size', null, { timeoutMs: 600_000 });
  const t2 = performance.now();
  const status = restarted.system.server('g').status();
  console.log(JSON.stringify({
    mode: 'restart', diskMB: Math.round(diskBytes(root) / 1e6), entries: status.lastIndex,
    leaderReadyMs: Math.round(t1 - t0), firstReadMs: Math.round(t2 - t0), keys: size,
    memoryEntries: status.lastIndex - status.memoryFirstIndex + 1, rssMB: Math.round(process.memoryUsage().rss / 1e6),
  }));
  await restarted.node.stop();
  fs.rmSync(root, { recursive: true, force: true });
}

async function catchUp(writes) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-catchup-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const ids = ['n1', 'n2', 'n3'];
  const nodes = [];
  const systems = [];
  for (let i = 0; i < 3; i++) {
    const peers = Object.fromEntries(ids.filter((_, j) => j !== i).map((id) => [id, `127.0.0.1:${ports[ids.indexOf(id)]}`]));
    nodes.push(await Node.start({ id: ids[i], listen: `127.0.0.1:${ports[i]}`, peers }));
  }
  for (let i = 0; i < 3; i++) {
    const system = await nodes[i].startSystem({ name: 'default', dataDir: path.join(root, ids[i]) });
    system.registerMachine('kv', createKvMachine({ snapshotInterval: 4096 }));
    systems.push(system);
  }
  await systems[0].startCluster('g', { machine: 'kv' }, ids.map((id) => ({ name: 'g', node: id })));
  const leader = await systems[0].server('g').waitForLeaderOtherThan(null, 30_000);
  const follower = ids.find((id) => id !== leader);
  const followerSystem = systems[ids.indexOf(follower)];
  followerSystem.stopServer('g');
  const leaderNode = nodes[ids.indexOf(leader)];
  const value = 'x'.repeat(100);
  let started = 0;
  const writeStart = performance.now();
  await load(leaderNode, 'g', 64, writes, value, () => started++ >= writes);
  const writeMs = performance.now() - writeStart;
  const leaderStatus = systems[ids.indexOf(leader)].server('g').status();
  const t0 = performance.now();
  const server = followerSystem.restartServer('g');
  while (server.status().lastApplied < leaderStatus.commitIndex) await new Promise((resolve) => setTimeout(resolve, 5));
  const catchUpMs = performance.now() - t0;
  const snapshotDir = path.join(followerSystem.dir, 'servers', server.config.uid, 'snapshots');
  const snapshotBytes = fs.readdirSync(snapshotDir).reduce((sum, name) => sum + diskBytes(path.join(snapshotDir, name)), 0);
  const entriesAfterSnapshot = leaderStatus.commitIndex - server.status().snapshotIndex;
  console.log(JSON.stringify({
    mode: 'catch-up', writes, writeSeconds: Math.round(writeMs / 100) / 10, followerSnapshotIndex: server.status().snapshotIndex,
    snapshotBytes, entriesAfterSnapshot, catchUpMs: Math.round(catchUpMs),
    snapshotMBPerSecond: Math.round((snapshotBytes / 1e6) / (catchUpMs / 1000) * 10) / 10,
  }));
  for (const node of nodes) await node.stop();
  fs.rmSync(root, { recursive: true, force: true });
}

if (mode === 'soak') await soak(Number(arg ?? 600));
else if (mode === 'restart') await restart(Number(arg ?? 1));
else if (mode === 'catch-up') await catchUp(Number(arg ?? 200_000));
else {
  console.error(`unknown mode ${mode}; use soak, restart or catch-up`);
  process.exitCode = 1;
}
