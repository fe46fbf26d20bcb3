// Linearizability checker for key-value histories with read, write and compare-and-set.
//
// The history is split per key, one register per key, because linearizability is
// compositional. Each key is searched with the Wing–Gong algorithm as improved by Lowe
// ("Testing for linearizability", 2017). The search walks the time-ordered list of call and
// return events and linearizes a pending call whenever the register model allows it. At a
// return whose call is not linearized it backtracks. It memoizes (set of linearized
// operations, register value), so no configuration is explored twice.
//
// An operation with an unknown outcome (a timeout) has no return event: it may take effect at
// any point after its call, or never. The search therefore succeeds once every operation with
// a known outcome is linearized. Each key gets a wall-clock budget; when it runs out the key
// is reported "unknown", never "valid".

export type RegisterInput =
  | { type: 'read' }
  | { type: 'write'; value: string }
  /** Compare-and-set: writes `value` only if the register contains `expected` (null: the key is missing). */
  | { type: 'cas'; expected: string | null; value: string };

export interface HistoryOperation {
  /** Unique within the history; reported in counterexamples. */
  id: number;
  key: string;
  client: number;
  input: RegisterInput;
  /** When the client sent the request. */
  callMs: number;
  /**
   * `ok`: returned with `output`; `unknown`: no response (timeout), so it may or may not have taken
   * effect. An operation known to have had no effect should be left out of the history.
   */
  status: 'ok' | 'unknown';
  /** When the response arrived; ignored for `unknown`. */
  returnMs: number;
  /** read: the value (null when missing); cas: true when it wrote; write: ignored. */
  output?: string | null | boolean;
}

export type CheckVerdict = 'valid' | 'invalid' | 'unknown';

export interface KeyResult {
  key: string;
  verdict: CheckVerdict;
  operations: number;
  /** Configurations explored. */
  steps: number;
  /** For `invalid`: the operation whose return could not be reached, and the deepest linearization found. */
  counterexample?: { blockedOperation: HistoryOperation; longestPrefix: HistoryOperation[] };
}

export interface CheckResult {
  verdict: CheckVerdict;
  keys: KeyResult[];
}

export interface CheckOptions {
  /** Wall-clock budget per key; default 10 s. */
  budgetMsPerKey?: number;
  /** Register value before the history; default null (missing). */
  initialValue?: string | null;
}

/** Checks a history against a linearizable register per key. `invalid` wins over `unknown`. */
export function checkLinearizable(history: readonly HistoryOperation[], options: CheckOptions = {}): CheckResult {
  const byKey = new Map<string, HistoryOperation[]>();
  for (const op of history) {
    let ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, (ops = []));
    ops.push(op);
  }
  const keys: KeyResult[] = [];
  for (const [key, ops] of byKey) keys.push(checkKey(key, ops, options.budgetMsPerKey ?? 10_000, options.initialValue ?? null));
  const verdict: CheckVerdict = keys.some((k) => k.verdict === 'invalid')
    ? 'invalid'
    : keys.some((k) => k.verdict === 'unknown')
      ? 'unknown'
      : 'valid';
  return { verdict, keys };
}

/** Applies one operation to the register. Returns the new value, or undefined when the observed output is impossible. */
export function stepRegister(value: string | null, op: HistoryOperation): { value: string | null } | undefined {
  const input = op.input;
  switch (input.type) {
    case 'read':
      if (op.status === 'unknown') return { value };
      return op.output === value ? { value } : undefined;
    case 'write':
      return { value: input.value };
    case 'cas': {
      const matches = value === input.expected;
      if (op.status === 'unknown') return { value: matches ? input.value : value };
      if (op.output === true) return matches ? { value: input.value } : undefined;
      return matches ? undefined : { value };
    }
  }
}

interface ListEntry {
  op: number;
  isCall: boolean;
  timeMs: number;
  /** For a call: its return entry, or null for an operation with an unknown outcome. */
  match: ListEntry | null;
  prev: ListEntry | null;
  next: ListEntry | null;
}

const BUDGET_CHECK_EVERY_STEPS = 1024;

