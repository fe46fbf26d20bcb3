// The results JSON of one benchmark run, written to bench/results/<runId>.json.

import type { DiskProbeResult, NaiveQueueResult, RawFdatasyncResult } from './baselines.js';
import type { ScenarioResult } from './scenarios.js';

export interface RunResult {
  version: 1;
  runId: string;
  startedAt: string;
  finishedAt: string;
  /** True when the run had no scenario names, so it ran the whole default set. */
  defaultSet: boolean;
  argv: string[];
  machine: { cpuModel: string; cores: number; memoryGiB: number; platform: string; tmpdir: string };
  nodeVersion: string;
  git: { commit: string; dirty: boolean };
  note: string | null;
  /** `os.loadavg()` at the start and the end: a high value means other work shared the machine. */
  loadAverage: { start: number[]; end: number[] };
  diskProbe: DiskProbeResult | null;
  /** Output lines of each micro benchmark, by file name. */
  micro: Record<string, string[]> | null;
  scenarios: ScenarioResult[];
  /** Baseline (a). */
  rawFdatasync: RawFdatasyncResult | null;
  /** Baseline (b) with as many producers as single-group keeps commands in flight. */
  naiveQueue: NaiveQueueResult | null;
  /** Baseline (b) with one producer, one command at a time. */
  naiveQueueSerial: NaiveQueueResult | null;
  failures: { name: string; error: string }[];
}
