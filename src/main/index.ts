// Public API of rana.
export { Node, parseAddress, type NodeOptions, type CallOptions, type CommandResult } from './node.js';
export { System, type SystemOptions } from './system.js';
export type { RaftServer, ServerStatus, ServerConfig } from './server.js';
export type { Machine, MachineRef, ApplyMeta, ApplyResult, MachineEffect, SnapshotCodec } from './machine.js';
export type { SegmentOptions } from './storage/segment-writer-client.js';
export type { Member, Membership, Role, LogEntry } from './raft/types.js';
export { kvMachine, createKvMachine, kvStateDigest, type KvCommand, type KvReply, type KvState, type KvMachineOptions } from './machines/kv.js';
export * from './errors.js';
export { createLogger, silentLogger, type Logger } from './logger.js';
