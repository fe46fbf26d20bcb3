// CRC-32 over 100 B and 64 KiB: the pure-JS `crc-32` package that the WAL uses, and
// `zlib.crc32` where this Node version has it (20.15 and later).
// Run: npx tsc -p bench/tsconfig.json && node dist-bench/micro/crc.bench.js

import zlib from 'node:zlib';
import CRC32 from 'crc-32';
import { Bench } from 'tinybench';

const SIZES = [100, 64 * 1024];

async function main(): Promise<void> {
  const bench = new Bench({ time: 1000, warmupTime: 200 });
  const nativeCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32;
  for (const size of SIZES) {
    const data = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    bench.add(`crc-32 ${size} B`, () => {
      CRC32.buf(data);
    });
    if (nativeCrc32 !== undefined) {
      bench.add(`zlib.crc32 ${size} B`, () => {
        nativeCrc32(data);
      });
    }
  }
  await bench.run();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== 'completed') {
      console.log(`${task.name}: ${result.state}`);
      continue;
    }
    const size = Number(/(\d+) B$/.exec(task.name)![1]);
    const nsPerCall = result.latency.mean * 1e6;
    const gbPerSecond = size / nsPerCall;
    console.log(`${task.name}: ${nsPerCall.toFixed(0)} ns per call, ${gbPerSecond.toFixed(2)} GB/s`);
  }
  if (nativeCrc32 === undefined) console.log(`zlib.crc32: not in Node ${process.version}`);
}

await main();
