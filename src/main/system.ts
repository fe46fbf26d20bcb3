// A system: one WAL worker, one data directory and the servers that share them. Most nodes
// run one system, `default`.
//
// Layout under `<dataDir>/<system>/`:
//   wal/                       the shared WAL files
//   servers/<uid>/config.json  server config, replaced atomically (temp file, fsync, rename)
//   servers/<uid>/meta         current term and voted-for

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InvalidConfigError, StorageError, type ServerRef } from './errors.js';
import type { Logger } from './logger.js';
import type { Machine, MachineRef } from './machine.js';
import type { LogEntry, Member, RaftMessage } from './raft/types.js';
import { RaftServer, type ServerConfig, type ServerHost } from './server.js';
import { MetaStore } from './storage/meta-store.js';
import { WalClient, type WalOptions } from './storage/wal-client.js';

export interface SystemOptions {
  name: string;
  dataDir: string;
  wal?: Omit<WalOptions, 'dir'>;
}

/** What a system needs from its node. */
export interface SystemHost {
  nodeId: string;
  logger: Logger;
  send(toNode: string, cluster: string, message: RaftMessage): void;
  setTicking(server: RaftServer, ticking: boolean): void;
  nowMs(): number;
  random(): number;
  startCluster(system: string, name: string, machine: MachineRef, servers: ServerRef[]): Promise<StartClusterResult>;
}

export interface StartClusterResult {
  started: ServerRef[];
  notStarted: { server: ServerRef; error: Error }[];
}

const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** Throws InvalidConfigError unless `name` is usable as a cluster, system or machine name. */
export function validateName(kind: string, name: string): void {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new InvalidConfigError(
      `invalid ${kind} name ${JSON.stringify(name)}: use 1 to 128 letters, digits, "_", "." or "-"`,
    );
  }
}

export class System {
  readonly name: string;
  readonly dir: string;
  readonly wal: WalClient;

  #host: SystemHost;
  #log: Logger;
  #machines = new Map<string, Machine>();
  #servers = new Map<string, RaftServer>();
  #serversByWriter = new Map<number, RaftServer>();
  /** Configs found on disk, by cluster name, including servers not running now. */
  #configs = new Map<string, ServerConfig>();
  /** Entries recovered from the WAL at start, by uid, handed to each server when it starts. */
  #recovered: Map<string, LogEntry[]>;
  #failure: StorageError | null = null;

  private constructor(options: SystemOptions, host: SystemHost, wal: WalClient, recovered: Map<string, LogEntry[]>) {
    this.name = options.name;
    this.dir = path.join(options.dataDir, options.name);
    this.wal = wal;
    this.#host = host;
    this.#log = host.logger.child({ system: options.name });
    this.#recovered = recovered;

    wal.onWritten((writerId, term, fromIndex, toIndex) => {
      this.#serversByWriter.get(writerId)?.written(term, fromIndex, toIndex);
    });
    wal.onFatal((error) => this.#fail(error));
  }

  static async start(options: SystemOptions, host: SystemHost): Promise<System> {
    validateName('system', options.name);
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new InvalidConfigError(`system ${options.name}: dataDir is missing; pass the directory rana may write to`);
    }
    const dir = path.join(options.dataDir, options.name);
    fs.mkdirSync(path.join(dir, 'servers'), { recursive: true });
    const { wal, recovered } = await WalClient.open({ ...options.wal, dir: path.join(dir, 'wal'), logger: host.logger.child({ system: options.name }) });
    const system = new System(options, host, wal, recovered);
    system.#loadConfigs();
    return system;
  }

  registerMachine<State, Command, Reply>(name: string, machine: Machine<State, Command, Reply>): void {
    validateName('machine', name);
    if (typeof machine?.init !== 'function' || typeof machine.apply !== 'function') {
      throw new InvalidConfigError(`machine ${name} must have init() and apply() functions`);
    }
    // Stored type-erased: the machine's own types hold inside apply and its queries.
    this.#machines.set(name, machine as unknown as Machine);
  }

  /** Starts a cluster with a member on each listed node; see Node.startCluster. */
  startCluster(name: string, machine: MachineRef, servers: ServerRef[]): Promise<StartClusterResult> {
    return this.#host.startCluster(this.name, name, machine, servers);
  }

  server(name: string): RaftServer | undefined {
    return this.#servers.get(name);
  }

