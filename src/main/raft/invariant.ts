// The error the Raft core throws when a rule of the protocol would be broken. It signals a bug
// in the core or in the code that drives it (events out of order, a corrupt log), never a
// condition a caller should handle and continue from.

export class RaftInvariantError extends Error {
  readonly code = 'RAFT_INVARIANT' as const;

  constructor(message: string) {
    super(message);
    this.name = 'RaftInvariantError';
  }
}
