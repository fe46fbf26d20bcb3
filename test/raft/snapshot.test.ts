// Snapshots in the pure Raft core: compaction, a leader starting and retrying a snapshot
// transfer with back-off, and a follower installing one or answering that it is ahead.

import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/main/raft/core.js';
import type { InstallSnapshotReply, InstallSnapshotRequest, LogEntry, RaftEffect } from '../../src/main/raft/types.js';

const members = ['a', 'b', 'c'].map((id) => ({ id, membership: 'voter' as const }));

function entry(index: number, term: number): LogEntry {
  return { index, term, kind: 'command', data: new Uint8Array([index]) };
}

function ofType<T extends RaftEffect['type']>(effects: RaftEffect[], type: T): Extract<RaftEffect, { type: T }>[] {
  return effects.filter((e): e is Extract<RaftEffect, { type: T }> => e.type === type);
}

function snapshotReplies(effects: RaftEffect[]): InstallSnapshotReply[] {
  return effects.flatMap((e) => (e.type === 'send' && e.message.type === 'install_snapshot_reply' ? [e.message] : []));
}

/** A leader `a` in term 2 with entries 1..10 of term 1 and its noop at 11, committed and compacted to 11. */
function compactedLeader(): RaftCore {
  const core = new RaftCore({
    id: 'a', members, random: () => 0.5, preVote: false, resendTimeoutMs: 500,
    initial: { term: 1, votedFor: null, entries: Array.from({ length: 10 }, (_, i) => entry(i + 1, 1)) },
  });
  core.handle({ type: 'trigger_election', nowMs: 0 });
  core.handle({ type: 'message', from: 'b', message: { type: 'request_vote_reply', term: 2, granted: true, preVote: false }, nowMs: 1 });
  expect(core.role).toBe('leader');
  core.handle({ type: 'written', term: 2, fromIndex: 11, toIndex: 11, nowMs: 2 });
  core.handle({
    type: 'message', from: 'b',
    message: { type: 'append_entries_reply', term: 2, success: true, matchIndex: 11, nextIndexHint: 0, seq: 1 }, nowMs: 3,
  });
  expect(core.commitIndex).toBe(11);
  core.handle({ type: 'snapshot_written', index: 11, term: 2, nowMs: 4 });
  expect(core.snapshotIndex).toBe(11);
  return core;
}

function chunk(overrides: Partial<InstallSnapshotRequest> = {}): InstallSnapshotRequest {
  return {
    type: 'install_snapshot', term: 2, leaderId: 'a', snapshotIndex: 11, snapshotTerm: 2,
    offset: 0, totalBytes: 100, data: new Uint8Array(100), chunkCrc: 0, done: true, ...overrides,
  };
}

