// WAL batch write + fdatasync at batch sizes 1, 16, 128, 1024 and 8192 entries of 100 bytes.
// One iteration appends one batch in a single event-loop turn and waits for its `written`
// notification, so it measures one write call and one fdatasync per batch.
// Run after `npm run build`: npx tsc -p bench/tsconfig.json && node dist-bench/micro/wal.bench.js
// The WAL goes to a fresh directory under os.tmpdir() (set TMPDIR to bench another disk).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { WalClient } from '../../dist/main/storage/wal-client.js';

const BATCH_SIZES = [1, 16, 128, 1024, 8192];
const ENTRY_BYTES = 100;

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-wal-bench-'));
  try {
    const { wal } = await WalClient.open({ dir: path.join(root, 'wal'), syncMethod: 'datasync', maxBatchSize: 8192 });
    const writerId = wal.registerWriter('bench');
    let lastIndex = 0;
    let writtenIndex = 0;
    let waiter: { index: number; resolve: () => void } | null = null;
    wal.onWritten((_writerId, _term, _fromIndex, toIndex) => {
      writtenIndex = toIndex;
      if (waiter !== null && writtenIndex >= waiter.index) {
        waiter.resolve();
        waiter = null;
      }
    });
    const data = new Uint8Array(ENTRY_BYTES).fill(42);

    const writeBatch = (batchSize: number) => async (): Promise<void> => {
      for (let i = 0; i < batchSize; i++) {
        lastIndex++;
        wal.append(writerId, { index: lastIndex, term: 1, kind: 'command', data });
      }
      const target = lastIndex;
      if (writtenIndex >= target) return;
      await new Promise<void>((resolve) => {
        waiter = { index: target, resolve };
      });
    };

    const bench = new Bench({ time: 1500, warmupTime: 200 });
    for (const batchSize of BATCH_SIZES) bench.add(`wal batch ${batchSize} x ${ENTRY_BYTES} B + fdatasync`, writeBatch(batchSize));
    const batchesBefore = wal.counters.batches;
    await bench.run();

    BATCH_SIZES.forEach((batchSize, i) => {
      const task = bench.tasks[i];
      const result = task.result;
      if (result.state !== 'completed') {
        console.log(`${task.name}: ${result.state}`);
        return;
      }
      const entriesPerSecond = (batchSize / result.latency.mean) * 1000;
      console.log(
        `${task.name}: ${Math.round(entriesPerSecond).toLocaleString('en-US')} entries/s ` +
          `(p50 ${result.latency.p50.toFixed(3)} ms per batch, ${result.latency.samplesCount} samples)`,
      );
    });
    const batches = wal.counters.batches - batchesBefore;
    console.log(`write calls: ${batches}, fsyncs: ${wal.counters.fsyncs}, entries: ${wal.counters.entries}`);
    await wal.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
