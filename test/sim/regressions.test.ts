// Regression tests for bugs the cluster simulator found, each reduced to a fixed schedule of
// messages on the small RaftSim harness so it does not depend on a seed's random stream.

import { describe, expect, it } from 'vitest';
import { RaftSim, type QueuedMessage } from '../support/raft-sim.js';

/** Delivers the first queued message that matches, and fails the test if none does. */
function deliverWhere(sim: RaftSim, match: (item: QueuedMessage) => boolean): void {
  const position = sim.queue.findIndex(match);
  expect(position, 'no queued message matches').toBeGreaterThanOrEqual(0);
  sim.deliver(position);
}

describe('simulator regressions', () => {
  // Found with the reordering network: the last message that carried the commit index to a
  // follower overtook the entries before it and was rejected. The leader still counted the
  // commit index as sent, so on an idle group the follower never learned it.
  it('rejected request resends the commit index', () => {
    const sim = new RaftSim({ ids: ['a', 'b', 'c'], seed: 3, autoWrite: false });
    sim.autoWrite = true;
    const leader = sim.elect();
    sim.autoWrite = false;
    const [follower, other] = ['a', 'b', 'c'].filter((id) => id !== leader.id);
    const commitBefore = sim.core(leader.id).commitIndex;

    // A: the new entry goes to both followers; only `other` gets it now.
    sim.command(leader.id, 1);
    const entryIndex = sim.core(leader.id).lastIndex;
    deliverWhere(sim, (m) => m.to === other && m.message.type === 'append_entries');
    while (sim.completeWrite(other) || sim.completeWrite(leader.id)) { /* make both durable */ }
    deliverWhere(sim, (m) => m.from === other && m.message.type === 'append_entries_reply');
    expect(sim.core(leader.id).commitIndex).toBe(entryIndex);

    // B: a read round sends the follower an empty request that carries the new commit index.
    sim.readIndex(leader.id, 7);
    const isEmptyAppend = (m: QueuedMessage): boolean =>
      m.to === follower && m.message.type === 'append_entries' && m.message.entries.length === 0;
    // B overtakes A, so the follower rejects it, then accepts A, whose commit index is older.
    deliverWhere(sim, isEmptyAppend);
    deliverWhere(sim, (m) => m.to === follower && m.message.type === 'append_entries');
    expect(sim.completeWrite(follower)).toBe(true);
    expect(sim.core(follower).commitIndex).toBe(commitBefore);

    // The success reply reaches the leader before the rejection.
    const isReply = (success: boolean) => (m: QueuedMessage): boolean =>
      m.from === follower && m.message.type === 'append_entries_reply' && m.message.success === success;
    deliverWhere(sim, isReply(true));
    deliverWhere(sim, isReply(false));

    sim.autoWrite = true;
    sim.advance(5_000);
    expect(sim.core(follower).commitIndex).toBe(entryIndex);
  });
});
