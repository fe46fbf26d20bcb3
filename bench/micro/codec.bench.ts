// Encode and decode of what crosses rana's boundaries: a 100-byte KV command (msgpackr, as
// the server packs it into a log entry), and node-to-node messages (msgpackr with records off,
// as the transport packs them): an append-entries with 1 and with 64 entries, and a remote
// command request.
// Run: npx tsc -p bench/tsconfig.json && node dist-bench/micro/codec.bench.js

import { Packr, pack, unpack } from 'msgpackr';
import { Bench } from 'tinybench';

const transportPackr = new Packr({ useRecords: false });

function appendEntries(entryCount: number): unknown {
  const data = pack({ op: 'put', key: 'k1', value: 'x'.repeat(80) });
  return {
    t: 'raft',
    c: 'g0',
    m: {
      type: 'append_entries',
      term: 3,
      leaderId: 'n1',
      prevIndex: 1000,
      prevTerm: 3,
      entries: Array.from({ length: entryCount }, (_, i) => ({ index: 1001 + i, term: 3, kind: 'command', data })),
      leaderCommit: 999,
      seq: 42,
    },
  };
}

async function main(): Promise<void> {
  const bench = new Bench({ time: 800, warmupTime: 100 });
  const command = { op: 'put', key: 'k1234', value: 'x'.repeat(72) };
  const packedCommand = pack(command);
  bench.add(`command pack (${packedCommand.length} B)`, () => {
    pack(command);
  });
  bench.add(`command unpack (${packedCommand.length} B)`, () => {
    unpack(packedCommand);
  });

  const messages: [string, unknown][] = [
    ['append-entries 1 entry', appendEntries(1)],
    ['append-entries 64 entries', appendEntries(64)],
    ['command request', { t: 'req', id: 12345, op: 'command', name: 'g0', command, timeoutMs: 5000 }],
  ];
  for (const [name, message] of messages) {
    const encoded = transportPackr.pack(message);
    bench.add(`message pack ${name} (${encoded.length} B)`, () => {
      transportPackr.pack(message);
    });
    bench.add(`message unpack ${name} (${encoded.length} B)`, () => {
      transportPackr.unpack(encoded);
    });
  }

  await bench.run();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== 'completed') {
      console.log(`${task.name}: ${result.state}`);
      continue;
    }
    const perSecond = 1000 / result.latency.mean;
    console.log(`${task.name}: ${Math.round(perSecond).toLocaleString('en-US')} per second (${(result.latency.mean * 1e6).toFixed(0)} ns each)`);
  }
}

await main();
