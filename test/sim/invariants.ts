// Safety checks of the cluster simulator, run after every event a Raft core handles. Each
// check throws SafetyViolation with the group, member and index involved; the simulator adds
// the seed and settings when it reports it.
//
// To keep the per-event cost proportional to what changed, the checker mirrors each member's
// in-memory log from the persist_entries effects and gives every entry a chain hash (the hash
// of the previous chain hash, the term and the data). Log matching then reduces to: every
// member whose log contains entry (index, term) has the same chain hash for it.

import type { LogEntry, RaftEffect, Role } from '../../src/main/raft/types.js';

export class SafetyViolation extends Error {
  readonly code = 'SIM_SAFETY_VIOLATION' as const;

  constructor(message: string) {
    super(message);
    this.name = 'SafetyViolation';
  }
}

interface MirrorEntry {
  term: number;
  chain: number;
}

export interface CommittedEntry {
  term: number;
  /** Term of the member that first reported the entry committed: the leader's term when it committed. */
  commitTerm: number;
  chain: number;
  data: Uint8Array;
}

/** What the checker reads from a core after an event. */
export interface CoreView {
  role: Role;
  term: number;
  votedFor: string | null;
  commitIndex: number;
  lastApplied: number;
  lastIndex: number;
}

interface MemberTrack {
  mirror: MirrorEntry[];
  /** Highest term this member ever had, across restarts, and the vote it cast in that term. */
  termMax: number;
  votedForAtTermMax: string | null;
  /** Volatile values of the current incarnation; reset on restart. */
  commitIndex: number;
  lastApplied: number;
  role: Role;
  roleTerm: number;
}

export class GroupChecker {
  readonly group: number;
  readonly quorum: number;
  readonly #members = new Map<string, MemberTrack>();
  readonly #leaderByTerm = new Map<number, string>();
  /** Entries known committed: some member's commit index covered them. Index i at position i - 1. */
  readonly committed: CommittedEntry[] = [];
  /** The entry applied at each index by whichever member applied it first. Index i at position i - 1. */
  readonly #applied: MirrorEntry[] = [];
  /** Chain hash of entry (index, term) as first seen, keyed `index:term`. */
  readonly #chainByEntry = new Map<string, number>();

  constructor(group: number, memberIds: readonly string[]) {
    this.group = group;
    this.quorum = Math.floor(memberIds.length / 2) + 1;
    for (const id of memberIds) {
      this.#members.set(id, { mirror: [], termMax: 0, votedForAtTermMax: null, commitIndex: 0, lastApplied: 0, role: 'follower', roleTerm: 0 });
    }
  }

