import { build, type Histogram } from 'hdr-histogram-js';

export const opKinds = ['put', 'get', 'cas', 'delete'] as const;
export type OpKind = (typeof opKinds)[number];

/**
 * Error classes counted per operation kind:
 * - `unavailable`: a 503 from a node (timeout, no quorum or no leader).
 * - `refused`: a connection refused by a stopped node. The client retries on the next node.
 * - `lost`: a connection reset or closed mid-request.
 * - `timeout`: the demo's own request timeout expired.
 * - `unexpected`: any other status.
 */
export const errorKinds = ['unavailable', 'refused', 'lost', 'timeout', 'unexpected'] as const;
export type ErrorKind = (typeof errorKinds)[number];

/** Highest latency a histogram tracks, 60 s in microseconds. Larger values are recorded as this maximum. */
const latencyUsMax = 60_000_000;

function latencyHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: latencyUsMax, numberOfSignificantValueDigits: 3, autoResize: false });
}

/** Totals for one operation kind over the whole run. */
export interface KindStats {
  ok: number;
  /** Compare-and-set requests that returned 409 because the current value differed. Not an error. */
  casMismatch: number;
  errors: Record<ErrorKind, number>;
  latencyUs: Histogram;
}

/** Operations and latency in one second of the run. */
export interface SecondSample {
  /** Seconds since the workload started, at the end of this sample. */
  elapsedS: number;
  ops: number;
  errors: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  nodesAlive: number;
}

/**
 * Counters and latency histograms of the workload. Latency is recorded for completed requests
 * (success or 409), in microseconds. `series` has one sample per second of the run, so it is
 * bounded by the run's duration.
 */
export class WorkloadStats {
  readonly byKind: Record<OpKind, KindStats>;
  readonly series: SecondSample[] = [];
  #secondOps = 0;
  #secondErrors = 0;
  #secondLatencyUs = latencyHistogram();

  constructor() {
    const entries = opKinds.map((kind): [OpKind, KindStats] => [kind, {
      ok: 0,
      casMismatch: 0,
      errors: { unavailable: 0, refused: 0, lost: 0, timeout: 0, unexpected: 0 },
      latencyUs: latencyHistogram(),
    }]);
    this.byKind = Object.fromEntries(entries) as Record<OpKind, KindStats>;
  }

  recordSuccess(kind: OpKind, latencyMs: number, casMismatch = false): void {
    const stats = this.byKind[kind];
    const latencyUs = Math.min(latencyUsMax, Math.max(1, Math.round(latencyMs * 1000)));
    stats.ok++;
    if (casMismatch) {
      stats.casMismatch++;
    }
    stats.latencyUs.recordValue(latencyUs);
    this.#secondLatencyUs.recordValue(latencyUs);
    this.#secondOps++;
  }

  recordError(kind: OpKind, error: ErrorKind): void {
    this.byKind[kind].errors[error]++;
    this.#secondErrors++;
  }

  totalOps(): number {
    return opKinds.reduce((sum, kind) => sum + this.byKind[kind].ok, 0);
  }

  totalErrors(): number {
    let sum = 0;
    for (const kind of opKinds) {
      for (const error of errorKinds) {
        sum += this.byKind[kind].errors[error];
      }
    }
    return sum;
  }

  /** Closes the current one-second window, appends it to `series` and returns it. */
  closeSecond(elapsedS: number, nodesAlive: number): SecondSample {
    const histogram = this.#secondLatencyUs;
    const sample: SecondSample = {
      elapsedS,
      ops: this.#secondOps,
      errors: this.#secondErrors,
      latencyP50Ms: histogram.totalCount > 0 ? histogram.getValueAtPercentile(50) / 1000 : 0,
      latencyP99Ms: histogram.totalCount > 0 ? histogram.getValueAtPercentile(99) / 1000 : 0,
      nodesAlive,
    };
    this.series.push(sample);
    histogram.reset();
    this.#secondOps = 0;
    this.#secondErrors = 0;
    return sample;
  }
}
