// A system: one WAL worker, one data directory and the servers that share them. Most nodes
// run one system, `default`.
//
// Layout under `<dataDir>/<system>/`:
//   wal/                       the shared WAL files
//   servers/<uid>/config.json  server config, replaced atomically (temp file, fsync, rename)
//   servers/<uid>/meta         current term and voted-for
//   servers/<uid>/segments/    entries moved out of closed WAL files by the segment writer
//   servers/<uid>/snapshots/   the newest snapshots, one directory each

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InvalidConfigError, StorageError, type ServerRef } from './errors.js';
import type { Logger } from './logger.js';
import type { Machine, MachineRef } from './machine.js';
import type { LogEntry, LogStorage, Member, RaftMessage, SnapshotMeta } from './raft/types.js';
import { RaftServer, type ServerConfig, type ServerHost, type ServerRecovery } from './server.js';
import { MetaStore } from './storage/meta-store.js';
import { SegmentFileCache, SegmentLog } from './storage/segment-store.js';
import { SegmentWriterClient, type FlushedRange, type SegmentOptions } from './storage/segment-writer-client.js';
import { loadNewestSnapshot, SnapshotPool } from './storage/snapshot-store.js';
import { WalClient, type WalOptions } from './storage/wal-client.js';

export interface SystemOptions {
  name: string;
  dataDir: string;
  wal?: Omit<WalOptions, 'dir'>;
  segment?: SegmentOptions;
  /** Bytes per chunk when a leader streams a snapshot to a follower. Default 1 MiB. */
  snapshotChunkBytes?: number;
  /** A follower drops a snapshot transfer that made no progress for this long. Default 30,000 ms. */
  receiveSnapshotTimeoutMs?: number;
}

const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
const DEFAULT_RECEIVE_SNAPSHOT_TIMEOUT_MS = 30_000;

/** A server's log as recovered from the WAL: entries in memory, and the snapshot its log restarts after, if any. */
interface RecoveredLog {
  entries: LogEntry[];
  reset: SnapshotMeta | null;
}