  /** Highest last applied index of any member right now (a read issued now must observe it). */
  lastAppliedMax(): number {
    let max = 0;
    for (const track of this.#members.values()) max = Math.max(max, track.lastApplied);
    return max;
  }

  /** Called when a member starts (again) from its durable state. */
  restarted(id: string, recovered: { term: number; votedFor: string | null; entries: LogEntry[] }): void {
    const track = this.#track(id);
    if (recovered.term < track.termMax) {
      this.#fail(id, `recovered term ${recovered.term} but had reached term ${track.termMax} before the crash`);
    }
    if (recovered.term === track.termMax && track.votedForAtTermMax !== null && recovered.votedFor !== track.votedForAtTermMax) {
      this.#fail(id, `recovered vote ${recovered.votedFor} in term ${recovered.term} but had voted for ${track.votedForAtTermMax}`);
    }
    track.mirror = [];
    this.#appendToMirror(id, track, recovered.entries);
    track.commitIndex = 0;
    track.lastApplied = 0;
    track.role = 'follower';
    track.roleTerm = recovered.term;
  }

  /** Checks the effects one event produced and the core's state after it. */
  afterEvent(id: string, effects: readonly RaftEffect[], core: CoreView, entriesOf: (from: number, to: number) => LogEntry[]): void {
    const track = this.#track(id);
    for (const effect of effects) {
      if (effect.type === 'persist_entries') this.#checkPersist(id, track, effect.entries, core);
      else if (effect.type === 'persist_meta') this.#checkMeta(id, track, effect.term, effect.votedFor);
      else if (effect.type === 'apply') this.#checkApply(id, track, effect.entries);
    }

    if (core.term < track.termMax) this.#fail(id, `term went back from ${track.termMax} to ${core.term}`);
    if (track.mirror.length !== core.lastIndex) {
      this.#fail(id, `the core's last index is ${core.lastIndex} but its persist_entries effects describe ${track.mirror.length} entries`);
    }
    if (core.commitIndex < track.commitIndex) this.#fail(id, `commit index went back from ${track.commitIndex} to ${core.commitIndex}`);
    if (core.lastApplied < track.lastApplied) this.#fail(id, `last applied went back from ${track.lastApplied} to ${core.lastApplied}`);
    if (core.lastApplied !== track.lastApplied) {
      this.#fail(id, `last applied is ${core.lastApplied} but apply effects covered up to ${track.lastApplied}`);
    }

    if (core.commitIndex > track.commitIndex) {
      this.#recordCommitted(id, track, core.term, track.commitIndex + 1, core.commitIndex, entriesOf);
      track.commitIndex = core.commitIndex;
    }

    const becameLeader = core.role === 'leader' && (track.role !== 'leader' || track.roleTerm !== core.term);
    track.role = core.role;
    track.roleTerm = core.term;
    if (becameLeader) {
      const known = this.#leaderByTerm.get(core.term);
      if (known !== undefined && known !== id) this.#fail(id, `election safety: ${known} already leads term ${core.term}`);
      this.#leaderByTerm.set(core.term, id);
      // Leader completeness: every entry committed in an earlier term is in the new leader's log.
      // An entry committed in a later term need not be: the votes may have been granted before it was written.
      for (let index = 1; index <= this.committed.length; index++) {
        if (this.committed[index - 1].commitTerm < core.term) this.#checkHolds(id, track, index, `new leader of term ${core.term}`);
      }
    }
  }

  /** Checks that every committed entry is durable on a majority of members (after a crash). */
  checkDurableQuorum(durableLogs: ReadonlyMap<string, readonly LogEntry[]>): void {
    for (let index = 1; index <= this.committed.length; index++) {
      const entry = this.committed[index - 1];
      let holders = 0;
      for (const log of durableLogs.values()) {
        const held = log[index - 1];
        if (held !== undefined && held.term === entry.term && sameBytes(held.data, entry.data)) holders += 1;
      }
      if (holders < this.quorum) {
        throw new SafetyViolation(
          `group ${this.group}: committed entry ${index} (term ${entry.term}) is durable on ${holders} members, fewer than a quorum of ${this.quorum}`,
        );
      }
    }
  }

  /** Returns the chain hash of a member's last entry, for convergence checks. */
  lastChain(id: string): number {
    const mirror = this.#track(id).mirror;
    return mirror.length === 0 ? 0 : mirror[mirror.length - 1].chain;
  }

  #checkPersist(id: string, track: MemberTrack, entries: readonly LogEntry[], core: CoreView): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    if (first > track.mirror.length + 1) this.#fail(id, `persist_entries starts at ${first} after ${track.mirror.length} entries`);
    if (core.role === 'leader' && first !== track.mirror.length + 1) {
      this.#fail(id, `leader append-only: leader of term ${core.term} rewrote its log from index ${first} (last index ${track.mirror.length})`);
    }
    if (first <= track.commitIndex) {
      this.#fail(id, `persist_entries rewrites index ${first}, at or below its commit index ${track.commitIndex}`);
    }
    track.mirror.length = first - 1;
    this.#appendToMirror(id, track, entries);
  }