function checkKey(key: string, input: HistoryOperation[], budgetMs: number, initialValue: string | null): KeyResult {
  // Unknown reads constrain nothing, so they are dropped.
  const ops = input.filter((op) => !(op.status === 'unknown' && op.input.type === 'read'));
  const result: KeyResult = { key, verdict: 'valid', operations: ops.length, steps: 0 };
  if (ops.length === 0) return result;

  // The event list: calls and returns ordered by time; at equal times calls come first, so
  // touching operations count as concurrent (the permissive reading).
  const events: ListEntry[] = [];
  for (let i = 0; i < ops.length; i++) {
    const call: ListEntry = { op: i, isCall: true, timeMs: ops[i].callMs, match: null, prev: null, next: null };
    events.push(call);
    if (ops[i].status === 'ok') {
      if (ops[i].returnMs < ops[i].callMs) throw new Error(`operation ${ops[i].id} returns at ${ops[i].returnMs} before its call at ${ops[i].callMs}`);
      const ret: ListEntry = { op: i, isCall: false, timeMs: ops[i].returnMs, match: null, prev: null, next: null };
      call.match = ret;
      events.push(ret);
    }
  }
  events.sort((a, b) => a.timeMs - b.timeMs || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1));
  const head: ListEntry = { op: -1, isCall: false, timeMs: -Infinity, match: null, prev: null, next: null };
  let previous = head;
  for (const entry of events) {
    previous.next = entry;
    entry.prev = previous;
    previous = entry;
  }

  const lift = (call: ListEntry): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match;
    if (ret) {
      ret.prev!.next = ret.next;
      if (ret.next) ret.next.prev = ret.prev;
    }
  };
  const unlift = (call: ListEntry): void => {
    const ret = call.match;
    if (ret) {
      ret.prev!.next = ret;
      if (ret.next) ret.next.prev = ret;
    }
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const linearized = new Uint32Array(Math.ceil(ops.length / 32));
  const seen = new Set<string>();
  const stack: { call: ListEntry; value: string | null }[] = [];
  let value = initialValue;
  let remainingOk = ops.filter((op) => op.status === 'ok').length;
  let entry = head.next;
  let longest: number[] = [];
  const startMs = Date.now();

  while (remainingOk > 0) {
    result.steps += 1;
    if (result.steps % BUDGET_CHECK_EVERY_STEPS === 0 && Date.now() - startMs > budgetMs) {
      result.verdict = 'unknown';
      return result;
    }
    if (entry === null) throw new Error(`linearizability search for key ${key} ran past the end of the history`);
    if (entry.isCall) {
      const op = ops[entry.op];
      const next = stepRegister(value, op);
      if (next !== undefined) {
        linearized[entry.op >>> 5] |= 1 << (entry.op & 31);
        const cacheKey = `${linearized.join(',')}|${next.value === null ? '\u0000' : next.value}`;
        if (!seen.has(cacheKey)) {
          seen.add(cacheKey);
          stack.push({ call: entry, value });
          value = next.value;
          if (op.status === 'ok') remainingOk -= 1;
          lift(entry);
          if (stack.length > longest.length) longest = stack.map((s) => s.call.op);
          entry = head.next;
          continue;
        }
        linearized[entry.op >>> 5] &= ~(1 << (entry.op & 31));
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: undo the most recent choice.
      if (stack.length === 0) {
        result.verdict = 'invalid';
        result.counterexample = { blockedOperation: ops[entry.op], longestPrefix: longest.map((i) => ops[i]) };
        return result;
      }
      const top = stack.pop()!;
      value = top.value;
      const op = ops[top.call.op];
      if (op.status === 'ok') remainingOk += 1;
      linearized[top.call.op >>> 5] &= ~(1 << (top.call.op & 31));
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return result;
}

/** Formats an invalid key's counterexample for a test failure message. */
export function describeCounterexample(result: KeyResult): string {
  if (result.counterexample === undefined) return `key ${result.key}: ${result.verdict}`;
  const show = (op: HistoryOperation): string => {
    let outcome = 'unknown';
    if (op.status === 'ok') outcome = op.input.type === 'write' ? 'ok' : JSON.stringify(op.output);
    const returned = op.status === 'ok' ? op.returnMs.toFixed(1) : '∞';
    return `#${op.id} client ${op.client} ${JSON.stringify(op.input)} -> ${outcome} [${op.callMs.toFixed(1)}, ${returned}] ms`;
  };
  return [
    `key ${result.key} is not linearizable: no order reaches the return of ${show(result.counterexample.blockedOperation)}`,
    'longest linearized prefix:',
    ...result.counterexample.longestPrefix.map(show),
  ].join('\n');
}
