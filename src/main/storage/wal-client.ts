// Main-thread side of a system's shared WAL. Servers append entries into the append ring, and
// the WAL worker writes and syncs them in batches. The worker reports `written` runs back
// through the notification ring, which this client drains with Atomics.waitAsync, so the event
// loop never blocks.
//
// Paths an append takes, in order of preference, always keeping each writer's order:
// 1. Straight into the append ring (no copy besides the one into shared memory).
// 2. The overflow queue, when the ring is full or the queue is not empty. The queue drains into
//    the ring as the worker frees space. isOverloaded() reports when it passes maxPendingBytes.
// 3. Entries larger than a quarter of the ring go as a copy over a MessagePort, with a small
//    placeholder record taking their place in the ring; the worker reads the port when it
//    reaches the placeholder, so the ring order holds.

import path from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { InvalidConfigError, StorageError, StoppedError } from '../errors.js';
import type { LogEntry, SnapshotMeta } from '../raft/types.js';
import { ByteRing } from '../../shared/ring.js';
import { CounterSet, WAL_COUNTER_NAMES, WalCounters, type WalCounterName } from '../../shared/counters.js';
import {
  ENTRY_KIND_COMMAND,
  ENTRY_KIND_NOOP,
  ENTRY_KIND_SNAPSHOT_MARKER,
  NOTIFICATION_BYTES,
  NOTIFICATION_FLAG_RESEND,
  NOTIFICATION_ROLLED_WRITER_ID,
  RECORD_TYPE_REGISTRATION,
  RING_CLOSE_BYTES,
  RING_LARGE_ENTRY_BYTES,
  RING_RECORD_CLOSE,
  RING_RECORD_LARGE_ENTRY,
  WAL_ENTRY_HEADER_BYTES,
  WAL_REGISTRATION_HEADER_BYTES,
  WAL_UID_MAX_BYTES,
  walFileName,
  writeEntryHeader,
  type LargeEntryMessage,
} from '../../shared/wal-format.js';
import { workerFileUrl } from '../../shared/worker-path.js';
import { silentLogger, type Logger } from '../logger.js';
import type { RecoveredWriterMessage, TornTail, WalWorkerData, WalWorkerMessage } from '../../workers/wal.js';

export interface WalOptions {
  /** Directory of the system's WAL files: `<dataDir>/<system>/wal`. Created when missing. */
  dir: string;
  /** Sync call after each batch: fdatasync (default), fsync, or none ('none' loses acknowledged entries on power loss). */
  syncMethod?: 'datasync' | 'sync' | 'none';
  /** Maximum entries per write + sync. Default 8192. */
  maxBatchSize?: number;
  /** Maximum bytes per write + sync; a single larger entry is written alone. Default 8 MiB. */
  maxBatchBytes?: number;
  /** The worker closes a WAL file and starts the next once the file reaches this size. Default 256 MB. */
  maxSizeBytes?: number;
  /** The worker closes a WAL file and starts the next once it contains this many entries. Default 1,048,576. */
  maxEntries?: number;
  /** Append ring capacity in bytes. Default 32 MiB. Entries above a quarter of it take the MessagePort path. */
  ringBytes?: number;
  /**
   * Bound of the overflow queue used when the ring is full, in bytes. Default 64 MiB. It is a
   * soft bound: append() still queues past it (Raft's own appends must not be lost), and
   * isOverloaded() turns true so callers reject client commands with OverloadedError.
   */
  maxPendingBytes?: number;
  /**
   * Default true. When false the worker writes 0 in every record's CRC field and clears the
   * record's checksum flag, and recovery checks such records only for out-of-range fields,
   * so it cannot detect a flipped bit in their data.
   */
  computeChecksums?: boolean;
  /** Tests only: the Nth sync call in the worker (1-based) fails with an EIO error. */
  faultInjection?: { failSyncAfter?: number };
  /** Receives start, torn-tail, fatal and close lines. Default: a silent logger. */
  logger?: Logger;
}