describe('RaftCore snapshots', () => {
  it('compacts the log to a written snapshot', () => {
    const core = compactedLeader();
    expect(core.termAt(11)).toBe(2);
    expect(core.termAt(10)).toBeUndefined();
    expect(() => core.entries(10, 11)).toThrow('outside 12..11');
  });

  it('leader streams a snapshot when entries are compacted', () => {
    const core = compactedLeader();
    // c rejects from index 1: it has nothing, and the leader no longer holds entries 1..11.
    const effects = core.handle({
      type: 'message', from: 'c',
      message: { type: 'append_entries_reply', term: 2, success: false, matchIndex: 0, nextIndexHint: 1, seq: 1 }, nowMs: 10,
    });
    expect(ofType(effects, 'send_snapshot')).toEqual([{ type: 'send_snapshot', to: 'c', index: 11, attempt: 1 }]);
    expect(effects.some((e) => e.type === 'send' && e.message.type === 'append_entries' && e.to === 'c')).toBe(false);
  });

  it('leader retries a stalled transfer with back-off', () => {
    const core = compactedLeader();
    core.handle({
      type: 'message', from: 'c',
      message: { type: 'append_entries_reply', term: 2, success: false, matchIndex: 0, nextIndexHint: 1, seq: 1 }, nowMs: 10,
    });
    expect(ofType(core.handle({ type: 'tick', nowMs: 400 }), 'send_snapshot')).toEqual([]);
    expect(ofType(core.handle({ type: 'tick', nowMs: 510 }), 'send_snapshot')).toEqual([{ type: 'send_snapshot', to: 'c', index: 11, attempt: 2 }]);
    // The second wait is twice resendTimeoutMs.
    expect(ofType(core.handle({ type: 'tick', nowMs: 1200 }), 'send_snapshot')).toEqual([]);
    expect(ofType(core.handle({ type: 'tick', nowMs: 1520 }), 'send_snapshot')).toEqual([{ type: 'send_snapshot', to: 'c', index: 11, attempt: 3 }]);
  });

  it('leader resumes append-entries after an install', () => {
    const core = compactedLeader();
    core.handle({
      type: 'message', from: 'c',
      message: { type: 'append_entries_reply', term: 2, success: false, matchIndex: 0, nextIndexHint: 1, seq: 1 }, nowMs: 10,
    });
    const next = core.handle({
      type: 'message', from: 'c',
      message: { type: 'install_snapshot_reply', term: 2, snapshotIndex: 11, status: 'next', nextOffset: 4096, matchIndex: 0 }, nowMs: 20,
    });
    expect(ofType(next, 'snapshot_chunk_acked')).toEqual([{ type: 'snapshot_chunk_acked', to: 'c', index: 11, nextOffset: 4096 }]);

    const installed = core.handle({
      type: 'message', from: 'c',
      message: { type: 'install_snapshot_reply', term: 2, snapshotIndex: 11, status: 'installed', nextOffset: 0, matchIndex: 11 }, nowMs: 30,
    });
    expect(ofType(installed, 'snapshot_transfer_ended')).toEqual([{ type: 'snapshot_transfer_ended', to: 'c' }]);
    expect(core.status().followers.find((f) => f.id === 'c')).toMatchObject({ matchIndex: 11, nextIndex: 12 });

    const command = core.handle({ type: 'command', correlation: 1, data: new Uint8Array([1]), nowMs: 40 });
    const toC = command.flatMap((e) => (e.type === 'send' && e.to === 'c' && e.message.type === 'append_entries' ? [e.message] : []));
    expect(toC).toHaveLength(1);
    expect(toC[0]).toMatchObject({ prevIndex: 11, prevTerm: 2 });
    expect(toC[0].entries.map((e) => e.index)).toEqual([12]);
  });

  it('follower installs a snapshot and continues after it', () => {
    const core = new RaftCore({ id: 'c', members, random: () => 0.5, initial: { term: 1, votedFor: null, entries: [entry(1, 1), entry(2, 1)] } });
    const received = core.handle({ type: 'message', from: 'a', message: chunk(), nowMs: 1 });
    expect(ofType(received, 'receive_snapshot_chunk')).toHaveLength(1);
    expect(core.term).toBe(2);

    const installed = core.handle({ type: 'snapshot_installed', index: 11, term: 2, nowMs: 2 });
    expect(snapshotReplies(installed)).toEqual([{ type: 'install_snapshot_reply', term: 2, snapshotIndex: 11, status: 'installed', nextOffset: 0, matchIndex: 11 }]);
    expect(core.snapshotIndex).toBe(11);
    expect(core.lastIndex).toBe(11);
    expect(core.commitIndex).toBe(11);
    expect(core.lastApplied).toBe(11);

    // An append-entries from before the snapshot skips the entries the snapshot covers.
    const appended = core.handle({
      type: 'message', from: 'a',
      message: { type: 'append_entries', term: 2, leaderId: 'a', prevIndex: 9, prevTerm: 1, entries: [entry(10, 1), entry(11, 2), entry(12, 2)], leaderCommit: 12, seq: 5 },
      nowMs: 3,
    });
    expect(ofType(appended, 'persist_entries').flatMap((e) => e.entries.map((x) => x.index))).toEqual([12]);
  });

  it('follower already past the snapshot answers ahead', () => {
    const entries = [...Array.from({ length: 10 }, (_, i) => entry(i + 1, 1)), entry(11, 2), entry(12, 2)];
    const core = new RaftCore({ id: 'c', members, random: () => 0.5, initial: { term: 2, votedFor: null, entries } });
    const effects = core.handle({ type: 'message', from: 'a', message: chunk(), nowMs: 1 });
    expect(ofType(effects, 'receive_snapshot_chunk')).toEqual([]);
    expect(snapshotReplies(effects)).toEqual([{ type: 'install_snapshot_reply', term: 2, snapshotIndex: 11, status: 'ahead', nextOffset: 0, matchIndex: 11 }]);
  });

  it('follower rejects a chunk from a stale term', () => {
    const core = new RaftCore({ id: 'c', members, random: () => 0.5, initial: { term: 3, votedFor: null, entries: [] } });
    const effects = core.handle({ type: 'message', from: 'a', message: chunk({ term: 2 }), nowMs: 1 });
    expect(ofType(effects, 'receive_snapshot_chunk')).toEqual([]);
    expect(snapshotReplies(effects)).toEqual([{ type: 'install_snapshot_reply', term: 3, snapshotIndex: 11, status: 'rejected', nextOffset: 0, matchIndex: 0 }]);
  });
});
