// Baselines measured in the same run as the scenarios, so that a ratio survives a noisy
// machine. They are a disk probe, the disk's limit for rana's record size and batch size, and
// the naive durable queue a user would write with one fdatasync per command.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as hdr from 'hdr-histogram-js';
import { ProgressBar } from './progress.js';
import { formatCount } from './scenarios.js';

export interface DiskProbeResult {
  /** Size of each write before its fdatasync. */
  writeBytes: number;
  syncs: number;
  syncsPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** `slow` when the p50 of one append + fdatasync is above SLOW_REGIME_P50_MS. */
  regime: 'normal' | 'slow';
}

export interface RawFdatasyncResult {
  recordBytes: number;
  batchSize: number;
  entriesPerS: number;
  syncsPerS: number;
  /** Where recordBytes and batchSize came from. */
  source: string;
}

export interface NaiveQueueResult {
  producers: number;
  payloadBytes: number;
  commandsPerS: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
}

/**
 * Above this p50 of one 4 KiB append + fdatasync the disk is in its slow regime. The threshold
 * is an estimate: on the project's machines a normal disk gives a p50 of about 0.25 ms and the
 * slow regime about 4 ms (260/s). The p50 is used rather than the rate because a busy CPU
 * lowers the rate of this loop too.
 */
const SLOW_REGIME_P50_MS = 1;

function withTempFile<T>(name: string, fn: (file: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rana-bench-${name}-`));
  try {
    return fn(path.join(dir, 'data'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Appends 4 KiB and calls fdatasync until `syncsMax` calls or `durationS` seconds, whichever
 * comes first. Prints the result under `label` unless it is null.
 */
export function probeDisk(durationS = 2, syncsMax = 5000, label: string | null = 'disk-probe'): DiskProbeResult {
  const writeBytes = 4096;
  const result = withTempFile('probe', (file) => {
    const fd = fs.openSync(file, 'a');
    const buffer = Buffer.alloc(writeBytes, 1);
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, autoResize: false });
    const startMs = performance.now();
    let syncs = 0;
    try {
      while (syncs < syncsMax && performance.now() - startMs < durationS * 1000) {
        const t0 = performance.now();
        fs.writeSync(fd, buffer);
        fs.fdatasyncSync(fd);
        histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        syncs++;
      }
    } finally {
      fs.closeSync(fd);
    }
    const elapsedS = (performance.now() - startMs) / 1000;
    const p50Ms = histogram.getValueAtPercentile(50) / 1000;
    return {
      writeBytes,
      syncs,
      syncsPerS: syncs / elapsedS,
      p50Ms,
      p99Ms: histogram.getValueAtPercentile(99) / 1000,
      regime: p50Ms > SLOW_REGIME_P50_MS ? ('slow' as const) : ('normal' as const),
    };
  });
  if (label !== null) new ProgressBar(label).done(`${formatCount(result.syncsPerS)} fdatasyncs/s, p50 ${result.p50Ms.toFixed(3)} ms: ${result.regime} regime`);
  return result;
}

/** Measures the disk's limit for rana's workload: one write of `batchSize` records, then one fdatasync, in a loop. */
export function rawFdatasync(recordBytes: number, batchSize: number, durationS: number, source: string): RawFdatasyncResult {
  const bar = new ProgressBar('raw-fdatasync');
  const batch = Math.max(1, Math.round(batchSize));
  const record = Math.max(1, Math.round(recordBytes));
  const result = withTempFile('raw', (file) => {
    const fd = fs.openSync(file, 'a');
    const buffer = Buffer.alloc(batch * record, 7);
    const startMs = performance.now();
    let syncs = 0;
    try {
      while (performance.now() - startMs < durationS * 1000) {
        fs.writeSync(fd, buffer);
        fs.fdatasyncSync(fd);
        syncs++;
      }
    } finally {
      fs.closeSync(fd);
    }
    const elapsedS = (performance.now() - startMs) / 1000;
    return { recordBytes: record, batchSize: batch, entriesPerS: (syncs * batch) / elapsedS, syncsPerS: syncs / elapsedS, source };
  });
  bar.done(`${formatCount(result.entriesPerS)} entries/s at ${batch} x ${record} B per fdatasync (${formatCount(result.syncsPerS)} fdatasyncs/s)`);
  return result;
}

/**
 * Measures the durable queue a user would write without group commit: `producers` callers
 * each await their command, and one consumer appends each command and calls fdatasync before
 * taking the next. The queue contains at most `producers` commands.
 */
export async function naiveQueue(label: string, producers: number, payloadBytes: number, durationS: number): Promise<NaiveQueueResult> {
  const bar = new ProgressBar(label);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rana-bench-naive-'));
  const handle = await fs.promises.open(path.join(dir, 'queue'), 'a');
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, autoResize: false });
  const queue: { bytes: Buffer; done: () => void }[] = [];
  const wake: { consumer: (() => void) | null } = { consumer: null };
  let running = true;
  let committed = 0;

  const consumer = async (): Promise<void> => {
    // After `running` turns false the consumer still finishes every queued command, so no producer waits forever.
    while (running || queue.length > 0) {
      const item = queue.shift();
      if (item === undefined) {
        await new Promise<void>((resolve) => (wake.consumer = resolve));
        wake.consumer = null;
        continue;
      }
      await handle.write(item.bytes);
      await handle.datasync();
      item.done();
    }
  };
  const producer = async (id: number): Promise<void> => {
    const bytes = Buffer.alloc(payloadBytes, id % 256);
    while (running) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        queue.push({ bytes, done: resolve });
        wake.consumer?.();
      });
      committed++;
      histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
    }
  };

  const consumerDone = consumer();
  const producersDone = Promise.all(Array.from({ length: producers }, (_, i) => producer(i)));
  const startMs = performance.now();
  while (performance.now() - startMs < durationS * 1000) {
    const elapsedS = (performance.now() - startMs) / 1000;
    bar.update(elapsedS / durationS, `${formatCount(committed / Math.max(0.001, elapsedS))} cmd/s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const elapsedS = (performance.now() - startMs) / 1000;
  const result: NaiveQueueResult = {
    producers,
    payloadBytes,
    commandsPerS: committed / elapsedS,
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    p999Ms: histogram.getValueAtPercentile(99.9) / 1000,
  };
  running = false;
  wake.consumer?.();
  await Promise.all([consumerDone, producersDone]);
  await handle.close();
  fs.rmSync(dir, { recursive: true, force: true });
  bar.done(`${formatCount(result.commandsPerS)} cmd/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms (${producers} producers)`);
  return result;
}