export interface RecoveredWriter {
  uid: string;
  entries: LogEntry[];
}

const DEFAULT_MAX_BATCH_SIZE = 8192;
const DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_SIZE_BYTES = 256_000_000;
const DEFAULT_MAX_ENTRIES = 1_048_576;
const DEFAULT_RING_BYTES = 32 * 1024 * 1024;
const DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024;
// Capacity of the notification ring: 64k notifications of 32 bytes before the worker waits for the main thread.
const NOTIFICATION_RING_BYTES = 2 * 1024 * 1024;
// How long one Atomics.waitAsync lasts before the loop looks again; wakeups come from Atomics.notify.
const RING_WAIT_MS = 60_000;

type WrittenListener = (writerId: number, term: number, fromIndex: number, toIndex: number) => void;
type FatalListener = (error: StorageError) => void;
type RolledListener = (filePath: string) => void;

type WorkerSettings = Omit<WalWorkerData, 'appendRing' | 'notificationRing' | 'counters' | 'largeEntryPort' | 'reportEntries'> & { ringBytes: number };

/** A crashed WAL worker is restarted at most this many times per RESTART_WINDOW_MS; more is fatal. */
const RESTARTS_MAX = 5;
const RESTART_WINDOW_MS = 60_000;

/** What WAL recovery found, by server uid. */
export interface WalRecovery {
  /** Each writer's entries after its last snapshot marker, in index order. */
  recovered: Map<string, LogEntry[]>;
  /** Writers whose newest record is behind a snapshot marker: their log restarts after the marker. */
  resets: Map<string, SnapshotMeta>;
  /** Closed WAL files (every file but the newest), oldest first, still to be moved into segments. */
  closedFiles: string[];
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidConfigError(`wal.${name} is ${value}; use a positive integer`);
  }
  return value;
}

export class WalClient {
  /** Counters written by the worker (and `pendingBytes` by this client), read lock-free. */
  readonly counters: WalCounters;
  readonly #options: WalOptions;
  // Replaced when a crashed worker is restarted.
  #worker: Worker;
  #appendRing: ByteRing;
  #appendView: DataView;
  #notificationRing: ByteRing;
  readonly #counterSet: CounterSet<WalCounterName>;
  #largeEntryPort: MessagePort;
  /** Settings of the worker, kept to start a new one after a crash. */
  #workerSettings: WorkerSettings | null = null;
  /** Set while a crashed worker is being replaced; appends are dropped then and resent after. */
  #restarting: Promise<void> | null = null;
  #restartTimesMs: number[] = [];
  /** Bumped per worker, so the notification loop of a replaced worker ends. */
  #generation = 0;
  readonly #restartedListeners: (() => void)[] = [];
  readonly #resendListeners: ((writerId: number, fromIndex: number) => void)[] = [];
  readonly #maxPendingBytes: number;
  readonly #log: Logger;
  readonly #writerIdByUid = new Map<string, number>();
  readonly #writtenListeners: WrittenListener[] = [];
  readonly #fatalListeners: FatalListener[] = [];
  readonly #rolledListeners: RolledListener[] = [];
  // Encoded ring records waiting for ring space, oldest first from #pendingHead.
  #pending: Uint8Array[] = [];
  #pendingHead = 0;
  #pendingBytes = 0;
  #spaceWaiterArmed = false;
  #notifyScheduled = false;
  #nextLargeSequence = 0;
  #fatal: StorageError | null = null;
  #closePromise: Promise<void> | null = null;
  #stopped = false;
  #workerExited = false;
  #onClosed: (() => void) | null = null;

