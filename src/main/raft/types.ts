// Types of the pure Raft core: log entries, messages between members, the events the core
// consumes and the effects it returns. Nothing here does I/O.

/** Member key inside one group. rana places at most one member of a group on a node, so the key is the node id. */
export type PeerId = string;

export type Membership = 'voter' | 'promotable' | 'nonvoter';

export type Role = 'follower' | 'pre_candidate' | 'candidate' | 'leader';

export interface Member {
  id: PeerId;
  membership: Membership;
}

/** Entry kinds. A `noop` is appended by every new leader so that it can commit in its own term. */
export type EntryKind = 'noop' | 'command';

export interface LogEntry {
  index: number;
  term: number;
  kind: EntryKind;
  /** The encoded user command; empty for a noop. */
  data: Uint8Array;
}

export interface AppendEntriesRequest {
  type: 'append_entries';
  term: number;
  leaderId: PeerId;
  prevIndex: number;
  prevTerm: number;
  entries: LogEntry[];
  leaderCommit: number;
  /** Leader-local sequence number of the request, echoed in the reply; read index rounds count replies by it. */
  seq: number;
}

export interface AppendEntriesReply {
  type: 'append_entries_reply';
  term: number;
  success: boolean;
  /** On success: the highest index the follower has durably written and that matches the leader's log. */
  matchIndex: number;
  /**
   * On failure: the index the leader should retry from (the follower's last index + 1, or the
   * first index of the conflicting term), so the leader does not back off one index at a time.
   */
  nextIndexHint: number;
  seq: number;
}

export interface RequestVoteRequest {
  type: 'request_vote';
  term: number;
  candidateId: PeerId;
  lastIndex: number;
  lastTerm: number;
  /** A pre-vote asks "would you vote for me in `term`?" and changes no one's term or vote. */
  preVote: boolean;
}

export interface RequestVoteReply {
  type: 'request_vote_reply';
  term: number;
  granted: boolean;
  preVote: boolean;
}

export type RaftMessage = AppendEntriesRequest | AppendEntriesReply | RequestVoteRequest | RequestVoteReply;

export type RaftEvent =
  /** The scheduler's shared tick. The core has no clock of its own; `nowMs` is monotonic milliseconds. */
  | { type: 'tick'; nowMs: number }
  | { type: 'message'; from: PeerId; message: RaftMessage; nowMs: number }
  /** A client command; accepted only by a leader. */
  | { type: 'command'; correlation: number; data: Uint8Array; nowMs: number }
  /** A linearizable read: the core confirms leadership with a quorum round, then reports the read index. */
  | { type: 'read_index'; correlation: number; nowMs: number }
  /** Own log durable: the WAL wrote and synced entries `fromIndex..toIndex` that were appended in `term`. */
  | { type: 'written'; term: number; fromIndex: number; toIndex: number; nowMs: number }
  /** The node-level failure detector suspects (`up: false`) or trusts again (`up: true`) a peer's node. */
  | { type: 'peer_status'; peer: PeerId; up: boolean; nowMs: number }
  /** Start an election now (pre-vote first), as when an operator asks for one. */
  | { type: 'trigger_election'; nowMs: number };

export type RaftEffect =
  | { type: 'send'; to: PeerId; message: RaftMessage }
  /**
   * Append entries to the durable log. When `entries[0].index` is not last index + 1, the log
   * from that index on is replaced (a follower repairing a conflict). The WAL answers with a
   * `written` event.
   */
  | { type: 'persist_entries'; entries: LogEntry[] }
  /** Make term and vote durable. The executor must finish this before executing any later effect of the same batch. */
  | { type: 'persist_meta'; term: number; votedFor: PeerId | null }
  /** Committed entries, in index order, to apply to the machine (noops included, so last applied advances). */
  | { type: 'apply'; entries: LogEntry[] }
  | { type: 'command_accepted'; correlation: number; index: number; term: number }
  | { type: 'command_rejected'; correlation: number; leaderHint: PeerId | null; reason: 'not_leader' }
  | { type: 'read_ready'; correlation: number; readIndex: number }
  | { type: 'read_rejected'; correlation: number; leaderHint: PeerId | null; reason: 'not_leader' }
  | { type: 'role_changed'; role: Role; term: number; leader: PeerId | null };
