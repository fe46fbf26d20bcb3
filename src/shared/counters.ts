// Counters in a SharedArrayBuffer: one BigInt64 slot per name. Each slot has one writing
// thread; any thread reads any slot lock-free with Atomics.load, so a metrics reader never
// messages the owner.

export class CounterSet<Name extends string> {
  readonly buffer: SharedArrayBuffer;
  readonly names: readonly Name[];
  readonly #slots: BigInt64Array;
  readonly #slotByName = new Map<string, number>();

  /** Creates the counters, or attaches to `buffer` made by another CounterSet with the same names. */
  constructor(names: readonly Name[], buffer?: SharedArrayBuffer) {
    this.names = names;
    this.buffer = buffer ?? new SharedArrayBuffer(names.length * BigInt64Array.BYTES_PER_ELEMENT);
    if (this.buffer.byteLength !== names.length * BigInt64Array.BYTES_PER_ELEMENT) {
      throw new Error(`counter buffer of ${this.buffer.byteLength} bytes does not fit ${names.length} counters; pass the buffer made for the same names`);
    }
    this.#slots = new BigInt64Array(this.buffer);
    names.forEach((name, slot) => this.#slotByName.set(name, slot));
  }

  #slot(name: Name): number {
    const slot = this.#slotByName.get(name);
    if (slot === undefined) throw new Error(`unknown counter "${name}"; known counters: ${this.names.join(', ')}`);
    return slot;
  }

  get(name: Name): bigint {
    return Atomics.load(this.#slots, this.#slot(name));
  }

  /** Adds `delta` (may be negative). Only the slot's owning thread calls this. */
  add(name: Name, delta: number | bigint): void {
    Atomics.add(this.#slots, this.#slot(name), BigInt(delta));
  }

  set(name: Name, value: number | bigint): void {
    Atomics.store(this.#slots, this.#slot(name), BigInt(value));
  }

  /** Reads every counter at once (each slot atomically, not the set as a whole). */
  snapshot(): Record<Name, bigint> {
    const out = {} as Record<Name, bigint>;
    for (const name of this.names) out[name] = this.get(name);
    return out;
  }
}

/**
 * The WAL's counters. The worker owns every slot except `pendingBytes` and `workerRestarts`,
 * which the main-thread client owns.
 */
export const WAL_COUNTER_NAMES = [
  /** WAL files created (the first one and one per roll-over). */
  'files',
  /** Write calls, one per batch. */
  'batches',
  'entries',
  /** Bytes written to WAL files, record headers and writer registrations included. */
  'bytes',
  /** fdatasync or fsync calls (none with syncMethod 'none', except the one at close). */
  'fsyncs',
  /** Size of the WAL file being written, in bytes. */
  'fileSizeBytes',
  /** Bytes of appends waiting in the client's overflow queue because the append ring was full. */
  'pendingBytes',
  /** Times a crashed WAL worker thread was replaced. */
  'workerRestarts',
] as const;

export type WalCounterName = (typeof WAL_COUNTER_NAMES)[number];

/** Read-only view of the WAL counters, as numbers. */
export class WalCounters {
  readonly #counters: CounterSet<WalCounterName>;

  constructor(counters: CounterSet<WalCounterName>) {
    this.#counters = counters;
  }

  get files(): number {
    return Number(this.#counters.get('files'));
  }

  get batches(): number {
    return Number(this.#counters.get('batches'));
  }

  get entries(): number {
    return Number(this.#counters.get('entries'));
  }

  get bytes(): number {
    return Number(this.#counters.get('bytes'));
  }

  get fsyncs(): number {
    return Number(this.#counters.get('fsyncs'));
  }

  get fileSizeBytes(): number {
    return Number(this.#counters.get('fileSizeBytes'));
  }

  get pendingBytes(): number {
    return Number(this.#counters.get('pendingBytes'));
  }

  get workerRestarts(): number {
    return Number(this.#counters.get('workerRestarts'));
  }

  /** The shared buffer, for a metrics reader in another thread (attach with `new CounterSet(WAL_COUNTER_NAMES, buffer)`). */
  get buffer(): SharedArrayBuffer {
    return this.#counters.buffer;
  }
}

/** The segment writer's counters; the segment writer worker owns every slot. */
export const SEGMENT_WRITER_COUNTER_NAMES = [
  /** Segment files created. */
  'files',
  /** Entries written to segment files. */
  'entries',
  /** Bytes written to segment files: entry data and slots. */
  'bytes',
  /** WAL files deleted after their entries were synced in segments. */
  'walFilesDeleted',
  /** Segment files deleted because a snapshot covers them or an install replaced them. */
  'filesDeleted',
] as const;

export type SegmentWriterCounterName = (typeof SEGMENT_WRITER_COUNTER_NAMES)[number];
