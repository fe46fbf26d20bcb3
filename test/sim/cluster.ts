// A deterministic simulated rana cluster: N nodes, each hosting one member of every group,
// driven by one event queue in virtual time. The members are the real RaftCore with its real
// RaftLog; storage (SimDisk) and transport (the network and failure detector here) are
// simulated. Everything random comes from one seed, forked per subsystem.
//
// Connections follow the TCP transport: one connection per node pair, dialled by the node
// whose id sorts first. Each end keeps its own view (up or down) of the peer. An end marks
// the peer down when no byte (message or ping) arrived on the connection for
// `suspectAfterMs`, or when the close of the other end reaches it. A crash resets the
// connection at once, if the network still carries the reset. A new connection needs both directions,
// so a one-way cut keeps the pair down. Every change of view reaches the node's cores as
// a `peer_status` event. On top of TCP's behaviour the network also drops, duplicates and
// reorders Raft messages at random, which the core must tolerate.

import { RaftCore } from '../../src/main/raft/core.js';
import type { LogEntry, Member, RaftEffect, RaftEvent, RaftMessage } from '../../src/main/raft/types.js';
import { SimDisk } from './disk.js';
import { EventQueue } from './event-queue.js';
import { GroupChecker, SafetyViolation } from './invariants.js';
import { Prng } from './prng.js';

export interface SimSettings {
  seed: number;
  nodeCount: number;
  groupCount: number;
  /** Probability that one Raft message is lost. */
  dropRate: number;
  /** Probability that one Raft message is delivered twice. */
  duplicateRate: number;
  /** One-way latency range; independent draws per message reorder them. */
  delayMinMs: number;
  delayMaxMs: number;
  /** Latency of one WAL write plus fdatasync. */
  syncMinMs: number;
  syncMaxMs: number;
  tickMs: number;
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  reconnectIntervalMs: number;
  preVote: boolean;
  electionTimeoutMinMs: number;
  electionTimeoutMaxMs: number;
}

export type FaultKind =
  | 'isolate'
  | 'split'
  | 'ring'
  | 'one_way'
  | 'bridge'
  | 'heal'
  | 'crash'
  | 'restart'
  | 'pause'
  | 'resume'
  | 'fsync_error'
  | 'calm';

export interface SimStats {
  steps: number;
  messagesSent: number;
  messagesDelivered: number;
  messagesDropped: number;
  commandsSubmitted: number;
  commandsAcknowledged: number;
  readsChecked: number;
  faults: Partial<Record<FaultKind, number>>;
}

type SimEvent =
  | { kind: 'tick'; node: number; incarnation: number }
  | { kind: 'deliver'; from: number; to: number; group: number; message: RaftMessage; epoch: number }
  | { kind: 'ping'; from: number; to: number; epoch: number }
  | { kind: 'close'; from: number; to: number; epoch: number }
  | { kind: 'connected'; dialer: number; acceptor: number; dialerIncarnation: number }
  | { kind: 'sync'; node: number; incarnation: number }
  | { kind: 'action'; run: () => void };

interface Connection {
  epoch: number;
  /** up[i]: the view of end i (0 = lower node index, the dialer). */
  up: [boolean, boolean];
  lastReceivedMs: [number, number];
  dialPending: boolean;
  nextDialMs: number;
}

export interface SimNode {
  index: number;
  id: string;
  alive: boolean;
  paused: boolean;
  incarnation: number;
  cores: RaftCore[];
  disk: SimDisk;
  /** Events that reached the node while it was paused, replayed in order on resume. */
  deferred: SimEvent[];
  nextPingMs: number;
}

interface PendingCommand {
  group: number;
  term: number;
  index: number;
  onAcknowledged?: () => void;
}

/** Thrown when the cluster does not elect and converge within the bound after faults stop. */
export class LivenessViolation extends Error {
  readonly code = 'SIM_LIVENESS_VIOLATION' as const;

  constructor(message: string) {
    super(message);
    this.name = 'LivenessViolation';
  }
}

