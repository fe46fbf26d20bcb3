import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import path from 'node:path';

/** One `rana kv` node of the local cluster: its addresses, arguments and current process. */
export interface KvNode {
  readonly id: string;
  /** Raft transport address, `host:port`. */
  readonly listen: string;
  /** HTTP API address, `host:port`. */
  readonly http: string;
  readonly dataDir: string;
  /** stdout and stderr of every incarnation of the node, appended. */
  readonly logFile: string;
  readonly argv: readonly string[];
  process: ChildProcess | null;
  /** Promise that resolves when the current process has exited, already resolved when no process runs. */
  exited: Promise<void>;
  /** Set when the current process exited without the demo stopping or killing it. */
  unexpectedExit: string | null;
  stopping: boolean;
}

export interface LocalClusterConfig {
  /** Command that runs one node, before the `kv` options: `[node, rana.js, 'kv']`. */
  kvCommand: readonly string[];
  nodeIds: readonly string[];
  /** Two ports per node: Raft transport, then HTTP. */
  ports: readonly number[];
  groups: number;
  dataDir: string;
}

/** Size of a node log's tail shown when the node fails. */
const logTailBytesMax = 8192;

/** Three (or more) `rana kv` child processes on 127.0.0.1, with their logs in `dataDir`. */
export class LocalCluster {
  readonly nodes: KvNode[];
  readonly #kvCommand: readonly string[];
  readonly #onEvent: (line: string) => void;

  /** `onEvent` receives one line per start, exit and kill, each with the node's pid. */
  constructor(config: LocalClusterConfig, onEvent: (line: string) => void) {
    this.#kvCommand = config.kvCommand;
    this.#onEvent = onEvent;
    const addresses = config.nodeIds.map((id, i) => ({
      id,
      listen: `127.0.0.1:${config.ports[2 * i]}`,
      http: `127.0.0.1:${config.ports[2 * i + 1]}`,
    }));
    this.nodes = addresses.map(({ id, listen, http }) => {
      const peers = addresses.filter((peer) => peer.id !== id).map((peer) => `${peer.id}=${peer.listen}`).join(',');
      const dataDir = path.join(config.dataDir, id);
      const argv = ['--id', id, '--listen', listen, '--http', http, '--peers', peers, '--data', dataDir, '--groups', String(config.groups)];
      return {
        id, listen, http, dataDir, argv,
        logFile: path.join(config.dataDir, `${id}.log`),
        process: null, exited: Promise.resolve(), unexpectedExit: null, stopping: false,
      };
    });
  }

  node(id: string): KvNode {
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) {
      throw new Error(`no node ${id} in the demo cluster; the nodes are ${this.nodes.map((n) => n.id).join(', ')}`);
    }
    return node;
  }

  isAlive(node: KvNode): boolean {
    return node.process !== null;
  }

  aliveCount(): number {
    return this.nodes.filter((node) => this.isAlive(node)).length;
  }

  startAll(): void {
    for (const node of this.nodes) {
      this.start(node);
    }
  }

  /** Starts the node's process with its fixed arguments, so a restart reuses its data directory. */
  start(node: KvNode): void {
    if (node.process !== null) {
      throw new Error(`node ${node.id} is already running as pid ${node.process.pid}; stop it before starting it again`);
    }
    const [command, ...prefix] = this.#kvCommand;
    const logFd = openSync(node.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, [...prefix, ...node.argv], { stdio: ['ignore', logFd, logFd] });
    } finally {
      // The child has its own copy of the descriptor.
      closeSync(logFd);
    }
    node.process = child;
    node.stopping = false;
    node.unexpectedExit = null;
    node.exited = new Promise<void>((resolve) => {
      const onGone = (description: string): void => {
        if (node.process !== child) {
          return;
        }
        node.process = null;
        if (!node.stopping) {
          node.unexpectedExit = description;
          this.#onEvent(`node ${node.id} (pid ${child.pid ?? '?'}) exited unexpectedly: ${description}`);
        }
        resolve();
      };
      child.once('exit', (code, signal) => onGone(signal !== null ? `killed by ${signal}` : `exit code ${code}`));
      child.once('error', (error) => onGone(`failed to start: ${error.message}`));
    });
    this.#onEvent(`started node ${node.id} pid ${child.pid ?? '?'} (http ${node.http}, log ${node.logFile})`);
  }

  /** Sends SIGKILL to the node and waits for it to exit. */
  async kill(node: KvNode): Promise<void> {
    const child = node.process;
    if (child === null) {
      return;
    }
    node.stopping = true;
    child.kill('SIGKILL');
    await node.exited;
    this.#onEvent(`killed node ${node.id} pid ${child.pid ?? '?'} with SIGKILL`);
  }

  /** Sends SIGTERM to every node, waits up to `timeoutMs` for them to exit, then sends SIGKILL. */
  async stopAll(timeoutMs: number): Promise<void> {
    const running = this.nodes.filter((node) => node.process !== null);
    for (const node of running) {
      node.stopping = true;
      node.process?.kill('SIGTERM');
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
    const result = await Promise.race([Promise.all(running.map((node) => node.exited)), deadline]);
    clearTimeout(timer);
    if (result === 'timeout') {
      for (const node of running) {
        if (node.process !== null) {
          this.#onEvent(`node ${node.id} pid ${node.process.pid ?? '?'} did not exit within ${timeoutMs} ms of SIGTERM; sending SIGKILL`);
          node.process.kill('SIGKILL');
        }
      }
      await Promise.all(running.map((node) => node.exited));
    }
  }

  /** Sends SIGKILL to every running node without waiting, so it is safe inside a process 'exit' handler. */
  killAllSync(): void {
    for (const node of this.nodes) {
      if (node.process !== null) {
        node.stopping = true;
        node.process.kill('SIGKILL');
      }
    }
  }

  /** Returns the last lines of the node's log file, at most `logTailBytesMax` bytes. */
  logTail(node: KvNode): string {
    let fd: number;
    try {
      fd = openSync(node.logFile, 'r');
    } catch (error) {
      return `(no log at ${node.logFile}: ${(error as Error).message})`;
    }
    try {
      const size = fstatSync(fd).size;
      const length = Math.min(size, logTailBytesMax);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, size - length);
      const text = buffer.toString('utf8');
      // Drop a partial first line when the tail starts mid-file.
      return length < size ? text.slice(text.indexOf('\n') + 1) : text;
    } finally {
      closeSync(fd);
    }
  }
}
