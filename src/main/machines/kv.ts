// The key-value machine that ships with rana, modelled on Ra's `ra_kv_store`: put, delete and
// compare-and-set over string keys and values. Compare-and-set writes only when the current
// value equals `expected` (a missing key counts as null) and replies with the value it found.

import crc32 from 'crc-32';
import { pack, unpack } from 'msgpackr';
import type { Machine, MachineEffect } from '../machine.js';

export interface KvMachineOptions {
  /** Commands between two release_cursor effects (snapshots). Default 4096. */
  snapshotInterval?: number;
}

export const DEFAULT_SNAPSHOT_INTERVAL = 4096;

export type KvCommand =
  | { op: 'put'; key: string; value: string }
  | { op: 'delete'; key: string }
  | { op: 'cas'; key: string; expected: string | null; value: string };

export type KvReply =
  | { ok: true }
  | { ok: true; previous: string | null }
  | { ok: false; current: string | null };

export type KvState = Map<string, string>;

/**
 * Returns a KV machine that emits release_cursor every `snapshotInterval` applied commands.
 * The count is kept per state object, outside the replicated state: it is only a hint, and
 * members may snapshot at different indexes.
 */
export function createKvMachine(options: KvMachineOptions = {}): Machine<KvState, KvCommand, KvReply> {
  const snapshotInterval = options.snapshotInterval ?? DEFAULT_SNAPSHOT_INTERVAL;
  if (!Number.isInteger(snapshotInterval) || snapshotInterval < 1) {
    throw new RangeError(`snapshotInterval ${snapshotInterval} is invalid; use a positive integer`);
  }
  const appliedSinceCursor = new WeakMap<KvState, number>();
  return {
    init: () => new Map(),
    apply(meta, command, state) {
      const result = applyKv(command, state);
      const applied = (appliedSinceCursor.get(state) ?? 0) + 1;
      if (applied >= snapshotInterval) {
        appliedSinceCursor.set(state, 0);
        const effect: MachineEffect<KvState> = { type: 'release_cursor', index: meta.index, state };
        return { ...result, effects: [effect] };
      }
      appliedSinceCursor.set(state, applied);
      return result;
    },
    queries: {
      get: (state, key) => state.get(String(key)) ?? null,
      size: (state) => state.size,
    },
    overview: (state) => ({ keys: state.size }),
    snapshot: {
      encode: (state) => pack([...state]),
      decode: (bytes) => new Map(unpack(bytes) as [string, string][]),
    },
  };
}

/** Returns a CRC-32 over the state's entries in key order: equal states give equal digests. */
export function kvStateDigest(state: KvState): number {
  let crc = 0;
  for (const key of [...state.keys()].sort()) {
    crc = crc32.str(key, crc);
    crc = crc32.str('\u0000', crc);
    crc = crc32.str(state.get(key)!, crc);
    crc = crc32.str('\u0000', crc);
  }
  return crc >>> 0;
}

/** The KV machine with the default snapshot interval. */
export const kvMachine: Machine<KvState, KvCommand, KvReply> = createKvMachine();

function applyKv(command: KvCommand, state: KvState): { state: KvState; reply: KvReply } {
  switch (command.op) {
    case 'put':
      state.set(command.key, command.value);
      return { state, reply: { ok: true } };
    case 'delete': {
      const previous = state.get(command.key) ?? null;
      state.delete(command.key);
      return { state, reply: { ok: true, previous } };
    }
    case 'cas': {
      const current = state.get(command.key) ?? null;
      if (current !== command.expected) return { state, reply: { ok: false, current } };
      state.set(command.key, command.value);
      return { state, reply: { ok: true, previous: current } };
    }
    default:
      // A command this version does not know is applied as a no-op on every member alike,
      // so replicas never diverge over it.
      return { state, reply: { ok: false, current: null } };
  }
}
