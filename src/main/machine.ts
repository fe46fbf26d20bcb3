// The state machine interface that rana replicates. A machine must be deterministic: the
// same commands applied in the same order to the same initial state give the same state and
// replies on every member. It must not read the clock, random numbers or I/O in `apply`;
// `meta.index` and `meta.term` are available for anything that needs a monotonic value.

import type { Role } from './raft/types.js';

export interface ApplyMeta {
  index: number;
  term: number;
}

/**
 * An effect a machine returns from `apply`. `release_cursor` says that `state` is the whole
 * state as of entry `index`, so rana may write it as a snapshot and drop the log up to
 * `index`. The state is encoded with the machine's snapshot codec before apply returns to
 * rana, so the machine may keep mutating it afterwards.
 */
export type MachineEffect<State = unknown> = { type: 'release_cursor'; index: number; state: State };

export interface ApplyResult<State, Reply> {
  state: State;
  reply: Reply;
  effects?: MachineEffect<State>[];
}

/** Encodes a machine state for a snapshot and decodes it back; decode(encode(s)) must equal s. */
export interface SnapshotCodec<State> {
  encode(state: State): Uint8Array;
  decode(bytes: Uint8Array): State;
}

export interface Machine<State = unknown, Command = unknown, Reply = unknown> {
  /** Builds the initial state. `args` comes from the cluster's machine config. */
  init(args: unknown): State;
  apply(meta: ApplyMeta, command: Command, state: State): ApplyResult<State, Reply>;
  /** Called when this member's Raft role changes. */
  stateEnter?(role: Role, state: State): void;
  /** Named read-only queries, usable across nodes by `consistentQuery` and `leaderQuery`. */
  queries?: Record<string, (state: State, args: unknown) => unknown>;
  overview?(state: State): Record<string, unknown>;
  version?: number;
  /** Snapshot codec. Without one, rana encodes the state with msgpackr. */
  snapshot?: SnapshotCodec<State>;
}

/** A machine as registered on a system, with a name every node agrees on. */
export interface MachineRef {
  machine: string;
  args?: unknown;
}
