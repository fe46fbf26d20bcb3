// Ring transfer main thread -> worker for 64-byte and 1 KiB records.
// Run after `npm run build`: npx tsc -p bench/tsconfig.json && node dist-bench/micro/ring.bench.js
// It imports the compiled library from dist/, so the build must be current.

import { Worker } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import { Bench } from 'tinybench';
import { ByteRing } from '../../dist/shared/ring.js';

const RECORDS_PER_ITERATION = 20_000;
const RING_BYTES = 4 * 1024 * 1024;
const WAIT_MS = 5000;

const ringModuleUrl = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/shared/ring.js')).href;

// The consumer counts records in slot 0 of `consumed` and wakes the producer on every release.
const consumerSource = `
  const { workerData } = require('node:worker_threads');
  import(${JSON.stringify(ringModuleUrl)}).then(({ ByteRing }) => {
    const ring = ByteRing.attach(workerData.ring);
    const consumed = new Int32Array(workerData.consumed);
    for (;;) {
      if (!ring.waitForData(1000)) { if (Atomics.load(consumed, 1) === 1) return; continue; }
      let count = 0;
      while (ring.read() !== null) count++;
      ring.releaseRead();
      Atomics.add(consumed, 0, count);
      Atomics.notify(consumed, 0);
    }
  });
`;

async function transfer(ring: ByteRing, consumed: Int32Array, payload: Uint8Array): Promise<void> {
  const target = Atomics.load(consumed, 0) + RECORDS_PER_ITERATION;
  for (let sent = 0; sent < RECORDS_PER_ITERATION; ) {
    if (ring.tryWrite(payload)) {
      sent++;
      continue;
    }
    ring.notifyConsumer();
    await ring.waitForSpaceAsync(WAIT_MS);
  }
  ring.notifyConsumer();
  for (let now = Atomics.load(consumed, 0); now < target; now = Atomics.load(consumed, 0)) {
    const result = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): { async: boolean; value: unknown } })
      .waitAsync(consumed, 0, now, WAIT_MS);
    if (result.async) await result.value;
  }
}

async function main(): Promise<void> {
  const bench = new Bench({ time: 2000, warmupTime: 300 });
  const workers: Worker[] = [];
  const sizes = [64, 1024];
  for (const size of sizes) {
    const ring = ByteRing.create(RING_BYTES);
    const consumed = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(consumerSource, { eval: true, workerData: { ring: ring.buffer, consumed: consumed.buffer } });
    workers.push(worker);
    const payload = new Uint8Array(size).fill(7);
    bench.add(`ring ${size} B x ${RECORDS_PER_ITERATION}`, () => transfer(ring, consumed, payload));
  }
  await bench.run();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== 'completed') {
      console.log(`${task.name}: ${result.state}`);
      continue;
    }
    const recordsPerSecond = (RECORDS_PER_ITERATION / result.latency.mean) * 1000;
    const recordBytes = Number(/ring (\d+) B/.exec(task.name)![1]);
    const megabytesPerSecond = (recordsPerSecond * recordBytes) / 1e6;
    console.log(`${task.name}: ${Math.round(recordsPerSecond).toLocaleString('en-US')} records/s, ${megabytesPerSecond.toFixed(0)} MB/s (mean ${result.latency.mean.toFixed(2)} ms per iteration, ${result.latency.samplesCount} samples)`);
  }
  await Promise.all(workers.map((worker) => worker.terminate()));
}

await main();
