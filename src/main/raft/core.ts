// The pure Raft core of one group member. It does no I/O and reads no clock: time arrives in
// events (`nowMs`), randomness through the injected `random` function, and every decision
// leaves as an effect for the server wrapper to execute in order.
//
// Unlike textbook Raft, an idle group exchanges no heartbeats. A follower with a known leader
// runs no election timer. It starts one only when no leader is known, when the node-level
// failure detector suspects the leader's node (`peer_status`), or on `trigger_election`.
// A leader that receives a pre-vote or a stale vote request from a member replies with an
// append-entries, so a member that lost track of the leader learns it without an election.

import { InvalidConfigError } from '../errors.js';
import { RaftInvariantError } from './invariant.js';
import { RaftLog } from './log.js';
import type {
  AppendEntriesReply,
  AppendEntriesRequest,
  InstallSnapshotReply,
  InstallSnapshotRequest,
  LogEntry,
  LogStorage,
  Member,
  PeerId,
  RaftEffect,
  RaftEvent,
  RaftMessage,
  RequestVoteReply,
  RequestVoteRequest,
  Role,
  SnapshotMeta,
} from './types.js';

export interface RaftCoreOptions {
  id: PeerId;
  members: Member[];
  /** Returns a number in [0, 1), like Math.random. Tests pass a seeded generator. */
  random: () => number;
  /** Election deadlines are drawn uniformly from [min, max). Defaults 300 and 600. */
  electionTimeoutMinMs?: number;
  electionTimeoutMaxMs?: number;
  /** A leader resends unacknowledged append-entries after this long without a reply. Default 500. */
  resendTimeoutMs?: number;
  /** Entries in one append-entries request. Default 512. */
  maxEntriesPerAppend?: number;
  /** Entries sent to one follower beyond its match index, before the leader waits for replies. Default 8192. */
  maxInflightEntries?: number;
  /**
   * Run a pre-vote round before each election. Default true; false gives textbook elections,
   * where a member cut off from the others raises its term on every retry.
   */
  preVote?: boolean;
  /** Entries applied per event; the rest follow on later ticks, so a long catch-up does not stall the event loop. Default 8192. */
  maxEntriesPerApply?: number;
  /**
   * State recovered from disk. Every entry in it counts as durable (written). `entries` are the
   * ones held in memory. They start above the snapshot, and at most one past the storage's
   * last index.
   */
  initial?: { term: number; votedFor: PeerId | null; entries: LogEntry[]; snapshot?: SnapshotMeta };
  /**
   * Durable entries below the in-memory ones (segment files). Default none: every entry stays in
   * memory, as the core tests and the simulator use it.
   */
  storage?: LogStorage;
}

/** Replication state the leader keeps for one other member. */
export interface FollowerStatus {
  id: PeerId;
  nextIndex: number;
  matchIndex: number;
  /** False while the node-level failure detector suspects the member's node. */
  up: boolean;
}

export interface RaftStatus {
  id: PeerId;
  role: Role;
  term: number;
  leaderId: PeerId | null;
  votedFor: PeerId | null;
  commitIndex: number;
  lastApplied: number;
  lastIndex: number;
  lastWritten: number;
  electionDeadlineMs: number | null;
  /** Empty unless this member leads. */
  followers: FollowerStatus[];
  /** Read-index requests not yet confirmed by a quorum round. */
  pendingReads: number;
}

interface FollowerProgress {
  /** Next index to send. Advances optimistically when entries are sent. Invariant: matchIndex < nextIndex. */
  nextIndex: number;
  /** Highest index the follower reported durable and matching this leader's log. */
  matchIndex: number;
  /** Seq of the last append-entries sent to this follower. */
  sentSeq: number;
  /** Highest seq echoed in a reply from this follower in the current term. */
  ackSeq: number;
  /** Failure replies to requests older than this seq are stale (an earlier reset covered them) and are ignored. */
  resetSeq: number;
  /** Commit index the follower can derive from what was sent to it. */
  commitIndexSent: number;
  /** When the follower last replied, or when the current run of unacknowledged sends began. */
  lastProgressMs: number;
  /** Snapshot transfer under way to this follower, or null. Append-entries wait while it runs. */
  snapshot: { index: number; attempt: number } | null;
}

/** One read-index request waiting for a quorum of voters to acknowledge append-entries numbered `seq` or later. */
interface ReadRound {
  correlation: number;
  readIndex: number;
  seq: number;
}

const DEFAULT_ELECTION_TIMEOUT_MIN_MS = 300;
const DEFAULT_ELECTION_TIMEOUT_MAX_MS = 600;
const DEFAULT_RESEND_TIMEOUT_MS = 500;
const DEFAULT_MAX_ENTRIES_PER_APPEND = 512;
const DEFAULT_MAX_INFLIGHT_ENTRIES = 8192;
const DEFAULT_MAX_ENTRIES_PER_APPLY = 8192;
/** A stalled snapshot transfer is retried after resendTimeoutMs, doubling per attempt up to this factor. */
const SNAPSHOT_RETRY_BACKOFF_MAX = 16;

export class RaftCore {
  readonly #id: PeerId;
  readonly #members: readonly Member[];
  readonly #voterIds: ReadonlySet<PeerId>;
  /** Votes needed to win an election or commit: a majority of voters. */
  readonly #quorumSize: number;
  readonly #random: () => number;
  readonly #electionTimeoutMinMs: number;
  readonly #electionTimeoutMaxMs: number;
  readonly #resendTimeoutMs: number;
  readonly #maxEntriesPerAppend: number;
  readonly #maxInflightEntries: number;
  readonly #preVote: boolean;
  readonly #maxEntriesPerApply: number;

  // Durable state (persisted through persist_meta before any effect that depends on it).
  #term: number;
  #votedFor: PeerId | null;
  readonly #log: RaftLog;

