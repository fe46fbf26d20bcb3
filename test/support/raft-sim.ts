// A deterministic in-memory cluster for testing RaftCore: N cores, a message queue the test
// controls (deliver, drop, reorder, partition), a fake durable log per member that turns
// persist_entries into a `written` event when the test decides, and virtual time. The sim
// checks two Raft safety properties after every event: at most one leader per term, and
// every member applies the same entry at each index, each index once and in order.

import { RaftCore, type RaftCoreOptions } from '../../src/main/raft/core.js';
import type { LogEntry, Member, PeerId, RaftEffect, RaftEvent, RaftMessage } from '../../src/main/raft/types.js';

/** Seeded PRNG (mulberry32): returns numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface QueuedMessage {
  from: PeerId;
  to: PeerId;
  message: RaftMessage;
}

/** What a member has made durable: the meta file and the log, as persist effects left them. */
export interface DurableState {
  term: number;
  votedFor: PeerId | null;
  entries: LogEntry[];
}

export interface SimNode {
  id: PeerId;
  core: RaftCore;
  alive: boolean;
  durable: DurableState;
  /** persist_entries effects not yet durable, oldest first. */
  pendingWrites: LogEntry[][];
  applied: LogEntry[];
  /** Every effect this member returned since it last started, in order. */
  effects: RaftEffect[];
  ticks: number;
}

export interface SimOptions {
  ids: PeerId[];
  seed?: number;
  /** Memberships; every id is a voter unless listed here. */
  memberships?: Partial<Record<PeerId, Member['membership']>>;
  core?: Partial<Omit<RaftCoreOptions, 'id' | 'members' | 'random' | 'initial'>>;
  /** Durable state each member starts from; members not listed start empty. */
  initial?: Partial<Record<PeerId, DurableState>>;
  /** When true (the default), settle() completes pending writes as well as delivering messages. */
  autoWrite?: boolean;
}

const SETTLE_STEPS_MAX = 100_000;

export class RaftSim {
  readonly nodes = new Map<PeerId, SimNode>();
  readonly members: Member[];
  queue: QueuedMessage[] = [];
  nowMs = 0;
  autoWrite: boolean;
  /** Messages sent by any member, counted at send time (dropped ones included). */
  sentCount = 0;
  readonly #random: () => number;
  readonly #coreOptions: SimOptions['core'];
  /** Directed links that drop messages, as "from>to". */
  readonly #cutLinks = new Set<string>();
  readonly #leaderByTerm = new Map<number, PeerId>();
  /** The entry every member applied at each index, for the state machine safety check. */
  readonly #appliedByIndex = new Map<number, LogEntry>();

