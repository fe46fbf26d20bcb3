import { describe, expect, it } from 'vitest';
import { RaftSim } from '../support/raft-sim.js';
import type { RaftEffect, RequestVoteRequest } from '../../src/main/raft/types.js';

const ids3 = ['a', 'b', 'c'];

function voteRequest(candidateId: string, term: number, preVote = false, lastIndex = 0, lastTerm = 0): RequestVoteRequest {
  return { type: 'request_vote', term, candidateId, lastIndex, lastTerm, preVote };
}

function sentVotes(effects: RaftEffect[]): { to: string; granted: boolean }[] {
  const out: { to: string; granted: boolean }[] = [];
  for (const e of effects) {
    if (e.type === 'send' && e.message.type === 'request_vote_reply') out.push({ to: e.to, granted: e.message.granted });
  }
  return out;
}

describe('RaftCore elections', () => {
  it('elects one leader in term 1 with pre-vote', () => {
    const sim = new RaftSim({ ids: ids3, seed: 7 });
    const leader = sim.elect();

    expect(leader.core.term).toBe(1);
    for (const id of ids3) {
      expect(sim.core(id).term).toBe(1);
      expect(sim.core(id).leaderId).toBe(leader.id);
    }
    const firstEntry = sim.effectsOf(leader.id, 'persist_entries')[0].entries[0];
    expect(firstEntry.kind).toBe('noop');
    expect(firstEntry.term).toBe(1);
    for (const id of ids3) expect(sim.core(id).commitIndex).toBe(1);
  });

  it('elects a leader without pre-vote', () => {
    const sim = new RaftSim({ ids: ids3, seed: 7, core: { preVote: false } });
    const leader = sim.elect();

    expect(leader.core.term).toBe(1);
    const requests = sim.effectsOf(leader.id, 'send').filter((e) => e.message.type === 'request_vote');
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((e) => e.message.type === 'request_vote' && !e.message.preVote)).toBe(true);
  });

  it('pre-vote keeps a rejoining partitioned member from bumping terms', () => {
    const sim = new RaftSim({ ids: ids3, seed: 3 });
    const leader = sim.elect();
    const follower = ids3.find((id) => id !== leader.id)!;

    sim.isolate(follower);
    sim.peerStatus(follower, leader.id, false);
    sim.advance(5_000);
    expect(sim.node(follower).ticks).toBeGreaterThan(5);
    expect(sim.core(follower).term).toBe(1);

    sim.heal();
    sim.peerStatus(follower, leader.id, true);
    sim.runUntil(() => sim.core(follower).leaderId === leader.id);
    expect(sim.leader()?.id).toBe(leader.id);
    expect(leader.core.term).toBe(1);
    expect(sim.core(follower).term).toBe(1);
  });

  it('without pre-vote a rejoining member disrupts the leader', () => {
    const sim = new RaftSim({ ids: ids3, seed: 3, core: { preVote: false } });
    const leader = sim.elect();
    const follower = ids3.find((id) => id !== leader.id)!;

    sim.isolate(follower);
    sim.peerStatus(follower, leader.id, false);
    sim.advance(5_000);
    expect(sim.core(follower).term).toBeGreaterThan(3);

    sim.heal();
    sim.advance(1);
    // The next vote request carries the higher term, and the old leader steps down.
    sim.runUntil(() => sim.leader() !== undefined && sim.leader()!.core.term > 3);
    expect(sim.leader()!.core.term).toBeGreaterThan(3);
  });

  it('split vote resolves in a later term', () => {
    const sim = new RaftSim({ ids: ['a', 'b', 'c', 'd'], seed: 11, autoWrite: true });
    sim.handle('a', { type: 'trigger_election', nowMs: 0 });
    sim.handle('b', { type: 'trigger_election', nowMs: 0 });

    // Phase 1: every member grants both pre-votes, so a and b both become candidates in term 1.
    const isPreVote = (i: number) => {
      const m = sim.queue[i].message;
      return (m.type === 'request_vote' || m.type === 'request_vote_reply') && m.preVote;
    };
    for (let guard = 0; guard < 100; guard++) {
      const position = sim.queue.findIndex((_, i) => isPreVote(i));
      if (position < 0) break;
      sim.deliver(position);
    }
    expect(sim.core('a').role).toBe('candidate');
    expect(sim.core('b').role).toBe('candidate');
    expect(sim.core('a').term).toBe(1);

    // Phase 2: c hears a first and d hears b first, so each candidate gets two of four votes.
    const positionOf = (from: string, to: string) =>
      sim.queue.findIndex((q) => q.from === from && q.to === to && q.message.type === 'request_vote');
    sim.deliver(positionOf('a', 'c'));
    sim.deliver(positionOf('b', 'd'));
    sim.settle();
    expect(sim.core('c').votedFor).toBe('a');
    expect(sim.core('d').votedFor).toBe('b');
    expect(sim.leader()).toBeUndefined();

    const leader = sim.elect();
    expect(leader.core.term).toBeGreaterThanOrEqual(2);
  });

  it('single member elects itself and commits after its write', () => {
    const sim = new RaftSim({ ids: ['a'], seed: 1, autoWrite: false });
    sim.runUntil(() => sim.core('a').role === 'leader', 1_000);
    expect(sim.core('a').commitIndex).toBe(0);

    sim.completeWrite('a');
    expect(sim.core('a').commitIndex).toBe(1);

    const accepted = sim.command('a', 1).find((e) => e.type === 'command_accepted');
    expect(accepted).toEqual({ type: 'command_accepted', correlation: 1, index: 2, term: 1 });
    expect(sim.core('a').commitIndex).toBe(1);
    sim.completeWrite('a');
    expect(sim.core('a').commitIndex).toBe(2);
    expect(sim.node('a').applied.map((e) => e.kind)).toEqual(['noop', 'command']);
  });

  it('grants at most one vote per term, also across a restart', () => {
    const sim = new RaftSim({ ids: ids3, seed: 1 });
    const first = sim.handle('c', { type: 'message', from: 'a', message: voteRequest('a', 1), nowMs: 0 });
    expect(sentVotes(first)).toEqual([{ to: 'a', granted: true }]);
    // The vote is durable before the reply leaves.
    const metaAt = first.findIndex((e) => e.type === 'persist_meta');
    const sendAt = first.findIndex((e) => e.type === 'send');
    expect(metaAt).toBeGreaterThanOrEqual(0);
    expect(metaAt).toBeLessThan(sendAt);
    expect(first[metaAt]).toEqual({ type: 'persist_meta', term: 1, votedFor: 'a' });

    const second = sim.handle('c', { type: 'message', from: 'b', message: voteRequest('b', 1), nowMs: 1 });
    expect(sentVotes(second)).toEqual([{ to: 'b', granted: false }]);

    sim.crash('c');
    sim.restart('c');
    expect(sim.core('c').votedFor).toBe('a');
    const afterRestart = sim.handle('c', { type: 'message', from: 'b', message: voteRequest('b', 1), nowMs: 2 });
    expect(sentVotes(afterRestart)).toEqual([{ to: 'b', granted: false }]);

    const nextTerm = sim.handle('c', { type: 'message', from: 'b', message: voteRequest('b', 2), nowMs: 3 });
    expect(sentVotes(nextTerm)).toEqual([{ to: 'b', granted: true }]);
  });

  it('pre-vote request changes no term or vote', () => {
    const sim = new RaftSim({ ids: ids3, seed: 1 });
    const effects = sim.handle('c', { type: 'message', from: 'a', message: voteRequest('a', 5, true), nowMs: 0 });

    expect(sentVotes(effects)).toEqual([{ to: 'a', granted: true }]);
    expect(effects.some((e) => e.type === 'persist_meta')).toBe(false);
    expect(sim.core('c').term).toBe(0);
    expect(sim.core('c').votedFor).toBeNull();
  });

  it('follower with a live leader rejects pre-votes', () => {
    const sim = new RaftSim({ ids: ids3, seed: 5 });
    const leader = sim.elect();
    const [f1, f2] = ids3.filter((id) => id !== leader.id);

    const request = voteRequest(f2, 2, true, 1, 1);
    const rejected = sim.handle(f1, { type: 'message', from: f2, message: request, nowMs: sim.nowMs });
    expect(sentVotes(rejected)).toEqual([{ to: f2, granted: false }]);

    sim.peerStatus(f1, leader.id, false);
    const granted = sim.handle(f1, { type: 'message', from: f2, message: request, nowMs: sim.nowMs });
    expect(sentVotes(granted)).toEqual([{ to: f2, granted: true }]);
  });

  it('stale leader steps down on a higher term', () => {
    const sim = new RaftSim({ ids: ids3, seed: 9 });
    const old = sim.elect();
    const others = ids3.filter((id) => id !== old.id);

    sim.isolate(old.id);
    for (const id of others) sim.peerStatus(id, old.id, false);
    sim.runUntil(() => others.some((id) => sim.core(id).role === 'leader'));
    const fresh = sim.leader()!;
    expect(fresh.core.term).toBe(2);
    expect(old.core.role).toBe('leader');

    // The old leader accepts a command it can never commit.
    sim.command(old.id, 1, 'lost');
    sim.heal();
    for (const id of others) sim.peerStatus(id, old.id, true);
    // The old leader resends after its resend timeout; the reply carries term 2.
    sim.runUntil(() => old.core.role !== 'leader', 2_000);
    expect(old.core.role).toBe('follower');
    expect(old.core.term).toBe(2);
    const change = sim.effectsOf(old.id, 'role_changed').at(-1);
    expect(change).toMatchObject({ type: 'role_changed', role: 'follower', term: 2 });

    sim.runUntil(() => old.core.leaderId === fresh.id && old.core.lastIndex === fresh.core.lastIndex);
    sim.command(fresh.id, 2, 'kept');
    sim.settle();
    expect(old.core.entries(1, old.core.lastIndex)).toEqual(fresh.core.entries(1, fresh.core.lastIndex));
    expect(old.applied.some((e) => new TextDecoder().decode(e.data) === 'lost')).toBe(false);
  });

  it('restarted follower learns the leader from its probe', () => {
    const sim = new RaftSim({ ids: ids3, seed: 13 });
    const leader = sim.elect();
    for (let i = 1; i <= 5; i++) sim.command(leader.id, i);
    sim.settle();
    const follower = ids3.find((id) => id !== leader.id)!;

    sim.crash(follower);
    const restarted = sim.restart(follower);
    expect(restarted.core.leaderId).toBeNull();
    expect(restarted.core.needsTick()).toBe(true);

    sim.runUntil(() => restarted.core.leaderId === leader.id);
    expect(sim.leader()?.id).toBe(leader.id);
    expect(leader.core.term).toBe(1);
    expect(restarted.core.term).toBe(1);
    const realVotes = restarted.effects.filter((e) => e.type === 'send' && e.message.type === 'request_vote' && !e.message.preVote);
    expect(realVotes).toEqual([]);
    expect(restarted.core.needsTick()).toBe(false);
    expect(restarted.core.commitIndex).toBe(leader.core.commitIndex);
  });

  it('leader failure detected by peer_status elects a new leader', () => {
    const sim = new RaftSim({ ids: ids3, seed: 21 });
    const old = sim.elect();
    const others = ids3.filter((id) => id !== old.id);

    sim.crash(old.id);
    sim.advance(2_000);
    // Without a failure notice the followers keep their leader and run no timer.
    for (const id of others) expect(sim.core(id).leaderId).toBe(old.id);

    for (const id of others) sim.peerStatus(id, old.id, false);
    sim.runUntil(() => sim.leader() !== undefined);
    expect(sim.leader()!.core.term).toBe(2);
  });

  it('restarted leader with a lost tail is replaced', () => {
    const sim = new RaftSim({ ids: ids3, seed: 23 });
    const old = sim.elect();
    const others = ids3.filter((id) => id !== old.id);
    sim.autoWrite = false;

    // The followers write the command and it commits, but the leader crashes before its own write.
    sim.command(old.id, 1);
    sim.settle();
    for (const id of others) sim.completeWrite(id);
    sim.settle();
    expect(old.core.commitIndex).toBe(2);
    sim.crash(old.id);
    const restarted = sim.restart(old.id);
    expect(restarted.core.lastIndex).toBe(1);

    // The followers never suspected the leader, but its pre-vote shows it leads no more.
    sim.autoWrite = true;
    sim.runUntil(() => sim.leader() !== undefined && others.includes(sim.leader()!.id));
    // The new leader's noop at index 3 commits the command along with it.
    sim.runUntil(() => restarted.core.commitIndex === 3);
    expect(restarted.core.entries(2, 2)[0].kind).toBe('command');
    expect(sim.leader()!.core.term).toBe(2);
  });

  it('idle group asks for no ticks and sends nothing', () => {
    const sim = new RaftSim({ ids: ids3, seed: 17 });
    const leader = sim.elect();
    sim.command(leader.id, 1);
    sim.settle();
    sim.advance(100);
    for (const id of ids3) expect(sim.core(id).needsTick()).toBe(false);

    const sent = sim.sentCount;
    const ticks = ids3.map((id) => sim.node(id).ticks);
    sim.advance(10_000);
    expect(sim.sentCount).toBe(sent);
    expect(ids3.map((id) => sim.node(id).ticks)).toEqual(ticks);
    // Followers learned the final commit index without heartbeats.
    for (const id of ids3) expect(sim.core(id).lastApplied).toBe(2);
  });
});
