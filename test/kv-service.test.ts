// `rana kv` as one real process: input checks, start-up errors and damaged data directories.

import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { cliFilePath } from '../src/shared/worker-path.js';
import { freePorts } from './support/kv-cluster.js';

interface SoloNode {
  http: string;
  stop(): Promise<void>;
}

const dirs: string[] = [];
const running: SoloNode[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-kv-'));
  dirs.push(dir);
  return dir;
}

async function kvArgs(dataDir: string, groups: number): Promise<{ args: string[]; http: string }> {
  const [raftPort, httpPort] = await freePorts(2);
  const http = `127.0.0.1:${httpPort}`;
  return {
    http,
    args: [cliFilePath(), 'kv', '--id', 'n1', '--listen', `127.0.0.1:${raftPort}`, '--http', http, '--data', dataDir, '--groups', String(groups)],
  };
}

/** Starts a single-node KV service and waits until every group has a leader. */
async function startSolo(dataDir: string, groups: number): Promise<SoloNode> {
  const { args, http } = await kvArgs(dataDir, groups);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const node: SoloNode = {
    http,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
  running.push(node);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const groupsSeen = await status(http).catch(() => null);
    // Ready when every group either has a leader or is reported as failed.
    if (groupsSeen && groupsSeen.filter((g) => g.leader !== null || g.role === 'failed').length >= groups) return node;
    if (child.exitCode !== null) throw new Error(`rana kv exited with ${child.exitCode}: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`rana kv did not elect leaders within 20 s: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function status(http: string): Promise<{ name: string; role: string; leader: string | null; error?: string }[]> {
  const response = await fetch(`http://${http}/status`);
  return ((await response.json()) as { groups: { name: string; role: string; leader: string | null; error?: string }[] }).groups;
}

function put(http: string, key: string, body: string): Promise<Response> {
  return fetch(`http://${http}/kv/${key}`, { method: 'PUT', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
}

function serverDirs(dataDir: string): string[] {
  return fs.readdirSync(path.join(dataDir, 'default', 'servers')).map((uid) => path.join(dataDir, 'default', 'servers', uid));
}

describe('rana kv service', () => {
  it('rejects ambiguous compare-and-set input', async () => {
    const node = await startSolo(tempDir(), 1);
    expect((await put(node.http, 'k', 'value=1&expectedMissing=true')).status).toBe(400);
    expect((await put(node.http, 'k', 'value=1&value=2')).status).toBe(400);
    expect((await put(node.http, 'k', 'value=1&expected=a&expectedMissing=1')).status).toBe(400);
    expect((await put(node.http, 'k', 'value=1&colour=red')).status).toBe(400);
    expect((await put(node.http, 'k', 'value=1&expectedMissing=1')).status).toBe(204);
    const second = await put(node.http, 'k', 'value=2&expectedMissing=1');
    expect(second.status).toBe(409);
    expect(await second.text()).toBe('1');
  });

  it('keeps dot segments in keys', async () => {
    const node = await startSolo(tempDir(), 1);
    // fetch() would resolve the dot segments before sending, so send the raw path.
    const [host, port] = node.http.split(':');
    const request = http.request({ host, port: Number(port), method: 'PUT', path: '/kv/a/../b', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    request.end('value=x');
    const [response] = (await once(request, 'response')) as [http.IncomingMessage];
    response.resume();
    expect(response.statusCode).toBe(204);
    expect((await fetch(`http://${node.http}/kv/b`)).status).toBe(404);
    expect(await (await fetch(`http://${node.http}/kv/a%2F..%2Fb`)).text()).toBe('x');
  });

  it('refuses another --groups for its data', async () => {
    const dataDir = tempDir();
    const first = await startSolo(dataDir, 2);
    await first.stop();

    const { args } = await kvArgs(dataDir, 3);
    const result = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 20_000 });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/formed with --groups 2/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('forms groups missing after a cut-short formation', async () => {
    const dataDir = tempDir();
    const first = await startSolo(dataDir, 3);
    await first.stop();
    // A crash during the first formation leaves fewer server directories than groups.
    const removed = serverDirs(dataDir).find((dir) => path.basename(dir).startsWith('kv_2_'))!;
    fs.rmSync(removed, { recursive: true });

    const again = await startSolo(dataDir, 3);
    const groups = await status(again.http);
    expect(groups.map((g) => g.name).sort()).toEqual(['kv_0', 'kv_1', 'kv_2']);
    expect(groups.every((g) => g.leader === 'n1')).toBe(true);
  });

  it('reports a group with a damaged directory as failed', async () => {
    const dataDir = tempDir();
    const first = await startSolo(dataDir, 3);
    for (let i = 0; i < 30; i++) expect((await put(first.http, `k${i}`, `value=${i}`)).status).toBe(204);
    await first.stop();
    const [metaLost, configLost] = serverDirs(dataDir).sort();
    fs.rmSync(path.join(metaLost, 'meta'));
    fs.rmSync(path.join(configLost, 'config.json'));

    const again = await startSolo(dataDir, 3);
    const groups = await status(again.http);
    const failed = groups.filter((g) => g.role === 'failed');
    expect(failed).toHaveLength(2);
    expect(failed.find((g) => g.error?.includes('meta file'))?.error).toContain(metaLost);
    expect(failed.find((g) => g.error?.includes('no config.json'))?.error).toContain(configLost);
    expect(groups.filter((g) => g.leader === 'n1')).toHaveLength(1);
    // Damage does not create a fresh meta file that would let the member vote again.
    expect(fs.existsSync(path.join(metaLost, 'meta'))).toBe(false);
  });

  it('reports an HTTP port in use in one line', async () => {
    const blocker = net.createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as net.AddressInfo).port;
    const { args } = await kvArgs(tempDir(), 1);
    args[args.indexOf('--http') + 1] = `127.0.0.1:${port}`;
    const result = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 20_000 });
    blocker.close();
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(`rana kv: cannot listen for HTTP on 127.0.0.1:${port}: EADDRINUSE; pick a free port with --http`);
  });
});
