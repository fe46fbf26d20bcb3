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

/**
 * Builds the schedule of both commit index bugs on three members: the leader sends entries
 * (A) and then an empty request that carries their commit index (B); B overtakes A, so the
 * follower rejects B and accepts A. Returns the sim and the ids involved, with the follower's
 * success reply and its rejection of B still queued.
 */
function overtakeCommitIndex(): { sim: RaftSim; leader: string; follower: string; entryIndex: number } {
  const sim = new RaftSim({ ids: ['a', 'b', 'c'], seed: 3, autoWrite: true });
  const leader = sim.elect().id;
  sim.autoWrite = false;
  const [follower, other] = ['a', 'b', 'c'].filter((id) => id !== leader);

  // A: the new entry goes to both followers; only `other` gets it now.
  sim.command(leader, 1);
  const entryIndex = sim.core(leader).lastIndex;
  deliverWhere(sim, (m) => m.to === other && m.message.type === 'append_entries');
  while (sim.completeWrite(other) || sim.completeWrite(leader)) { /* make both durable */ }
  deliverWhere(sim, (m) => m.from === other && m.message.type === 'append_entries_reply');
  expect(sim.core(leader).commitIndex).toBe(entryIndex);

  // B: a read round sends the follower an empty request that carries the new commit index.
  sim.readIndex(leader, 7);
  deliverWhere(sim, (m) => m.to === follower && m.message.type === 'append_entries' && m.message.entries.length === 0);
  deliverWhere(sim, (m) => m.to === follower && m.message.type === 'append_entries');
  expect(sim.completeWrite(follower)).toBe(true);
  return { sim, leader, follower, entryIndex };
}

function isReplyFrom(follower: string, success: boolean): (m: QueuedMessage) => boolean {
  return (m) => m.from === follower && m.message.type === 'append_entries_reply' && m.message.success === success;
}

describe('simulator regressions', () => {
  // Found with the reordering network: the last message that carried the commit index to a
  // follower overtook the entries before it and was rejected. The leader still counted the
  // commit index as sent, so on an idle group the follower never learned it.
  it('rejected request resends the commit index', () => {
    const { sim, follower, entryIndex } = overtakeCommitIndex();
    // The success reply reaches the leader before the rejection.
    deliverWhere(sim, isReplyFrom(follower, true));
    deliverWhere(sim, isReplyFrom(follower, false));

    sim.autoWrite = true;
    sim.advance(5_000);
    expect(sim.core(follower).commitIndex).toBe(entryIndex);
  });

  // The same schedule with the rejection lost: the leader never learns that the commit index
  // did not arrive, so the follower must keep the commit index from the rejected request.
  it('lost rejection keeps the commit index', () => {
    const { sim, follower, entryIndex } = overtakeCommitIndex();
    expect(sim.drop(isReplyFrom(follower, false))).toBe(1);
    deliverWhere(sim, isReplyFrom(follower, true));

    sim.autoWrite = true;
    sim.advance(5_000);
    expect(sim.core(follower).commitIndex).toBe(entryIndex);
  });
});
