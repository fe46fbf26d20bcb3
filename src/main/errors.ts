// Errors a rana user can meet. Each class has a stable `code` for programs to switch on; the
// message names the value that caused it and what to do next.

export type RanaErrorCode =
  | 'NOT_LEADER'
  | 'TIMEOUT'
  | 'NO_QUORUM'
  | 'CLUSTER_NOT_FOUND'
  | 'CLUSTER_CHANGE_NOT_PERMITTED'
  | 'OVERLOADED'
  | 'STORAGE'
  | 'INVALID_CONFIG'
  | 'STOPPED'
  | 'NODE_DOWN';

export class RanaError extends Error {
  readonly code: RanaErrorCode;

  constructor(code: RanaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export interface ServerRef {
  name: string;
  node: string;
}

/** The member asked is not the leader. `leader` is the member it believes leads, or null when none is known. */
export class NotLeaderError extends RanaError {
  readonly leader: ServerRef | null;

  constructor(server: ServerRef, leader: ServerRef | null) {
    const hint = leader ? `retry at ${leader.name}@${leader.node}` : 'no leader is known yet; retry after an election';
    super('NOT_LEADER', `${server.name}@${server.node} is not the leader: ${hint}`);
    this.leader = leader;
  }
}

/** The call did not finish in time. The outcome is unknown: a command may still commit later. */
export class TimeoutError extends RanaError {
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number, kind: 'command' | 'read' = 'command') {
    super(
      'TIMEOUT',
      kind === 'command'
        ? `${what} timed out after ${timeoutMs} ms; the outcome is unknown and the command may still commit`
        : `${what} timed out after ${timeoutMs} ms; retry the read`,
    );
    this.timeoutMs = timeoutMs;
  }
}

export class NoQuorumError extends RanaError {
  constructor(message: string) {
    super('NO_QUORUM', message);
  }
}

export class ClusterNotFoundError extends RanaError {
  constructor(server: ServerRef) {
    super('CLUSTER_NOT_FOUND', `no server ${server.name}@${server.node} is running; start it with startCluster or restartServer`);
  }
}

export class ClusterChangeNotPermittedError extends RanaError {
  constructor(message: string) {
    super('CLUSTER_CHANGE_NOT_PERMITTED', message);
  }
}

/** Back-pressure: the WAL cannot take more entries right now. Retry after a short delay. */
export class OverloadedError extends RanaError {
  constructor(message: string) {
    super('OVERLOADED', message);
  }
}

/** A storage failure: a failed fsync, a corrupt record. The system that met it has stopped. */
export class StorageError extends RanaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORAGE', message, options);
  }
}

export class InvalidConfigError extends RanaError {
  constructor(message: string) {
    super('INVALID_CONFIG', message);
  }
}

/** The server or system was stopped while the call was waiting. The outcome of a command is unknown. */
export class StoppedError extends RanaError {
  constructor(message: string) {
    super('STOPPED', message);
  }
}

/**
 * The node that a call was forwarded to is down. When `sent` is false the request never left
 * this node; when true the outcome of a command is unknown, as with a timeout.
 */
export class NodeDownError extends RanaError {
  readonly node: string;
  readonly sent: boolean;

  constructor(node: string, sent: boolean) {
    super(
      'NODE_DOWN',
      sent
        ? `node ${node} went down while a request to it was in flight; the outcome is unknown and a command may still commit`
        : `node ${node} is down, so the request was not sent; retry once a new leader is elected`,
    );
    this.node = node;
    this.sent = sent;
  }
}
