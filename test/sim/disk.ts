// The simulated disk of one node: per group, a durable meta record and a durable log, plus the
// node's queue of writes that are not yet synced. It models the shared WAL: persist_entries
// becomes durable only when a simulated fdatasync completes, which then reports `written` for
// each write in order. persist_meta is durable at once, because the server writes the meta
// file synchronously before it executes the next effect.
//
// On a crash, unsynced writes are lost, kept in part (the kernel flushed some pages), or torn
// (a prefix of the writes plus a prefix of the next write's entries). Only never-reported
// writes are affected, so a `written` event is a promise the disk keeps.

import type { LogEntry, PeerId } from '../../src/main/raft/types.js';
import type { Prng } from './prng.js';

export interface DurableGroupState {
  term: number;
  votedFor: PeerId | null;
  entries: LogEntry[];
}

export interface PendingWrite {
  group: number;
  entries: LogEntry[];
}

export type CrashLoss = 'lose_all' | 'keep_prefix' | 'torn';

export class SimDisk {
  readonly groups: DurableGroupState[];
  pending: PendingWrite[] = [];
  /** True while a sync is scheduled; writes queued before it completes join its batch. */
  syncScheduled = false;

  constructor(groupCount: number) {
    this.groups = Array.from({ length: groupCount }, () => ({ term: 0, votedFor: null, entries: [] }));
  }

  writeMeta(group: number, term: number, votedFor: PeerId | null): void {
    this.groups[group].term = term;
    this.groups[group].votedFor = votedFor;
  }

  queue(group: number, entries: LogEntry[]): void {
    if (entries.length > 0) this.pending.push({ group, entries });
  }

  /** Makes every queued write durable, in order, and returns them so the caller can report `written`. */
  sync(): PendingWrite[] {
    const done = this.pending;
    this.pending = [];
    this.syncScheduled = false;
    for (const write of done) applyWrite(this.groups[write.group], write.entries);
    return done;
  }

  /** Applies a crash to the unsynced writes and returns what happened, for the trace. */
  crash(prng: Prng): { loss: CrashLoss; keptWrites: number; keptEntriesOfNext: number } {
    const pending = this.pending;
    this.pending = [];
    this.syncScheduled = false;
    const loss: CrashLoss = pending.length === 0 ? 'lose_all' : prng.pick(['lose_all', 'keep_prefix', 'torn'] as const);
    if (loss === 'lose_all') return { loss, keptWrites: 0, keptEntriesOfNext: 0 };

    const keptWrites = prng.int(pending.length + 1);
    for (let i = 0; i < keptWrites; i++) applyWrite(this.groups[pending[i].group], pending[i].entries);
    let keptEntriesOfNext = 0;
    if (loss === 'torn' && keptWrites < pending.length) {
      const next = pending[keptWrites];
      keptEntriesOfNext = prng.int(next.entries.length);
      if (keptEntriesOfNext > 0) applyWrite(this.groups[next.group], next.entries.slice(0, keptEntriesOfNext));
    }
    return { loss, keptWrites, keptEntriesOfNext };
  }

  /** Returns a copy of one group's durable state, as a restarted server would recover it. */
  recover(group: number): DurableGroupState {
    const state = this.groups[group];
    return { term: state.term, votedFor: state.votedFor, entries: [...state.entries] };
  }
}

/** Writes entries at their indexes: the log is cut before the first one, as the WAL's recovery treats a rewrite. */
function applyWrite(state: DurableGroupState, entries: LogEntry[]): void {
  const first = entries[0].index;
  if (first > state.entries.length + 1) {
    throw new Error(`disk model: write starts at index ${first} but only ${state.entries.length} entries are durable`);
  }
  state.entries.length = first - 1;
  state.entries.push(...entries);
}
