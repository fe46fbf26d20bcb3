// Public API of rana.
export { Node, parseAddress, type NodeOptions, type CallOptions, type CommandResult } from './node.js';
export { System, type SystemOptions } from './system.js';
export type { RaftServer, ServerStatus, ServerConfig } from './server.js';
export type { Machine, MachineRef, ApplyMeta, ApplyResult } from './machine.js';
export type { Member, Membership, Role, LogEntry } from './raft/types.js';
export { kvMachine, type KvCommand, type KvReply, type KvState } from './machines/kv.js';
export * from './errors.js';
export { createLogger, silentLogger, type Logger } from './logger.js';