  // Volatile state of every role.
  #role: Role = 'follower';
  #leaderId: PeerId | null = null;
  /** Highest index durable on this member. Invariant: lastWritten <= log.lastIndex. */
  #lastWritten: number;
  /** Invariant: lastApplied <= commitIndex <= log.lastIndex. */
  #commitIndex = 0;
  #lastApplied = 0;
  #electionDeadlineMs: number | null = null;
  /** True when an election timer is needed but no event has carried the time yet (at construction). */
  #electionTimerPending = false;
  /** Peers whose node the failure detector currently suspects. */
  readonly #peersDown = new Set<PeerId>();
  #nowMs = 0;
  #effects: RaftEffect[] = [];

  // Follower state, reset whenever the term or the leader changes.
  /** True while the failure detector suspects the known leader's node. */
  #leaderSuspected = false;
  /** Highest index known to match the current leader's log (written or not). */
  #leaderMatchIndex = 0;
  /**
   * Highest commit index the current leader sent, in any request, accepted or rejected. A
   * rejected request may be the only one that carried it, when it overtook the entries.
   */
  #leaderCommit = 0;
  /** Seq of the latest append-entries from the current leader, echoed in every reply. */
  #leaderSeq = 0;

  // Pre-candidate and candidate state.
  readonly #votesGranted = new Set<PeerId>();

  // Leader state.
  readonly #progress = new Map<PeerId, FollowerProgress>();
  /** Seq of the last append-entries this core sent; increases for the core's lifetime. */
  #seq = 0;
  /**
   * Read rounds in seq order.
   * NOTE: not bounded here; the server wrapper bounds outstanding reads per server.
   */
  #readRounds: ReadRound[] = [];
  /** Reads that arrived before the leader committed an entry of its own term. */
  #readsAwaitingCommit: number[] = [];
  #readRoundSentMs = 0;

