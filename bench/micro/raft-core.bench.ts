// Cost of the pure Raft core per replicated entry, with no I/O: three RaftCore instances in
// one thread, messages delivered synchronously, and every persist_entries effect answered at
// once with a `written` event. One iteration queues a batch of commands at the leader (as if
// they arrived in one event-loop turn) and runs the exchange until the leader has applied them.
// Run after `npm run build`: npx tsc -p bench/tsconfig.json && node dist-bench/micro/raft-core.bench.js

import { Bench } from 'tinybench';
import { RaftCore } from '../../dist/main/raft/core.js';
import type { RaftEffect, RaftEvent } from '../../dist/main/raft/types.js';

const IDS = ['n1', 'n2', 'n3'];
const BATCH_SIZES = [1, 64, 512];
const COMMAND_BYTES = 100;
/** Bound on events per pump, so a core that never goes quiet fails the benchmark instead of hanging it. */
const EVENTS_PER_PUMP_MAX = 1_000_000;

class InMemoryCluster {
  readonly cores = new Map<string, RaftCore>();
  readonly #queue: { to: string; event: RaftEvent }[] = [];
  nowMs = 1;
  applied = 0;

  constructor() {
    let seed = 1;
    const random = (): number => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const members = IDS.map((id) => ({ id, membership: 'voter' as const }));
    for (const id of IDS) this.cores.set(id, new RaftCore({ id, members, random }));
  }

  deliver(to: string, event: RaftEvent): void {
    this.#queue.push({ to, event });
    this.pump();
  }

  /** Queues an event without running it, as events that arrive in one event-loop turn queue up. */
  enqueue(to: string, event: RaftEvent): void {
    this.#queue.push({ to, event });
  }

  pump(): void {
    for (let steps = 0; this.#queue.length > 0; steps++) {
      if (steps > EVENTS_PER_PUMP_MAX) throw new Error(`the cores did not go quiet within ${EVENTS_PER_PUMP_MAX} events`);
      const { to, event } = this.#queue.shift()!;
      this.#execute(to, this.cores.get(to)!.handle(event));
    }
  }

  #execute(from: string, effects: RaftEffect[]): void {
    for (const effect of effects) {
      if (effect.type === 'send') {
        this.#queue.push({ to: effect.to, event: { type: 'message', from, message: effect.message, nowMs: this.nowMs } });
      } else if (effect.type === 'persist_entries' && effect.entries.length > 0) {
        const first = effect.entries[0];
        const last = effect.entries[effect.entries.length - 1];
        this.#queue.push({ to: from, event: { type: 'written', term: last.term, fromIndex: first.index, toIndex: last.index, nowMs: this.nowMs } });
      } else if (effect.type === 'apply' && from === 'n1') {
        this.applied += effect.entries.length;
      }
    }
  }
}

function electLeader(cluster: InMemoryCluster): RaftCore {
  cluster.deliver('n1', { type: 'trigger_election', nowMs: cluster.nowMs });
  const leader = cluster.cores.get('n1')!;
  if (leader.role !== 'leader') throw new Error(`n1 did not become leader (role ${leader.role}); the election exchange changed`);
  return leader;
}

async function main(): Promise<void> {
  const bench = new Bench({ time: 1500, warmupTime: 200 });
  const data = new Uint8Array(COMMAND_BYTES).fill(3);
  for (const batchSize of BATCH_SIZES) {
    const cluster = new InMemoryCluster();
    electLeader(cluster);
    let correlation = 0;
    bench.add(`raft core batch ${batchSize}`, () => {
      const target = cluster.applied + batchSize;
      for (let i = 0; i < batchSize; i++) {
        cluster.enqueue('n1', { type: 'command', correlation: ++correlation, data, nowMs: cluster.nowMs });
      }
      cluster.pump();
      if (cluster.applied < target) throw new Error(`applied ${cluster.applied}, expected ${target}: a batch did not commit`);
    });
  }
  await bench.run();
  BATCH_SIZES.forEach((batchSize, i) => {
    const task = bench.tasks[i];
    const result = task.result;
    if (result.state !== 'completed') {
      console.log(`${task.name}: ${result.state}${'error' in result ? ` (${String(result.error)})` : ''}`);
      return;
    }
    const entriesPerSecond = (batchSize / result.latency.mean) * 1000;
    console.log(
      `${task.name}: ${Math.round(entriesPerSecond).toLocaleString('en-US')} entries/s ` +
        `(${((result.latency.mean * 1e6) / batchSize).toFixed(0)} ns per replicated entry, 3 members)`,
    );
  });
}

await main();
