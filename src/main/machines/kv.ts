// The key-value machine that ships with rana, modelled on Ra's `ra_kv_store`: put, delete and
// compare-and-set over string keys and values. Compare-and-set writes only when the current
// value equals `expected` (a missing key counts as null) and replies with the value it found.

import type { Machine } from '../machine.js';

export type KvCommand =
  | { op: 'put'; key: string; value: string }
  | { op: 'delete'; key: string }
  | { op: 'cas'; key: string; expected: string | null; value: string };

export type KvReply =
  | { ok: true }
  | { ok: true; previous: string | null }
  | { ok: false; current: string | null };

export type KvState = Map<string, string>;

export const kvMachine: Machine<KvState, KvCommand, KvReply> = {
  init(): KvState {
    return new Map();
  },

  apply(_meta, command, state) {
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
  },

  queries: {
    get: (state, key) => state.get(String(key)) ?? null,
    size: (state) => state.size,
  },

  overview: (state) => ({ keys: state.size }),
};
