import type { FaultTimeline } from './fault.js';
import type { CheckResult } from './verify.js';
import { errorKinds, opKinds, type SecondSample, type WorkloadStats } from './stats.js';

/** Renders rows as a plain-text table: first column left-aligned, the others right-aligned. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => row[column].length)));
  const line = (row: readonly string[]): string =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join('  ');
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

function ms(valueUs: number): string {
  return (valueUs / 1000).toFixed(2);
}

/** Formats one progress line: elapsed time, the last second's throughput and latency, errors and nodes alive. */
export function formatProgress(sample: SecondSample, durationS: number, errorsTotal: number, nodeCount: number): string {
  const latency = sample.ops > 0 ? `p50 ${sample.latencyP50Ms.toFixed(2)} ms  p99 ${sample.latencyP99Ms.toFixed(2)} ms` : 'p50 - ms  p99 - ms';
  return `[${sample.elapsedS.toFixed(0).padStart(3)}/${durationS} s] ${String(sample.ops).padStart(6)} ops/s  ${latency}` +
    `  errors ${errorsTotal}  nodes ${sample.nodesAlive}/${nodeCount}`;
}

export function formatOpsTable(stats: WorkloadStats, elapsedS: number): string {
  const rows = opKinds.map((kind) => {
    const { ok, latencyUs } = stats.byKind[kind];
    const percentile = (p: number): string => (ok > 0 ? ms(latencyUs.getValueAtPercentile(p)) : '-');
    return [kind, String(ok), (ok / elapsedS).toFixed(0), percentile(50), percentile(90), percentile(99), percentile(99.9), ok > 0 ? ms(latencyUs.maxValue) : '-'];
  });
  const total = stats.totalOps();
  rows.push(['total', String(total), (total / elapsedS).toFixed(0), '', '', '', '', '']);
  return formatTable(['kind', 'ops', 'ops/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p999 ms', 'max ms'], rows);
}

export function formatErrorsTable(stats: WorkloadStats): string {
  const header = ['kind', '503 no leader/timeout', 'conn refused (retried)', 'conn lost', 'client timeout', 'other status', '409 cas mismatch'];
  const rows = opKinds.map((kind) => {
    const { errors, casMismatch } = stats.byKind[kind];
    return [kind, ...errorKinds.map((error) => String(errors[error])), kind === 'cas' ? String(casMismatch) : '-'];
  });
  return formatTable(header, rows);
}

/** Formats the kill, failover and recovery times, and ops/s per second from 3 s before the kill to 10 s after it. */
export function formatFault(fault: FaultTimeline, series: readonly SecondSample[], workloadStartMs: number): string {
  const at = (timeMs: number): string => `${((timeMs - workloadStartMs) / 1000).toFixed(1)} s`;
  const lines = [
    `killed ${fault.victim} (leader of ${fault.groupsLed} groups) with SIGKILL at ${at(fault.killAtMs)}` +
      (fault.restartAtMs !== null ? `, restarted it at ${at(fault.restartAtMs)}` : ', did not restart it'),
    `failover: ${fault.failoverMs !== null ? `${fault.failoverMs.toFixed(0)} ms from the kill until every group committed a new entry` : 'not seen: some group committed no new entry before the probe stopped'}`,
    `recovery: ${fault.recoveryMs !== null ? `${fault.recoveryMs.toFixed(0)} ms from the restart until ${fault.victim} reported a leader for every group` : 'not seen'}`,
    ...fault.notes,
  ];

  const killS = (fault.killAtMs - workloadStartMs) / 1000;
  const window = series.filter((sample) => sample.elapsedS > killS - 3 && sample.elapsedS <= killS + 10);
  if (window.length > 0) {
    lines.push('', 'throughput around the kill (each row is the second ending at that time)');
    lines.push(formatTable(['second', 'ops/s', 'errors', 'p99 ms', 'nodes'], window.map((sample) => [
      `${sample.elapsedS.toFixed(0)} s${sample.elapsedS > killS && sample.elapsedS - 1 <= killS ? ' (kill)' : ''}`,
      String(sample.ops),
      String(sample.errors),
      sample.latencyP99Ms.toFixed(2),
      String(sample.nodesAlive),
    ])));
  }
  return lines.join('\n');
}

/** Examples of violations listed in the report. */
const violationsShownMax = 10;

export function formatCheck(check: CheckResult, keyCount: number): string {
  const count = (verdict: string): number => check.violations.filter((violation) => violation.verdict === verdict).length;
  const summary = `CHECK ${check.passed ? 'PASS' : 'FAIL'}: ${check.keysChecked}/${keyCount} keys read, ` +
    `${count('stale')} stale, ${count('never-written')} never written, ${count('lost')} lost, ${check.unreadable.length} unreadable`;
  const lines = [summary];
  for (const violation of check.violations.slice(0, violationsShownMax)) {
    lines.push(`  ${violation.key}: ${violation.verdict}, read ${violation.finalValue === null ? 'missing' : JSON.stringify(violation.finalValue)}: ${violation.detail}`);
  }
  if (check.unreadable.length > 0) {
    lines.push(`  unreadable keys: ${check.unreadable.slice(0, violationsShownMax).join(', ')}${check.unreadable.length > violationsShownMax ? ', ...' : ''}`);
  }
  return lines.join('\n');
}
