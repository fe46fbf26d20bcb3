// One member of one Raft group on this node: it drives the pure Raft core with events and
// executes the effects the core returns (WAL appends, durable votes, messages, applying
// committed entries to the machine, replies to callers).

import fs from 'node:fs';
import path from 'node:path';
import crc32 from 'crc-32';
import { pack, unpack } from 'msgpackr';
import type { Logger } from './logger.js';
import type { Machine, MachineEffect } from './machine.js';
import { RaftCore } from './raft/core.js';
import type { InstallSnapshotRequest, LogEntry, LogStorage, Member, PeerId, RaftEffect, RaftEvent, RaftMessage, Role, SnapshotMeta } from './raft/types.js';
import type { MetaStore } from './storage/meta-store.js';
import type { SegmentLog } from './storage/segment-store.js';
import { SnapshotReceiver, SNAPSHOTS_KEPT, type LoadedSnapshot, type SnapshotPool } from './storage/snapshot-store.js';
import type { WalClient } from './storage/wal-client.js';
import { readFully } from '../shared/file-system.js';
import { SNAPSHOT_FILE_NAME, snapshotDirName } from '../shared/snapshot-format.js';
import { NotLeaderError, OverloadedError, RanaError, StoppedError, TimeoutError, type ServerRef } from './errors.js';

export interface ServerConfig {
  /** Cluster name; every member of a group has this name, on a different node. */
  name: string;
  uid: string;
  machine: string;
  machineArgs?: unknown;
  /** Node ids of the members, including this one. */
  members: Member[];
}

/** Services a server needs from its system and node, passed in so the server stays testable. */
export interface ServerHost {
  nodeId: string;
  wal: WalClient;
  logger: Logger;
  send(toNode: string, cluster: string, message: RaftMessage): void;
  /** The core asked for ticks, or stopped asking; the system keeps the set of ticking servers. */
  setTicking(server: RaftServer, ticking: boolean): void;
  nowMs(): number;
  random(): number;
  /** Directory of this server: `<dataDir>/<system>/servers/<uid>`. */
  serverDir: string;
  snapshotPool: SnapshotPool;
  /** This server wrote a snapshot at `index`; the segment writer may delete the segments it covers. */
  snapshotWritten(uid: string, index: number): void;
  syncMethod: 'datasync' | 'sync' | 'none';
  /** Bytes per install_snapshot chunk. */
  snapshotChunkBytes: number;
  /** A follower drops a snapshot transfer that made no progress for this long. */
  receiveSnapshotTimeoutMs: number;
}

/** Recovered state a server starts from: its newest valid snapshot, its segment files and the entries still in the WAL. */
export interface ServerRecovery {
  snapshot: LoadedSnapshot | null;
  /** The server's segment files; refreshed when the segment writer reports new ranges. */
  storage: SegmentLog | null;
  /** Storage the core reads below memory: the segment files, seen as empty right after a snapshot install. */
  storageView?: LogStorage;
  /** Entries in memory, starting at most one past the storage's (or snapshot's) last index. */
  entries: LogEntry[];
}

/** A snapshot transfer from this leader to one follower. */
interface SnapshotSender {
  index: number;
  term: number;
  fd: number;
  totalBytes: number;
  /** Offset of the chunk last sent. */
  offset: number;
}

export interface ServerStatus {
  name: string;
  node: string;
  uid: string;
  role: Role;
  term: number;
  leader: string | null;
  commitIndex: number;
  lastApplied: number;
  lastIndex: number;
  lastWritten: number;
  /** Last index folded into a snapshot; 0 without one. */
  snapshotIndex: number;
  /** First index held in memory; entries below it come from segment files. */
  memoryFirstIndex: number;
  members: Member[];
  machine: Record<string, unknown> | undefined;
}

interface PendingCall {
  correlation: number;
  deadlineMs: number;
  timeoutMs: number;
  resolve(value: unknown): void;
  reject(error: Error): void;
  settled: boolean;
}

interface PendingCommand extends PendingCall {
  index: number;
  term: number;
}

interface PendingRead extends PendingCall {
  query: string;
  args: unknown;
  readIndex: number;
}

/** Commands handed to the core in one batch at most; a fuller batch is handed over at once. */
const COMMAND_BATCH_MAX = 4096;

/** Upper bound on parked calls per server while no leader is known; more get NotLeaderError at once. */
const PARKED_CALLS_MAX = 10_000;