const STEPS_MAX = 20_000_000;
const encoder = new TextEncoder();

export class SimCluster {
  readonly settings: SimSettings;
  readonly nodes: SimNode[];
  readonly checkers: GroupChecker[];
  readonly stats: SimStats = {
    steps: 0, messagesSent: 0, messagesDelivered: 0, messagesDropped: 0,
    commandsSubmitted: 0, commandsAcknowledged: 0, readsChecked: 0, faults: {},
  };
  nowMs = 0;
  /** Directed links that drop everything, as `from>to` node indexes. */
  blocked = new Set<string>();
  /** FNV-1a digest of every step, to detect nondeterminism between two runs of one seed. */
  digest = 0x811c9dc5;
  /** The last trace lines, printed with a failure. Bounded by TRACE_LINES_MAX. */
  readonly trace: string[] = [];

  readonly #queue = new EventQueue<SimEvent>();
  /** Message fault rates and latency in effect; they start from the settings and calmNetwork() lowers them. */
  readonly #network: Pick<SimSettings, 'dropRate' | 'duplicateRate' | 'delayMinMs' | 'delayMaxMs'>;
  readonly #connections = new Map<string, Connection>();
  readonly #members: Member[];
  readonly #netPrng: Prng;
  readonly #diskPrng: Prng;
  readonly #rootPrng: Prng;
  #nextCorrelation = 1;
  /** Commands accepted by a leader, keyed `node:incarnation:group:index`, until applied there. */
  readonly #pendingCommands = new Map<string, PendingCommand>();
  /** Callbacks of submitted commands, keyed `node:incarnation:correlation`, until accepted or rejected. */
  readonly #acknowledgeCallbacks = new Map<string, (() => void) | undefined>();
  readonly #pendingReads = new Map<string, { group: number; appliedMaxAtIssue: number }>();

  constructor(settings: SimSettings) {
    this.settings = settings;
    this.#network = { dropRate: settings.dropRate, duplicateRate: settings.duplicateRate, delayMinMs: settings.delayMinMs, delayMaxMs: settings.delayMaxMs };
    this.#rootPrng = new Prng(settings.seed);
    this.#netPrng = this.#rootPrng.fork('network');
    this.#diskPrng = this.#rootPrng.fork('disk');
    const ids = Array.from({ length: settings.nodeCount }, (_, i) => `n${i + 1}`);
    this.#members = ids.map((id) => ({ id, membership: 'voter' }));
    this.checkers = Array.from({ length: settings.groupCount }, (_, g) => new GroupChecker(g, ids));
    this.nodes = ids.map((id, index) => ({
      index, id, alive: false, paused: false, incarnation: 0, cores: [],
      disk: new SimDisk(settings.groupCount), deferred: [], nextPingMs: 0,
    }));
    for (let a = 0; a < ids.length; a++) {
      for (let b = a + 1; b < ids.length; b++) {
        this.#connections.set(`${a}|${b}`, { epoch: 0, up: [false, false], lastReceivedMs: [0, 0], dialPending: false, nextDialMs: 0 });
      }
    }
    for (const node of this.nodes) this.#start(node);
  }

  // ---- running ----

  /** Schedules `run` at `atMs` of virtual time. */
  at(atMs: number, run: () => void): void {
    this.#queue.push(Math.max(atMs, this.nowMs), { kind: 'action', run });
  }

  /** Processes events until virtual time passes `untilMs` or `stop()` returns true. Returns true if stopped by `stop`. */
  runUntil(untilMs: number, stop?: () => boolean): boolean {
    for (;;) {
      if (stop?.()) return true;
      const next = this.#queue.peekTimeMs();
      if (next === undefined || next > untilMs) {
        this.nowMs = untilMs;
        return false;
      }
      const item = this.#queue.pop()!;
      this.nowMs = item.atMs;
      this.#process(item.event);
      if (++this.stats.steps > STEPS_MAX) throw new Error(`simulation exceeded ${STEPS_MAX} steps at ${this.nowMs} ms`);
    }
  }

