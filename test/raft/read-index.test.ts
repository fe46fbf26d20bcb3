import { describe, expect, it } from 'vitest';
import { RaftSim } from '../support/raft-sim.js';

const ids3 = ['a', 'b', 'c'];

describe('RaftCore read index', () => {
  it('read needs a quorum round', () => {
    const sim = new RaftSim({ ids: ids3, seed: 31 });
    const leader = sim.elect();
    const [b, c] = ids3.filter((id) => id !== leader.id);

    const immediate = sim.readIndex(leader.id, 1);
    expect(immediate.some((e) => e.type === 'read_ready')).toBe(false);
    expect(sim.queue.filter((q) => q.message.type === 'append_entries').map((q) => q.to).sort()).toEqual([b, c].sort());

    // One follower's reply plus the leader itself is a majority of three.
    sim.drop((q) => q.to === c);
    sim.deliver();
    expect(sim.effectsOf(leader.id, 'read_ready')).toEqual([]);
    sim.deliver();
    expect(sim.effectsOf(leader.id, 'read_ready')).toEqual([{ type: 'read_ready', correlation: 1, readIndex: 1 }]);
  });

  it('read waits while followers are unreachable', () => {
    const sim = new RaftSim({ ids: ids3, seed: 33 });
    const leader = sim.elect();
    sim.isolate(leader.id);

    sim.readIndex(leader.id, 1);
    sim.advance(3_000);
    expect(sim.effectsOf(leader.id, 'read_ready')).toEqual([]);
    expect(leader.core.needsTick()).toBe(true);

    // The leader resends the round after its resend timeout, so a healed link completes it.
    sim.heal();
    sim.advance(600);
    expect(sim.effectsOf(leader.id, 'read_ready')).toEqual([{ type: 'read_ready', correlation: 1, readIndex: 1 }]);
    expect(leader.core.needsTick()).toBe(false);
  });

  it('read waits for a commit in the current term', () => {
    const sim = new RaftSim({ ids: ids3, seed: 35, autoWrite: false });
    sim.runUntil(() => sim.leader() !== undefined, 5_000);
    const leader = sim.leader()!;
    expect(leader.core.commitIndex).toBe(0);

    const effects = sim.readIndex(leader.id, 7);
    expect(effects).toEqual([]);
    expect(leader.core.status().pendingReads).toBe(1);

    sim.autoWrite = true;
    sim.settle();
    expect(sim.effectsOf(leader.id, 'read_ready')).toEqual([{ type: 'read_ready', correlation: 7, readIndex: 1 }]);
  });

  it('non-leader rejects reads with a leader hint', () => {
    const sim = new RaftSim({ ids: ids3, seed: 37 });
    const leader = sim.elect();
    const follower = ids3.find((id) => id !== leader.id)!;

    expect(sim.readIndex(follower, 3)).toEqual([
      { type: 'read_rejected', correlation: 3, leaderHint: leader.id, reason: 'not_leader' },
    ]);
  });

  it('stepping down rejects pending reads', () => {
    const sim = new RaftSim({ ids: ids3, seed: 39 });
    const old = sim.elect();
    const others = ids3.filter((id) => id !== old.id);
    sim.isolate(old.id);
    sim.readIndex(old.id, 5);

    for (const id of others) sim.peerStatus(id, old.id, false);
    sim.runUntil(() => others.some((id) => sim.core(id).role === 'leader'));
    sim.heal();
    sim.runUntil(() => old.core.role === 'follower', 2_000);

    const rejected = sim.effectsOf(old.id, 'read_rejected');
    expect(rejected.length).toBe(1);
    expect(rejected[0].correlation).toBe(5);
    expect(sim.effectsOf(old.id, 'read_ready')).toEqual([]);
  });

  it('single member reads at once', () => {
    const sim = new RaftSim({ ids: ['a'], seed: 41 });
    sim.runUntil(() => sim.core('a').commitIndex === 1, 2_000);

    expect(sim.readIndex('a', 2)).toEqual([{ type: 'read_ready', correlation: 2, readIndex: 1 }]);
  });
});
