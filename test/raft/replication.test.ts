import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/main/raft/core.js';
import { RaftInvariantError } from '../../src/main/raft/invariant.js';
import type { AppendEntriesRequest, LogEntry, RaftEffect } from '../../src/main/raft/types.js';
import { entriesWithTerms, mulberry32, RaftSim } from '../support/raft-sim.js';

const ids3 = ['a', 'b', 'c'];

function entry(index: number, term: number): LogEntry {
  return { index, term, kind: 'command', data: new Uint8Array([index]) };
}

function append(term: number, prevIndex: number, prevTerm: number, entries: LogEntry[], leaderCommit: number, seq = 1): AppendEntriesRequest {
  return { type: 'append_entries', term, leaderId: 'a', prevIndex, prevTerm, entries, leaderCommit, seq };
}

function replies(effects: RaftEffect[]) {
  return effects.flatMap((e) => (e.type === 'send' && e.message.type === 'append_entries_reply' ? [e.message] : []));
}

describe('RaftCore replication', () => {
  it('replicates and commits commands on every member', () => {
    const sim = new RaftSim({ ids: ids3, seed: 2 });
    const leader = sim.elect();
    for (let i = 1; i <= 20; i++) sim.command(leader.id, i);
    sim.settle();

    for (const id of ids3) {
      expect(sim.core(id).commitIndex).toBe(21);
      expect(sim.node(id).applied.length).toBe(21);
    }
    const accepted = sim.effectsOf(leader.id, 'command_accepted');
    expect(accepted.map((e) => e.index)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
  });

  it('non-leader rejects commands with a leader hint', () => {
    const sim = new RaftSim({ ids: ids3, seed: 2 });
    const leader = sim.elect();
    const follower = ids3.find((id) => id !== leader.id)!;

    const effects = sim.command(follower, 9);
    expect(effects).toEqual([{ type: 'command_rejected', correlation: 9, leaderHint: leader.id, reason: 'not_leader' }]);
  });

  it('leader does not count its own unwritten entry', () => {
    const sim = new RaftSim({ ids: ids3, seed: 4 });
    const leader = sim.elect();
    const [b, c] = ids3.filter((id) => id !== leader.id);
    sim.autoWrite = false;

    sim.command(leader.id, 1);
    sim.settle();
    // Followers hold the entry but have not written it, so they do not reply yet.
    expect(sim.queue).toEqual([]);
    expect(sim.core(b).lastIndex).toBe(2);

    sim.completeWrite(b);
    sim.settle();
    expect(leader.core.status().followers.find((f) => f.id === b)?.matchIndex).toBe(2);
    expect(leader.core.commitIndex).toBe(1);

    sim.completeWrite(leader.id);
    expect(leader.core.commitIndex).toBe(2);
    sim.completeWrite(c);
    sim.settle();
    expect(sim.core(c).commitIndex).toBe(2);
  });

  it('follower reports only written entries as matching', () => {
    const core = new RaftCore({ id: 'b', members: ids3.map((id) => ({ id, membership: 'voter' })), random: mulberry32(1) });
    const first = core.handle({ type: 'message', from: 'a', message: append(1, 0, 0, [entry(1, 1), entry(2, 1)], 0), nowMs: 0 });
    expect(replies(first)).toEqual([]);
    expect(first.find((e) => e.type === 'persist_entries')).toEqual({ type: 'persist_entries', entries: [entry(1, 1), entry(2, 1)] });

    // A probe with nothing new gets a reply at once, with the durable match only.
    const probe = core.handle({ type: 'message', from: 'a', message: append(1, 2, 1, [], 0, 2), nowMs: 1 });
    expect(replies(probe)).toEqual([
      { type: 'append_entries_reply', term: 1, success: true, matchIndex: 0, nextIndexHint: 0, seq: 2 },
    ]);

    const written = core.handle({ type: 'written', term: 1, fromIndex: 1, toIndex: 2, nowMs: 2 });
    expect(replies(written)).toEqual([
      { type: 'append_entries_reply', term: 1, success: true, matchIndex: 2, nextIndexHint: 0, seq: 2 },
    ]);
  });

  it('written report for replaced entries does not count', () => {
    const core = new RaftCore({ id: 'b', members: ids3.map((id) => ({ id, membership: 'voter' })), random: mulberry32(1) });
    core.handle({ type: 'message', from: 'a', message: append(1, 0, 0, [entry(1, 1), entry(2, 1), entry(3, 1)], 0), nowMs: 0 });
    // A new leader replaces entries 2 and 3 before the first write is reported.
    const repair = core.handle({ type: 'message', from: 'a', message: append(2, 1, 1, [entry(2, 2)], 0, 2), nowMs: 1 });
    expect(repair.find((e) => e.type === 'persist_entries')).toEqual({ type: 'persist_entries', entries: [entry(2, 2)] });
    expect(core.lastIndex).toBe(2);

    core.handle({ type: 'written', term: 1, fromIndex: 1, toIndex: 3, nowMs: 2 });
    expect(core.lastWritten).toBe(0);
    core.handle({ type: 'written', term: 2, fromIndex: 2, toIndex: 2, nowMs: 3 });
    expect(core.lastWritten).toBe(2);
  });

  it('truncating a committed entry throws', () => {
    const core = new RaftCore({ id: 'b', members: ids3.map((id) => ({ id, membership: 'voter' })), random: mulberry32(1) });
    core.handle({ type: 'message', from: 'a', message: append(1, 0, 0, [entry(1, 1), entry(2, 1)], 2), nowMs: 0 });
    expect(core.commitIndex).toBe(2);

    const conflicting = { type: 'message', from: 'a', message: append(2, 0, 0, [entry(1, 1), entry(2, 2)], 2, 2), nowMs: 1 } as const;
    expect(() => core.handle(conflicting)).toThrow(RaftInvariantError);
    expect(() => core.handle(conflicting)).toThrow(/committed entry 2 \(commit index 2\)/);
  });

  it('repairs conflicting followers in few round trips', () => {
    // Leader a has terms 1 1 1 4 4 5 5 6 6 6; b is short; c has a long run of stale terms.
    const sim = new RaftSim({
      ids: ids3,
      seed: 6,
      initial: {
        a: { term: 6, votedFor: null, entries: entriesWithTerms([1, 1, 1, 4, 4, 5, 5, 6, 6, 6]) },
        b: { term: 4, votedFor: null, entries: entriesWithTerms([1, 1, 1, 4]) },
        c: { term: 3, votedFor: null, entries: entriesWithTerms([1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]) },
      },
    });
    sim.handle('a', { type: 'trigger_election', nowMs: 0 });
    sim.settle();
    expect(sim.core('a').role).toBe('leader');

    const failures = (id: string) =>
      sim.effectsOf(id, 'send').filter((e) => e.message.type === 'append_entries_reply' && !e.message.success);
    // One failure per stale term run, not one per entry.
    expect(failures('b').length).toBe(1);
    expect(failures('c').length).toBe(2);
    expect(sim.effectsOf('c', 'persist_entries')[0].entries[0].index).toBe(4);

    const leaderLog = sim.core('a').entries(1, 11);
    for (const id of ['b', 'c']) {
      expect(sim.core(id).entries(1, sim.core(id).lastIndex)).toEqual(leaderLog);
      expect(sim.core(id).commitIndex).toBe(11);
    }
  });

  it('Figure 8: an old-term entry on a majority is not committed', () => {
    const initial = (terms: number[], term: number) => ({ term, votedFor: null, entries: entriesWithTerms(terms) });
    const sim = new RaftSim({
      ids: ['s1', 's2', 's3', 's4', 's5'],
      seed: 8,
      autoWrite: false,
      core: { maxEntriesPerAppend: 1 },
      initial: {
        s1: initial([1, 2], 3),
        s2: initial([1], 3),
        s3: initial([1], 3),
        s4: initial([1], 3),
        s5: initial([1, 3], 4),
      },
    });
    sim.cut('s1', 's5');
    sim.handle('s1', { type: 'trigger_election', nowMs: 0 });

    // s1 copies its term-2 entry to s2, s3 and s4, but its term-4 noop reaches no one (requests
    // that would fail the consistency check still arrive), and s1 never finishes writing it.
    const wouldAppendNoop = (i: number) => {
      const { to, message } = sim.queue[i];
      return message.type === 'append_entries' && message.entries.some((e) => e.index === 3) && message.prevIndex <= sim.core(to).lastIndex;
    };
    for (let guard = 0; guard < 200 && sim.queue.length > 0; guard++) {
      if (wouldAppendNoop(0)) sim.queue.shift();
      else sim.deliver();
      for (const id of ['s2', 's3', 's4']) while (sim.completeWrite(id));
    }
    expect(sim.core('s1').role).toBe('leader');
    expect(sim.core('s1').term).toBe(4);
    const followers = sim.core('s1').status().followers;
    expect(followers.find((f) => f.id === 's2')?.matchIndex).toBe(2);
    expect(followers.find((f) => f.id === 's3')?.matchIndex).toBe(2);
    expect(sim.core('s1').commitIndex).toBe(0);

    // s1 crashes; s5 wins term 5 and overwrites index 2. Had s1 committed index 2, the sim's
    // state machine safety check would throw once s5's members apply their own index 2.
    sim.crash('s1');
    sim.heal();
    for (const id of ['s2', 's3', 's4']) sim.peerStatus(id, 's1', false);
    sim.autoWrite = true;
    sim.handle('s5', { type: 'trigger_election', nowMs: sim.nowMs });
    sim.settle();
    expect(sim.core('s5').role).toBe('leader');
    expect(sim.core('s5').term).toBe(5);
    expect(sim.core('s2').entries(2, 2)[0].term).toBe(3);
    expect(sim.node('s2').applied.map((e) => e.term)).toEqual([1, 3, 5]);
  });

  it('old-term entries commit with the first current-term entry', () => {
    const sim = new RaftSim({
      ids: ids3,
      seed: 10,
      autoWrite: false,
      initial: {
        a: { term: 2, votedFor: null, entries: entriesWithTerms([1, 2]) },
        b: { term: 2, votedFor: null, entries: entriesWithTerms([1, 2]) },
        c: { term: 2, votedFor: null, entries: entriesWithTerms([1]) },
      },
    });
    sim.handle('a', { type: 'trigger_election', nowMs: 0 });
    sim.settle();
    expect(sim.core('a').role).toBe('leader');
    // b already has entry 2 and replies at once, but entry 2 has term 2 and the leader's term is 3.
    expect(sim.core('a').commitIndex).toBe(0);

    while (sim.completeWrite('b'));
    sim.settle();
    expect(sim.core('a').commitIndex).toBe(0);
    sim.completeWrite('a');
    expect(sim.core('a').commitIndex).toBe(3);
    expect(sim.effectsOf('a', 'apply').flatMap((e) => e.entries.map((x) => x.index))).toEqual([1, 2, 3]);
  });

  it('leader resends lost appends after the resend timeout', () => {
    const sim = new RaftSim({ ids: ids3, seed: 12 });
    const leader = sim.elect();
    sim.command(leader.id, 1);
    expect(sim.drop((q) => q.message.type === 'append_entries')).toBe(2);
    sim.settle();
    expect(leader.core.commitIndex).toBe(1);
    expect(leader.core.needsTick()).toBe(true);

    sim.advance(400);
    expect(leader.core.commitIndex).toBe(1);
    sim.advance(200);
    expect(leader.core.commitIndex).toBe(2);
    sim.advance(100);
    expect(leader.core.needsTick()).toBe(false);
  });

  it('pipelining stays within the in-flight window', () => {
    const sim = new RaftSim({ ids: ids3, seed: 14, core: { maxInflightEntries: 4, maxEntriesPerAppend: 3 } });
    const leader = sim.elect();
    const [b] = ids3.filter((id) => id !== leader.id);
    sim.autoWrite = false;

    for (let i = 1; i <= 10; i++) sim.command(leader.id, i);
    const toB = sim.queue.filter((q) => q.to === b && q.message.type === 'append_entries');
    const entriesSent = toB.reduce((n, q) => n + (q.message.type === 'append_entries' ? q.message.entries.length : 0), 0);
    expect(entriesSent).toBe(4);
    expect(toB.every((q) => q.message.type === 'append_entries' && q.message.entries.length <= 3)).toBe(true);

    sim.autoWrite = true;
    sim.settle();
    expect(sim.core(b).lastIndex).toBe(11);
    expect(leader.core.commitIndex).toBe(11);
  });

  it('reordered appends are harmless', () => {
    const sim = new RaftSim({ ids: ids3, seed: 16 });
    const leader = sim.elect();
    for (let i = 1; i <= 6; i++) sim.command(leader.id, i);
    sim.queue.reverse();
    sim.settle();
    sim.runUntil(() => ids3.every((id) => sim.core(id).commitIndex === 7), 5_000);
    for (const id of ids3) expect(sim.node(id).applied.length).toBe(7);
  });

  it('nonvoter replicates but does not count for quorum', () => {
    const sim = new RaftSim({ ids: ['a', 'b', 'n'], seed: 18, memberships: { n: 'nonvoter' } });
    const leader = sim.elect();
    expect(leader.id).not.toBe('n');
    const voter = leader.id === 'a' ? 'b' : 'a';
    sim.command(leader.id, 1);
    sim.settle();
    expect(sim.core('n').commitIndex).toBe(2);

    sim.isolate(voter);
    sim.command(leader.id, 2);
    sim.settle();
    expect(sim.core('n').lastWritten).toBe(3);
    expect(leader.core.commitIndex).toBe(2);
  });
});
