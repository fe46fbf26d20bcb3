// Runs real `rana kv` nodes as child processes on loopback ports for multi-process tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pickFreePorts as freePorts } from '../../src/main/cli/demo/ports.js';
import { cliFilePath } from '../../src/shared/worker-path.js';

export { freePorts };

export interface KvNodeInfo {
  id: string;
  raftPort: number;
  httpPort: number;
  dataDir: string;
  logFile: string;
  process: ChildProcess | null;
}

export interface GroupStatus {
  name: string;
  role: string;
  term: number;
  commitIndex: number;
  lastApplied: number;
  leader: string | null;
}

export class KvCluster {
  readonly nodes: KvNodeInfo[];
  readonly groups: number;
  readonly root: string;
  readonly extraArgs: string[];

  private constructor(root: string, nodes: KvNodeInfo[], groups: number, extraArgs: string[]) {
    this.root = root;
    this.nodes = nodes;
    this.groups = groups;
    this.extraArgs = extraArgs;
  }

  static async start(options: { nodes?: number; groups?: number; extraArgs?: string[] } = {}): Promise<KvCluster> {
    const count = options.nodes ?? 3;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-cluster-'));
    const ports = await freePorts(count * 2);
    const nodes: KvNodeInfo[] = Array.from({ length: count }, (_, i) => ({
      id: `n${i + 1}`,
      raftPort: ports[i * 2],
      httpPort: ports[i * 2 + 1],
      dataDir: path.join(root, `n${i + 1}`),
      logFile: path.join(root, `n${i + 1}.log`),
      process: null,
    }));
    const cluster = new KvCluster(root, nodes, options.groups ?? 4, options.extraArgs ?? []);
    for (const node of nodes) cluster.startNode(node.id);
    try {
      await cluster.waitForLeaders();
    } catch (error) {
      // The caller never receives the cluster, so it could not stop these processes.
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  node(id: string): KvNodeInfo {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) throw new Error(`no node ${id} in this cluster`);
    return node;
  }

  startNode(id: string): void {
    const node = this.node(id);
    if (node.process) throw new Error(`node ${id} is already running`);
    const peers = this.nodes.filter((n) => n.id !== id).map((n) => `${n.id}=127.0.0.1:${n.raftPort}`).join(',');
    const log = fs.openSync(node.logFile, 'a');
    node.process = spawn(process.execPath, [
      cliFilePath(), 'kv', '--id', id,
      '--listen', `127.0.0.1:${node.raftPort}`, '--http', `127.0.0.1:${node.httpPort}`,
      '--peers', peers, '--data', node.dataDir, '--groups', String(this.groups), ...this.extraArgs,
    ], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    node.process.once('exit', () => {
      node.process = null;
    });
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.node(id).process;
    if (!child) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  async status(id: string): Promise<GroupStatus[] | null> {
    try {
      const response = await fetch(`http://127.0.0.1:${this.node(id).httpPort}/status`);
      if (!response.ok) return null;
      return ((await response.json()) as { groups: GroupStatus[] }).groups;
    } catch {
      return null;
    }
  }

  /** Polls until `check` returns a value other than undefined, or throws after `timeoutMs`. */
  async waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.logTails()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Waits until every running node reports a leader for every group, all agreeing. */
  async waitForLeaders(timeoutMs = 30_000): Promise<Map<string, string>> {
    return this.waitFor('a leader in every group', async () => {
      const leaders = new Map<string, string>();
      for (const node of this.nodes) {
        if (!node.process) continue;
        const groups = await this.status(node.id);
        if (!groups || groups.length !== this.groups) return undefined;
        for (const group of groups) {
          if (group.leader === null) return undefined;
          const seen = leaders.get(group.name);
          if (seen !== undefined && seen !== group.leader) return undefined;
          leaders.set(group.name, group.leader);
        }
      }
      for (const leader of leaders.values()) {
        if (!this.node(leader).process) return undefined;
      }
      return leaders;
    }, timeoutMs);
  }

  /** Returns the node that leads the most groups. */
  async busiestLeader(): Promise<string> {
    const leaders = await this.waitForLeaders();
    const counts = new Map<string, number>();
    for (const leader of leaders.values()) counts.set(leader, (counts.get(leader) ?? 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
  }

  async put(id: string, key: string, value: string, expected?: string): Promise<Response> {
    const body = new URLSearchParams({ value });
    if (expected !== undefined) body.set('expected', expected);
    return fetch(`http://127.0.0.1:${this.node(id).httpPort}/kv/${encodeURIComponent(key)}`, { method: 'PUT', body });
  }

  async get(id: string, key: string): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.node(id).httpPort}/kv/${encodeURIComponent(key)}`);
  }

  logTails(): string {
    return this.nodes
      .map((n) => {
        const text = fs.existsSync(n.logFile) ? fs.readFileSync(n.logFile, 'utf8') : '';
        return `--- ${n.id} log tail ---\n${text.split('\n').slice(-15).join('\n')}`;
      })
      .join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.id, 'SIGKILL')));
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