  // ---- faults ----

  setBlocked(links: Iterable<[number, number]>, kind: FaultKind): void {
    this.blocked = new Set([...links].map(([from, to]) => `${from}>${to}`));
    this.#countFault(kind, [...this.blocked].join(','));
  }

  /** Ends random message faults: no more drops or duplicates, and a latency of at most 20 ms. */
  calmNetwork(): void {
    this.#network.dropRate = 0;
    this.#network.duplicateRate = 0;
    this.#network.delayMaxMs = Math.min(this.#network.delayMaxMs, CALM_DELAY_MAX_MS);
    this.#countFault('calm', '');
  }

  heal(): void {
    this.blocked = new Set();
    this.#countFault('heal', '');
  }

  crash(index: number, kind: 'crash' | 'fsync_error' = 'crash'): void {
    const node = this.nodes[index];
    if (!node.alive) return;
    node.alive = false;
    node.paused = false;
    node.deferred = [];
    node.incarnation += 1;
    node.cores = [];
    const loss = node.disk.crash(this.#diskPrng);
    this.#countFault(kind, `${node.id} ${loss.loss} kept=${loss.keptWrites}+${loss.keptEntriesOfNext}`);
    for (const peer of this.nodes) {
      if (peer.index !== index) this.#closeEnd(index, peer.index, false);
    }
    // Every committed entry must still be durable on a quorum.
    for (const checker of this.checkers) {
      const logs = new Map(this.nodes.map((n) => [n.id, n.disk.groups[checker.group].entries] as const));
      checker.checkDurableQuorum(logs);
    }
  }

  restart(index: number): void {
    const node = this.nodes[index];
    if (node.alive) return;
    this.#countFault('restart', node.id);
    this.#start(node);
  }

  pause(index: number): void {
    const node = this.nodes[index];
    if (!node.alive || node.paused) return;
    node.paused = true;
    this.#countFault('pause', node.id);
  }

  resume(index: number): void {
    const node = this.nodes[index];
    if (!node.alive || !node.paused) return;
    node.paused = false;
    this.#countFault('resume', node.id);
    const deferred = node.deferred;
    node.deferred = [];
    for (const event of deferred) this.#queue.push(this.nowMs, event);
  }

  // ---- workload ----

  /** Returns the live, running member that leads `group` with the highest term, if any. */
  leaderOf(group: number): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodes) {
      if (!node.alive || node.paused) continue;
      const core = node.cores[group];
      if (core.role !== 'leader') continue;
      if (best === undefined || core.term > best.cores[group].term) best = node;
    }
    return best;
  }

  /** Submits a command with unique data to `group` at its leader (or a random live node). */
  submitCommand(group: number, workloadPrng: Prng, onAcknowledged?: () => void): void {
    const target = this.leaderOf(group) ?? this.#randomRunningNode(workloadPrng);
    if (target === undefined) return;
    const correlation = this.#nextCorrelation++;
    this.stats.commandsSubmitted += 1;
    const data = encoder.encode(`g${group}c${correlation}`);
    this.#acknowledgeCallbacks.set(`${target.index}:${target.incarnation}:${correlation}`, onAcknowledged);
    this.#handle(target, group, { type: 'command', correlation, data, nowMs: this.nowMs });
  }

  /** Issues a read-index request; its read index must cover every entry applied anywhere before now. */
  submitRead(group: number, workloadPrng: Prng): void {
    const target = this.leaderOf(group) ?? this.#randomRunningNode(workloadPrng);
    if (target === undefined) return;
    const correlation = this.#nextCorrelation++;
    this.#pendingReads.set(`${target.index}:${target.incarnation}:${correlation}`, {
      group, appliedMaxAtIssue: this.checkers[group].lastAppliedMax(),
    });
    this.#handle(target, group, { type: 'read_index', correlation, nowMs: this.nowMs });
  }

  /** True when every group has one leader that every member follows, with identical logs, all applied. */
  converged(): boolean {
    for (let group = 0; group < this.settings.groupCount; group++) {
      const leader = this.leaderOf(group);
      if (leader === undefined) return false;
      const lead = leader.cores[group];
      if (lead.commitIndex !== lead.lastIndex) return false;
      for (const node of this.nodes) {
        if (!node.alive || node.paused) return false;
        const core = node.cores[group];
        if (core.term !== lead.term || core.leaderId !== leader.id) return false;
        if (core.lastIndex !== lead.lastIndex || core.lastApplied !== lead.commitIndex) return false;
        if (this.checkers[group].lastChain(node.id) !== this.checkers[group].lastChain(leader.id)) return false;
      }
    }
    return true;
  }

  describe(): string {
    const lines: string[] = [];
    for (const node of this.nodes) {
      let state = 'running';
      if (!node.alive) state = 'crashed';
      else if (node.paused) state = 'paused';
      const groups = node.cores.map((c, g) => `g${g}:${c.role[0]}${c.term}/${c.lastIndex}/${c.commitIndex}/${c.leaderId ?? '-'}`);
      const views = this.nodes.filter((p) => p !== node).map((p) => `${p.id}:${this.#endUp(node.index, p.index) ? 'up' : 'down'}`);
      lines.push(`${node.id} ${state} ${groups.join(' ')} peers ${views.join(' ')}`);
    }
    lines.push(`blocked links: ${[...this.blocked].join(' ') || 'none'}`);
    return lines.join('\n');
  }

  // ---- internals: nodes and cores ----

  #start(node: SimNode): void {
    node.alive = true;
    node.paused = false;
    node.deferred = [];
    node.nextPingMs = this.nowMs;
    const corePrng = this.#rootPrng.fork(`core:${node.id}:${node.incarnation}`);
    node.cores = [];
    for (let group = 0; group < this.settings.groupCount; group++) {
      const recovered = node.disk.recover(group);
      this.checkers[group].restarted(node.id, recovered);
      node.cores.push(new RaftCore({
        id: node.id,
        members: this.#members,
        random: corePrng.fork(`g${group}`).random,
        preVote: this.settings.preVote,
        electionTimeoutMinMs: this.settings.electionTimeoutMinMs,
        electionTimeoutMaxMs: this.settings.electionTimeoutMaxMs,
        initial: recovered,
      }));
    }
    const phaseMs = this.#netPrng.int(this.settings.tickMs);
    this.#queue.push(this.nowMs + phaseMs, { kind: 'tick', node: node.index, incarnation: node.incarnation });
  }

  #handle(node: SimNode, group: number, event: RaftEvent): void {
    const core = node.cores[group];
    const effects = core.handle(event);
    this.#mix(this.nowMs, node.index, group, EVENT_CODES[event.type] ?? 0, effects.length, core.term, core.commitIndex, core.lastIndex);
    this.checkers[group].afterEvent(node.id, effects, core, (from, to) => core.entries(from, to));
    this.#execute(node, group, effects);
  }

  #execute(node: SimNode, group: number, effects: RaftEffect[]): void {
    const incarnation = node.incarnation;
    for (const effect of effects) {
      // A crash inside this loop (it cannot happen today) would make the rest moot.
      if (node.incarnation !== incarnation) return;
      switch (effect.type) {
        case 'send':
          this.#send(node.index, this.#indexOf(effect.to), group, effect.message);
          break;
        case 'persist_entries':
          node.disk.queue(group, effect.entries);
          if (!node.disk.syncScheduled) {
            node.disk.syncScheduled = true;
            const delayMs = this.#diskPrng.between(this.settings.syncMinMs, this.settings.syncMaxMs);
            this.#queue.push(this.nowMs + delayMs, { kind: 'sync', node: node.index, incarnation });
          }
          break;
        case 'persist_meta':
          node.disk.writeMeta(group, effect.term, effect.votedFor);
          break;
        case 'command_accepted': {
          const key = `${node.index}:${incarnation}:${effect.correlation}`;
          const onAcknowledged = this.#acknowledgeCallbacks.get(key);
          this.#acknowledgeCallbacks.delete(key);
          this.#pendingCommands.set(`${node.index}:${incarnation}:${group}:${effect.index}`, {
            group, term: effect.term, index: effect.index, onAcknowledged,
          });
          break;
        }
        case 'command_rejected':
          this.#acknowledgeCallbacks.delete(`${node.index}:${incarnation}:${effect.correlation}`);
          break;
        case 'apply':
          for (const entry of effect.entries) this.#acknowledge(node, group, entry);
          break;
        case 'read_ready': {
          const key = `${node.index}:${incarnation}:${effect.correlation}`;
          const read = this.#pendingReads.get(key);
          this.#pendingReads.delete(key);
          if (read !== undefined) {
            this.stats.readsChecked += 1;
            if (effect.readIndex < read.appliedMaxAtIssue) {
              throw new SafetyViolation(
                `group ${group}, member ${node.id}: stale read: read index ${effect.readIndex} is below index ${read.appliedMaxAtIssue}, applied before the read was issued`,
              );
            }
          }
          break;
        }
        case 'read_rejected':
          this.#pendingReads.delete(`${node.index}:${incarnation}:${effect.correlation}`);
          break;
        default:
          break;
      }
    }
  }

  #acknowledge(node: SimNode, group: number, entry: LogEntry): void {
    const key = `${node.index}:${node.incarnation}:${group}:${entry.index}`;
    const pending = this.#pendingCommands.get(key);
    if (pending === undefined) return;
    this.#pendingCommands.delete(key);
    if (pending.term !== entry.term) return;
    this.stats.commandsAcknowledged += 1;
    pending.onAcknowledged?.();
  }

  #process(event: SimEvent): void {
    switch (event.kind) {
      case 'action':
        event.run();
        return;
      case 'tick':
        this.#tick(event.node, event.incarnation);
        return;
      case 'deliver':
        this.#deliver(event);
        return;
      case 'ping':
        this.#receivePing(event);
        return;
      case 'close':
        this.#receiveClose(event);
        return;
      case 'connected':
        this.#connected(event.dialer, event.acceptor, event.dialerIncarnation);
        return;
      case 'sync':
        this.#sync(event);
        return;
    }
  }

  #tick(index: number, incarnation: number): void {
    const node = this.nodes[index];
    if (!node.alive || node.incarnation !== incarnation) return;
    this.#queue.push(this.nowMs + this.settings.tickMs, { kind: 'tick', node: index, incarnation });
    if (node.paused) return;

    for (let group = 0; group < node.cores.length; group++) {
      if (node.cores[group].needsTick()) this.#handle(node, group, { type: 'tick', nowMs: this.nowMs });
      if (node.incarnation !== incarnation) return;
    }

    const sendPings = this.nowMs >= node.nextPingMs;
    if (sendPings) node.nextPingMs = this.nowMs + this.settings.heartbeatIntervalMs;
    for (const peer of this.nodes) {
      if (peer.index === index) continue;
      const connection = this.#connection(index, peer.index);
      const end = index < peer.index ? 0 : 1;
      if (connection.up[end]) {
        if (this.nowMs - connection.lastReceivedMs[end] >= this.settings.suspectAfterMs) {
          this.#closeEnd(index, peer.index, true);
        } else if (sendPings) {
          this.#sendPing(index, peer.index, connection);
        }
      } else if (end === 0 && !connection.dialPending && this.nowMs >= connection.nextDialMs) {
        connection.dialPending = true;
        connection.nextDialMs = this.nowMs + this.settings.reconnectIntervalMs + this.#netPrng.int(this.settings.reconnectIntervalMs);
        const rttMs = 2 * this.#netPrng.between(this.#network.delayMinMs, this.#network.delayMaxMs);
        this.#queue.push(this.nowMs + rttMs, { kind: 'connected', dialer: index, acceptor: peer.index, dialerIncarnation: incarnation });
      }
    }
  }

  // ---- internals: network and failure detector ----

  #connection(a: number, b: number): Connection {
    return this.#connections.get(a < b ? `${a}|${b}` : `${b}|${a}`)!;
  }

  #endUp(self: number, peer: number): boolean {
    return this.#connection(self, peer).up[self < peer ? 0 : 1];
  }

  #isBlocked(from: number, to: number): boolean {
    return this.blocked.has(`${from}>${to}`);
  }

  #send(from: number, to: number, group: number, message: RaftMessage): void {
    this.stats.messagesSent += 1;
    const connection = this.#connection(from, to);
    if (!connection.up[from < to ? 0 : 1] || this.#isBlocked(from, to) || this.#netPrng.chance(this.#network.dropRate)) {
      this.stats.messagesDropped += 1;
      return;
    }
    const copies = this.#netPrng.chance(this.#network.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delayMs = this.#netPrng.between(this.#network.delayMinMs, this.#network.delayMaxMs);
      this.#queue.push(this.nowMs + delayMs, { kind: 'deliver', from, to, group, message, epoch: connection.epoch });
    }
  }

  #sendPing(from: number, to: number, connection: Connection): void {
    if (this.#isBlocked(from, to)) return;
    const delayMs = this.#netPrng.between(this.#network.delayMinMs, this.#network.delayMaxMs);
    this.#queue.push(this.nowMs + delayMs, { kind: 'ping', from, to, epoch: connection.epoch });
  }

  /** Returns the receiving node if a message on the connection at `epoch` reaches a running end that is up, deferring it if the node is paused. */
  #arrive(event: SimEvent & { from: number; to: number; epoch: number }): SimNode | undefined {
    const node = this.nodes[event.to];
    if (!node.alive) return undefined;
    if (node.paused) {
      node.deferred.push(event);
      return undefined;
    }
    const connection = this.#connection(event.from, event.to);
    const end = event.to < event.from ? 0 : 1;
    if (connection.epoch !== event.epoch || !connection.up[end] || this.#isBlocked(event.from, event.to)) return undefined;
    connection.lastReceivedMs[end] = this.nowMs;
    return node;
  }

  #deliver(event: Extract<SimEvent, { kind: 'deliver' }>): void {
    const node = this.#arrive(event);
    if (node === undefined) {
      if (!this.nodes[event.to].paused) this.stats.messagesDropped += 1;
      return;
    }
    this.stats.messagesDelivered += 1;
    this.#handle(node, event.group, { type: 'message', from: this.nodes[event.from].id, message: event.message, nowMs: this.nowMs });
  }

  #receivePing(event: Extract<SimEvent, { kind: 'ping' }>): void {
    this.#arrive(event);
  }

  #receiveClose(event: Extract<SimEvent, { kind: 'close' }>): void {
    const node = this.nodes[event.to];
    if (!node.alive) return;
    if (node.paused) {
      node.deferred.push(event);
      return;
    }
    const connection = this.#connection(event.from, event.to);
    if (connection.epoch !== event.epoch) return;
    this.#closeEnd(event.to, event.from, false);
  }

  /** Marks `self`'s view of `peer` down, reports it to its cores, and sends a close notice to the peer. */
  #closeEnd(self: number, peer: number, notifySelf: boolean): void {
    const connection = this.#connection(self, peer);
    const end = self < peer ? 0 : 1;
    const wasUp = connection.up[end];
    connection.up[end] = false;
    if (!wasUp) return;
    const node = this.nodes[self];
    if (node.alive && (notifySelf || !node.paused)) this.#notifyPeerStatus(node, peer, false);
    if (!this.#isBlocked(self, peer)) {
      const delayMs = this.#netPrng.between(this.#network.delayMinMs, this.#network.delayMaxMs);
      this.#queue.push(this.nowMs + delayMs, { kind: 'close', from: self, to: peer, epoch: connection.epoch });
    }
  }

  #connected(dialer: number, acceptor: number, dialerIncarnation: number): void {
    const connection = this.#connection(dialer, acceptor);
    connection.dialPending = false;
    const a = this.nodes[dialer];
    const b = this.nodes[acceptor];
    if (!a.alive || a.incarnation !== dialerIncarnation || a.paused || !b.alive || b.paused) return;
    if (this.#isBlocked(dialer, acceptor) || this.#isBlocked(acceptor, dialer) || connection.up[0]) return;
    connection.epoch += 1;
    this.#mix(this.nowMs, dialer, acceptor, 100, connection.epoch, 0, 0, 0);
    if (connection.up[1]) {
      // The acceptor still held the old connection: the new handshake replaces it.
      connection.up[1] = false;
      this.#notifyPeerStatus(b, dialer, false);
    }
    connection.up = [true, true];
    connection.lastReceivedMs = [this.nowMs, this.nowMs];
    this.#notifyPeerStatus(a, acceptor, true);
    this.#notifyPeerStatus(b, dialer, true);
  }

  #notifyPeerStatus(node: SimNode, peer: number, up: boolean): void {
    const incarnation = node.incarnation;
    for (let group = 0; group < node.cores.length; group++) {
      this.#handle(node, group, { type: 'peer_status', peer: this.nodes[peer].id, up, nowMs: this.nowMs });
      if (node.incarnation !== incarnation) return;
    }
  }

  #sync(event: Extract<SimEvent, { kind: 'sync' }>): void {
    const node = this.nodes[event.node];
    if (!node.alive || node.incarnation !== event.incarnation) return;
    if (node.paused) {
      node.deferred.push(event);
      return;
    }
    for (const write of node.disk.sync()) {
      const first = write.entries[0];
      const last = write.entries[write.entries.length - 1];
      this.#handle(node, write.group, { type: 'written', term: last.term, fromIndex: first.index, toIndex: last.index, nowMs: this.nowMs });
    }
  }

  #randomRunningNode(prng: Prng): SimNode | undefined {
    const running = this.nodes.filter((n) => n.alive && !n.paused);
    return running.length === 0 ? undefined : prng.pick(running);
  }

  #indexOf(id: string): number {
    const index = Number(id.slice(1)) - 1;
    if (this.nodes[index]?.id !== id) throw new Error(`unknown node id ${id}`);
    return index;
  }

  #countFault(kind: FaultKind, detail: string): void {
    this.stats.faults[kind] = (this.stats.faults[kind] ?? 0) + 1;
    this.#mix(this.nowMs, FAULT_CODES[kind], detail.length, 200, 0, 0, 0, 0);
    this.trace.push(`${this.nowMs} ms ${kind} ${detail}`);
    if (this.trace.length > TRACE_LINES_MAX) this.trace.shift();
  }

  #mix(...values: number[]): void {
    let hash = this.digest;
    for (const value of values) {
      hash = Math.imul(hash ^ (value & 0xffff), 0x01000193) >>> 0;
      hash = Math.imul(hash ^ ((value >>> 16) & 0xffff), 0x01000193) >>> 0;
    }
    this.digest = hash;
  }
}

/** Latency bound after calmNetwork(): far below the election timeout, so elections can succeed. */
const CALM_DELAY_MAX_MS = 20;

/** Fault lines kept for a failure report. */
const TRACE_LINES_MAX = 200;

/** Trace codes of the event types; a type added to the core later gets code 0. */
const EVENT_CODES: Partial<Record<RaftEvent['type'], number>> = {
  tick: 1, message: 2, command: 3, read_index: 4, written: 5, peer_status: 6, trigger_election: 7,
};

const FAULT_CODES: Record<FaultKind, number> = {
  isolate: 1, split: 2, ring: 3, one_way: 4, bridge: 5, heal: 6, crash: 7, restart: 8, pause: 9, resume: 10, fsync_error: 11, calm: 12,
};
