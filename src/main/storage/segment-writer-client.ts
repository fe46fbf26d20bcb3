// Main-thread side of a system's segment writer thread. The system hands it each WAL file the
// WAL worker closes and each snapshot a server wrote; it reports the ranges that segments hold
// now. Messages go over postMessage: one per WAL file or snapshot, so they are rare.

import { Worker } from 'node:worker_threads';
import { InvalidConfigError, StorageError } from '../errors.js';
import { CounterSet, SEGMENT_WRITER_COUNTER_NAMES, type SegmentWriterCounterName } from '../../shared/counters.js';
import { SEGMENT_FILE_BYTES_MAX, SEGMENT_SLOTS_MAX } from '../../shared/segment-format.js';
import { workerFileUrl } from '../../shared/worker-path.js';
import type { FlushedRange, SegmentWriterData, SegmentWriterMessage, SegmentWriterRequest } from '../../workers/segment-writer.js';

export type { FlushedRange } from '../../workers/segment-writer.js';

export interface SegmentOptions {
  /** Maximum entries per segment file (its fixed number of index slots). Default 4096. */
  maxEntries?: number;
  /** A segment file takes no more entries past this size, except its first. Default 64 MB. */
  maxSizeBytes?: number;
}

const DEFAULT_SEGMENT_MAX_ENTRIES = 4096;
const DEFAULT_SEGMENT_MAX_SIZE_BYTES = 64_000_000;

type FlushedListener = (walPath: string, ranges: FlushedRange[]) => void;

export class SegmentWriterClient {
  /** Counters written by the segment writer thread, read lock-free. */
  readonly counters: CounterSet<SegmentWriterCounterName>;
  readonly #worker: Worker;
  readonly #flushedListeners: FlushedListener[] = [];
  readonly #fatalListeners: ((error: StorageError) => void)[] = [];
  #fatal: StorageError | null = null;
  #closing: Promise<void> | null = null;
  /** WAL files handed over and not yet reported flushed. */
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];

  private constructor(worker: Worker, counters: CounterSet<SegmentWriterCounterName>) {
    this.#worker = worker;
    this.counters = counters;
    worker.on('message', (message: SegmentWriterMessage) => {
      if (message.type === 'flushed') {
        this.#inFlight--;
        for (const listener of this.#flushedListeners) listener(message.walPath, message.ranges);
        if (this.#inFlight === 0) this.#wakeIdle();
      } else if (message.type === 'failed') {
        this.#reportFatal(new StorageError(`${message.message}; check the disk, then restart the node`));
      }
    });
    worker.on('error', (error) => this.#reportFatal(new StorageError(`segment writer thread failed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => {
      if (this.#closing === null) this.#reportFatal(new StorageError(`segment writer thread exited unexpectedly with code ${code}; restart the node`));
      this.#wakeIdle();
    });
  }

  static start(serversDir: string, syncMethod: SegmentWriterData['syncMethod'], options: SegmentOptions = {}): SegmentWriterClient {
    const maxEntries = options.maxEntries ?? DEFAULT_SEGMENT_MAX_ENTRIES;
    const maxSizeBytes = options.maxSizeBytes ?? DEFAULT_SEGMENT_MAX_SIZE_BYTES;
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > SEGMENT_SLOTS_MAX) {
      throw new InvalidConfigError(`segment.maxEntries is ${maxEntries}; use an integer from 1 to ${SEGMENT_SLOTS_MAX}`);
    }
    if (!Number.isInteger(maxSizeBytes) || maxSizeBytes < 1 || maxSizeBytes > SEGMENT_FILE_BYTES_MAX) {
      throw new InvalidConfigError(`segment.maxSizeBytes is ${maxSizeBytes}; use an integer from 1 to ${SEGMENT_FILE_BYTES_MAX}`);
    }
    const counters = new CounterSet(SEGMENT_WRITER_COUNTER_NAMES);
    const workerData: SegmentWriterData = { serversDir, maxEntries, maxSizeBytes, syncMethod, counters: counters.buffer };
    const worker = new Worker(workerFileUrl('segment-writer'), { workerData });
    return new SegmentWriterClient(worker, counters);
  }

  /** Hands over a closed WAL file; onFlushed reports its ranges, and the file is deleted after that. */
  flush(walPath: string): void {
    if (this.#fatal !== null || this.#closing !== null) return;
    this.#inFlight++;
    this.#post({ type: 'flush', walPath });
  }

  /** Tells the writer that `uid` has a durable snapshot at `index`: it deletes the segment files the snapshot covers. */
  snapshotWritten(uid: string, index: number): void {
    if (this.#fatal !== null || this.#closing !== null) return;
    this.#post({ type: 'snapshot', uid, index });
  }

  onFlushed(listener: FlushedListener): void {
    this.#flushedListeners.push(listener);
  }

  onFatal(listener: (error: StorageError) => void): void {
    this.#fatalListeners.push(listener);
  }

  /** Resolves once every WAL file handed over so far is reported flushed (or the writer failed). */
  whenIdle(): Promise<void> {
    if (this.#inFlight === 0 || this.#fatal !== null) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.whenIdle();
      if (this.#fatal === null) {
        const closed = new Promise<void>((resolve) => {
          this.#worker.on('message', (message: SegmentWriterMessage) => {
            if (message.type === 'closed') resolve();
          });
          this.#worker.once('exit', () => resolve());
        });
        this.#post({ type: 'close' });
        await closed;
      }
      await this.#worker.terminate();
    })();
    return this.#closing;
  }

  #post(request: SegmentWriterRequest): void {
    this.#worker.postMessage(request);
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #reportFatal(error: StorageError): void {
    if (this.#fatal !== null) return;
    this.#fatal = error;
    this.#wakeIdle();
    for (const listener of this.#fatalListeners) listener(error);
  }
}