  constructor(options: RaftCoreOptions) {
    this.#id = options.id;
    this.#members = validateMembers(options.id, options.members);
    this.#voterIds = new Set(this.#members.filter((m) => m.membership === 'voter').map((m) => m.id));
    this.#quorumSize = Math.floor(this.#voterIds.size / 2) + 1;
    this.#random = options.random;
    this.#electionTimeoutMinMs = options.electionTimeoutMinMs ?? DEFAULT_ELECTION_TIMEOUT_MIN_MS;
    this.#electionTimeoutMaxMs = options.electionTimeoutMaxMs ?? DEFAULT_ELECTION_TIMEOUT_MAX_MS;
    this.#resendTimeoutMs = options.resendTimeoutMs ?? DEFAULT_RESEND_TIMEOUT_MS;
    this.#maxEntriesPerAppend = options.maxEntriesPerAppend ?? DEFAULT_MAX_ENTRIES_PER_APPEND;
    this.#maxInflightEntries = options.maxInflightEntries ?? DEFAULT_MAX_INFLIGHT_ENTRIES;
    this.#preVote = options.preVote ?? true;
    this.#maxEntriesPerApply = options.maxEntriesPerApply ?? DEFAULT_MAX_ENTRIES_PER_APPLY;
    validatePositiveInteger('maxEntriesPerApply', this.#maxEntriesPerApply);
    validateTimeouts(this.#electionTimeoutMinMs, this.#electionTimeoutMaxMs, this.#resendTimeoutMs);
    validatePositiveInteger('maxEntriesPerAppend', this.#maxEntriesPerAppend);
    validatePositiveInteger('maxInflightEntries', this.#maxInflightEntries);

    const initial = options.initial ?? { term: 0, votedFor: null, entries: [] };
    this.#term = initial.term;
    this.#votedFor = initial.votedFor;
    this.#log = new RaftLog(initial.entries, options.storage ?? null, initial.snapshot ?? null);
    this.#lastWritten = this.#log.lastIndex;
    // A snapshot contains committed, applied state only.
    this.#commitIndex = this.#log.snapshotIndex;
    this.#lastApplied = this.#log.snapshotIndex;
    if (this.#log.lastTerm > this.#term) {
      throw new InvalidConfigError(
        `recovered log ends with term ${this.#log.lastTerm} but the recovered term is ${this.#term}; the meta file and the log disagree`,
      );
    }

    // Start-up: no leader is known, so a voter arms its election timer at the first event.
    this.#electionTimerPending = this.#voterIds.has(this.#id);
  }

  get role(): Role {
    return this.#role;
  }
  get term(): number {
    return this.#term;
  }
  get leaderId(): PeerId | null {
    return this.#leaderId;
  }
  get votedFor(): PeerId | null {
    return this.#votedFor;
  }
  get commitIndex(): number {
    return this.#commitIndex;
  }
  get lastApplied(): number {
    return this.#lastApplied;
  }
  get lastIndex(): number {
    return this.#log.lastIndex;
  }
  get lastWritten(): number {
    return this.#lastWritten;
  }
  get members(): readonly Member[] {
    return this.#members;
  }
  /** Index of the last entry folded into a snapshot (0 without one). */
  get snapshotIndex(): number {
    return this.#log.snapshotIndex;
  }
  /** First index held in memory; lower ones down to snapshotIndex + 1 are read from storage. */
  get memoryFirstIndex(): number {
    return this.#log.memoryFirstIndex;
  }

  /** Returns the term of the entry at `index`, or undefined when the log does not hold it. */
  termAt(index: number): number | undefined {
    return this.#log.termAt(index);
  }

  /** Returns the entries held in memory, by reference. */
  memoryEntries(): readonly LogEntry[] {
    return this.#log.memoryEntries();
  }

  /** Returns log entries `fromIndex..toIndex` inclusive. Throws RaftInvariantError outside the log. */
  entries(fromIndex: number, toIndex: number): LogEntry[] {
    return this.#log.slice(fromIndex, toIndex);
  }

  status(): RaftStatus {
    const followers: FollowerStatus[] = [];
    for (const [id, p] of this.#progress) {
      followers.push({ id, nextIndex: p.nextIndex, matchIndex: p.matchIndex, up: !this.#peersDown.has(id) });
    }
    return {
      id: this.#id,
      role: this.#role,
      term: this.#term,
      leaderId: this.#leaderId,
      votedFor: this.#votedFor,
      commitIndex: this.#commitIndex,
      lastApplied: this.#lastApplied,
      lastIndex: this.#log.lastIndex,
      lastWritten: this.#lastWritten,
      electionDeadlineMs: this.#electionDeadlineMs,
      followers,
      pendingReads: this.#readRounds.length + this.#readsAwaitingCommit.length,
    };
  }

  /**
   * Returns true while the core needs 'tick' events: an election deadline is set, or a leader
   * has unacknowledged appends or a pending read round. An idle group returns false.
   */
  needsTick(): boolean {
    if (this.#lastApplied < this.#commitIndex) return true;
    if (this.#role !== 'leader') return this.#electionDeadlineMs !== null || this.#electionTimerPending;
    if (this.#readRounds.length > 0) return true;
    for (const [id, p] of this.#progress) {
      if (!this.#peersDown.has(id) && isOutstanding(p)) return true;
    }
    return false;
  }

  /** Processes one event and returns the effects to execute, in order. */
  handle(event: RaftEvent): RaftEffect[] {
    this.#effects = [];
    this.#nowMs = event.nowMs;
    const roleBefore = this.#role;
    const termBefore = this.#term;
    const leaderBefore = this.#leaderId;

    if (this.#electionTimerPending) {
      this.#electionTimerPending = false;
      if (this.#electionDeadlineMs === null && this.#role !== 'leader') this.#armElectionTimer();
    }

    switch (event.type) {
      case 'tick':
        this.#handleTick();
        break;
      case 'message':
        this.#handleMessage(event.from, event.message);
        break;
      case 'command':
        if (this.#acceptCommand(event.correlation, event.data)) this.#replicateToAll();
        break;
      case 'commands': {
        let accepted = false;
        for (const command of event.commands) {
          if (this.#acceptCommand(command.correlation, command.data)) accepted = true;
        }
        if (accepted) this.#replicateToAll();
        break;
      }
      case 'read_index':
        this.#handleReadIndex(event.correlation);
        break;
      case 'written':
        this.#handleWritten(event.term, event.toIndex);
        break;
      case 'peer_status':
        this.#handlePeerStatus(event.peer, event.up);
        break;
      case 'trigger_election':
        if (this.#role !== 'leader') this.#startPreVote();
        break;
      case 'segments_flushed':
        if (event.toIndex <= this.#lastWritten) this.#log.releaseThrough(event.toIndex, event.term);
        break;
      case 'snapshot_written':
        // TODO: keep a tail of entries below the snapshot, so a follower only slightly behind
        // gets append-entries instead of the whole snapshot.
        if (event.index <= this.#lastApplied) this.#log.compact(event.index, event.term);
        break;
      case 'snapshot_installed':
        this.#handleSnapshotInstalled(event.index, event.term);
        break;
    }

    this.#applyCommitted();
    if (this.#role !== roleBefore || this.#term !== termBefore || this.#leaderId !== leaderBefore) {
      this.#effects.push({ type: 'role_changed', role: this.#role, term: this.#term, leader: this.#leaderId });
    }
    const effects = this.#effects;
    this.#effects = [];
    return effects;
  }

  // ---------------------------------------------------------------------------------------
  // Role transitions

  #becomeFollower(term: number, leaderId: PeerId | null): void {
    if (term < this.#term) {
      throw new RaftInvariantError(`member ${this.#id} cannot step back from term ${this.#term} to ${term}`);
    }
    const termChanged = term > this.#term;
    if (termChanged) {
      this.#term = term;
      this.#votedFor = null;
      this.#persistMeta();
    }
    if (this.#role === 'leader') this.#stepDownAsLeader(leaderId);
    this.#role = 'follower';
    this.#votesGranted.clear();
    if (termChanged || leaderId !== this.#leaderId) this.#setLeader(leaderId);
    else this.#updateElectionTimer();
  }

  /** Records the follower's leader and arms or clears the election timer to match. */
  #setLeader(leaderId: PeerId | null): void {
    this.#leaderId = leaderId;
    this.#leaderMatchIndex = 0;
    this.#leaderCommit = 0;
    this.#leaderSeq = 0;
    this.#leaderSuspected = leaderId !== null && this.#peersDown.has(leaderId);
    this.#electionDeadlineMs = null;
    this.#updateElectionTimer();
  }

  /** A follower runs an election timer only while it has no live leader. */
  #updateElectionTimer(): void {
    const liveLeader = this.#leaderId !== null && !this.#leaderSuspected;
    if (liveLeader) this.#electionDeadlineMs = null;
    else if (this.#electionDeadlineMs === null) this.#armElectionTimer();
  }

  #armElectionTimer(): void {
    if (!this.#voterIds.has(this.#id)) return; // only voters stand for election
    const spanMs = this.#electionTimeoutMaxMs - this.#electionTimeoutMinMs;
    this.#electionDeadlineMs = this.#nowMs + this.#electionTimeoutMinMs + Math.floor(this.#random() * spanMs);
  }

  /**
   * Starts a pre-vote round: sends the voters a request asking whether they would vote for this member in the
   * next term. The term and vote stay unchanged here and at every receiver, so a member cut
   * off from the others cannot raise the group's term by retrying elections.
   */
  #startPreVote(): void {
    if (!this.#voterIds.has(this.#id)) return;
    if (!this.#preVote) {
      this.#becomeCandidate();
      return;
    }
    this.#role = 'pre_candidate';
    this.#leaderId = null;
    this.#leaderMatchIndex = 0;
    this.#leaderCommit = 0;
    this.#leaderSuspected = false;
    this.#votesGranted.clear();
    this.#votesGranted.add(this.#id);
    this.#armElectionTimer();
    if (this.#votesGranted.size >= this.#quorumSize) {
      this.#becomeCandidate();
      return;
    }
    this.#sendToOtherVoters({
      type: 'request_vote',
      term: this.#term + 1,
      candidateId: this.#id,
      lastIndex: this.#log.lastIndex,
      lastTerm: this.#log.lastTerm,
      preVote: true,
    });
  }

  #becomeCandidate(): void {
    this.#role = 'candidate';
    this.#term += 1;
    this.#votedFor = this.#id;
    this.#leaderId = null;
    this.#leaderMatchIndex = 0;
    this.#leaderCommit = 0;
    this.#leaderSuspected = false;
    this.#persistMeta();
    this.#votesGranted.clear();
    this.#votesGranted.add(this.#id);
    this.#armElectionTimer();
    if (this.#votesGranted.size >= this.#quorumSize) {
      this.#becomeLeader();
      return;
    }
    this.#sendToOtherVoters({
      type: 'request_vote',
      term: this.#term,
      candidateId: this.#id,
      lastIndex: this.#log.lastIndex,
      lastTerm: this.#log.lastTerm,
      preVote: false,
    });
  }

  #becomeLeader(): void {
    this.#role = 'leader';
    this.#leaderId = this.#id;
    this.#electionDeadlineMs = null;
    this.#votesGranted.clear();
    this.#progress.clear();
    this.#readRounds = [];
    this.#readsAwaitingCommit = [];
    const nextIndex = this.#log.lastIndex + 1;
    for (const member of this.#members) {
      if (member.id === this.#id) continue;
      this.#progress.set(member.id, {
        nextIndex,
        matchIndex: 0,
        sentSeq: 0,
        ackSeq: 0,
        resetSeq: 0,
        commitIndexSent: 0,
        lastProgressMs: this.#nowMs,
        snapshot: null,
      });
    }
    // A leader may commit only entries of its own term (the older ones ride along), so it
    // appends a noop at once rather than waiting for the first command.
    this.#appendAsLeader('noop', new Uint8Array(0));
    this.#replicateToAll();
    this.#advanceLeaderCommit();
  }

  #stepDownAsLeader(newLeaderId: PeerId | null): void {
    for (const round of this.#readRounds) this.#rejectRead(round.correlation, newLeaderId);
    for (const correlation of this.#readsAwaitingCommit) this.#rejectRead(correlation, newLeaderId);
    this.#readRounds = [];
    this.#readsAwaitingCommit = [];
    this.#progress.clear();
  }

  // ---------------------------------------------------------------------------------------
  // Events other than messages

  #handleTick(): void {
    if (this.#role === 'leader') {
      this.#resendUnacknowledged();
      return;
    }
    if (this.#electionDeadlineMs !== null && this.#nowMs >= this.#electionDeadlineMs) {
      // Also for a candidate that has not won by its deadline: a new pre-vote round with a
      // new random deadline lets split votes resolve.
      this.#startPreVote();
    }
  }

  /** Appends a client command when this member leads; returns false after rejecting it. The caller replicates. */
  #acceptCommand(correlation: number, data: Uint8Array): boolean {
    if (this.#role !== 'leader') {
      this.#effects.push({ type: 'command_rejected', correlation, leaderHint: this.#leaderId, reason: 'not_leader' });
      return false;
    }
    const entry = this.#appendAsLeader('command', data);
    this.#effects.push({ type: 'command_accepted', correlation, index: entry.index, term: entry.term });
    return true;
  }

  #handleReadIndex(correlation: number): void {
    if (this.#role !== 'leader') {
      this.#rejectRead(correlation, this.#leaderId);
      return;
    }
    // Until it commits an entry of its own term, a new leader does not know the commit index
    // of the group, so the read waits.
    if (this.#log.termAt(this.#commitIndex) !== this.#term) {
      this.#readsAwaitingCommit.push(correlation);
      return;
    }
    this.#startReadRound([correlation]);
  }

  /**
   * Records durable progress. The executor reports writes in the order it received
   * persist_entries, so `written` for `toIndex` means every entry up to it is durable. The
   * report counts only if the entry at `toIndex` still has `term`: a truncation may have
   * replaced it since, and then a later report covers the replacement.
   */
  #handleWritten(term: number, toIndex: number): void {
    if (toIndex > this.#log.lastIndex || this.#log.termAt(toIndex) !== term) return;
    if (toIndex <= this.#lastWritten) return;
    this.#lastWritten = toIndex;
    if (this.#role === 'leader') {
      this.#advanceLeaderCommit();
    } else if (this.#role === 'follower' && this.#leaderId !== null && this.#leaderSeq > 0) {
      this.#replyToLeader(true, 0);
    }
  }

  #handlePeerStatus(peer: PeerId, up: boolean): void {
    if (up) this.#peersDown.delete(peer);
    else this.#peersDown.add(peer);

    if (this.#role === 'follower' && peer === this.#leaderId) {
      this.#leaderSuspected = !up;
      this.#updateElectionTimer();
      return;
    }
    if (this.#role === 'leader' && up) {
      // Messages may have been lost while the connection was down: probe from the match index.
      const p = this.#progress.get(peer);
      if (p !== undefined) this.#resendFromMatch(peer, p);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Messages

  #handleMessage(from: PeerId, message: RaftMessage): void {
    // Pre-vote messages carry a proposed term, not a real one, so they never change a term.
    if (message.type === 'request_vote' && message.preVote) {
      this.#handlePreVoteRequest(from, message);
      return;
    }
    if (message.type === 'request_vote_reply' && message.preVote) {
      this.#handlePreVoteReply(from, message);
      return;
    }

    // Any real message from a higher term means this member is out of date: it steps down.
    if (message.term > this.#term) {
      this.#becomeFollower(message.term, message.type === 'append_entries' ? message.leaderId : null);
    }

    switch (message.type) {
      case 'append_entries':
        this.#handleAppendEntries(from, message);
        break;
      case 'append_entries_reply':
        if (this.#role === 'leader' && message.term === this.#term) this.#handleAppendEntriesReply(from, message);
        break;
      case 'request_vote':
        this.#handleVoteRequest(from, message);
        break;
      case 'request_vote_reply':
        this.#handleVoteReply(from, message);
        break;
      case 'install_snapshot':
        this.#handleInstallSnapshot(from, message);
        break;
      case 'install_snapshot_reply':
        if (this.#role === 'leader' && message.term === this.#term) this.#handleInstallSnapshotReply(from, message);
        break;
    }
  }

  #handlePreVoteRequest(from: PeerId, request: RequestVoteRequest): void {
    if (this.#role === 'leader') {
      // The sender lost track of this leader (a restart, lost messages): tell it instead of
      // letting it campaign.
      this.#send(from, { type: 'request_vote_reply', term: this.#term, granted: false, preVote: true });
      this.#probeMember(from);
      return;
    }
    if (this.#role === 'follower' && this.#leaderId === from) {
      // The own leader campaigns, so it restarted and leads no more. Without this reset a leader
      // that lost its unwritten tail could never win, and every other member would keep
      // rejecting pre-votes on its behalf: the group would have no leader for good.
      this.#setLeader(null);
    }
    const liveLeader = this.#role === 'follower' && this.#leaderId !== null && !this.#leaderSuspected;
    const granted =
      this.#voterIds.has(from) &&
      request.term > this.#term &&
      !liveLeader &&
      this.#isUpToDate(request.lastIndex, request.lastTerm);
    // A grant echoes the proposed term; a rejection carries this member's own term.
    this.#send(from, { type: 'request_vote_reply', term: granted ? request.term : this.#term, granted, preVote: true });
  }

  #handlePreVoteReply(from: PeerId, reply: RequestVoteReply): void {
    if (this.#role !== 'pre_candidate' || !reply.granted || reply.term !== this.#term + 1) return;
    if (!this.#voterIds.has(from)) return;
    this.#votesGranted.add(from);
    if (this.#votesGranted.size >= this.#quorumSize) this.#becomeCandidate();
  }

  /** Handles a real vote request whose term is not above this member's (a higher term was adopted already). */
  #handleVoteRequest(from: PeerId, request: RequestVoteRequest): void {
    if (request.term < this.#term || this.#role === 'leader') {
      this.#send(from, { type: 'request_vote_reply', term: this.#term, granted: false, preVote: false });
      if (this.#role === 'leader') this.#probeMember(from);
      return;
    }
    // One vote per term: granted only if votedFor is empty or already names this candidate.
    const granted =
      this.#voterIds.has(from) &&
      (this.#votedFor === null || this.#votedFor === from) &&
      this.#isUpToDate(request.lastIndex, request.lastTerm);
    if (granted) {
      this.#votedFor = from;
      // The vote must be durable before the candidate can count it.
      this.#persistMeta();
      // Give the candidate time to win before this member campaigns itself.
      if (this.#role === 'follower' && this.#leaderId === null) this.#armElectionTimer();
    }
    this.#send(from, { type: 'request_vote_reply', term: this.#term, granted, preVote: false });
  }

  #handleVoteReply(from: PeerId, reply: RequestVoteReply): void {
    if (this.#role !== 'candidate' || reply.term !== this.#term || !reply.granted) return;
    if (!this.#voterIds.has(from)) return;
    this.#votesGranted.add(from);
    if (this.#votesGranted.size >= this.#quorumSize) this.#becomeLeader();
  }

  /** Handles append-entries whose term is not above this member's (a higher term was adopted already). */
  #handleAppendEntries(from: PeerId, request: AppendEntriesRequest): void {
    if (request.term < this.#term) {
      // A stale leader: the reply's term makes it step down.
      this.#send(from, {
        type: 'append_entries_reply',
        term: this.#term,
        success: false,
        matchIndex: 0,
        nextIndexHint: 0,
        seq: request.seq,
      });
      return;
    }
    if (this.#role === 'leader') {
      throw new RaftInvariantError(
        `member ${this.#id} leads term ${this.#term} but received append-entries from ${request.leaderId} in the same term`,
      );
    }
    if (this.#role !== 'follower' || this.#leaderId !== request.leaderId) {
      this.#becomeFollower(request.term, request.leaderId);
    }
    // A message from the leader proves it alive, whatever the failure detector last reported.
    if (this.#leaderSuspected) {
      this.#leaderSuspected = false;
      this.#updateElectionTimer();
    }
    this.#leaderSeq = Math.max(this.#leaderSeq, request.seq);
    this.#leaderCommit = Math.max(this.#leaderCommit, request.leaderCommit);

    // Entries at or below the snapshot are committed, so they match the leader's: skip them.
    if (request.prevIndex < this.#log.snapshotIndex) {
      const skip = this.#log.snapshotIndex - request.prevIndex;
      request = {
        ...request,
        prevIndex: this.#log.snapshotIndex,
        prevTerm: this.#log.snapshotTerm,
        entries: request.entries.slice(skip),
      };
    }

    // Consistency check: the entry before the new ones must match the leader's.
    const { prevIndex, prevTerm } = request;
    if (prevIndex > this.#log.lastIndex) {
      this.#replyToLeader(false, this.#log.lastIndex + 1);
      return;
    }
    const localPrevTerm = this.#log.termAt(prevIndex);
    if (localPrevTerm !== prevTerm) {
      // Skip back over the whole conflicting term in one round trip.
      this.#replyToLeader(false, this.#log.firstIndexOfTerm(prevIndex));
      return;
    }

    const newEntries = this.#mergeEntries(request);
    const lastNewIndex = prevIndex + request.entries.length;
    this.#leaderMatchIndex = Math.max(this.#leaderMatchIndex, lastNewIndex);
    // Commit no further than what this leader's requests prove matches its log.
    const commitIndex = Math.min(this.#leaderCommit, this.#leaderMatchIndex);
    if (commitIndex > this.#commitIndex) this.#commitIndex = commitIndex;

    if (newEntries.length > 0) {
      // The success reply waits for the `written` event, so the leader counts only durable entries.
      this.#effects.push({ type: 'persist_entries', entries: newEntries });
    } else {
      this.#replyToLeader(true, 0);
    }
  }

  /**
   * Adds the request's entries to the log. Entries already present with the same term are
   * skipped; at the first entry whose term differs, the log is truncated there and the rest
   * appended. Returns the entries that need writing.
   */
  #mergeEntries(request: AppendEntriesRequest): LogEntry[] {
    const entries = request.entries;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i];
      if (entry.index !== request.prevIndex + 1 + i) {
        throw new RaftInvariantError(
          `append-entries from ${request.leaderId} has entry ${entry.index} at position ${i} after prevIndex ${request.prevIndex}`,
        );
      }
      if (entry.index > this.#log.lastIndex) {
        const rest = entries.slice(i);
        this.#log.append(rest);
        return rest;
      }
      if (this.#log.termAt(entry.index) !== entry.term) {
        if (entry.index <= this.#commitIndex) {
          throw new RaftInvariantError(
            `member ${this.#id} would truncate committed entry ${entry.index} (commit index ${this.#commitIndex}) ` +
              `for entry ${entry.index} term ${entry.term} from ${request.leaderId}`,
          );
        }
        this.#log.truncateAfter(entry.index - 1);
        this.#lastWritten = Math.min(this.#lastWritten, entry.index - 1);
        const rest = entries.slice(i);
        this.#log.append(rest);
        return rest;
      }
    }
    return [];
  }

  /** Replies to the current leader. A success reports only entries that are both written and known to match it. */
  #replyToLeader(success: boolean, nextIndexHint: number): void {
    if (this.#leaderId === null) return;
    this.#send(this.#leaderId, {
      type: 'append_entries_reply',
      term: this.#term,
      success,
      matchIndex: success ? Math.min(this.#lastWritten, this.#leaderMatchIndex) : 0,
      nextIndexHint,
      seq: this.#leaderSeq,
    });
  }

  #handleAppendEntriesReply(from: PeerId, reply: AppendEntriesReply): void {
    const p = this.#progress.get(from);
    if (p === undefined) return;
    p.ackSeq = Math.max(p.ackSeq, reply.seq);
    p.lastProgressMs = this.#nowMs;

    let commitAdvanced = false;
    if (reply.success) {
      if (reply.matchIndex > this.#log.lastIndex) {
        throw new RaftInvariantError(
          `${from} reports match index ${reply.matchIndex} beyond leader ${this.#id}'s last index ${this.#log.lastIndex}`,
        );
      }
      if (reply.matchIndex > p.matchIndex) {
        p.matchIndex = reply.matchIndex;
        if (p.nextIndex <= p.matchIndex) p.nextIndex = p.matchIndex + 1;
        commitAdvanced = this.#advanceLeaderCommit();
      }
    } else if (reply.seq >= p.resetSeq) {
      // Retry from the follower's hint. Replies to requests sent before this reset would
      // repeat it, so they are ignored.
      p.nextIndex = clamp(reply.nextIndexHint, p.matchIndex + 1, this.#log.lastIndex + 1);
      p.resetSeq = this.#seq + 1;
      // The rejected request did not deliver its commit index, so the next one must carry it.
      p.commitIndexSent = 0;
    }

    if (!commitAdvanced) this.#replicateTo(from, p);
    this.#completeReadRounds();
  }

  // ---------------------------------------------------------------------------------------
  // Leader replication

  #appendAsLeader(kind: LogEntry['kind'], data: Uint8Array): LogEntry {
    const entry: LogEntry = { index: this.#log.lastIndex + 1, term: this.#term, kind, data };
    this.#log.append([entry]);
    // The leader sends before its own write completes; its own vote counts at `written`.
    this.#effects.push({ type: 'persist_entries', entries: [entry] });
    return entry;
  }

  #replicateToAll(): void {
    for (const [id, p] of this.#progress) this.#replicateTo(id, p);
  }

  /**
   * Sends the follower the entries it lacks, as far as its in-flight window allows. With
   * nothing to send and nothing in flight, sends an empty append-entries if the follower
   * has not yet been sent the current commit index, so idle groups still apply everywhere.
   */
  #replicateTo(id: PeerId, p: FollowerProgress): void {
    if (this.#peersDown.has(id) || p.snapshot !== null) return;
    if (p.nextIndex < this.#log.firstIndex) {
      this.#startSnapshotTransfer(id, p);
      return;
    }
    let sent = false;
    // Bounded: each pass sends at least one entry and the window is maxInflightEntries.
    while (p.nextIndex <= this.#log.lastIndex) {
      const windowEntries = this.#maxInflightEntries - (p.nextIndex - 1 - p.matchIndex);
      if (windowEntries <= 0) break;
      this.#sendAppendEntries(id, p, Math.min(this.#maxEntriesPerAppend, windowEntries));
      sent = true;
    }
    const inflight = p.nextIndex - 1 > p.matchIndex;
    if (!sent && !inflight && p.commitIndexSent < Math.min(this.#commitIndex, p.nextIndex - 1)) {
      this.#sendAppendEntries(id, p, 0);
    }
  }

  /** Sends up to `maxEntries` entries from the follower's next index and advances it optimistically. */
  #sendAppendEntries(id: PeerId, p: FollowerProgress, maxEntries: number): void {
    const prevIndex = p.nextIndex - 1;
    const prevTerm = this.#log.termAt(prevIndex);
    if (prevTerm === undefined) {
      throw new RaftInvariantError(`next index ${p.nextIndex} for ${id} is beyond leader ${this.#id}'s last index ${this.#log.lastIndex}`);
    }
    const lastIndex = Math.min(this.#log.lastIndex, prevIndex + maxEntries);
    const entries = this.#log.slice(prevIndex + 1, lastIndex);
    if (!isOutstanding(p)) p.lastProgressMs = this.#nowMs;
    this.#seq += 1;
    p.sentSeq = this.#seq;
    p.nextIndex = lastIndex + 1;
    p.commitIndexSent = Math.max(p.commitIndexSent, Math.min(this.#commitIndex, lastIndex));
    this.#send(id, {
      type: 'append_entries',
      term: this.#term,
      leaderId: this.#id,
      prevIndex,
      prevTerm,
      entries,
      leaderCommit: this.#commitIndex,
      seq: this.#seq,
    });
  }

  /** Restarts replication from the match index: after a timeout, a reconnect or a probe. */
  #resendFromMatch(id: PeerId, p: FollowerProgress): void {
    p.lastProgressMs = this.#nowMs;
    if (p.snapshot !== null) {
      this.#effects.push({ type: 'send_snapshot', to: id, index: p.snapshot.index, attempt: p.snapshot.attempt });
      return;
    }
    p.nextIndex = p.matchIndex + 1;
    p.resetSeq = this.#seq + 1;
    if (p.nextIndex < this.#log.firstIndex) {
      this.#startSnapshotTransfer(id, p);
      return;
    }
    this.#sendAppendEntries(id, p, this.#maxEntriesPerAppend);
  }

  /** The follower needs entries folded into the snapshot: stream the snapshot instead. */
  #startSnapshotTransfer(id: PeerId, p: FollowerProgress): void {
    p.snapshot = { index: this.#log.snapshotIndex, attempt: 1 };
    p.lastProgressMs = this.#nowMs;
    this.#effects.push({ type: 'send_snapshot', to: id, index: p.snapshot.index, attempt: 1 });
  }

  #handleInstallSnapshotReply(from: PeerId, reply: InstallSnapshotReply): void {
    const p = this.#progress.get(from);
    if (p === undefined) return;
    p.lastProgressMs = this.#nowMs;
    if (reply.status === 'next') {
      if (p.snapshot === null || p.snapshot.index !== reply.snapshotIndex) return;
      p.snapshot.attempt = 1;
      this.#effects.push({ type: 'snapshot_chunk_acked', to: from, index: reply.snapshotIndex, nextOffset: reply.nextOffset });
      return;
    }
    if (reply.status === 'rejected') return;
    // installed or ahead: the follower's log continues after matchIndex.
    if (reply.matchIndex > this.#log.lastIndex) {
      throw new RaftInvariantError(`${from} reports match index ${reply.matchIndex} beyond leader ${this.#id}'s last index ${this.#log.lastIndex}`);
    }
    if (p.snapshot !== null) this.#effects.push({ type: 'snapshot_transfer_ended', to: from });
    p.snapshot = null;
    p.matchIndex = Math.max(p.matchIndex, reply.matchIndex);
    p.nextIndex = p.matchIndex + 1;
    p.resetSeq = this.#seq + 1;
    p.ackSeq = this.#seq;
    if (!this.#advanceLeaderCommit()) this.#replicateTo(from, p);
  }

  /**
   * Follower side of a snapshot transfer. The chunk goes to the server to write aside, unless
   * this member already has the snapshot's last entry (same index and term) or has committed
   * past it: then it answers `ahead`, and the leader resumes append-entries without a loop.
   */
  #handleInstallSnapshot(from: PeerId, request: InstallSnapshotRequest): void {
    if (request.term < this.#term) {
      this.#sendSnapshotReply(from, request.snapshotIndex, 'rejected', 0);
      return;
    }
    if (this.#role === 'leader') {
      throw new RaftInvariantError(`member ${this.#id} leads term ${this.#term} but received a snapshot from ${request.leaderId} in the same term`);
    }
    if (this.#role !== 'follower' || this.#leaderId !== request.leaderId) {
      this.#becomeFollower(request.term, request.leaderId);
    }
    if (this.#leaderSuspected) {
      this.#leaderSuspected = false;
      this.#updateElectionTimer();
    }
    const index = request.snapshotIndex;
    const holdsLastEntry = this.#log.termAt(index) === request.snapshotTerm;
    if (holdsLastEntry || index <= this.#commitIndex) {
      this.#leaderMatchIndex = Math.max(this.#leaderMatchIndex, Math.min(index, this.#log.lastIndex));
      this.#sendSnapshotReply(from, index, 'ahead', 0);
      return;
    }
    this.#effects.push({ type: 'receive_snapshot_chunk', from, request });
  }

  #handleSnapshotInstalled(index: number, term: number): void {
    if (index <= this.#commitIndex) return;
    this.#log.resetToSnapshot(index, term);
    this.#commitIndex = index;
    this.#lastApplied = index;
    this.#lastWritten = index;
    this.#leaderMatchIndex = index;
    if (this.#leaderId !== null) this.#sendSnapshotReply(this.#leaderId, index, 'installed', 0);
  }

  #sendSnapshotReply(to: PeerId, snapshotIndex: number, status: InstallSnapshotReply['status'], nextOffset: number): void {
    this.#send(to, {
      type: 'install_snapshot_reply',
      term: this.#term,
      snapshotIndex,
      status,
      nextOffset,
      matchIndex: status === 'installed' || status === 'ahead' ? Math.min(this.#lastWritten, this.#leaderMatchIndex) : 0,
    });
  }

  /** Sends an append-entries to a member that requested votes while this leader leads, so it learns the leader. */
  #probeMember(id: PeerId): void {
    const p = this.#progress.get(id);
    if (p !== undefined) this.#resendFromMatch(id, p);
  }

  #resendUnacknowledged(): void {
    for (const [id, p] of this.#progress) {
      if (this.#peersDown.has(id)) continue;
      if (p.snapshot !== null) {
        // Back-off: resendTimeoutMs, doubled per attempt without progress, up to a cap.
        const waitMs = this.#resendTimeoutMs * Math.min(2 ** (p.snapshot.attempt - 1), SNAPSHOT_RETRY_BACKOFF_MAX);
        if (this.#nowMs - p.lastProgressMs >= waitMs) {
          p.snapshot.attempt += 1;
          p.lastProgressMs = this.#nowMs;
          this.#effects.push({ type: 'send_snapshot', to: id, index: p.snapshot.index, attempt: p.snapshot.attempt });
        }
        continue;
      }
      if (!isOutstanding(p)) continue;
      if (this.#nowMs - p.lastProgressMs >= this.#resendTimeoutMs) this.#resendFromMatch(id, p);
    }
    if (this.#readRounds.length > 0 && this.#nowMs - this.#readRoundSentMs >= this.#resendTimeoutMs) {
      const oldestSeq = this.#readRounds[0].seq;
      for (const [id, p] of this.#progress) {
        if (this.#voterIds.has(id) && !this.#peersDown.has(id) && p.ackSeq < oldestSeq) this.#resendFromMatch(id, p);
      }
      this.#readRoundSentMs = this.#nowMs;
    }
  }

  /**
   * Commits the highest index that a majority of voters hold durably, if its entry is from the
   * current term. An older-term entry is never committed by counting replicas, because a
   * later leader could still overwrite it. It commits along with the first current-term entry
   * above it. Returns true when the commit index advanced.
   */
  #advanceLeaderCommit(): boolean {
    const matchIndexes: number[] = [];
    for (const id of this.#voterIds) {
      if (id === this.#id) matchIndexes.push(this.#lastWritten);
      else matchIndexes.push(this.#progress.get(id)?.matchIndex ?? 0);
    }
    matchIndexes.sort((a, b) => b - a);
    const quorumIndex = matchIndexes[this.#quorumSize - 1] ?? 0;
    if (quorumIndex <= this.#commitIndex || this.#log.termAt(quorumIndex) !== this.#term) return false;

    const firstInTerm = this.#log.termAt(this.#commitIndex) !== this.#term;
    this.#commitIndex = quorumIndex;
    if (firstInTerm && this.#readsAwaitingCommit.length > 0) {
      const waiting = this.#readsAwaitingCommit;
      this.#readsAwaitingCommit = [];
      this.#startReadRound(waiting);
    }
    this.#replicateToAll();
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // Read index

  /**
   * Records the commit index as the read index and sends append-entries to every voter. The
   * reads are ready once a majority of voters (this leader included) has replied to a request
   * sent after this point, which proves no newer leader had been elected when they were taken.
   */
  #startReadRound(correlations: number[]): void {
    const readIndex = this.#commitIndex;
    if (this.#quorumSize <= (this.#voterIds.has(this.#id) ? 1 : 0)) {
      for (const correlation of correlations) this.#effects.push({ type: 'read_ready', correlation, readIndex });
      return;
    }
    const seq = this.#seq + 1;
    for (const correlation of correlations) this.#readRounds.push({ correlation, readIndex, seq });
    for (const [id, p] of this.#progress) {
      if (!this.#voterIds.has(id) || this.#peersDown.has(id)) continue;
      if (p.snapshot !== null || p.nextIndex < this.#log.firstIndex) continue;
      const windowEntries = this.#maxInflightEntries - (p.nextIndex - 1 - p.matchIndex);
      this.#sendAppendEntries(id, p, clamp(windowEntries, 0, this.#maxEntriesPerAppend));
    }
    this.#readRoundSentMs = this.#nowMs;
  }

  #completeReadRounds(): void {
    while (this.#readRounds.length > 0) {
      const round = this.#readRounds[0];
      let acks = this.#voterIds.has(this.#id) ? 1 : 0;
      for (const [id, p] of this.#progress) {
        if (this.#voterIds.has(id) && p.ackSeq >= round.seq) acks += 1;
      }
      if (acks < this.#quorumSize) return;
      this.#readRounds.shift();
      this.#effects.push({ type: 'read_ready', correlation: round.correlation, readIndex: round.readIndex });
    }
  }

  #rejectRead(correlation: number, leaderHint: PeerId | null): void {
    this.#effects.push({ type: 'read_rejected', correlation, leaderHint, reason: 'not_leader' });
  }

  // ---------------------------------------------------------------------------------------
  // Helpers

  /** Emits the apply effect for entries committed since the last event, in index order. */
  #applyCommitted(): void {
    if (this.#commitIndex <= this.#lastApplied) return;
    const toIndex = Math.min(this.#commitIndex, this.#lastApplied + this.#maxEntriesPerApply);
    const entries = this.#log.slice(this.#lastApplied + 1, toIndex);
    this.#lastApplied = toIndex;
    this.#effects.push({ type: 'apply', entries });
  }

  /** Raft's up-to-date rule: a later last term wins; with equal terms, the longer log wins. */
  #isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ownLastTerm = this.#log.lastTerm;
    return lastTerm > ownLastTerm || (lastTerm === ownLastTerm && lastIndex >= this.#log.lastIndex);
  }

  /** Emits persist_meta, merging with one emitted just before so a step-down plus a vote writes once. */
  #persistMeta(): void {
    const effect: RaftEffect = { type: 'persist_meta', term: this.#term, votedFor: this.#votedFor };
    const last = this.#effects.length - 1;
    if (last >= 0 && this.#effects[last].type === 'persist_meta') this.#effects[last] = effect;
    else this.#effects.push(effect);
  }

  #send(to: PeerId, message: RaftMessage): void {
    this.#effects.push({ type: 'send', to, message });
  }

  #sendToOtherVoters(message: RaftMessage): void {
    for (const id of this.#voterIds) {
      if (id !== this.#id) this.#send(id, message);
    }
  }
}

/** True while the follower has entries sent but not acknowledged as written, or a request without a reply. */
function isOutstanding(p: FollowerProgress): boolean {
  return p.snapshot !== null || p.ackSeq < p.sentSeq || p.matchIndex < p.nextIndex - 1;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}

function validateMembers(id: PeerId, members: Member[]): readonly Member[] {
  const ids = new Set<PeerId>();
  for (const member of members) {
    if (ids.has(member.id)) {
      throw new InvalidConfigError(`member ${member.id} appears twice in the member list; list each member once`);
    }
    ids.add(member.id);
  }
  if (!ids.has(id)) {
    throw new InvalidConfigError(`member list ${[...ids].join(', ')} does not contain this member ${id}; add it`);
  }
  if (!members.some((m) => m.membership === 'voter')) {
    throw new InvalidConfigError('the member list has no voter; a group needs at least one voter');
  }
  return members.map((m) => ({ ...m }));
}

function validateTimeouts(minMs: number, maxMs: number, resendMs: number): void {
  if (!(minMs > 0) || !(maxMs > minMs)) {
    throw new InvalidConfigError(
      `election timeout range ${minMs}..${maxMs} ms is invalid; use 0 < electionTimeoutMinMs < electionTimeoutMaxMs`,
    );
  }
  if (!(resendMs > 0)) {
    throw new InvalidConfigError(`resendTimeoutMs ${resendMs} is invalid; use a positive number of milliseconds`);
  }
}

function validatePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new InvalidConfigError(`${name} ${value} is invalid; use a positive integer`);
  }
}
