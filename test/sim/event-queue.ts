// A priority queue of timed events for the simulator: a binary heap ordered by time, then by
// insertion sequence, so events at the same virtual millisecond run in the order scheduled.

export interface Timed<T> {
  atMs: number;
  seq: number;
  event: T;
}

export class EventQueue<T> {
  readonly #heap: Timed<T>[] = [];
  #nextSeq = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(atMs: number, event: T): void {
    const item: Timed<T> = { atMs, seq: this.#nextSeq++, event };
    const heap = this.#heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  peekTimeMs(): number | undefined {
    return this.#heap[0]?.atMs;
  }

  pop(): Timed<T> | undefined {
    const heap = this.#heap;
    if (heap.length === 0) return undefined;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && before(heap[left], heap[smallest])) smallest = left;
        if (right < heap.length && before(heap[right], heap[smallest])) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest], heap[i]];
        i = smallest;
      }
    }
    return top;
  }
}

function before<T>(a: Timed<T>, b: Timed<T>): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
