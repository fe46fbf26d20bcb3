import { describe, expect, it } from 'vitest';
import { Prng } from '../sim/prng.js';
import { checkLinearizable, describeCounterexample, stepRegister, type HistoryOperation, type RegisterInput } from './linearizability.js';

interface GenerateOptions {
  clients: number;
  operationsPerClient: number;
  keys: number;
  unknownRate: number;
}

/**
 * Generates a history that is linearizable by construction: every operation gets a
 * linearization point inside its interval (or, for an unknown outcome, some point after its
 * call, or none), and outputs are computed by applying the operations in point order.
 */
function generateLegal(prng: Prng, options: GenerateOptions): HistoryOperation[] {
  const ops: (HistoryOperation & { pointMs: number | null })[] = [];
  let nextId = 1;
  const written: string[] = [];
  for (let client = 0; client < options.clients; client++) {
    let timeMs = prng.int(5);
    for (let i = 0; i < options.operationsPerClient; i++) {
      const callMs = timeMs + prng.int(3);
      const returnMs = callMs + 1 + prng.int(10);
      const key = `k${prng.int(options.keys)}`;
      const id = nextId++;
      const roll = prng.next();
      let input: RegisterInput;
      if (roll < 0.4) input = { type: 'read' };
      else if (roll < 0.75) input = { type: 'write', value: `v${id}` };
      else input = { type: 'cas', expected: written.length > 0 && prng.chance(0.8) ? prng.pick(written) : null, value: `v${id}` };
      if (input.type !== 'read') written.push(input.value);
      const unknown = prng.chance(options.unknownRate);
      let pointMs: number | null = callMs + prng.next() * (returnMs - callMs);
      if (unknown) pointMs = prng.chance(0.5) ? null : callMs + prng.next() * 40;
      ops.push({ id, key, client, input, callMs, returnMs, status: unknown ? 'unknown' : 'ok', pointMs });
      timeMs = returnMs;
    }
  }
  const values = new Map<string, string | null>();
  const ordered = ops.filter((op) => op.pointMs !== null).sort((a, b) => a.pointMs! - b.pointMs!);
  for (const op of ordered) {
    const before = values.get(op.key) ?? null;
    if (op.input.type === 'read') op.output = before;
    else if (op.input.type === 'cas') op.output = before === op.input.expected;
    const after = stepRegister(before, op);
    values.set(op.key, after!.value);
  }
  return ops.map(({ pointMs: _pointMs, ...op }) => op);
}

/** Exhaustive search over every order that respects real time, for small histories, used as the expected result. */
function bruteForce(history: HistoryOperation[]): boolean {
  const byKey = new Map<string, HistoryOperation[]>();
  for (const op of history) byKey.set(op.key, [...(byKey.get(op.key) ?? []), op]);
  for (const ops of byKey.values()) {
    const relevant = ops.filter((op) => !(op.status === 'unknown' && op.input.type === 'read'));
    const used = new Array<boolean>(relevant.length).fill(false);
    const search = (value: string | null): boolean => {
      if (relevant.every((op, i) => used[i] || op.status === 'unknown')) return true;
      for (let i = 0; i < relevant.length; i++) {
        if (used[i]) continue;
        const op = relevant[i];
        // op may go next only if no pending known operation returned before op was called.
        const blocked = relevant.some((other, j) => !used[j] && j !== i && other.status === 'ok' && other.returnMs < op.callMs);
        if (blocked) continue;
        const next = stepRegister(value, op);
        if (next === undefined) continue;
        used[i] = true;
        if (search(next.value)) return true;
        used[i] = false;
      }
      return false;
    };
    if (!search(null)) return false;
  }
  return true;
}

/** Changes one read's output or one cas's outcome; the result may or may not stay legal. */
function mutate(prng: Prng, history: HistoryOperation[]): HistoryOperation[] {
  const candidates = history.filter((op) => op.status === 'ok' && op.input.type !== 'write');
  if (candidates.length === 0) return history;
  const target = prng.pick(candidates);
  const values = history.flatMap((op) => (op.input.type === 'read' ? [] : [op.input.value]));
  return history.map((op) => {
    if (op !== target) return op;
    if (op.input.type === 'cas') return { ...op, output: !op.output };
    const choices = [null, ...values].filter((v) => v !== op.output);
    return { ...op, output: choices.length > 0 ? prng.pick(choices) : 'never-written' };
  });
}

function op(id: number, input: RegisterInput, callMs: number, returnMs: number, output?: string | null | boolean, status: 'ok' | 'unknown' = 'ok'): HistoryOperation {
  return { id, key: 'x', client: id, input, callMs, returnMs, status, output };
}

