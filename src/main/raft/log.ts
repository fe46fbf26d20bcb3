import { RaftInvariantError } from './invariant.js';
import type { LogEntry } from './types.js';

/**
 * In-memory log of one member: entries 1..lastIndex, contiguous, with index 0 standing for
 * the empty prefix (term 0). Entries are stored by reference and never copied.
 *
 * TODO: no snapshots or compaction yet, so the log only grows: the first index is always 1.
 */
export class RaftLog {
  /** `#entries[i]` has index `i + 1`. */
  readonly #entries: LogEntry[] = [];

  constructor(initial: readonly LogEntry[] = []) {
    this.append(initial);
  }

  get lastIndex(): number {
    return this.#entries.length;
  }

  get lastTerm(): number {
    return this.termAt(this.lastIndex) ?? 0;
  }

  /** Returns the term of the entry at `index`, 0 for index 0, or undefined past the last index. */
  termAt(index: number): number | undefined {
    if (index === 0) return 0;
    return this.#entries[index - 1]?.term;
  }

  entryAt(index: number): LogEntry {
    const entry = this.#entries[index - 1];
    if (entry === undefined || index < 1) {
      throw new RaftInvariantError(`log index ${index} is outside 1..${this.lastIndex}`);
    }
    return entry;
  }

  /** Returns entries `fromIndex..toIndex` inclusive; empty when `toIndex < fromIndex`. */
  slice(fromIndex: number, toIndex: number): LogEntry[] {
    if (toIndex < fromIndex) return [];
    if (fromIndex < 1 || toIndex > this.lastIndex) {
      throw new RaftInvariantError(
        `log range ${fromIndex}..${toIndex} is outside 1..${this.lastIndex}`,
      );
    }
    return this.#entries.slice(fromIndex - 1, toIndex);
  }

  /** Appends entries that must continue the log: the first has index lastIndex + 1, terms never decrease. */
  append(entries: readonly LogEntry[]): void {
    for (const entry of entries) {
      const expectedIndex = this.lastIndex + 1;
      if (entry.index !== expectedIndex) {
        throw new RaftInvariantError(`cannot append entry ${entry.index}: the next index is ${expectedIndex}`);
      }
      if (entry.term < this.lastTerm) {
        throw new RaftInvariantError(
          `cannot append entry ${entry.index} with term ${entry.term} after term ${this.lastTerm}`,
        );
      }
      this.#entries.push(entry);
    }
  }

  /** Removes every entry after `index`. */
  truncateAfter(index: number): void {
    if (index < 0 || index > this.lastIndex) {
      throw new RaftInvariantError(`cannot truncate after index ${index}: it is outside 0..${this.lastIndex}`);
    }
    this.#entries.length = index;
  }

  /** Returns the first index of the run of entries that share the term of the entry at `index`. */
  firstIndexOfTerm(index: number): number {
    const term = this.entryAt(index).term;
    let first = index;
    while (first > 1 && this.#entries[first - 2].term === term) first -= 1;
    return first;
  }
}