  private constructor(options: WalOptions, worker: Worker, appendRing: ByteRing, notificationRing: ByteRing,
    counterSet: CounterSet<WalCounterName>, largeEntryPort: MessagePort, maxPendingBytes: number) {
    this.#options = options;
    this.#worker = worker;
    this.#appendRing = appendRing;
    this.#appendView = new DataView(appendRing.bytes.buffer, appendRing.bytes.byteOffset, appendRing.bytes.byteLength);
    this.#notificationRing = notificationRing;
    this.#counterSet = counterSet;
    this.counters = new WalCounters(counterSet);
    this.#largeEntryPort = largeEntryPort;
    this.#maxPendingBytes = maxPendingBytes;
    this.#log = (options.logger ?? silentLogger()).child({ wal: options.dir });
  }

  /**
   * Starts the WAL worker, which recovers the WAL files in `options.dir` (scan and CRC check)
   * and returns each writer's entries by uid. Rejects with StorageError when a file is corrupt
   * before its tail.
   */
  static async open(options: WalOptions): Promise<{ wal: WalClient } & WalRecovery> {
    const syncMethod = options.syncMethod ?? 'datasync';
    if (syncMethod !== 'datasync' && syncMethod !== 'sync' && syncMethod !== 'none') {
      throw new InvalidConfigError(`wal.syncMethod is "${String(syncMethod)}"; use 'datasync', 'sync' or 'none'`);
    }
    const maxBatchSize = positiveInteger('maxBatchSize', options.maxBatchSize, DEFAULT_MAX_BATCH_SIZE);
    const maxBatchBytes = positiveInteger('maxBatchBytes', options.maxBatchBytes, DEFAULT_MAX_BATCH_BYTES);
    const ringBytes = positiveInteger('ringBytes', options.ringBytes, DEFAULT_RING_BYTES);
    const maxPendingBytes = positiveInteger('maxPendingBytes', options.maxPendingBytes, DEFAULT_MAX_PENDING_BYTES);
    const maxSizeBytes = positiveInteger('maxSizeBytes', options.maxSizeBytes, DEFAULT_MAX_SIZE_BYTES);
    const maxEntries = positiveInteger('maxEntries', options.maxEntries, DEFAULT_MAX_ENTRIES);
    if (ringBytes < 4096 || ringBytes > 1 << 30) {
      throw new InvalidConfigError(`wal.ringBytes is ${ringBytes}; use 4096 to ${1 << 30} bytes`);
    }
    const failSyncAfter = options.faultInjection?.failSyncAfter ?? 0;

    const settings: WorkerSettings = {
      dir: options.dir,
      syncMethod,
      maxBatchSize,
      maxBatchBytes,
      maxSizeBytes,
      maxEntries,
      computeChecksums: options.computeChecksums ?? true,
      failSyncAfter,
      ringBytes,
    };
    const counterSet = new CounterSet(WAL_COUNTER_NAMES);
    const started = startWorker(settings, counterSet, true);
    const wal = new WalClient(options, started.worker, started.appendRing, started.notificationRing, counterSet, started.largeEntryPort, maxPendingBytes);
    wal.#workerSettings = settings;

    const { writers, tornTail, closedFiles } = await started.recovery.catch(async (error: unknown) => {
      wal.#log.error({ err: error }, 'WAL recovery failed');
      await started.worker.terminate();
      throw error;
    });
    started.worker.removeAllListeners();
    wal.#attachWorkerListeners();
    void wal.#runNotificationLoop();
    const { recovered, resets } = unpackRecovered(writers);
    if (tornTail !== null) {
      wal.#log.warn(tornTail, 'WAL recovery dropped a torn final write that was never synced');
    }
    let entryCount = 0;
    for (const entries of recovered.values()) entryCount += entries.length;
    wal.#log.info({ writers: recovered.size, entries: entryCount, closedFiles: closedFiles.length, syncMethod, maxBatchSize, maxBatchBytes, maxSizeBytes, maxEntries, ringBytes }, 'WAL started');
    return { wal, recovered, resets, closedFiles };
  }