  constructor(options: SimOptions) {
    this.#random = mulberry32(options.seed ?? 1);
    this.#coreOptions = options.core;
    this.autoWrite = options.autoWrite ?? true;
    this.members = options.ids.map((id) => ({ id, membership: options.memberships?.[id] ?? 'voter' }));
    for (const id of options.ids) {
      const initialState = options.initial?.[id];
      const durable: DurableState = initialState
        ? { term: initialState.term, votedFor: initialState.votedFor, entries: [...initialState.entries] }
        : { term: 0, votedFor: null, entries: [] };
      this.nodes.set(id, this.#newNode(id, durable));
    }
  }

  node(id: PeerId): SimNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no member ${id} in the sim`);
    return node;
  }

  core(id: PeerId): RaftCore {
    return this.node(id).core;
  }

  /** Returns the live leader with the highest term, or undefined. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodes.values()) {
      if (!node.alive || node.core.role !== 'leader') continue;
      if (best === undefined || node.core.term > best.core.term) best = node;
    }
    return best;
  }

  /** Feeds one event to a member and executes its effects. Returns the effects. */
  handle(id: PeerId, event: RaftEvent): RaftEffect[] {
    const node = this.node(id);
    if (!node.alive) throw new Error(`member ${id} is crashed; restart it first`);
    const effects = node.core.handle(event);
    this.#execute(node, effects);
    this.#checkElectionSafety(node);
    return effects;
  }

  tick(id: PeerId): RaftEffect[] {
    this.node(id).ticks += 1;
    return this.handle(id, { type: 'tick', nowMs: this.nowMs });
  }

  command(id: PeerId, correlation: number, text = `c${correlation}`): RaftEffect[] {
    return this.handle(id, { type: 'command', correlation, data: new TextEncoder().encode(text), nowMs: this.nowMs });
  }

  readIndex(id: PeerId, correlation: number): RaftEffect[] {
    return this.handle(id, { type: 'read_index', correlation, nowMs: this.nowMs });
  }

  peerStatus(id: PeerId, peer: PeerId, up: boolean): RaftEffect[] {
    return this.handle(id, { type: 'peer_status', peer, up, nowMs: this.nowMs });
  }

  /** Makes the oldest pending write of a member durable and reports it. Returns false when none is pending. */
  completeWrite(id: PeerId): boolean {
    const node = this.node(id);
    const entries = node.pendingWrites.shift();
    if (entries === undefined || entries.length === 0) return false;
    const first = entries[0].index;
    if (first > node.durable.entries.length + 1) {
      throw new Error(`member ${id} wrote entry ${first} after only ${node.durable.entries.length} durable entries`);
    }
    node.durable.entries.length = first - 1;
    node.durable.entries.push(...entries);
    const last = entries[entries.length - 1];
    this.handle(id, { type: 'written', term: last.term, fromIndex: first, toIndex: last.index, nowMs: this.nowMs });
    return true;
  }

  /** Delivers the queued message at `position` (0 = oldest). Returns false if the queue is shorter. */
  deliver(position = 0): boolean {
    const item = this.queue[position];
    if (item === undefined) return false;
    this.queue.splice(position, 1);
    const target = this.nodes.get(item.to);
    if (target === undefined || !target.alive || this.#isCut(item.from, item.to)) return true;
    this.handle(item.to, { type: 'message', from: item.from, message: item.message, nowMs: this.nowMs });
    return true;
  }

  /** Removes queued messages that match, and returns how many were removed. */
  drop(match: (item: QueuedMessage) => boolean): number {
    const before = this.queue.length;
    this.queue = this.queue.filter((item) => !match(item));
    return before - this.queue.length;
  }

  /** Delivers messages (and completes writes when autoWrite is on) until nothing is left to do. */
  settle(): void {
    for (let step = 0; step < SETTLE_STEPS_MAX; step++) {
      if (this.autoWrite && this.#completeAnyWrite()) continue;
      if (!this.deliver()) return;
    }
    throw new Error(`the sim did not settle within ${SETTLE_STEPS_MAX} steps; a member keeps sending`);
  }

  /** Advances virtual time by `durationMs` in steps, ticking every live member whose needsTick() is true, then settling. */
  advance(durationMs: number, stepMs = 10): void {
    const endMs = this.nowMs + durationMs;
    while (this.nowMs < endMs) {
      this.nowMs = Math.min(this.nowMs + stepMs, endMs);
      for (const node of this.nodes.values()) {
        if (node.alive && node.core.needsTick()) this.tick(node.id);
      }
      this.settle();
    }
  }

  /** Advances time until `done()` holds; throws after `timeoutMs` of virtual time. */
  runUntil(done: () => boolean, timeoutMs = 10_000, stepMs = 10): void {
    this.settle();
    const endMs = this.nowMs + timeoutMs;
    while (!done()) {
      if (this.nowMs >= endMs) throw new Error(`condition not reached within ${timeoutMs} ms of virtual time`);
      this.advance(stepMs, stepMs);
    }
  }

  /** Runs until some member leads and every live member follows it; returns the leader. */
  elect(timeoutMs = 10_000): SimNode {
    this.runUntil(() => {
      const leader = this.leader();
      if (leader === undefined) return false;
      return [...this.nodes.values()].every(
        (n) => !n.alive || this.#isolatedFrom(n.id, leader.id) || (n.core.term === leader.core.term && n.core.leaderId === leader.id),
      );
    }, timeoutMs);
    return this.leader()!;
  }

  /** Cuts both directions between `id` and every other member. */
  isolate(id: PeerId): void {
    for (const other of this.nodes.keys()) {
      if (other !== id) this.cut(id, other);
    }
  }

  cut(a: PeerId, b: PeerId): void {
    this.#cutLinks.add(`${a}>${b}`);
    this.#cutLinks.add(`${b}>${a}`);
  }

  heal(): void {
    this.#cutLinks.clear();
  }

  /** Stops a member: queued messages to it and writes not yet durable are lost. */
  crash(id: PeerId): void {
    const node = this.node(id);
    node.alive = false;
    node.pendingWrites = [];
    this.drop((item) => item.to === id);
  }

  /** Starts a member again from its durable state. */
  restart(id: PeerId): SimNode {
    const old = this.node(id);
    const durable: DurableState = { term: old.durable.term, votedFor: old.durable.votedFor, entries: [...old.durable.entries] };
    const node = this.#newNode(id, durable);
    this.nodes.set(id, node);
    return node;
  }

  /** Effects of one type that a member returned since it started. */
  effectsOf<T extends RaftEffect['type']>(id: PeerId, type: T): Extract<RaftEffect, { type: T }>[] {
    return this.node(id).effects.filter((e): e is Extract<RaftEffect, { type: T }> => e.type === type);
  }

  #newNode(id: PeerId, durable: DurableState): SimNode {
    const core = new RaftCore({
      ...this.#coreOptions,
      id,
      members: this.members,
      random: this.#random,
      initial: { term: durable.term, votedFor: durable.votedFor, entries: [...durable.entries] },
    });
    return { id, core, alive: true, durable, pendingWrites: [], applied: [], effects: [], ticks: 0 };
  }

  #execute(node: SimNode, effects: RaftEffect[]): void {
    for (const effect of effects) {
      node.effects.push(effect);
      switch (effect.type) {
        case 'send':
          this.sentCount += 1;
          if (!this.#isCut(node.id, effect.to)) this.queue.push({ from: node.id, to: effect.to, message: effect.message });
          break;
        case 'persist_entries':
          node.pendingWrites.push(effect.entries);
          break;
        case 'persist_meta':
          node.durable.term = effect.term;
          node.durable.votedFor = effect.votedFor;
          break;
        case 'apply':
          this.#recordApply(node, effect.entries);
          break;
        default:
          break;
      }
    }
  }

  #recordApply(node: SimNode, entries: LogEntry[]): void {
    for (const entry of entries) {
      if (entry.index !== node.applied.length + 1) {
        throw new Error(`member ${node.id} applied entry ${entry.index} after ${node.applied.length} entries`);
      }
      node.applied.push(entry);
      const seen = this.#appliedByIndex.get(entry.index);
      if (seen === undefined) this.#appliedByIndex.set(entry.index, entry);
      else if (seen.term !== entry.term || seen.kind !== entry.kind || !sameBytes(seen.data, entry.data)) {
        throw new Error(
          `state machine safety violated at index ${entry.index}: member ${node.id} applied term ${entry.term}, another applied term ${seen.term}`,
        );
      }
    }
  }

  #checkElectionSafety(node: SimNode): void {
    if (node.core.role !== 'leader') return;
    const term = node.core.term;
    const known = this.#leaderByTerm.get(term);
    if (known === undefined) this.#leaderByTerm.set(term, node.id);
    else if (known !== node.id) throw new Error(`election safety violated: ${known} and ${node.id} both lead term ${term}`);
  }

  #completeAnyWrite(): boolean {
    for (const node of this.nodes.values()) {
      if (node.alive && node.pendingWrites.length > 0) return this.completeWrite(node.id);
    }
    return false;
  }

  #isCut(from: PeerId, to: PeerId): boolean {
    return this.#cutLinks.has(`${from}>${to}`);
  }

  #isolatedFrom(a: PeerId, b: PeerId): boolean {
    return this.#isCut(a, b) && this.#isCut(b, a);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Creates log entries for `initial` state: one per term in `terms`, starting at index 1. */
export function entriesWithTerms(terms: number[]): LogEntry[] {
  return terms.map((term, i) => ({ index: i + 1, term, kind: 'command', data: new Uint8Array([i + 1]) }));
}