  servers(): RaftServer[] {
    return [...this.#servers.values()];
  }

  /** Names of servers whose config is on disk, running or not. */
  knownServerNames(): string[] {
    return [...this.#configs.keys()];
  }

  /**
   * Starts the local member of a cluster. Idempotent: a server that runs with the same members
   * is left as it is, and one whose config is on disk is restarted from its data.
   */
  async startServer(name: string, machine: string, members: Member[], machineArgs?: unknown): Promise<RaftServer> {
    this.#checkHealthy();
    validateName('cluster', name);
    if (!this.#machines.has(machine)) {
      throw new InvalidConfigError(`machine ${machine} is not registered on system ${this.name}; call registerMachine first`);
    }
    if (!members.some((m) => m.id === this.#host.nodeId)) {
      throw new InvalidConfigError(`cluster ${name}: members ${members.map((m) => m.id).join(',')} do not include this node ${this.#host.nodeId}`);
    }
    const running = this.#servers.get(name);
    if (running) {
      if (!sameMembers(running.config.members, members)) {
        throw new InvalidConfigError(`cluster ${name} already runs on ${this.#host.nodeId} with other members; delete it first`);
      }
      return running;
    }
    const existing = this.#configs.get(name);
    if (existing) return this.restartServer(name);

    const config: ServerConfig = { name, uid: `${name}_${randomBytes(6).toString('hex')}`, machine, machineArgs, members };
    const serverDir = path.join(this.dir, 'servers', config.uid);
    fs.mkdirSync(serverDir, { recursive: true });
    writeFileAtomic(path.join(serverDir, 'config.json'), JSON.stringify(config, null, 2));
    fsyncDirectory(path.join(this.dir, 'servers'));
    this.#configs.set(name, config);
    return this.#launch(config);
  }

  /** Starts a stopped server, or one found on disk at start-up, from its durable state. */
  restartServer(name: string): RaftServer {
    this.#checkHealthy();
    const running = this.#servers.get(name);
    if (running) return running;
    const config = this.#configs.get(name);
    if (!config) {
      throw new InvalidConfigError(`no server ${name} on system ${this.name} of node ${this.#host.nodeId}; start it with startCluster`);
    }
    if (!this.#machines.has(config.machine)) {
      throw new InvalidConfigError(`server ${name} needs machine ${config.machine}; register it before restarting the server`);
    }
    return this.#launch(config);
  }

  stopServer(name: string): void {
    const server = this.#servers.get(name);
    if (!server) return;
    server.stop('stopServer');
    // A restart in this process must see the same log a process restart would replay from the
    // WAL: the entries written so far. Entries still in the ring are written later, and the
    // restarted server's next append at that index replaces them, as replay does.
    this.#recovered.set(server.config.uid, server.durableEntries());
    this.#servers.delete(name);
    this.#serversByWriter.delete(server.writerId);
  }

  async close(): Promise<void> {
    for (const name of [...this.#servers.keys()]) this.stopServer(name);
    try {
      await this.wal.close();
    } catch (error) {
      // After a fatal WAL error close() rejects with that same error, which was logged when it
      // happened; a clean shutdown of a failed system is not a second failure.
      if (error !== this.#failure) throw error;
    }
  }

  #launch(config: ServerConfig): RaftServer {
    const serverDir = path.join(this.dir, 'servers', config.uid);
    const meta = MetaStore.open(path.join(serverDir, 'meta'));
    const recovered = this.#recovered.get(config.uid) ?? [];
    // Handed over once; stopServer puts the server's durable entries back for a later restart.
    this.#recovered.delete(config.uid);
    const host: ServerHost = {
      nodeId: this.#host.nodeId,
      wal: this.wal,
      logger: this.#log,
      send: this.#host.send,
      setTicking: this.#host.setTicking,
      nowMs: this.#host.nowMs,
      random: this.#host.random,
    };
    const server = new RaftServer(config, this.#machines.get(config.machine)!, host, meta, recovered);
    this.#servers.set(config.name, server);
    this.#serversByWriter.set(server.writerId, server);
    return server;
  }

  #loadConfigs(): void {
    const serversDir = path.join(this.dir, 'servers');
    for (const uid of fs.readdirSync(serversDir)) {
      const file = path.join(serversDir, uid, 'config.json');
      if (!fs.existsSync(file)) continue;
      let config: ServerConfig;
      try {
        config = JSON.parse(fs.readFileSync(file, 'utf8')) as ServerConfig;
      } catch (error) {
        throw new StorageError(`server config ${file} is not valid JSON; restore it or delete the server directory`, { cause: error });
      }
      if (config.uid !== uid) {
        throw new StorageError(`server config ${file} names uid ${config.uid}, but its directory is ${uid}`);
      }
      this.#configs.set(config.name, config);
    }
  }

  #checkHealthy(): void {
    if (this.#failure) throw this.#failure;
  }

  #fail(error: StorageError): void {
    if (this.#failure) return;
    this.#failure = error;
    // A failed fsync leaves the page cache in an unknown state, so the system stops for good
    // rather than retrying; the operator restarts the node, which replays the WAL.
    this.#log.fatal({ err: error }, 'WAL failed; stopping every server of this system');
    for (const server of this.#servers.values()) server.stop(`WAL failure: ${error.message}`);
    this.#servers.clear();
    this.#serversByWriter.clear();
  }

  get failure(): StorageError | null {
    return this.#failure;
  }

  serverRef(name: string): ServerRef {
    return { name, node: this.#host.nodeId };
  }
}

function sameMembers(a: Member[], b: Member[]): boolean {
  if (a.length !== b.length) return false;
  const ids = new Set(a.map((m) => `${m.id}/${m.membership}`));
  return b.every((m) => ids.has(`${m.id}/${m.membership}`));
}

/** Writes a file so that a crash leaves either the old or the new contents, never a mix. */
export function writeFileAtomic(file: string, contents: string): void {
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeSync(fd, contents);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  fsyncDirectory(path.dirname(file));
}

export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