export class RaftServer {
  readonly config: ServerConfig;
  readonly ref: ServerRef;
  readonly writerId: number;

  #core: RaftCore;
  #machine: Machine;
  #state: unknown;
  #host: ServerHost;
  #meta: MetaStore;
  #log: Logger;
  #stopped = false;
  #nextCorrelation = 1;
  /** Commands of the current event-loop turn, not yet handed to the core. At most COMMAND_BATCH_MAX. */
  #commandBatch: { correlation: number; data: Uint8Array }[] = [];
  #commandFlushScheduled = false;

  /** Commands the core accepted but that are not applied yet, by correlation until accepted, then by index. */
  #calls = new Map<number, PendingCall>();
  #commandsByIndex = new Map<number, PendingCommand>();
  /** Reads confirmed by a quorum round, waiting for last applied to reach their read index. */
  #readsWaitingApply: PendingRead[] = [];
  /** Calls parked until a leader is known, with their retry functions. */
  #parked: { deadlineMs: number; retry(): void; fail(error: Error): void }[] = [];
  /** Callers waiting for a leader other than a given node, for example one whose node is down. */
  #leaderWaiters: { excluded: string | null; deadlineMs: number; resolve(leader: string | null): void }[] = [];
  /** All pending calls in deadline order (every call gets the same kind of timeout, so FIFO is close to sorted). */
  #deadlines: PendingCall[] = [];

  /** Snapshot write under way (at most one per server), or a state encoded and waiting for its index to be written. */
  #snapshotWriting = false;
  #pendingSnapshot: { index: number; data: Uint8Array } | null = null;
  /** Set after a snapshot install, until the next restart: the log restarts after this snapshot. */
  #installedSnapshot: SnapshotMeta | null = null;
  #senders = new Map<PeerId, SnapshotSender>();
  #receiver: SnapshotReceiver | null = null;
  readonly #storage: SegmentLog | null;
  #applyScheduled = false;
  /** Index of the last entry applied to #state (the snapshot's index right after a load or install). */
  #appliedIndex = 0;

