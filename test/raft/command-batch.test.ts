import { describe, expect, it } from 'vitest';
import type { RaftEffect } from '../../src/main/raft/types.js';
import { RaftSim } from '../support/raft-sim.js';

const ids3 = ['a', 'b', 'c'];
const encoder = new TextEncoder();

function appendsTo(effects: RaftEffect[], to: string) {
  return effects.flatMap((e) => (e.type === 'send' && e.to === to && e.message.type === 'append_entries' ? [e.message] : []));
}

describe('RaftCore command batches', () => {
  it('batch sends one append per follower', () => {
    const sim = new RaftSim({ ids: ids3, seed: 5 });
    const leader = sim.elect();
    sim.settle();
    const commands = Array.from({ length: 50 }, (_, i) => ({ correlation: i + 1, data: encoder.encode(`c${i}`) }));

    const effects = sim.handle(leader.id, { type: 'commands', commands, nowMs: 0 });

    const accepted = effects.filter((e) => e.type === 'command_accepted');
    expect(accepted).toHaveLength(50);
    for (const follower of ids3.filter((id) => id !== leader.id)) {
      const appends = appendsTo(effects, follower);
      expect(appends).toHaveLength(1);
      expect(appends[0].entries).toHaveLength(50);
    }
    sim.settle();
    for (const id of ids3) expect(sim.node(id).applied.length).toBe(51);
  });

  it('batch at a follower rejects each', () => {
    const sim = new RaftSim({ ids: ids3, seed: 5 });
    const leader = sim.elect();
    sim.settle();
    const follower = ids3.find((id) => id !== leader.id)!;
    const commands = [1, 2, 3].map((correlation) => ({ correlation, data: encoder.encode('x') }));

    const effects = sim.handle(follower, { type: 'commands', commands, nowMs: 0 });

    const rejected = effects.flatMap((e) => (e.type === 'command_rejected' ? [e] : []));
    expect(rejected.map((e) => e.correlation)).toEqual([1, 2, 3]);
    expect(rejected.every((e) => e.leaderHint === leader.id)).toBe(true);
    expect(effects.some((e) => e.type === 'persist_entries')).toBe(false);
  });
});