describe('linearizability checker', () => {
  it('agrees with exhaustive search on small histories', () => {
    const prng = new Prng(20_240_611);
    let legal = 0;
    let illegal = 0;
    for (let round = 0; round < 3_000; round++) {
      const history = generateLegal(prng, { clients: 3, operationsPerClient: 2 + prng.int(2), keys: 1, unknownRate: 0.2 });
      const candidate = prng.chance(0.6) ? mutate(prng, history) : history;
      const expected = bruteForce(candidate);
      const actual = checkLinearizable(candidate).verdict;
      expect(actual, JSON.stringify(candidate)).toBe(expected ? 'valid' : 'invalid');
      if (expected) legal += 1;
      else illegal += 1;
    }
    // Both kinds must be well represented for the comparison to mean anything.
    expect(legal).toBeGreaterThan(500);
    expect(illegal).toBeGreaterThan(500);
  });

  it('accepts large legal histories', () => {
    const prng = new Prng(7);
    for (let round = 0; round < 20; round++) {
      const history = generateLegal(prng, { clients: 6, operationsPerClient: 60, keys: 3, unknownRate: 0.05 });
      const result = checkLinearizable(history);
      expect(result.verdict, result.keys.map(describeCounterexample).join('\n')).toBe('valid');
    }
  });

  it('rejects a read of a value never written', () => {
    const prng = new Prng(8);
    const history = generateLegal(prng, { clients: 5, operationsPerClient: 40, keys: 2, unknownRate: 0.05 });
    const read = history.find((o) => o.input.type === 'read' && o.status === 'ok')!;
    read.output = 'never-written';
    const result = checkLinearizable(history);
    expect(result.verdict).toBe('invalid');
    const bad = result.keys.find((k) => k.verdict === 'invalid')!;
    expect(bad.key).toBe(read.key);
    expect(describeCounterexample(bad)).toContain('not linearizable');
  });

  it('rejects a stale read after two writes', () => {
    const history = [
      op(1, { type: 'write', value: 'a' }, 0, 1),
      op(2, { type: 'write', value: 'b' }, 2, 3),
      op(3, { type: 'read' }, 4, 5, 'a'),
    ];
    expect(checkLinearizable(history).verdict).toBe('invalid');
  });

  it('lets an unknown write take effect late', () => {
    const history = [
      op(1, { type: 'write', value: 'a' }, 0, 0, undefined, 'unknown'),
      op(2, { type: 'read' }, 10, 11, null),
      op(3, { type: 'read' }, 20, 21, 'a'),
    ];
    expect(checkLinearizable(history).verdict).toBe('valid');
  });

  it('lets an unknown write never take effect', () => {
    const history = [
      op(1, { type: 'write', value: 'a' }, 0, 0, undefined, 'unknown'),
      op(2, { type: 'read' }, 10, 11, null),
    ];
    expect(checkLinearizable(history).verdict).toBe('valid');
  });

  it('rejects an unknown write undone later', () => {
    const history = [
      op(1, { type: 'write', value: 'a' }, 0, 0, undefined, 'unknown'),
      op(2, { type: 'read' }, 10, 11, 'a'),
      op(3, { type: 'read' }, 20, 21, null),
    ];
    expect(checkLinearizable(history).verdict).toBe('invalid');
  });

  it('checks compare-and-set outcomes', () => {
    const ok = [
      op(1, { type: 'write', value: 'a' }, 0, 1),
      op(2, { type: 'cas', expected: 'a', value: 'b' }, 2, 3, true),
      op(3, { type: 'cas', expected: 'a', value: 'c' }, 4, 5, false),
      op(4, { type: 'read' }, 6, 7, 'b'),
    ];
    expect(checkLinearizable(ok).verdict).toBe('valid');
    const bothWon = [
      op(1, { type: 'write', value: 'a' }, 0, 1),
      op(2, { type: 'cas', expected: 'a', value: 'b' }, 2, 10, true),
      op(3, { type: 'cas', expected: 'a', value: 'c' }, 2, 10, true),
    ];
    expect(checkLinearizable(bothWon).verdict).toBe('invalid');
  });

  it('reports unknown when the budget runs out', () => {
    // Twenty concurrent unknown writes and an impossible read: the search must try every subset.
    const history: HistoryOperation[] = [];
    for (let i = 1; i <= 20; i++) history.push(op(i, { type: 'write', value: `v${i}` }, 0, 0, undefined, 'unknown'));
    for (let i = 21; i <= 40; i++) history.push(op(i, { type: 'cas', expected: `v${i - 20}`, value: `w${i}` }, 0, 100, false));
    history.push(op(41, { type: 'read' }, 200, 201, 'never-written'));
    const result = checkLinearizable(history, { budgetMsPerKey: 5 });
    expect(result.verdict).toBe('unknown');
  });
});
