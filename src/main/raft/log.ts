import { RaftInvariantError } from './invariant.js';
import type { LogEntry, LogStorage, SnapshotMeta } from './types.js';

/**
 * The log of one member, in three parts:
 *
 *   index:  1 .. snapshotIndex | snapshotIndex+1 .. memoryFirst-1 | memoryFirst .. lastIndex
 *   held:   in the snapshot    | in `storage` (segment files)      | in memory (#entries)
 *
 * Entries in memory are stored by reference and never copied. Without a storage, every entry
 * above the snapshot stays in memory (the core tests and the simulator run that way). With
 * one, the server reports which prefix is durable in segments (`releaseThrough`) and the log
 * drops it from memory, reading it back from storage when a lagging follower or the apply loop
 * needs it. Index 0 stands for the empty prefix (term 0).
 */
export class RaftLog {
  /** `#entries[i]` has index `#memoryFirst + i`. */
  #entries: LogEntry[] = [];
  #memoryFirst: number;
  #snapshotIndex: number;
  #snapshotTerm: number;
  readonly #storage: LogStorage | null;

  constructor(initial: readonly LogEntry[] = [], storage: LogStorage | null = null, snapshot: SnapshotMeta | null = null) {
    this.#storage = storage;
    this.#snapshotIndex = snapshot?.index ?? 0;
    this.#snapshotTerm = snapshot?.term ?? 0;
    const storageLast = storage === null ? this.#snapshotIndex : Math.max(this.#snapshotIndex, storage.lastIndex());
    const first = initial.length > 0 ? initial[0].index : storageLast + 1;
    if (first < this.#snapshotIndex + 1 || first > storageLast + 1) {
      throw new RaftInvariantError(
        `recovered entries start at ${first}, but the snapshot ends at ${this.#snapshotIndex} and storage at ${storageLast}; the log would have a hole`,
      );
    }
    this.#memoryFirst = first;
    this.append(initial);
  }

  /** First index that is still an entry (not folded into the snapshot). */
  get firstIndex(): number {
    return this.#snapshotIndex + 1;
  }

  /** First index held in memory; entries below it down to firstIndex come from storage. */
  get memoryFirstIndex(): number {
    return this.#memoryFirst;
  }

  get snapshotIndex(): number {
    return this.#snapshotIndex;
  }

  get snapshotTerm(): number {
    return this.#snapshotTerm;
  }

  get lastIndex(): number {
    return this.#memoryFirst + this.#entries.length - 1;
  }

  get lastTerm(): number {
    return this.termAt(this.lastIndex) ?? 0;
  }

  /**
   * Returns the term of the entry at `index`: the snapshot's term at the snapshot index, 0 for
   * index 0, and undefined past the last index or below the snapshot (compacted away).
   */
  termAt(index: number): number | undefined {
    if (index === this.#snapshotIndex) return this.#snapshotTerm;
    if (index < this.#snapshotIndex || index > this.lastIndex) return undefined;
    if (index >= this.#memoryFirst) return this.#entries[index - this.#memoryFirst].term;
    return this.#storage!.term(index);
  }

  entryAt(index: number): LogEntry {
    return this.slice(index, index)[0];
  }

  /** Returns entries `fromIndex..toIndex` inclusive; empty when `toIndex < fromIndex`. */
  slice(fromIndex: number, toIndex: number): LogEntry[] {
    if (toIndex < fromIndex) return [];
    if (fromIndex < this.firstIndex || toIndex > this.lastIndex) {
      throw new RaftInvariantError(`log range ${fromIndex}..${toIndex} is outside ${this.firstIndex}..${this.lastIndex}`);
    }
    if (fromIndex >= this.#memoryFirst) {
      return this.#entries.slice(fromIndex - this.#memoryFirst, toIndex - this.#memoryFirst + 1);
    }
    const storageTo = Math.min(toIndex, this.#memoryFirst - 1);
    const fromStorage = this.#storage!.entries(fromIndex, storageTo);
    if (storageTo === toIndex) return fromStorage;
    return fromStorage.concat(this.#entries.slice(0, toIndex - this.#memoryFirst + 1));
  }

  /** Appends entries that must continue the log: the first has index lastIndex + 1, terms never decrease. */
  append(entries: readonly LogEntry[]): void {
    for (const entry of entries) {
      const expectedIndex = this.lastIndex + 1;
      if (entry.index !== expectedIndex) {
        throw new RaftInvariantError(`cannot append entry ${entry.index}: the next index is ${expectedIndex}`);
      }
      const lastTerm = this.lastTerm;
      if (entry.term < lastTerm) {
        throw new RaftInvariantError(`cannot append entry ${entry.index} with term ${entry.term} after term ${lastTerm}`);
      }
      this.#entries.push(entry);
    }
  }

  /** Removes every entry after `index`. Entries in storage above it stop counting; newer writes replace them there. */
  truncateAfter(index: number): void {
    if (index < this.#snapshotIndex || index > this.lastIndex) {
      throw new RaftInvariantError(`cannot truncate after index ${index}: it is outside ${this.#snapshotIndex}..${this.lastIndex}`);
    }
    if (index >= this.#memoryFirst - 1) {
      this.#entries.length = index - this.#memoryFirst + 1;
    } else {
      this.#entries = [];
      this.#memoryFirst = index + 1;
    }
  }

  /** Returns the first index of the run of entries that share the term of the entry at `index`, at least firstIndex. */
  firstIndexOfTerm(index: number): number {
    const term = this.termAt(index);
    if (term === undefined) throw new RaftInvariantError(`log index ${index} is outside ${this.firstIndex}..${this.lastIndex}`);
    let first = index;
    while (first > this.firstIndex && this.termAt(first - 1) === term) first -= 1;
    return first;
  }

  /**
   * Drops entries up to `index` from memory once storage contains them. Ignored unless the entry
   * at `index` in memory has `term`: by the log matching property the stored prefix then equals
   * the one in memory, while a term mismatch means memory was overwritten since.
   */
  releaseThrough(index: number, term: number): boolean {
    if (this.#storage === null || index < this.#memoryFirst || index > this.lastIndex) return false;
    if (this.#entries[index - this.#memoryFirst].term !== term) return false;
    this.#entries = this.#entries.slice(index - this.#memoryFirst + 1);
    this.#memoryFirst = index + 1;
    return true;
  }

  /** Folds entries up to `index` (which has `term`) into a snapshot taken by this member. */
  compact(index: number, term: number): boolean {
    if (index <= this.#snapshotIndex || index > this.lastIndex || this.termAt(index) !== term) return false;
    this.#snapshotIndex = index;
    this.#snapshotTerm = term;
    if (index >= this.#memoryFirst) {
      this.#entries = this.#entries.slice(index - this.#memoryFirst + 1);
      this.#memoryFirst = index + 1;
    }
    return true;
  }

  /** Replaces the whole log with a snapshot received from the leader: no entries remain. */
  resetToSnapshot(index: number, term: number): void {
    this.#snapshotIndex = index;
    this.#snapshotTerm = term;
    this.#entries = [];
    this.#memoryFirst = index + 1;
  }

  /** Entries held in memory, by reference. */
  memoryEntries(): readonly LogEntry[] {
    return this.#entries;
  }
}
