import { describe, expect, it } from 'vitest';
import { mulberry32, RaftSim } from '../support/raft-sim.js';

const ids5 = ['a', 'b', 'c', 'd', 'e'];

/** Crashes a live member or restarts a crashed one, and reports the change to the others as a failure detector would. */
function toggleCrash(sim: RaftSim, victim: string): void {
  const wasAlive = sim.node(victim).alive;
  if (wasAlive) sim.crash(victim);
  else sim.restart(victim);
  for (const id of ids5) {
    if (id !== victim && sim.node(id).alive) sim.peerStatus(id, victim, !wasAlive);
  }
}

/** Runs a random schedule of commands, drops, reorders, crashes and partitions; the sim checks safety after every event. */
function runChaos(seed: number): RaftSim {
  const sim = new RaftSim({ ids: ids5, seed });
  const chance = mulberry32(seed * 7919);
  const pick = <T>(items: T[]): T => items[Math.floor(chance() * items.length)];
  let correlation = 0;

  for (let step = 0; step < 400; step++) {
    const roll = chance();
    const leader = sim.leader();
    if (roll < 0.3) {
      if (leader) sim.command(leader.id, ++correlation);
    } else if (roll < 0.55) {
      if (sim.queue.length > 0) sim.deliver(Math.floor(chance() * sim.queue.length));
    } else if (roll < 0.6) {
      if (sim.queue.length > 0) sim.queue.splice(Math.floor(chance() * sim.queue.length), 1);
    } else if (roll < 0.62) {
      toggleCrash(sim, pick(ids5));
    } else if (roll < 0.63) {
      sim.isolate(pick(ids5));
    } else if (roll < 0.66) {
      sim.heal();
    } else {
      sim.advance(50);
    }
  }

  // Repair everything and check that the group converges.
  sim.heal();
  for (const id of ids5) {
    if (!sim.node(id).alive) sim.restart(id);
  }
  for (const id of ids5) for (const peer of ids5) if (peer !== id) sim.peerStatus(id, peer, true);
  sim.runUntil(() => {
    const leader = sim.leader();
    if (leader === undefined) return false;
    return ids5.every((id) => sim.core(id).lastApplied === leader.core.commitIndex && sim.core(id).leaderId === leader.id);
  }, 60_000);
  return sim;
}

describe('RaftCore under random faults', () => {
  for (let seed = 1; seed <= 50; seed++) {
    it(`seed ${seed} stays safe and converges`, () => {
      const sim = runChaos(seed);
      const leader = sim.leader()!;
      const reference = sim.node(leader.id).applied;
      expect(reference.length).toBeGreaterThan(1);
      for (const id of ids5) expect(sim.node(id).applied).toEqual(reference);
    });
  }

  it('same seed gives the same effects', () => {
    const first = runChaos(99);
    const second = runChaos(99);
    for (const id of ids5) expect(second.node(id).effects).toEqual(first.node(id).effects);
  });
});
