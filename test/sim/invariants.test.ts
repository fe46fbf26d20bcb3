// The simulator's safety checker must reject each violation it claims to detect; these cases
// feed it fabricated effects and core states.

import { describe, expect, it } from 'vitest';
import type { LogEntry, RaftEffect } from '../../src/main/raft/types.js';
import { GroupChecker, type CoreView } from './invariants.js';

const ids = ['n1', 'n2', 'n3'];

function entry(index: number, term: number, text = `c${index}t${term}`): LogEntry {
  return { index, term, kind: 'command', data: new TextEncoder().encode(text) };
}

function view(overrides: Partial<CoreView>): CoreView {
  return { role: 'follower', term: 1, votedFor: null, commitIndex: 0, lastApplied: 0, lastIndex: 0, ...overrides };
}

/** Feeds persist effects for `entries` to member `id` with a matching core view. */
function persist(checker: GroupChecker, id: string, entries: LogEntry[], core: Partial<CoreView>): void {
  const effects: RaftEffect[] = [{ type: 'persist_entries', entries }];
  checker.afterEvent(id, effects, view({ lastIndex: entries[entries.length - 1].index, ...core }), () => entries);
}

describe('simulator safety checker', () => {
  it('rejects two leaders in one term', () => {
    const checker = new GroupChecker(0, ids);
    checker.afterEvent('n1', [], view({ role: 'leader', term: 2 }), () => []);
    expect(() => checker.afterEvent('n2', [], view({ role: 'leader', term: 2 }), () => [])).toThrow(/election safety/);
  });

  it('rejects logs that break log matching', () => {
    const checker = new GroupChecker(0, ids);
    persist(checker, 'n1', [entry(1, 1, 'a'), entry(2, 1, 'b')], {});
    expect(() => persist(checker, 'n2', [entry(1, 1, 'a'), entry(2, 1, 'other')], {})).toThrow(/log matching/);
  });

  it('rejects a leader that rewrites its log', () => {
    const checker = new GroupChecker(0, ids);
    persist(checker, 'n1', [entry(1, 1), entry(2, 1)], { role: 'leader' });
    expect(() => persist(checker, 'n1', [entry(2, 1, 'x')], { role: 'leader', lastIndex: 2 })).toThrow(/append-only/);
  });

  it('rejects a second vote in one term', () => {
    const checker = new GroupChecker(0, ids);
    checker.afterEvent('n1', [{ type: 'persist_meta', term: 3, votedFor: 'n2' }], view({ term: 3 }), () => []);
    expect(() => checker.afterEvent('n1', [{ type: 'persist_meta', term: 3, votedFor: 'n3' }], view({ term: 3 }), () => [])).toThrow(/voted for/);
  });

  it('rejects a term lost across a restart', () => {
    const checker = new GroupChecker(0, ids);
    checker.afterEvent('n1', [{ type: 'persist_meta', term: 4, votedFor: null }], view({ term: 4 }), () => []);
    expect(() => checker.restarted('n1', { term: 3, votedFor: null, entries: [] })).toThrow(/recovered term 3/);
  });

  it('rejects different entries applied at one index', () => {
    const checker = new GroupChecker(0, ids);
    const a = entry(1, 1, 'a');
    const b = entry(1, 2, 'b');
    persist(checker, 'n1', [a], {});
    checker.afterEvent('n1', [{ type: 'apply', entries: [a] }], view({ lastIndex: 1, commitIndex: 1, lastApplied: 1 }), () => [a]);
    persist(checker, 'n2', [b], { term: 2 });
    expect(() =>
      checker.afterEvent('n2', [{ type: 'apply', entries: [b] }], view({ term: 2, lastIndex: 1, commitIndex: 1, lastApplied: 1 }), () => [b]),
    ).toThrow(/commits entry 1|state machine safety/);
  });

  it('rejects a commit index that goes back', () => {
    const checker = new GroupChecker(0, ids);
    persist(checker, 'n1', [entry(1, 1)], {});
    checker.afterEvent('n1', [], view({ lastIndex: 1, commitIndex: 1 }), () => [entry(1, 1)]);
    expect(() => checker.afterEvent('n1', [], view({ lastIndex: 1, commitIndex: 0 }), () => [])).toThrow(/commit index went back/);
  });

  it('rejects a committed entry durable on a minority', () => {
    const checker = new GroupChecker(0, ids);
    const e = entry(1, 1);
    persist(checker, 'n1', [e], {});
    checker.afterEvent('n1', [], view({ lastIndex: 1, commitIndex: 1 }), () => [e]);
    const logs = new Map<string, LogEntry[]>([['n1', [e]], ['n2', []], ['n3', []]]);
    expect(() => checker.checkDurableQuorum(logs)).toThrow(/fewer than a quorum/);
    logs.set('n2', [e]);
    expect(() => checker.checkDurableQuorum(logs)).not.toThrow();
  });

  it('rejects a new leader without a committed entry', () => {
    const checker = new GroupChecker(0, ids);
    const e = entry(1, 1);
    persist(checker, 'n1', [e], { role: 'leader' });
    checker.afterEvent('n1', [], view({ role: 'leader', lastIndex: 1, commitIndex: 1 }), () => [e]);
    expect(() => checker.afterEvent('n2', [], view({ role: 'leader', term: 2 }), () => [])).toThrow(/leader completeness/);
  });
});
