/**
 * Write history per key, and the check of the final values against it.
 *
 * Every write stores a value no other write uses, so a value read back names the one write
 * that produced it. Times are `performance.now()` milliseconds in the demo process. A write is
 * `acked` (2xx), `unknown` (503, lost connection, timeout: it may still take effect) or
 * `failed` (refused connection, 400, 409: it did not take effect).
 *
 * The check is sound for a linearizable store. A write W acknowledged before another
 * acknowledged write W' was invoked is linearized before W'. So W's value can be final only if
 * W was acknowledged after the invocation of every other acknowledged write to the key.
 * TODO: only each key's final value is checked; reads and 409 bodies seen during the run are not.
 */

export type WriteOutcome = 'acked' | 'unknown' | 'failed';

interface KeyHistory {
  /** Value -> time its write was acknowledged, or Infinity when the outcome is unknown. */
  completionMsByValue: Map<string, number>;
  /** Latest invocation time of an acknowledged put, compare-and-set or delete. */
  lastAckedWriteInvokeMs: number;
  /** Latest invocation time of an acknowledged put or compare-and-set. */
  lastAckedPutInvokeMs: number;
  /** Latest completion time of an acknowledged or unknown delete (Infinity when unknown). */
  lastDeleteCompletionMs: number;
}

/** Result of checking one key's final value. */
export type KeyVerdict = 'ok' | 'never-written' | 'stale' | 'lost';

export interface Violation {
  key: string;
  verdict: Exclude<KeyVerdict, 'ok'>;
  /** Final value read, or null when the key was missing. */
  finalValue: string | null;
  detail: string;
}

/**
 * History of every write the workload sent. Memory grows with the number of writes whose
 * outcome is acked or unknown (one map entry each), so it is bounded by the run's duration
 * times its write rate.
 */
export class WriteHistory {
  readonly #keys = new Map<string, KeyHistory>();

  #history(key: string): KeyHistory {
    let history = this.#keys.get(key);
    if (history === undefined) {
      history = {
        completionMsByValue: new Map(),
        lastAckedWriteInvokeMs: -Infinity,
        lastAckedPutInvokeMs: -Infinity,
        lastDeleteCompletionMs: -Infinity,
      };
      this.#keys.set(key, history);
    }
    return history;
  }

  /** Records a finished put or successful compare-and-set of `value`. */
  recordPut(key: string, value: string, invokeMs: number, completionMs: number, outcome: WriteOutcome): void {
    if (outcome === 'failed') {
      return;
    }
    const history = this.#history(key);
    if (outcome === 'acked') {
      history.completionMsByValue.set(value, completionMs);
      history.lastAckedWriteInvokeMs = Math.max(history.lastAckedWriteInvokeMs, invokeMs);
      history.lastAckedPutInvokeMs = Math.max(history.lastAckedPutInvokeMs, invokeMs);
    } else {
      history.completionMsByValue.set(value, Infinity);
    }
  }

  recordDelete(key: string, invokeMs: number, completionMs: number, outcome: WriteOutcome): void {
    if (outcome === 'failed') {
      return;
    }
    const history = this.#history(key);
    if (outcome === 'acked') {
      history.lastAckedWriteInvokeMs = Math.max(history.lastAckedWriteInvokeMs, invokeMs);
      history.lastDeleteCompletionMs = Math.max(history.lastDeleteCompletionMs, completionMs);
    } else {
      history.lastDeleteCompletionMs = Infinity;
    }
  }

  /** Checks the value of `key` read after all writes finished; `finalValue` is null when missing. */
  check(key: string, finalValue: string | null): Violation | null {
    const history = this.#keys.get(key);

    if (finalValue === null) {
      // Missing is correct when no put was acknowledged, or when a delete may have been the
      // last write because it completed (or has an unknown outcome) after the last
      // acknowledged put was invoked.
      if (history === undefined || history.lastAckedPutInvokeMs === -Infinity) {
        return null;
      }
      if (history.lastDeleteCompletionMs > history.lastAckedPutInvokeMs) {
        return null;
      }
      return { key, verdict: 'lost', finalValue, detail: 'missing, but a put was acknowledged after the last delete' };
    }

    const completionMs = history?.completionMsByValue.get(finalValue);
    if (history === undefined || completionMs === undefined) {
      return { key, verdict: 'never-written', finalValue, detail: 'no acknowledged or unknown-outcome write stored this value' };
    }
    if (completionMs < history.lastAckedWriteInvokeMs) {
      const ageMs = (history.lastAckedWriteInvokeMs - completionMs).toFixed(1);
      return { key, verdict: 'stale', finalValue, detail: `its write was acknowledged ${ageMs} ms before another acknowledged write to the key was sent` };
    }
    return null;
  }
}