  constructor(config: ServerConfig, machine: Machine, host: ServerHost, meta: MetaStore, recovery: ServerRecovery) {
    this.config = config;
    this.ref = { name: config.name, node: host.nodeId };
    this.#machine = machine;
    this.#host = host;
    this.#meta = meta;
    this.#log = host.logger.child({ group: config.name });
    this.#storage = recovery.storage;
    const snapshot = recovery.snapshot;
    this.#state = snapshot === null ? machine.init(config.machineArgs) : this.#decodeState(snapshot.data);
    this.#appliedIndex = snapshot?.index ?? 0;
    this.writerId = host.wal.registerWriter(config.uid);

    const { term, votedFor } = meta.read();
    this.#core = new RaftCore({
      id: host.nodeId,
      members: config.members,
      random: host.random,
      initial: {
        term,
        votedFor,
        entries: recovery.entries,
        snapshot: snapshot === null ? undefined : { index: snapshot.index, term: snapshot.term },
      },
      storage: recovery.storageView ?? recovery.storage ?? undefined,
    });
    this.#log.info(
      { term, snapshotIndex: snapshot?.index ?? 0, lastIndex: this.#core.lastIndex, memoryFirstIndex: this.#core.memoryFirstIndex, members: config.members.map((m) => m.id) },
      'server started',
    );
    this.#afterHandle();
  }

  get name(): string {
    return this.config.name;
  }

  get role(): Role {
    return this.#core.role;
  }

  get leaderNode(): string | null {
    return this.#core.leaderId;
  }

  /** Last index folded into this member's snapshot (its own or one installed from the leader). */
  get snapshotIndex(): number {
    return this.#core.snapshotIndex;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  status(): ServerStatus {
    return {
      name: this.config.name,
      node: this.#host.nodeId,
      uid: this.config.uid,
      role: this.#core.role,
      term: this.#core.term,
      leader: this.#core.leaderId,
      commitIndex: this.#core.commitIndex,
      lastApplied: this.#core.lastApplied,
      lastIndex: this.#core.lastIndex,
      lastWritten: this.#core.lastWritten,
      snapshotIndex: this.#core.snapshotIndex,
      memoryFirstIndex: this.#core.memoryFirstIndex,
      members: this.config.members,
      machine: this.#machine.overview?.(this.#state),
    };
  }

  // ---- events from the node and system ----

  receive(from: PeerId, message: RaftMessage): void {
    this.#handle({ type: 'message', from, message, nowMs: this.#host.nowMs() });
  }

  written(term: number, fromIndex: number, toIndex: number): void {
    this.#handle({ type: 'written', term, fromIndex, toIndex, nowMs: this.#host.nowMs() });
    const pending = this.#pendingSnapshot;
    if (pending !== null && pending.index <= this.#core.lastWritten) {
      this.#pendingSnapshot = null;
      this.#writeSnapshot(pending.index, pending.data);
    }
  }

  /**
   * Appends again every entry after the last one the WAL reported written, after a crashed WAL
   * worker was replaced. A snapshot marker goes first when nothing after the installed
   * snapshot is written yet, since it may have been lost with the worker.
   */
  resendUnwritten(): void {
    if (this.#stopped) return;
    const installed = this.#installedSnapshot;
    if (installed !== null && this.#core.lastWritten === installed.index) {
      this.#host.wal.appendSnapshotMarker(this.writerId, installed.index, installed.term);
    }
    this.resendFrom(this.#core.lastWritten + 1);
  }

  /** Appends entries `fromIndex..lastIndex` to the WAL again, from memory (the WAL asked after a gap). */
  resendFrom(fromIndex: number): void {
    if (this.#stopped) return;
    const from = Math.max(fromIndex, this.#core.memoryFirstIndex);
    if (from > this.#core.lastIndex) return;
    const entries = this.#core.entries(from, this.#core.lastIndex);
    this.#log.info({ fromIndex: from, toIndex: this.#core.lastIndex }, 'resending entries to the WAL');
    for (const entry of entries) this.#host.wal.append(this.writerId, entry);
  }

  /** Segment files now hold this server's entries up to `toIndex`; memory may drop them. */
  segmentsFlushed(toIndex: number, term: number): void {
    if (this.#stopped || this.#storage === null) return;
    this.#storage.refresh();
    if (this.#storage.term(toIndex) !== term) {
      // Memory keeps the entries: dropping them would leave the log with a hole.
      this.#log.error({ toIndex, term, segmentsLastIndex: this.#storage.lastIndex() }, 'segment writer reported entries that its files do not hold; keeping them in memory');
      return;
    }
    this.#handle({ type: 'segments_flushed', term, toIndex, nowMs: this.#host.nowMs() });
  }

  peerStatus(peer: PeerId, up: boolean): void {
    if (!this.config.members.some((m) => m.id === peer)) return;
    this.#handle({ type: 'peer_status', peer, up, nowMs: this.#host.nowMs() });
  }

  tick(nowMs: number): void {
    this.#handle({ type: 'tick', nowMs });
    const receiver = this.#receiver;
    if (receiver !== null && nowMs - receiver.lastProgressMs >= this.#host.receiveSnapshotTimeoutMs) {
      this.#log.warn({ leader: receiver.leader, snapshotIndex: receiver.index, receivedBytes: receiver.receivedBytes, totalBytes: receiver.totalBytes },
        'snapshot transfer made no progress within receiveSnapshotTimeoutMs; dropping it');
      this.#abortReceive();
    }
    this.#expireCalls(nowMs);
  }

  triggerElection(): void {
    this.#handle({ type: 'trigger_election', nowMs: this.#host.nowMs() });
  }

  // ---- client calls ----

  /**
   * Proposes an encoded command. Resolves with the machine's reply once the entry is applied
   * here. Rejects with NotLeaderError (with a hint) when this member is not the leader, and
   * parks the call until the deadline while no leader is known.
   */
  command(command: unknown, timeoutMs: number): Promise<unknown> {
    const data = pack(command);
    return new Promise((resolve, reject) => {
      const deadlineMs = this.#host.nowMs() + timeoutMs;
      const attempt = (): void => {
        if (this.#rejectIfStopped(reject)) return;
        if (this.#core.role !== 'leader') {
          if (this.#core.leaderId === null) {
            this.#park(deadlineMs, attempt, reject, `command to ${this.#describe()}`, timeoutMs, 'command');
          } else {
            reject(new NotLeaderError(this.ref, this.#leaderRef()));
          }
          return;
        }
        if (this.#host.wal.isOverloaded()) {
          // Back-pressure: the WAL's queue is over its bound, so new commands wait outside rana.
          reject(new OverloadedError(`the WAL of ${this.#describe()} has more queued bytes than its bound; retry after a short delay or raise wal.maxPendingBytes`));
          return;
        }
        const call = this.#newCall(deadlineMs, timeoutMs, resolve, reject);
        this.#queueCommand(call.correlation, data);
      };
      attempt();
    });
  }

  /**
   * Gathers the commands of one event-loop turn and hands them to the core together, so the
   * leader sends one append-entries per follower for the lot instead of one per command.
   */
  #queueCommand(correlation: number, data: Uint8Array): void {
    this.#commandBatch.push({ correlation, data });
    if (this.#commandBatch.length >= COMMAND_BATCH_MAX) {
      this.#flushCommands();
    } else if (!this.#commandFlushScheduled) {
      this.#commandFlushScheduled = true;
      // setImmediate runs after the I/O callbacks of this turn, so commands that arrived in
      // the same poll phase (HTTP requests, forwarded calls) share one batch.
      setImmediate(() => this.#flushCommands());
    }
  }

  #flushCommands(): void {
    this.#commandFlushScheduled = false;
    if (this.#commandBatch.length === 0) return;
    const commands = this.#commandBatch;
    this.#commandBatch = [];
    this.#handle({ type: 'commands', commands, nowMs: this.#host.nowMs() });
  }

  /** Runs a machine query after a read-index round confirms leadership: a linearizable read. */
  consistentQuery(query: string, args: unknown, timeoutMs: number): Promise<unknown> {
    const fn = this.#machine.queries?.[query];
    if (!fn) {
      const known = Object.keys(this.#machine.queries ?? {}).join(', ') || 'none';
      return Promise.reject(new RanaError('INVALID_CONFIG', `machine ${this.config.machine} has no query "${query}"; its queries: ${known}`));
    }
    return new Promise((resolve, reject) => {
      const deadlineMs = this.#host.nowMs() + timeoutMs;
      const attempt = (): void => {
        if (this.#rejectIfStopped(reject)) return;
        if (this.#core.role !== 'leader') {
          if (this.#core.leaderId === null) {
            this.#park(deadlineMs, attempt, reject, `query ${query} at ${this.#describe()}`, timeoutMs, 'read');
          } else {
            reject(new NotLeaderError(this.ref, this.#leaderRef()));
          }
          return;
        }
        const call = this.#newCall(deadlineMs, timeoutMs, resolve, reject) as PendingRead;
        call.query = query;
        call.args = args;
        call.readIndex = -1;
        this.#handle({ type: 'read_index', correlation: call.correlation, nowMs: this.#host.nowMs() });
      };
      attempt();
    });
  }

  /**
   * Resolves with the leader's node id once this member has learned of a leader other than `excluded`,
   * or with null at the deadline.
   */
  waitForLeaderOtherThan(excluded: string | null, timeoutMs: number): Promise<string | null> {
    const leader = this.#core.leaderId;
    if (leader !== null && leader !== excluded) return Promise.resolve(leader);
    if (this.#stopped) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.#leaderWaiters.push({ excluded, deadlineMs: this.#host.nowMs() + timeoutMs, resolve });
      this.#afterHandle();
    });
  }

  /**
   * Returns the durable log entries this member keeps in memory, for a restart within this
   * process (older ones are in segments and snapshots on disk), and the snapshot installed in
   * this incarnation, whose marker the WAL may not have flushed yet.
   */
  durableEntries(): { entries: LogEntry[]; reset: SnapshotMeta | null } {
    const lastWritten = this.#core.lastWritten;
    const entries = this.#core.memoryEntries().filter((entry) => entry.index <= lastWritten);
    return { entries, reset: this.#installedSnapshot };
  }

  /** Runs a query on this member's current state with no consensus round: possibly stale. */
  localQuery<T>(fn: (state: unknown) => T): T {
    return fn(this.#state);
  }

  stop(reason: string): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#host.setTicking(this, false);
    const error = new StoppedError(`${this.#describe()} stopped (${reason}); the outcome of calls in flight is unknown`);
    for (const call of this.#calls.values()) this.#settle(call, undefined, error);
    for (const call of this.#commandsByIndex.values()) this.#settle(call, undefined, error);
    for (const read of this.#readsWaitingApply) this.#settle(read, undefined, error);
    for (const parked of this.#parked) parked.fail(error);
    for (const waiter of this.#leaderWaiters) waiter.resolve(null);
    this.#leaderWaiters = [];
    this.#calls.clear();
    this.#commandsByIndex.clear();
    this.#readsWaitingApply = [];
    this.#parked = [];
    this.#deadlines = [];
    this.#closeSenders();
    this.#abortReceive();
    this.#meta.close();
    this.#log.info('server stopped');
  }

  // ---- core driving ----

  #handle(event: RaftEvent): void {
    if (this.#stopped) return;
    const effects = this.#core.handle(event);
    this.#execute(effects);
    this.#afterHandle();
  }

  #afterHandle(): void {
    this.#host.setTicking(this, !this.#stopped && (this.#core.needsTick() || this.#deadlines.length > 0 || this.#parked.length > 0 ||
      this.#leaderWaiters.length > 0 || this.#receiver !== null));
    // The core applies a bounded number of entries per event. A long backlog (a restart with
    // a large log) continues on the next turn of the event loop, not at the next shared tick.
    if (!this.#stopped && !this.#applyScheduled && this.#core.lastApplied < this.#core.commitIndex) {
      this.#applyScheduled = true;
      setImmediate(() => {
        this.#applyScheduled = false;
        this.#handle({ type: 'tick', nowMs: this.#host.nowMs() });
      });
    }
  }

  #execute(effects: RaftEffect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case 'send':
          this.#host.send(effect.to, this.config.name, effect.message);
          break;
        case 'persist_entries':
          for (const entry of effect.entries) this.#host.wal.append(this.writerId, entry);
          break;
        case 'persist_meta':
          // Synchronous on purpose: the vote must be durable before the reply that follows it
          // in this effect list is sent.
          this.#meta.write(effect.term, effect.votedFor);
          break;
        case 'apply':
          this.#apply(effect.entries);
          break;
        case 'command_accepted': {
          const call = this.#calls.get(effect.correlation);
          if (!call) break;
          this.#calls.delete(effect.correlation);
          const pending = call as PendingCommand;
          pending.index = effect.index;
          pending.term = effect.term;
          this.#commandsByIndex.set(effect.index, pending);
          break;
        }
        case 'command_rejected':
        case 'read_rejected': {
          const call = this.#calls.get(effect.correlation);
          if (!call) break;
          this.#calls.delete(effect.correlation);
          this.#settle(call, undefined, new NotLeaderError(this.ref, this.#leaderRef()));
          break;
        }
        case 'read_ready': {
          const call = this.#calls.get(effect.correlation) as PendingRead | undefined;
          if (!call) break;
          this.#calls.delete(effect.correlation);
          call.readIndex = effect.readIndex;
          this.#readsWaitingApply.push(call);
          this.#answerReads();
          break;
        }
        case 'send_snapshot':
          this.#sendSnapshot(effect.to, effect.index, effect.attempt);
          break;
        case 'snapshot_chunk_acked':
          this.#sendNextChunk(effect.to, effect.index, effect.nextOffset);
          break;
        case 'snapshot_transfer_ended':
          this.#closeSender(effect.to);
          break;
        case 'receive_snapshot_chunk':
          this.#receiveChunk(effect.from, effect.request);
          break;
        case 'role_changed':
          this.#log.info({ role: effect.role, term: effect.term, leader: effect.leader }, 'role changed');
          if (effect.role !== 'leader') this.#closeSenders();
          if (this.#receiver !== null && (effect.leader !== this.#receiver.leader || effect.term !== this.#receiver.term)) {
            // A new leader (or none) mid-transfer: the partial snapshot is dropped.
            this.#abortReceive();
          }
          this.#machine.stateEnter?.(effect.role, this.#state);
          if (effect.leader !== null) {
            this.#retryParked();
            this.#wakeLeaderWaiters(effect.leader, this.#host.nowMs());
          }
          break;
        default: {
          const unknown: never = effect;
          throw new Error(`unknown Raft effect ${JSON.stringify(unknown)}`);
        }
      }
    }
  }

  #apply(entries: LogEntry[]): void {
    for (const entry of entries) {
      this.#appliedIndex = entry.index;
      let reply: unknown = undefined;
      if (entry.kind === 'command') {
        const command = unpack(entry.data);
        const result = this.#machine.apply({ index: entry.index, term: entry.term }, command, this.#state);
        this.#state = result.state;
        reply = result.reply;
        if (result.effects !== undefined) this.#machineEffects(result.effects);
      }
      const pending = this.#commandsByIndex.get(entry.index);
      if (pending) {
        this.#commandsByIndex.delete(entry.index);
        if (pending.term === entry.term) {
          this.#settle(pending, reply);
        } else {
          // Another leader's entry took this index, so this command was never committed.
          this.#settle(pending, undefined, new NotLeaderError(this.ref, this.#leaderRef()));
        }
      }
    }
    this.#answerReads();
  }

  #answerReads(): void {
    if (this.#readsWaitingApply.length === 0) return;
    // The machine's own index, not the core's: the core counts entries as applied when it emits
    // the apply effect, and a read_ready effect can come before that effect in the same batch.
    const lastApplied = this.#appliedIndex;
    const waiting: PendingRead[] = [];
    for (const read of this.#readsWaitingApply) {
      if (read.readIndex > lastApplied) {
        waiting.push(read);
        continue;
      }
      try {
        this.#settle(read, this.#machine.queries![read.query](this.#state, read.args));
      } catch (error) {
        this.#settle(read, undefined, error as Error);
      }
    }
    this.#readsWaitingApply = waiting;
  }

  // ---- snapshots ----

  #machineEffects(effects: MachineEffect[]): void {
    for (const effect of effects) {
      if (effect.type === 'release_cursor') this.#releaseCursor(effect.index, effect.state);
    }
  }

  /**
   * Encodes the state now (the machine may mutate it after apply returns) and writes it off the
   * main thread. At most one write runs per server; a cursor released meanwhile is dropped and
   * the next one is taken. A snapshot is never written above the last durable index, so a
   * cursor above it waits for the WAL.
   */
  #releaseCursor(index: number, state: unknown): void {
    if (this.#snapshotWriting || index <= this.#core.snapshotIndex) return;
    const data = this.#encodeState(state);
    if (index > this.#core.lastWritten) {
      this.#pendingSnapshot = { index, data };
      return;
    }
    this.#writeSnapshot(index, data);
  }

  #writeSnapshot(index: number, data: Uint8Array): void {
    const term = this.#core.termAt(index);
    if (term === undefined || this.#snapshotWriting || index <= this.#core.snapshotIndex) return;
    this.#snapshotWriting = true;
    const startedMs = this.#host.nowMs();
    this.#host.snapshotPool
      .write({ snapshotsDir: this.#snapshotsDir(), index, term, data, keep: SNAPSHOTS_KEPT, syncMethod: this.#host.syncMethod })
      .then(
        (result) => {
          this.#snapshotWriting = false;
          if (this.#stopped) return;
          this.#log.info({ snapshotIndex: index, term, bytes: result.bytes, ms: Math.round(this.#host.nowMs() - startedMs) }, 'snapshot written');
          this.#handle({ type: 'snapshot_written', index, term, nowMs: this.#host.nowMs() });
          this.#host.snapshotWritten(this.config.uid, index);
        },
        (error: unknown) => {
          this.#snapshotWriting = false;
          this.#log.error({ err: error, snapshotIndex: index }, 'snapshot write failed; the log is kept and the next release_cursor retries');
        },
      );
  }

  #snapshotsDir(): string {
    return path.join(this.#host.serverDir, 'snapshots');
  }

  // Copies the encoding: msgpackr (the default codec, and the KV machine's) returns a view into
  // a buffer that its next call overwrites, and the bytes may wait for the WAL before the write.
  #encodeState(state: unknown): Uint8Array {
    const encoded = this.#machine.snapshot ? this.#machine.snapshot.encode(state) : pack(state);
    return encoded.slice();
  }

  #decodeState(data: Uint8Array): unknown {
    return this.#machine.snapshot ? this.#machine.snapshot.decode(data) : unpack(data);
  }

  /** Starts streaming the snapshot at `index` to `to`, or resends the current chunk of a transfer under way. */
  #sendSnapshot(to: PeerId, index: number, attempt: number): void {
    let sender = this.#senders.get(to);
    if (sender !== undefined && sender.index !== index) {
      this.#closeSender(to);
      sender = undefined;
    }
    if (sender === undefined) {
      const term = this.#core.termAt(index);
      if (term === undefined) return;
      const file = path.join(this.#snapshotsDir(), snapshotDirName(index, term), SNAPSHOT_FILE_NAME);
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch (error) {
        this.#log.error({ err: error, follower: to, snapshotIndex: index }, 'cannot open the snapshot to send; retrying later');
        return;
      }
      sender = { index, term, fd, totalBytes: fs.fstatSync(fd).size, offset: 0 };
      this.#senders.set(to, sender);
      this.#log.info({ follower: to, snapshotIndex: index, bytes: sender.totalBytes }, 'sending snapshot');
    } else if (attempt > 1) {
      this.#log.warn({ follower: to, snapshotIndex: index, offset: sender.offset, attempt }, 'snapshot transfer stalled; resending the current chunk');
    }
    this.#sendChunk(to, sender);
  }

  #sendNextChunk(to: PeerId, index: number, nextOffset: number): void {
    const sender = this.#senders.get(to);
    if (sender === undefined || sender.index !== index || nextOffset > sender.totalBytes) return;
    sender.offset = nextOffset;
    if (nextOffset < sender.totalBytes || nextOffset === 0) this.#sendChunk(to, sender);
  }

  #sendChunk(to: PeerId, sender: SnapshotSender): void {
    const length = Math.min(this.#host.snapshotChunkBytes, sender.totalBytes - sender.offset);
    const data = readFully(sender.fd, length, sender.offset);
    const message: InstallSnapshotRequest = {
      type: 'install_snapshot',
      term: this.#core.term,
      leaderId: this.#host.nodeId,
      snapshotIndex: sender.index,
      snapshotTerm: sender.term,
      offset: sender.offset,
      totalBytes: sender.totalBytes,
      data,
      chunkCrc: crc32.buf(data) >>> 0,
      done: sender.offset + length >= sender.totalBytes,
    };
    this.#host.send(to, this.config.name, message);
  }

  #closeSender(to: PeerId): void {
    const sender = this.#senders.get(to);
    if (sender === undefined) return;
    this.#senders.delete(to);
    fs.closeSync(sender.fd);
  }

  #closeSenders(): void {
    for (const to of [...this.#senders.keys()]) this.#closeSender(to);
  }

  /** Follower: writes one chunk aside; the last one is verified and installed. */
  #receiveChunk(from: PeerId, request: InstallSnapshotRequest): void {
    let receiver = this.#receiver;
    if (receiver !== null && (receiver.term !== request.term || receiver.leader !== request.leaderId || receiver.index !== request.snapshotIndex)) {
      this.#abortReceive();
      receiver = null;
    }
    if (receiver === null) {
      if (request.offset !== 0) {
        this.#replyChunk(from, request.snapshotIndex, 0);
        return;
      }
      receiver = new SnapshotReceiver(this.#snapshotsDir(), request.leaderId, request.term, request.snapshotIndex, request.snapshotTerm,
        request.totalBytes, this.#host.nowMs());
      this.#receiver = receiver;
      this.#log.info({ leader: from, snapshotIndex: request.snapshotIndex, bytes: request.totalBytes }, 'receiving snapshot');
    }
    if (request.offset !== receiver.receivedBytes || !receiver.writeChunk(request.data, request.chunkCrc, this.#host.nowMs())) {
      this.#replyChunk(from, request.snapshotIndex, receiver.receivedBytes);
      return;
    }
    if (!request.done || receiver.receivedBytes < receiver.totalBytes) {
      this.#replyChunk(from, request.snapshotIndex, receiver.receivedBytes);
      return;
    }
    let snapshot: LoadedSnapshot;
    let state: unknown;
    try {
      snapshot = receiver.finish();
      state = this.#decodeState(snapshot.data);
    } catch (error) {
      this.#log.error({ err: error, leader: from, snapshotIndex: request.snapshotIndex }, 'received snapshot failed verification; asking for it again');
      this.#abortReceive();
      this.#replyChunk(from, request.snapshotIndex, 0);
      return;
    }
    this.#receiver = null;
    this.#state = state;
    this.#appliedIndex = snapshot.index;
    this.#installedSnapshot = { index: snapshot.index, term: snapshot.term };
    // The snapshot is durable; the marker makes WAL replay drop this member's older entries above it.
    this.#host.wal.appendSnapshotMarker(this.writerId, snapshot.index, snapshot.term);
    this.#log.info({ snapshotIndex: snapshot.index, term: snapshot.term }, 'snapshot installed');
    this.#handle({ type: 'snapshot_installed', index: snapshot.index, term: snapshot.term, nowMs: this.#host.nowMs() });
  }

  #replyChunk(to: PeerId, snapshotIndex: number, nextOffset: number): void {
    this.#host.send(to, this.config.name, {
      type: 'install_snapshot_reply',
      term: this.#core.term,
      snapshotIndex,
      status: 'next',
      nextOffset,
      matchIndex: 0,
    });
  }

  #abortReceive(): void {
    if (this.#receiver === null) return;
    this.#receiver.abort();
    this.#receiver = null;
  }

  // ---- pending call bookkeeping ----

  #newCall(deadlineMs: number, timeoutMs: number, resolve: (value: unknown) => void, reject: (error: Error) => void): PendingCall {
    const call: PendingCall = { correlation: this.#nextCorrelation++, deadlineMs, timeoutMs, resolve, reject, settled: false };
    this.#calls.set(call.correlation, call);
    this.#deadlines.push(call);
    return call;
  }

  #settle(call: PendingCall, value: unknown, error?: Error): void {
    if (call.settled) return;
    call.settled = true;
    if (error) call.reject(error);
    else call.resolve(value);
  }

  #park(deadlineMs: number, retry: () => void, fail: (error: Error) => void, what: string, timeoutMs: number, kind: 'command' | 'read'): void {
    if (this.#host.nowMs() >= deadlineMs) {
      fail(new TimeoutError(`${what} while no leader is known`, timeoutMs, kind));
      return;
    }
    if (this.#parked.length >= PARKED_CALLS_MAX) {
      fail(new NotLeaderError(this.ref, null));
      return;
    }
    this.#parked.push({
      deadlineMs,
      retry,
      fail: (error) => fail(error instanceof TimeoutError ? new TimeoutError(`${what} while no leader is known`, timeoutMs, kind) : error),
    });
    this.#afterHandle();
  }

  #retryParked(): void {
    if (this.#parked.length === 0) return;
    const parked = this.#parked;
    this.#parked = [];
    // Retried on the next turn so a retry never re-enters the core while it is inside handle().
    queueMicrotask(() => {
      for (const call of parked) call.retry();
    });
  }

  #wakeLeaderWaiters(leader: string | null, nowMs: number): void {
    if (this.#leaderWaiters.length === 0) return;
    const waiting = [];
    for (const waiter of this.#leaderWaiters) {
      if (leader !== null && leader !== waiter.excluded) waiter.resolve(leader);
      else if (waiter.deadlineMs <= nowMs) waiter.resolve(null);
      else waiting.push(waiter);
    }
    this.#leaderWaiters = waiting;
  }

  #expireCalls(nowMs: number): void {
    this.#wakeLeaderWaiters(this.#core.leaderId, nowMs);
    if (this.#deadlines.length > 0) {
      const live: PendingCall[] = [];
      for (const call of this.#deadlines) {
        if (call.settled) continue;
        if (call.deadlineMs <= nowMs) {
          this.#calls.delete(call.correlation);
          const command = call as PendingCommand;
          if (command.index !== undefined && this.#commandsByIndex.get(command.index) === command) {
            this.#commandsByIndex.delete(command.index);
          }
          this.#readsWaitingApply = this.#readsWaitingApply.filter((read) => read !== call);
          const timeout = 'query' in call
            ? new TimeoutError(`query at ${this.#describe()}`, call.timeoutMs, 'read')
            : new TimeoutError(`command at ${this.#describe()}`, call.timeoutMs);
          this.#settle(call, undefined, timeout);
        } else {
          live.push(call);
        }
      }
      this.#deadlines = live;
    }
    if (this.#parked.length > 0) {
      const live = [];
      for (const parked of this.#parked) {
        if (parked.deadlineMs <= nowMs) parked.fail(new TimeoutError('parked call', 0));
        else live.push(parked);
      }
      this.#parked = live;
    }
    this.#afterHandle();
  }

  #rejectIfStopped(reject: (error: Error) => void): boolean {
    if (!this.#stopped) return false;
    reject(new StoppedError(`${this.#describe()} is stopped; restart it with restartServer`));
    return true;
  }

  #leaderRef(): ServerRef | null {
    const leader = this.#core.leaderId;
    return leader === null ? null : { name: this.config.name, node: leader };
  }

  #describe(): string {
    return `${this.config.name}@${this.#host.nodeId}`;
  }
}
