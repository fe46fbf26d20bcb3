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

/**
 * One chunk of a snapshot that the leader streams to a follower whose next index it no longer
 * holds. `offset`..`offset + data.byteLength` is a byte range of the snapshot file; `chunkCrc`
 * is the CRC-32 of `data`. The file's own header CRC covers the whole.
 */
export interface InstallSnapshotRequest {
  type: 'install_snapshot';
  term: number;
  leaderId: PeerId;
  snapshotIndex: number;
  snapshotTerm: number;
  offset: number;
  totalBytes: number;
  data: Uint8Array;
  chunkCrc: number;
  /** True on the chunk that ends the file. */
  done: boolean;
}

/**
 * The follower's reply to a chunk. `next`: send the chunk at `nextOffset` (also the reply to
 * a duplicate or out-of-order chunk). `installed`: the snapshot is in place and the follower's
 * log continues after `matchIndex`. `ahead`: the follower already holds the snapshot's last
 * entry, so the leader resumes append-entries from `matchIndex + 1`. `rejected`: the chunk's
 * term is stale.
 */
export interface InstallSnapshotReply {
  type: 'install_snapshot_reply';
  term: number;
  snapshotIndex: number;
  status: 'next' | 'installed' | 'ahead' | 'rejected';
  nextOffset: number;
  matchIndex: number;
}

export type RaftMessage =
  | AppendEntriesRequest
  | AppendEntriesReply
  | RequestVoteRequest
  | RequestVoteReply
  | InstallSnapshotRequest
  | InstallSnapshotReply;

/** Index and term of the last entry a snapshot covers. */
export interface SnapshotMeta {
  index: number;
  term: number;
}

/**
 * Read access to entries that are durable outside memory (segment files in production), as in
 * etcd's raft Storage. The core calls it synchronously; it is not consulted for indexes at or
 * below the snapshot or at or above the first index held in memory.
 */
export interface LogStorage {
  /** Highest index readable from storage, 0 when it has none. */
  lastIndex(): number;
  /** Term of the entry at `index`, or undefined when storage does not hold it. */
  term(index: number): number | undefined;
  /** Entries `fromIndex..toIndex` inclusive. Throws when storage lacks one or finds it corrupt. */
  entries(fromIndex: number, toIndex: number): LogEntry[];
}

export type RaftEvent =
  /** The scheduler's shared tick. The core has no clock of its own; `nowMs` is monotonic milliseconds. */
  | { type: 'tick'; nowMs: number }
  | { type: 'message'; from: PeerId; message: RaftMessage; nowMs: number }
  /** A client command; accepted only by a leader. */
  | { type: 'command'; correlation: number; data: Uint8Array; nowMs: number }
  /**
   * Client commands gathered over one event-loop turn. The leader appends them all, then sends
   * one append-entries per follower instead of one per command.
   */
  | { type: 'commands'; commands: { correlation: number; data: Uint8Array }[]; nowMs: number }
  /** A linearizable read: the core confirms leadership with a quorum round, then reports the read index. */
  | { type: 'read_index'; correlation: number; nowMs: number }
  /** Own log durable: the WAL wrote and synced entries `fromIndex..toIndex` that were appended in `term`. */
  | { type: 'written'; term: number; fromIndex: number; toIndex: number; nowMs: number }
  /** The node-level failure detector suspects (`up: false`) or trusts again (`up: true`) a peer's node. */
  | { type: 'peer_status'; peer: PeerId; up: boolean; nowMs: number }
  /** Start an election now (pre-vote first), as when an operator asks for one. */
  | { type: 'trigger_election'; nowMs: number }
  /** Segment files now hold this member's entries up to `toIndex` (which has `term`), so memory may drop them. */
  | { type: 'segments_flushed'; term: number; toIndex: number; nowMs: number }
  /** This member's own snapshot at `index` (with `term`) is durable: the log before it may be compacted. */
  | { type: 'snapshot_written'; index: number; term: number; nowMs: number }
  /** A snapshot received from the leader is durable and loaded into the machine: the log restarts after it. */
  | { type: 'snapshot_installed'; index: number; term: number; nowMs: number };

export type RaftEffect =
  | { type: 'send'; to: PeerId; message: RaftMessage }
  /**
   * Append entries to the durable log. When `entries[0].index` is not last index + 1, the log
   * from that index on is replaced (a follower repairing a conflict). The WAL reports completion with a
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
  | { type: 'role_changed'; role: Role; term: number; leader: PeerId | null }
  /**
   * Leader: stream the newest snapshot (at `index`) to `to`, or resend the current chunk of a
   * transfer already under way. Emitted again with back-off while the follower makes no progress.
   */
  | { type: 'send_snapshot'; to: PeerId; index: number; attempt: number }
  /** Leader: the follower requests the chunk at `nextOffset` of the snapshot at `index`. */
  | { type: 'snapshot_chunk_acked'; to: PeerId; index: number; nextOffset: number }
  /** Leader: the transfer to `to` ended (installed, not needed, or abandoned on a step-down). */
  | { type: 'snapshot_transfer_ended'; to: PeerId }
  /** Follower: write this chunk aside; when the last one verifies, install it and report `snapshot_installed`. */
  | { type: 'receive_snapshot_chunk'; from: PeerId; request: InstallSnapshotRequest };