  #appendToMirror(id: string, track: MemberTrack, entries: readonly LogEntry[]): void {
    for (const entry of entries) {
      if (entry.index !== track.mirror.length + 1) this.#fail(id, `log entry ${entry.index} follows ${track.mirror.length}`);
      const previous = track.mirror.length === 0 ? 0 : track.mirror[track.mirror.length - 1].chain;
      const chain = chainHash(previous, entry);
      track.mirror.push({ term: entry.term, chain });
      const key = `${entry.index}:${entry.term}`;
      const seen = this.#chainByEntry.get(key);
      if (seen === undefined) this.#chainByEntry.set(key, chain);
      else if (seen !== chain) {
        this.#fail(id, `log matching: entry ${entry.index} of term ${entry.term} follows a different log prefix (or has other data) than on another member`);
      }
    }
  }

  #checkMeta(id: string, track: MemberTrack, term: number, votedFor: string | null): void {
    if (term < track.termMax) this.#fail(id, `persisted term ${term} below the earlier term ${track.termMax}`);
    if (term === track.termMax && track.votedForAtTermMax !== null && votedFor !== track.votedForAtTermMax) {
      this.#fail(id, `voted for ${votedFor} in term ${term} after voting for ${track.votedForAtTermMax}`);
    }
    track.termMax = term;
    track.votedForAtTermMax = votedFor;
  }

  #checkApply(id: string, track: MemberTrack, entries: readonly LogEntry[]): void {
    for (const entry of entries) {
      if (entry.index !== track.lastApplied + 1) this.#fail(id, `applied entry ${entry.index} after ${track.lastApplied}`);
      const mirrored = track.mirror[entry.index - 1];
      if (mirrored === undefined || mirrored.term !== entry.term) this.#fail(id, `applied entry ${entry.index} that is not in its log`);
      const seen = this.#applied[entry.index - 1];
      if (seen === undefined) this.#applied[entry.index - 1] = { term: entry.term, chain: mirrored.chain };
      else if (seen.chain !== mirrored.chain) {
        this.#fail(id, `state machine safety: applied entry ${entry.index} term ${entry.term}, another member applied term ${seen.term}`);
      }
      track.lastApplied = entry.index;
    }
  }

  #recordCommitted(id: string, track: MemberTrack, commitTerm: number, from: number, to: number, entriesOf: (from: number, to: number) => LogEntry[]): void {
    const entries = entriesOf(from, to);
    for (const entry of entries) {
      const mirrored = track.mirror[entry.index - 1];
      if (mirrored === undefined) this.#fail(id, `commit index covers entry ${entry.index} beyond its log`);
      const known = this.committed[entry.index - 1];
      if (known === undefined) {
        if (entry.index !== this.committed.length + 1) {
          this.#fail(id, `committed entry ${entry.index} while the known committed prefix ends at ${this.committed.length}`);
        }
        this.committed.push({ term: entry.term, commitTerm, chain: mirrored.chain, data: entry.data });
        // Leader completeness for leaders of later terms elected before this commit became known.
        for (const [otherId, other] of this.#members) {
          if (other.role === 'leader' && other.roleTerm > commitTerm) this.#checkHolds(otherId, other, entry.index, `leader of term ${other.roleTerm}`);
        }
      } else if (known.chain !== mirrored.chain) {
        this.#fail(id, `commits entry ${entry.index} term ${entry.term} but entry ${entry.index} term ${known.term} was committed before`);
      }
    }
  }

  #checkHolds(id: string, track: MemberTrack, index: number, who: string): void {
    const entry = this.committed[index - 1];
    const held = track.mirror[index - 1];
    if (held === undefined || held.chain !== entry.chain) {
      this.#fail(id, `leader completeness: ${who} lacks committed entry ${index} (term ${entry.term})`);
    }
  }

  #track(id: string): MemberTrack {
    const track = this.#members.get(id);
    if (track === undefined) throw new Error(`no member ${id} in group ${this.group}`);
    return track;
  }

  #fail(id: string, message: string): never {
    throw new SafetyViolation(`group ${this.group}, member ${id}: ${message}`);
  }
}

/** FNV-1a style 32-bit hash over the previous chain value, the term and the data bytes. */
export function chainHash(previous: number, entry: LogEntry): number {
  let hash = (previous ^ 0x811c9dc5) >>> 0;
  hash = Math.imul(hash ^ (entry.term & 0xffff), 0x01000193) >>> 0;
  hash = Math.imul(hash ^ (entry.term >>> 16), 0x01000193) >>> 0;
  hash = Math.imul(hash ^ (entry.kind === 'noop' ? 1 : 2), 0x01000193) >>> 0;
  for (let i = 0; i < entry.data.length; i++) hash = Math.imul(hash ^ entry.data[i], 0x01000193) >>> 0;
  return hash;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