  /** Registers a server uid as a writer and returns its writer id; the same uid gets the same id for this client's life. */
  registerWriter(uid: string): number {
    this.#assertOpen();
    const known = this.#writerIdByUid.get(uid);
    if (known !== undefined) return known;
    const uidBytes = new TextEncoder().encode(uid);
    if (uidBytes.byteLength < 1 || uidBytes.byteLength > WAL_UID_MAX_BYTES) {
      throw new InvalidConfigError(`server uid "${uid}" is ${uidBytes.byteLength} bytes of UTF-8; use 1 to ${WAL_UID_MAX_BYTES}`);
    }
    const writerId = this.#writerIdByUid.size + 1;
    this.#writerIdByUid.set(uid, writerId);
    // A restart in progress registers every writer with the new worker when it is up.
    if (this.#restarting !== null) return writerId;
    this.#enqueue(encodeRegistrationRecord(uid, writerId));
    return writerId;
  }

  /**
   * Appends an entry for `writerId`. An index at or below the writer's last appended index
   * replaces that index and everything after it. Never throws for a full ring: the entry waits
   * in the overflow queue instead. After a fatal storage error appends are ignored, because the
   * WAL has stopped and onFatal listeners were told.
   */
  append(writerId: number, entry: LogEntry): void {
    this.#assertOpen();
    if (writerId < 1 || writerId > this.#writerIdByUid.size || !Number.isInteger(writerId)) {
      throw new InvalidConfigError(`writer id ${writerId} is not registered; call registerWriter(uid) first`);
    }
    if (!Number.isSafeInteger(entry.index) || entry.index < 1 || !Number.isSafeInteger(entry.term) || entry.term < 0) {
      throw new RangeError(`entry index ${entry.index} / term ${entry.term} is invalid; use safe integers, index >= 1 and term >= 0`);
    }
    // While a crashed worker is replaced, entries are dropped: the servers resend every entry
    // not yet written once the new worker is up (onRestarted), in order.
    if (this.#fatal !== null || this.#restarting !== null) return;
    const kind = entry.kind === 'noop' ? ENTRY_KIND_NOOP : ENTRY_KIND_COMMAND;
    const data = entry.data;
    const recordBytes = WAL_ENTRY_HEADER_BYTES + data.byteLength;

    if (recordBytes > this.#appendRing.maxRecordBytes) {
      this.#appendLarge(writerId, entry.index, entry.term, kind, data);
      return;
    }
    if (this.#pendingHead === this.#pending.length) {
      const offset = this.#appendRing.tryReserve(recordBytes);
      if (offset !== -1) {
        writeEntryHeader(this.#appendView, offset, writerId, entry.index, entry.term, kind, data.byteLength);
        this.#appendRing.bytes.set(data, offset + WAL_ENTRY_HEADER_BYTES);
        this.#appendRing.publishWrite();
        this.#scheduleNotify();
        return;
      }
    }
    const record = new Uint8Array(recordBytes);
    writeEntryHeader(new DataView(record.buffer), 0, writerId, entry.index, entry.term, kind, data.byteLength);
    record.set(data, WAL_ENTRY_HEADER_BYTES);
    this.#enqueue(record);
  }

  /**
   * Appends a snapshot marker for `writerId`: a follower installed a snapshot ending at `index`
   * (with `term`), so replay drops the writer's older entries above it. Append it only after
   * the snapshot is durable, and before any entry that follows the snapshot.
   */
  appendSnapshotMarker(writerId: number, index: number, term: number): void {
    this.#assertOpen();
    if (this.#fatal !== null || this.#restarting !== null) return;
    const record = new Uint8Array(WAL_ENTRY_HEADER_BYTES);
    writeEntryHeader(new DataView(record.buffer), 0, writerId, index, term, ENTRY_KIND_SNAPSHOT_MARKER, 0);
    this.#enqueue(record);
  }

  /**
   * Registers a listener called after a crashed worker was replaced. Entries appended but not
   * reported written may be lost: each server appends them again from memory.
   */
  onRestarted(listener: () => void): void {
    this.#restartedListeners.push(listener);
  }

  /**
   * Registers a listener for the worker's resend requests: it received an entry of `writerId`
   * past a gap, dropped it, and needs every entry from `fromIndex` on again.
   */
  onResend(listener: (writerId: number, fromIndex: number) => void): void {
    this.#resendListeners.push(listener);
  }

  /** Registers a listener for each WAL file the worker closes; the segment writer moves it into segments. */
  onRolled(listener: RolledListener): void {
    this.#rolledListeners.push(listener);
  }

  /** True while the overflow queue contains more than maxPendingBytes: reject client commands with OverloadedError. */
  isOverloaded(): boolean {
    return this.#pendingBytes > this.#maxPendingBytes;
  }

  onWritten(listener: WrittenListener): void {
    this.#writtenListeners.push(listener);
  }

  /** Registers a listener for the WAL's fatal error (a failed write or sync). It is called at most once per client. */
  onFatal(listener: FatalListener): void {
    this.#fatalListeners.push(listener);
  }

  /**
   * Writes and syncs everything appended so far, delivers its `written` notifications and stops
   * the worker. Rejects with the StorageError when the WAL hit a fatal error, at close or before.
   */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    if (this.#restarting !== null) await this.#restarting;
    if (this.#fatal === null && !this.#workerExited) {
      const closed = new Promise<void>((resolve) => {
        this.#onClosed = resolve;
      });
      const record = new Uint8Array(RING_CLOSE_BYTES);
      record[0] = RING_RECORD_CLOSE;
      this.#enqueue(record);
      await closed;
      this.#drainNotifications();
    }
    this.#stopped = true;
    this.#notificationRing.notifyConsumer();
    this.#largeEntryPort.close();
    await this.#worker.terminate();
    if (this.#fatal !== null) throw this.#fatal;
    this.#log.info({ entries: this.counters.entries, fsyncs: this.counters.fsyncs }, 'WAL closed');
  }

  #assertOpen(): void {
    if (this.#closePromise !== null) throw new StoppedError(`the WAL in ${this.#options.dir} is closed; open a new WalClient`);
  }

  #appendLarge(writerId: number, index: number, term: number, kind: number, data: Uint8Array): void {
    const record = new Uint8Array(WAL_ENTRY_HEADER_BYTES + data.byteLength);
    writeEntryHeader(new DataView(record.buffer), 0, writerId, index, term, kind, data.byteLength);
    record.set(data, WAL_ENTRY_HEADER_BYTES);
    const sequence = this.#nextLargeSequence;
    this.#nextLargeSequence = (this.#nextLargeSequence + 1) >>> 0;
    const message: LargeEntryMessage = { sequence, record };
    // Posted before the placeholder is published, so the worker finds it when it reaches the placeholder.
    this.#largeEntryPort.postMessage(message, [record.buffer]);
    const placeholder = new Uint8Array(RING_LARGE_ENTRY_BYTES);
    placeholder[0] = RING_RECORD_LARGE_ENTRY;
    new DataView(placeholder.buffer).setUint32(4, sequence, true);
    this.#enqueue(placeholder);
  }

  // Puts an encoded ring record into the ring, or behind the queued ones when any wait.
  #enqueue(record: Uint8Array): void {
    if (this.#pendingHead === this.#pending.length && this.#appendRing.tryWrite(record)) {
      this.#scheduleNotify();
      return;
    }
    this.#pending.push(record);
    this.#pendingBytes += record.byteLength;
    this.#counterSet.set('pendingBytes', this.#pendingBytes);
    this.#armSpaceWaiter();
  }

  // Moves queued records into the ring while they fit.
  #drainPending(): void {
    let moved = false;
    while (this.#pendingHead < this.#pending.length) {
      const record = this.#pending[this.#pendingHead];
      if (!this.#appendRing.tryWrite(record)) break;
      this.#pendingHead++;
      this.#pendingBytes -= record.byteLength;
      moved = true;
    }
    if (this.#pendingHead === this.#pending.length) {
      this.#pending = [];
      this.#pendingHead = 0;
    } else if (this.#pendingHead > 1024 && this.#pendingHead * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#pendingHead);
      this.#pendingHead = 0;
    }
    this.#counterSet.set('pendingBytes', this.#pendingBytes);
    if (moved) this.#scheduleNotify();
    if (this.#pendingHead < this.#pending.length) this.#armSpaceWaiter();
  }

  // Waits (without blocking) for the worker to free ring space, then drains the queue.
  #armSpaceWaiter(): void {
    if (this.#spaceWaiterArmed || this.#stopped || this.#fatal !== null) return;
    this.#spaceWaiterArmed = true;
    // The wait compares against the read position seen by the failed write, so a release in between is not missed.
    void this.#appendRing.waitForSpaceAsync(RING_WAIT_MS).then(() => {
      this.#spaceWaiterArmed = false;
      if (!this.#stopped && this.#fatal === null) this.#drainPending();
    });
  }

  // Wakes the worker once per turn of the event loop, so one turn's appends reach it as one batch.
  #scheduleNotify(): void {
    if (this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      this.#appendRing.notifyConsumer();
    });
  }

  #attachWorkerListeners(): void {
    const worker = this.#worker;
    worker.on('message', (message: WalWorkerMessage) => {
      if (message.type === 'fatal') {
        this.#drainNotifications();
        this.#reportFatal(new StorageError(message.message));
      } else if (message.type === 'closed') {
        this.#onClosed?.();
      }
    });
    worker.on('error', (error) => {
      if (worker !== this.#worker) return;
      this.#log.error({ err: error }, 'WAL worker thread failed');
    });
    worker.on('exit', (code) => {
      if (worker !== this.#worker) return;
      if (this.#closePromise !== null) {
        this.#workerExited = true;
        this.#onClosed?.();
        return;
      }
      // A storage error (failed write or fsync) ends the worker with exit code 0 after its
      // 'fatal' message and is final. Any other death is a crash of the thread: restart it.
      if (code === 0 || this.#fatal !== null) {
        this.#workerExited = true;
        this.#reportFatal(new StorageError(`WAL worker for ${this.#options.dir} exited unexpectedly with code ${code}; restart the system`));
        return;
      }
      this.#restartWorker(code);
    });
  }

  #restartWorker(exitCode: number): void {
    const nowMs = performance.now();
    this.#restartTimesMs = this.#restartTimesMs.filter((t) => nowMs - t < RESTART_WINDOW_MS);
    if (this.#restartTimesMs.length >= RESTARTS_MAX) {
      this.#workerExited = true;
      this.#reportFatal(new StorageError(
        `WAL worker for ${this.#options.dir} crashed ${RESTARTS_MAX + 1} times within ${RESTART_WINDOW_MS} ms (last exit code ${exitCode}); ` +
          'stopped restarting it, check the logs and restart the system',
      ));
      return;
    }
    this.#restartTimesMs.push(nowMs);
    this.#counterSet.add('workerRestarts', 1);
    this.#log.warn({ exitCode }, 'WAL worker thread crashed; restarting it and resending unwritten entries');
    // Written notifications the dead worker posted still count.
    this.#drainNotifications();
    this.#restarting = this.#replaceWorker().finally(() => {
      this.#restarting = null;
    });
  }

  async #replaceWorker(): Promise<void> {
    this.#generation++;
    this.#largeEntryPort.close();
    this.#pending = [];
    this.#pendingHead = 0;
    this.#pendingBytes = 0;
    this.#counterSet.set('pendingBytes', 0);
    this.#nextLargeSequence = 0;
    const started = startWorker(this.#workerSettings!, this.#counterSet, false);
    let closedFiles: string[];
    try {
      ({ closedFiles } = await started.recovery);
    } catch (error) {
      await started.worker.terminate();
      this.#workerExited = true;
      this.#reportFatal(error instanceof StorageError ? error : new StorageError(`WAL worker restart failed: ${String(error)}`));
      return;
    }
    started.worker.removeAllListeners();
    this.#worker = started.worker;
    this.#appendRing = started.appendRing;
    this.#appendView = new DataView(started.appendRing.bytes.buffer, started.appendRing.bytes.byteOffset, started.appendRing.bytes.byteLength);
    this.#notificationRing = started.notificationRing;
    this.#largeEntryPort = started.largeEntryPort;
    this.#spaceWaiterArmed = false;
    this.#attachWorkerListeners();
    void this.#runNotificationLoop();
    for (const [uid, writerId] of this.#writerIdByUid) this.#enqueue(encodeRegistrationRecord(uid, writerId));
    this.#log.info({ closedFiles: closedFiles.length }, 'WAL worker restarted');
    // A file the dead worker closed may not have been reported; the segment writer skips files it already moved.
    for (const filePath of closedFiles) this.#emitRolled(filePath);
    // Appends were dropped during the restart, so restarting is cleared before servers resend.
    this.#restarting = null;
    for (const listener of this.#restartedListeners) listener();
  }

  #reportFatal(error: StorageError): void {
    if (this.#fatal !== null) return;
    this.#fatal = error;
    this.#log.error({ err: error }, 'WAL stopped after a fatal storage error');
    this.#onClosed?.();
    for (const listener of this.#fatalListeners) listener(error);
  }

  async #runNotificationLoop(): Promise<void> {
    const generation = this.#generation;
    while (!this.#stopped && generation === this.#generation) {
      await this.#notificationRing.waitForDataAsync(RING_WAIT_MS);
      if (this.#stopped || generation !== this.#generation) return;
      this.#drainNotifications();
      // Space freed by the worker also shows as notifications; move queued appends along.
      if (this.#pendingHead < this.#pending.length && this.#fatal === null) this.#drainPending();
    }
  }

  #emitRolled(filePath: string): void {
    for (const listener of this.#rolledListeners) {
      try {
        listener(filePath);
      } catch (error) {
        setImmediate(() => {
          throw error;
        });
      }
    }
  }

  #drainNotifications(): void {
    const ring = this.#notificationRing;
    const view = new DataView(ring.bytes.buffer, ring.bytes.byteOffset, ring.bytes.byteLength);
    let payload = ring.read();
    if (payload === null) return;
    while (payload !== null) {
      const offset = payload.byteOffset - ring.bytes.byteOffset;
      if (payload.byteLength !== NOTIFICATION_BYTES) {
        throw new Error(`notification record of ${payload.byteLength} bytes; expected ${NOTIFICATION_BYTES}, the WAL client and worker are out of step`);
      }
      const writerId = view.getUint32(offset, true);
      const term = view.getFloat64(offset + 8, true);
      const fromIndex = view.getFloat64(offset + 16, true);
      const toIndex = view.getFloat64(offset + 24, true);
      if (writerId === NOTIFICATION_ROLLED_WRITER_ID) {
        this.#emitRolled(path.join(this.#options.dir, walFileName(fromIndex)));
        payload = ring.read();
        continue;
      }
      if (view.getUint32(offset + 4, true) === NOTIFICATION_FLAG_RESEND) {
        for (const listener of this.#resendListeners) listener(writerId, fromIndex);
        payload = ring.read();
        continue;
      }
      for (const listener of this.#writtenListeners) {
        try {
          listener(writerId, term, fromIndex, toIndex);
        } catch (error) {
          // A listener's bug must not stop delivery to the others; surface it as an uncaught exception.
          setImmediate(() => {
            throw error;
          });
        }
      }
      payload = ring.read();
    }
    ring.releaseRead();
  }
}

/** Encodes a registration ring record (flags and CRC 0; the worker seals it when it writes it to a file). */
function encodeRegistrationRecord(uid: string, writerId: number): Uint8Array {
  const uidBytes = new TextEncoder().encode(uid);
  const record = new Uint8Array(WAL_REGISTRATION_HEADER_BYTES + uidBytes.byteLength);
  const view = new DataView(record.buffer);
  record[0] = RECORD_TYPE_REGISTRATION;
  view.setUint16(2, uidBytes.byteLength, true);
  view.setUint32(4, writerId, true);
  record.set(uidBytes, WAL_REGISTRATION_HEADER_BYTES);
  return record;
}

interface StartedWorker {
  worker: Worker;
  appendRing: ByteRing;
  notificationRing: ByteRing;
  largeEntryPort: MessagePort;
  recovery: Promise<{ writers: RecoveredWriterMessage[]; tornTail: TornTail | null; closedFiles: string[] }>;
}

/** Starts a WAL worker with fresh rings; `recovery` settles when it has scanned the WAL files. */
function startWorker(settings: WorkerSettings, counterSet: CounterSet<WalCounterName>, reportEntries: boolean): StartedWorker {
  const { ringBytes, ...rest } = settings;
  const appendRing = ByteRing.create(ringBytes);
  const notificationRing = ByteRing.create(NOTIFICATION_RING_BYTES);
  const channel = new MessageChannel();
  const workerData: WalWorkerData = {
    ...rest,
    reportEntries,
    appendRing: appendRing.buffer,
    notificationRing: notificationRing.buffer,
    counters: counterSet.buffer,
    largeEntryPort: channel.port2,
  };
  const worker = new Worker(workerFileUrl('wal'), { workerData, transferList: [channel.port2] });
  const dir = settings.dir;
  const recovery = new Promise<{ writers: RecoveredWriterMessage[]; tornTail: TornTail | null; closedFiles: string[] }>((resolve, reject) => {
    const onMessage = (message: WalWorkerMessage): void => {
      if (message.type === 'recovered') resolve({ writers: message.writers, tornTail: message.tornTail, closedFiles: message.closedFiles });
      else if (message.type === 'recovery_failed') reject(new StorageError(message.message));
      else reject(new StorageError(`WAL worker for ${dir} sent "${message.type}" before finishing recovery`));
    };
    const onError = (error: Error): void => reject(new StorageError(`WAL worker for ${dir} failed during recovery: ${error.message}`, { cause: error }));
    const onExit = (code: number): void => reject(new StorageError(`WAL worker for ${dir} exited with code ${code} during recovery`));
    worker.once('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
  });
  return { worker, appendRing, notificationRing, largeEntryPort: channel.port1, recovery };
}

function unpackRecovered(writers: RecoveredWriterMessage[]): { recovered: Map<string, LogEntry[]>; resets: Map<string, SnapshotMeta> } {
  const recovered = new Map<string, LogEntry[]>();
  const resets = new Map<string, SnapshotMeta>();
  for (const { uid, meta, data } of writers) {
    let entries: LogEntry[] = [];
    let offset = 0;
    for (let i = 0; i < meta.length; i += 4) {
      const length = meta[i + 3];
      if (meta[i + 2] === ENTRY_KIND_SNAPSHOT_MARKER) {
        // Replay cut everything above the marker before it; what precedes it the snapshot covers.
        resets.set(uid, { index: meta[i], term: meta[i + 1] });
        entries = [];
        offset += length;
        continue;
      }
      entries.push({
        index: meta[i],
        term: meta[i + 1],
        kind: meta[i + 2] === ENTRY_KIND_NOOP ? 'noop' : 'command',
        data: data.subarray(offset, offset + length),
      });
      offset += length;
    }
    recovered.set(uid, entries);
  }
  return { recovered, resets };
}