/** Services a system needs from its node. */
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
  readonly segmentWriter: SegmentWriterClient;

  #host: SystemHost;
  #options: SystemOptions;
  #segmentCache = new SegmentFileCache();
  #snapshotPool = new SnapshotPool();
  #log: Logger;
  #machines = new Map<string, Machine>();
  #servers = new Map<string, RaftServer>();
  #serversByWriter = new Map<number, RaftServer>();
  #brokenServers = new Map<string, StorageError>();
  /** Configs found on disk, by cluster name, including servers not running now. */
  #configs = new Map<string, ServerConfig>();
  /** Logs recovered from the WAL at start, by uid, handed to each server when it starts. */
  #recovered: Map<string, RecoveredLog>;
  #failure: StorageError | null = null;

  private constructor(options: SystemOptions, host: SystemHost, wal: WalClient, segmentWriter: SegmentWriterClient, recovered: Map<string, RecoveredLog>) {
    this.name = options.name;
    this.dir = path.join(options.dataDir, options.name);
    this.wal = wal;
    this.segmentWriter = segmentWriter;
    this.#host = host;
    this.#options = options;
    this.#log = host.logger.child({ system: options.name });
    this.#recovered = recovered;

    wal.onWritten((writerId, term, fromIndex, toIndex) => {
      this.#serversByWriter.get(writerId)?.written(term, fromIndex, toIndex);
    });
    wal.onFatal((error) => this.#fail(error));
    wal.onRolled((filePath) => segmentWriter.flush(filePath));
    wal.onRestarted(() => {
      for (const server of this.#servers.values()) server.resendUnwritten();
    });
    wal.onResend((writerId, fromIndex) => this.#serversByWriter.get(writerId)?.resendFrom(fromIndex));
    segmentWriter.onFlushed((_walPath, ranges) => this.#segmentsFlushed(ranges));
    segmentWriter.onFatal((error) => this.#fail(error));
  }

  static async start(options: SystemOptions, host: SystemHost): Promise<System> {
    validateName('system', options.name);
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new InvalidConfigError(`system ${options.name}: dataDir is missing; pass the directory rana may write to`);
    }
    const dir = path.join(options.dataDir, options.name);
    fs.mkdirSync(path.join(dir, 'servers'), { recursive: true });
    positiveOption('snapshotChunkBytes', options.snapshotChunkBytes);
    positiveOption('receiveSnapshotTimeoutMs', options.receiveSnapshotTimeoutMs);
    const segmentWriter = SegmentWriterClient.start(path.join(dir, 'servers'), options.wal?.syncMethod ?? 'datasync', options.segment);
    let opened: Awaited<ReturnType<typeof WalClient.open>>;
    try {
      opened = await WalClient.open({ ...options.wal, dir: path.join(dir, 'wal'), logger: host.logger.child({ system: options.name }) });
    } catch (error) {
      await segmentWriter.close();
      throw error;
    }
    const recovered = new Map<string, RecoveredLog>();
    for (const [uid, entries] of opened.recovered) recovered.set(uid, { entries, reset: opened.resets.get(uid) ?? null });
    for (const [uid, reset] of opened.resets) if (!recovered.has(uid)) recovered.set(uid, { entries: [], reset });
    const system = new System(options, host, opened.wal, segmentWriter, recovered);
    system.#loadConfigs();
    // WAL files closed before the last stop still wait for the segment writer.
    for (const filePath of opened.closedFiles) segmentWriter.flush(filePath);
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

  /** Servers found on disk that cannot start, by cluster name, with the reason. */
  brokenServers(): Map<string, StorageError> {
    return new Map(this.#brokenServers);
  }

  /** Returns the stored config of a server, running or not. */
  serverConfig(name: string): ServerConfig | undefined {
    return this.#configs.get(name);
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
    const broken = this.#brokenServers.get(name);
    if (broken) throw broken;
    const existing = this.#configs.get(name);
    if (existing) {
      if (existing.machine !== machine || JSON.stringify(existing.machineArgs) !== JSON.stringify(machineArgs)) {
        throw new InvalidConfigError(
          `cluster ${name} exists on ${this.#host.nodeId} with machine ${existing.machine} ${JSON.stringify(existing.machineArgs ?? null)}, ` +
            `not ${machine} ${JSON.stringify(machineArgs ?? null)}; start it with the same machine and arguments`,
        );
      }
      return this.restartServer(name);
    }
    // The machine validates its arguments before anything is written, so a bad cluster
    // leaves no server directory behind.
    try {
      this.#machines.get(machine)!.init(machineArgs);
    } catch (error) {
      throw new InvalidConfigError(`cluster ${name}: machine ${machine} rejected its arguments: ${(error as Error).message}`);
    }

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
    const broken = this.#brokenServers.get(name);
    if (broken) throw broken;
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
      // After a fatal WAL error, close() rejects with that same error, which was logged when it
      // happened. A clean shutdown of a failed system is not a second failure.
      if (error !== this.#failure) throw error;
    } finally {
      await this.segmentWriter.close();
      await this.#snapshotPool.close();
      this.#segmentCache.closeAll();
    }
  }

  #segmentsFlushed(ranges: FlushedRange[]): void {
    for (const range of ranges) {
      const server = this.#serversByUid(range.uid);
      if (server !== undefined) {
        server.segmentsFlushed(range.toIndex, range.term);
        continue;
      }
      // A server that is not running keeps only what segments do not hold yet.
      const recovered = this.#recovered.get(range.uid);
      if (recovered === undefined || recovered.entries.length === 0) continue;
      const first = recovered.entries[0].index;
      const at = recovered.entries[range.toIndex - first];
      if (at !== undefined && at.index === range.toIndex && at.term === range.term) {
        recovered.entries = recovered.entries.slice(range.toIndex - first + 1);
      }
    }
  }

  #serversByUid(uid: string): RaftServer | undefined {
    for (const server of this.#servers.values()) if (server.config.uid === uid) return server;
    return undefined;
  }

  /**
   * Builds a server's starting log: the newest snapshot that verifies, the segment files above
   * it, and the entries still in the WAL above those. Throws StorageError when they leave a hole.
   */
  #recover(config: ServerConfig, serverDir: string): ServerRecovery {
    const snapshot = loadNewestSnapshot(path.join(serverDir, 'snapshots'), this.#log.child({ group: config.name }));
    const snapshotIndex = snapshot?.index ?? 0;
    const recovered = this.#recovered.get(config.uid) ?? { entries: [], reset: null };
    const segments = new SegmentLog(path.join(serverDir, 'segments'), this.#segmentCache);
    const reset = recovered.reset;
    if (reset !== null && snapshotIndex < reset.index) {
      throw new StorageError(
        `server ${config.name} (${config.uid}) installed a snapshot at index ${reset.index}, but the newest valid snapshot on disk ends at ${snapshotIndex}; ` +
          'its log has a hole, so restore the member from a replica (delete its data directory and add it back)',
      );
    }
    // After an install the segment files are stale until the writer flushes the marker, so the
    // log starts empty above the snapshot. Entries released later are read from new segments.
    const storage: LogStorage = {
      lastIndex: () => (reset !== null ? 0 : segments.lastIndex()),
      term: (index) => segments.term(index),
      entries: (fromIndex, toIndex) => segments.entries(fromIndex, toIndex),
    };
    const entries = recovered.entries.filter((entry) => entry.index > snapshotIndex);
    const storageLast = Math.max(snapshotIndex, storage.lastIndex());
    const first = entries.length > 0 ? entries[0].index : storageLast + 1;
    const storageFirstNeeded = snapshotIndex + 1;
    const hole =
      first > storageLast + 1 ||
      (first - 1 >= storageFirstNeeded && (segments.term(storageFirstNeeded) === undefined || segments.term(first - 1) === undefined));
    if (hole) {
      throw new StorageError(
        `server ${config.name} (${config.uid}) has a hole in its log: snapshot to ${snapshotIndex}, segments to ${segments.lastIndex()}, ` +
          `WAL entries from ${entries[0]?.index ?? 'none'}; restore the member from a replica (delete its data directory and add it back)`,
      );
    }
    return { snapshot, storage: segments, entries, storageView: storage };
  }

  #launch(config: ServerConfig): RaftServer {
    const serverDir = path.join(this.dir, 'servers', config.uid);
    const recovery = this.#recover(config, serverDir);
    const metaFile = path.join(serverDir, 'meta');
    const hasLog = recovery.snapshot !== null || recovery.entries.length > 0;
    if (hasLog && !fs.existsSync(metaFile)) {
      // Starting with term 0 and no vote would let this member vote twice in a term it already
      // voted in, so a missing meta file next to a non-empty log is corruption, not a fresh start.
      throw new StorageError(
        `server ${config.name}: meta file ${metaFile} is missing but its log is not empty; ` +
          'restore the file from a backup, or delete the server directory and let the cluster re-add the member',
      );
    }
    const meta = MetaStore.open(metaFile);
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
      serverDir,
      snapshotPool: this.#snapshotPool,
      snapshotWritten: (uid, index) => this.segmentWriter.snapshotWritten(uid, index),
      syncMethod: this.#options.wal?.syncMethod ?? 'datasync',
      snapshotChunkBytes: this.#options.snapshotChunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES,
      receiveSnapshotTimeoutMs: this.#options.receiveSnapshotTimeoutMs ?? DEFAULT_RECEIVE_SNAPSHOT_TIMEOUT_MS,
    };
    let server: RaftServer;
    try {
      server = new RaftServer(config, this.#machines.get(config.machine)!, host, meta, recovery);
    } catch (error) {
      meta.close();
      throw new StorageError(`server ${config.name} in ${serverDir} could not recover: ${(error as Error).message}`, { cause: error });
    }
    this.#servers.set(config.name, server);
    this.#serversByWriter.set(server.writerId, server);
    return server;
  }

  #loadConfigs(): void {
    const serversDir = path.join(this.dir, 'servers');
    for (const uid of fs.readdirSync(serversDir)) {
      const file = path.join(serversDir, uid, 'config.json');
      if (!fs.existsSync(file)) {
        // Server directories are named <cluster>_<12 hex digits>; a crash before the config's
        // rename leaves an empty directory, which has no log and is safe to ignore.
        const name = uid.replace(/_[0-9a-f]{12}$/, '');
        const entries = fs.readdirSync(path.join(serversDir, uid));
        if (entries.length === 0) continue;
        const error = new StorageError(
          `server directory ${path.join(serversDir, uid)} has no config.json; server ${name} is not started. ` +
            'Restore config.json from a backup, or delete the directory and let the cluster re-add the member',
        );
        this.#log.error({ err: error, group: name }, 'server config missing');
        this.#brokenServers.set(name, error);
        continue;
      }
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
    // rather than retrying. The operator restarts the node, which replays the WAL.
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

function positiveOption(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
    throw new InvalidConfigError(`${name} is ${value}; use a positive integer`);
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
