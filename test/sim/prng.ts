// Seeded pseudo-random numbers for the simulator. One root generator per seed is forked into
// independent streams per subsystem (network, disk, faults, workload, each Raft core), so a
// change in how often one subsystem draws numbers does not shift what the others draw.

/** splitmix32 step, used to derive fork seeds and to scramble labels. */
function mix32(value: number): number {
  let z = (value + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

function hashLabel(label: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    hash ^= label.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** A mulberry32 stream with helpers. Deterministic: the same seed gives the same numbers. */
export class Prng {
  #state: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = mix32(this.seed);
  }

  /** Returns a number in [0, 1), like Math.random. */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Returns an integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Returns an integer in [min, max] inclusive. */
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('cannot pick from an empty list');
    return items[this.int(items.length)];
  }

  /** Returns a new independent stream whose seed depends only on this stream's seed and `label`. */
  fork(label: string): Prng {
    return new Prng(mix32(this.seed ^ mix32(hashLabel(label))));
  }

  /** A bound `next`, for APIs that take a Math.random-like function. */
  get random(): () => number {
    return () => this.next();
  }
}
