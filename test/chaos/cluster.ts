// Real `rana kv` nodes as child processes, with every node-to-node link behind a LinkProxy so
// links can be cut or delayed per direction, plus SIGKILL and restart, SIGSTOP and SIGCONT.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliFilePath } from '../../src/shared/worker-path.js';
import { freePorts } from '../support/kv-cluster.js';
import { LinkProxy, type Direction } from './proxy.js';

export interface ChaosNode {
  id: string;
  raftPort: number;
  httpPort: number;
  dataDir: string;
  logFile: string;
  process: ChildProcess | null;
  stopped: boolean;
  /** Extra environment for the next start, for storage fault points. */
  env: Record<string, string>;
}

export interface ChaosClusterOptions {
  nodes: number;
  groups: number;
  /** Command and read timeout of each node (`--timeout-ms`). */
  timeoutMs: number;
}

export class ChaosCluster {
  readonly nodes: ChaosNode[];
  readonly root: string;
  readonly options: ChaosClusterOptions;
  /** Proxy of each pair, keyed `dialer>acceptor` (the dialer's id sorts first). */
  readonly #proxies = new Map<string, LinkProxy>();

  private constructor(root: string, nodes: ChaosNode[], options: ChaosClusterOptions) {
    this.root = root;
    this.nodes = nodes;
    this.options = options;
  }

  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-chaos-'));
    const ports = await freePorts(options.nodes * 2);
    const nodes: ChaosNode[] = Array.from({ length: options.nodes }, (_, i) => ({
      id: `n${i + 1}`,
      raftPort: ports[i * 2],
      httpPort: ports[i * 2 + 1],
      dataDir: path.join(root, `n${i + 1}`),
      logFile: path.join(root, `n${i + 1}.log`),
      process: null,
      stopped: false,
      env: {},
    }));
    const cluster = new ChaosCluster(root, nodes, options);
    for (const a of nodes) {
      for (const b of nodes) {
        if (a.id < b.id) cluster.#proxies.set(`${a.id}>${b.id}`, await LinkProxy.start(b.raftPort));
      }
    }
    for (const node of nodes) cluster.startNode(node.id);
    return cluster;
  }

  node(id: string): ChaosNode {
    const node = this.nodes.find((n) => n.id === id);
    if (node === undefined) throw new Error(`no node ${id} in this cluster`);
    return node;
  }

  running(): ChaosNode[] {
    return this.nodes.filter((n) => n.process !== null && !n.stopped);
  }

  startNode(id: string): void {
    const node = this.node(id);
    if (node.process !== null) throw new Error(`node ${id} is already running`);
    // Every peer address is the pair's proxy; only the dialer's side is ever used.
    const peers = this.nodes
      .filter((n) => n.id !== id)
      .map((n) => `${n.id}=127.0.0.1:${this.#proxy(id, n.id).port}`)
      .join(',');
    const log = fs.openSync(node.logFile, 'a');
    const child = spawn(process.execPath, [
      cliFilePath(), 'kv', '--id', id,
      '--listen', `127.0.0.1:${node.raftPort}`, '--http', `127.0.0.1:${node.httpPort}`,
      '--peers', peers, '--data', node.dataDir, '--groups', String(this.options.groups),
      '--timeout-ms', String(this.options.timeoutMs), '--log-level', 'warn',
    ], { stdio: ['ignore', log, log], env: { ...process.env, ...node.env } });
    fs.closeSync(log);
    node.process = child;
    node.stopped = false;
    child.once('exit', () => {
      if (node.process === child) {
        node.process = null;
        node.stopped = false;
      }
    });
  }

  /** Sends SIGKILL and waits for the exit. */
  async kill(id: string): Promise<void> {
    const node = this.node(id);
    const child = node.process;
    if (child === null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  pause(id: string): void {
    const node = this.node(id);
    if (node.process === null || node.stopped) return;
    node.process.kill('SIGSTOP');
    node.stopped = true;
  }

  resume(id: string): void {
    const node = this.node(id);
    if (node.process === null || !node.stopped) return;
    node.process.kill('SIGCONT');
    node.stopped = false;
  }

  /** Cuts bytes from `from` to `to` (one direction). */
  cutOneWay(from: string, to: string): void {
    this.#proxy(from, to).setCut(this.#direction(from, to), true);
  }

  cut(a: string, b: string): void {
    this.cutOneWay(a, b);
    this.cutOneWay(b, a);
  }

  /** Delays bytes from `from` to `to` by `delayMs`. */
  delay(from: string, to: string, delayMs: number): void {
    this.#proxy(from, to).setDelay(this.#direction(from, to), delayMs);
  }

  heal(): void {
    for (const proxy of this.#proxies.values()) proxy.heal();
  }

  /** Polls /status of every running node until each reports a leader for every group, all agreeing. */
  async waitForLeaders(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.#leadersAgree()) return;
      if (Date.now() > deadline) throw new Error(`no agreed leader in every group within ${timeoutMs} ms\n${this.logTails()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async #leadersAgree(): Promise<boolean> {
    const leaders = new Map<string, string>();
    for (const node of this.running()) {
      const status = await this.status(node.id);
      if (status === null || status.length !== this.options.groups) return false;
      for (const group of status) {
        if (group.leader === null) return false;
        const seen = leaders.get(group.name);
        if (seen !== undefined && seen !== group.leader) return false;
        leaders.set(group.name, group.leader);
      }
    }
    return [...leaders.values()].every((id) => this.running().some((n) => n.id === id));
  }

  async status(id: string): Promise<{ name: string; leader: string | null; term: number }[] | null> {
    try {
      const response = await fetch(`http://127.0.0.1:${this.node(id).httpPort}/status`, { signal: AbortSignal.timeout(2_000) });
      if (!response.ok) return null;
      return ((await response.json()) as { groups: { name: string; leader: string | null; term: number }[] }).groups;
    } catch {
      return null;
    }
  }

  logTails(lines = 20): string {
    return this.nodes
      .map((n) => {
        const text = fs.existsSync(n.logFile) ? fs.readFileSync(n.logFile, 'utf8') : '';
        return `--- ${n.id} log tail ---\n${text.split('\n').slice(-lines).join('\n')}`;
      })
      .join('\n');
  }

  async stop(keepData = false): Promise<void> {
    for (const node of this.nodes) this.resume(node.id);
    await Promise.all(this.nodes.map((n) => this.kill(n.id)));
    await Promise.all([...this.#proxies.values()].map((p) => p.close()));
    if (!keepData) fs.rmSync(this.root, { recursive: true, force: true });
  }

  #proxy(a: string, b: string): LinkProxy {
    const key = a < b ? `${a}>${b}` : `${b}>${a}`;
    const proxy = this.#proxies.get(key);
    if (proxy === undefined) throw new Error(`no proxy for link ${key}`);
    return proxy;
  }

  #direction(from: string, to: string): Direction {
    return from < to ? 'forward' : 'backward';
  }
}
