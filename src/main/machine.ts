// The state machine interface that rana replicates. A machine must be deterministic: the
// same commands applied in the same order to the same initial state give the same state and
// replies on every member. It must not read the clock, random numbers or I/O in `apply`;
// `meta.index` and `meta.term` are available for anything that needs a monotonic value.

import type { Role } from './raft/types.js';

export interface ApplyMeta {
  index: number;
  term: number;
}

export interface ApplyResult<State, Reply> {
  state: State;
  reply: Reply;
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
}

/** A machine as registered on a system, with a name every node agrees on. */
export interface MachineRef {
  machine: string;
  args?: unknown;
}
