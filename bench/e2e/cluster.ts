// The controller's view of one benchmark cluster: N rana nodes and, optionally, a load
// generator, each a child process on 127.0.0.1 driven over IPC.

import { fork } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pickFreePorts as freePorts } from '../../dist/main/cli/demo/ports.js';
import { IpcClient } from './ipc.js';
import type { FormArgs, LeaderCounts, NodeStartArgs } from './node-process.js';
import type { LoadStartArgs } from './load-process.js';
import type { ProcessSample } from './sample.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The load generator's node id. It sorts before `n1`, so the load generator dials every node. */
export const LOAD_NODE_ID = 'load';

export interface ClusterOptions {
  nodes: number;
  withLoad: boolean;
  /** Fresh directory for data and logs; removed by the caller. */
  root: string;
  syncMethod: 'datasync' | 'sync' | 'none';
  /** When set, every process runs with `--cpu-prof` and writes its profile here on a clean stop. */
  cpuProfDir: string | null;
}

export interface ClusterSample {
  nodes: Record<string, ProcessSample>;
  load: ProcessSample | null;
}

export class BenchCluster {
  readonly nodeIds: string[];
  readonly nodes = new Map<string, IpcClient>();
  load: IpcClient | null = null;
  readonly #options: ClusterOptions;
  readonly #killed = new Set<string>();

  private constructor(options: ClusterOptions) {
    this.#options = options;
    this.nodeIds = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
  }

  static async start(options: ClusterOptions): Promise<BenchCluster> {
    const cluster = new BenchCluster(options);
    try {
      await cluster.#start();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  async #start(): Promise<void> {
    const { root, withLoad } = this.#options;
    const ports = await freePorts(this.nodeIds.length + 1);
    const addresses: Record<string, string> = {};
    this.nodeIds.forEach((id, i) => (addresses[id] = `127.0.0.1:${ports[i]}`));
    const loadAddress = `127.0.0.1:${ports[this.nodeIds.length]}`;

    for (const id of this.nodeIds) {
      const peers: Record<string, string> = {};
      for (const other of this.nodeIds) if (other !== id) peers[other] = addresses[other];
      if (withLoad) peers[LOAD_NODE_ID] = loadAddress;
      const client = this.#spawn(id, 'node-process.js');
      this.nodes.set(id, client);
      const args: NodeStartArgs = { id, listen: addresses[id], peers, dataDir: path.join(root, id), syncMethod: this.#options.syncMethod };
      await client.call('start', args);
    }
    await Promise.all(this.nodeIds.map((id) => this.nodes.get(id)!.call('waitForPeers', this.nodeIds.filter((other) => other !== id))));

    if (withLoad) {
      this.load = this.#spawn(LOAD_NODE_ID, 'load-process.js');
      const args: LoadStartArgs = { id: LOAD_NODE_ID, listen: loadAddress, peers: addresses };
      await this.load.call('start', args);
      await this.load.call('waitForPeers', this.nodeIds);
    }
  }

  #spawn(id: string, script: string): IpcClient {
    const log = fs.openSync(path.join(this.#options.root, `${id}.log`), 'a');
    const execArgv = this.#options.cpuProfDir === null
      ? []
      : ['--cpu-prof', `--cpu-prof-dir=${this.#options.cpuProfDir}`, `--cpu-prof-name=${id}.cpuprofile`];
    const child = fork(path.join(here, script), [], { execArgv, stdio: ['ignore', log, log, 'ipc'] });
    fs.closeSync(log);
    return new IpcClient(id, child);
  }

  /** Forms `groups` from the first node, `concurrency` startCluster calls at a time; returns the repeated calls. */
  async form(groups: string[], concurrency: number, timeoutMs: number): Promise<number> {
    const args: FormArgs = { groups, members: this.nodeIds, concurrency };
    const { retries } = await this.nodes.get(this.nodeIds[0])!.call<{ retries: number }>('form', args, timeoutMs);
    return retries;
  }

  async leaderCounts(): Promise<Record<string, LeaderCounts>> {
    const counts: Record<string, LeaderCounts> = {};
    for (const id of this.liveNodeIds()) counts[id] = await this.nodes.get(id)!.call<LeaderCounts>('leaders');
    return counts;
  }

  /**
   * Waits until every live node's members all know a leader and the leaders add up to
   * `groups`, polling every 200 ms. Throws after `timeoutMs`.
   */
  async waitForLeaders(groups: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let last: Record<string, LeaderCounts> = {};
    while (performance.now() < deadline) {
      last = await this.leaderCounts();
      const values = Object.values(last);
      const leading = values.reduce((sum, c) => sum + c.leading, 0);
      if (leading === groups && values.every((c) => c.withLeader === c.total && c.total === groups)) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`groups still without a leader after ${timeoutMs} ms: ${JSON.stringify(last)}`);
  }

  liveNodeIds(): string[] {
    return this.nodeIds.filter((id) => !this.#killed.has(id));
  }

  async sample(): Promise<ClusterSample> {
    const [nodeSamples, load] = await Promise.all([
      Promise.all(this.liveNodeIds().map(async (id) => [id, await this.nodes.get(id)!.call<ProcessSample>('sample')] as const)),
      this.load === null ? Promise.resolve(null) : this.load.call<ProcessSample>('sample'),
    ]);
    return { nodes: Object.fromEntries(nodeSamples), load };
  }

  /** Kills a node with SIGKILL and resolves once it has exited. */
  async kill(id: string): Promise<void> {
    const child = this.nodes.get(id)!.child;
    this.#killed.add(id);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Stops every process: a clean stop first (so CPU profiles are written), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const clients = [...(this.load === null ? [] : [this.load]), ...this.nodes.values()];
    await Promise.all(
      clients.map(async (client) => {
        const child = client.child;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        client.call('stop', null, 10_000).catch(() => child.kill('SIGKILL'));
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}
