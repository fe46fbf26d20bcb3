// Regenerates docs/benchmarks.md and its SVG charts from one run's results. The hand-written
// profile analysis in bench/profile-notes.md is copied in verbatim, because a profile needs
// a person to read it.

import fs from 'node:fs';
import path from 'node:path';
import { barChart, percentileChart } from './charts.js';
import { PRESETS } from './presets.js';
import type { RunResult } from './results.js';
import type { ScenarioFigures, ScenarioResult } from './scenarios.js';

const CHART_DIR = 'docs/benchmarks';

function count(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? 'n/a' : Math.round(value).toLocaleString('en-US');
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
}

/** Formats a rate with one decimal below 10, so a rare event does not read as 0. */
function rate(value: number): string {
  return value < 10 ? value.toFixed(1) : count(value);
}

function ms(us: number | undefined): string {
  return us === undefined ? 'n/a' : (us / 1000).toFixed(us < 10_000 ? 2 : 1);
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}x`;
}

function find(run: RunResult, name: string): ScenarioFigures | null {
  return run.scenarios.find((s) => s.name === name)?.figures ?? null;
}

function targetRows(run: RunResult): string[] {
  const single = find(run, 'single-group');
  const many = find(run, 'many-groups');
  const many10k = find(run, 'many-groups-10k');
  const latency = find(run, 'latency');
  const idle = find(run, 'idle');
  const rows = ['| target | goal | measured | met |', '|---|---|---|---|'];
  const met = (ok: boolean | null): string => {
    if (ok === null) return 'not run';
    return ok ? 'yes' : 'no';
  };

  rows.push(`| single-group throughput | >= 200,000 commands/s | ${single ? `${count(single.commandsPerS)} commands/s` : 'not run'} | ${met(single ? single.commandsPerS >= 200_000 : null)} |`);
  if (single?.cpuSecondsPer1000) {
    // CPU time per command barely depends on other work sharing the machine, unlike commands/s.
    const ceiling = (run.machine.cores * 1000) / single.cpuSecondsPer1000;
    const budgetUs = (run.machine.cores / 200_000) * 1e6;
    rows.push(`| single-group CPU cost | <= ${budgetUs.toFixed(0)} us per command over all processes (${run.machine.cores} cores / 200,000) | ${(single.cpuSecondsPer1000 * 1000).toFixed(1)} us per command: at most ${count(ceiling)} commands/s on ${run.machine.cores} idle cores | ${met(ceiling >= 200_000)} |`);
  }
  const share = many && many10k ? many10k.commandsPerS / many.commandsPerS : null;
  rows.push(`| many-groups, 1,000 active of 10,000 hosted | >= 70% of the 100-group figure | ${share === null ? 'not run' : `${(share * 100).toFixed(0)}% (${count(many10k!.commandsPerS)} vs ${count(many!.commandsPerS)} commands/s)`} | ${met(share === null ? null : share >= 0.7)} |`);
  const p50Ms = latency?.latency ? latency.latency.percentilesUs['50'] / 1000 : null;
  rows.push(`| latency p50, one command at a time | < 1 ms | ${p50Ms === null ? 'not run' : `${p50Ms.toFixed(2)} ms`} | ${met(p50Ms === null ? null : p50Ms < 1)} |`);
  if (idle) {
    const maxCpu = Math.max(...Object.values(idle.nodes).map((n) => n.cpuPercent));
    const groups = run.scenarios.find((s) => s.name === 'idle')!.params.groups;
    const perGroup = idle.interNodeMessagesPerS / groups;
    rows.push(`| idle CPU per node, ${count(groups)} groups | < 1% of one core | ${maxCpu.toFixed(2)}% (busiest node) | ${met(maxCpu < 1)} |`);
    rows.push(`| idle per-group traffic | none | ${fixed(idle.interNodeMessagesPerS, 2)} messages/s in total (${perGroup.toExponential(1)} per group), ${count(idle.interNodeBytesPerS)} B/s between nodes | ${met(perGroup < 0.01)} |`);
  } else {
    rows.push('| idle CPU per node and per-group traffic | < 1% of one core, none | not run | not run |');
  }
  return rows;
}

function baselineRows(run: RunResult): string[] {
  const single = find(run, 'single-group');
  const member = find(run, 'single-member');
  const latency = find(run, 'latency');
  const rows = ['| comparison | rana | baseline | rana / baseline |', '|---|---|---|---|'];
  const raw = run.rawFdatasync;
  rows.push(`| (a) disk limit: raw append + fdatasync, ${raw ? `${raw.batchSize} x ${raw.recordBytes} B per fdatasync` : 'not run'} | ${count(single?.commandsPerS)} commands/s | ${count(raw?.entriesPerS)} entries/s | ${ratio(single?.commandsPerS, raw?.entriesPerS)} |`);
  const naive = run.naiveQueue;
  rows.push(`| (b) naive durable queue, one fdatasync per command, ${naive ? `${count(naive.producers)} producers` : 'not run'} | ${count(single?.commandsPerS)} commands/s | ${count(naive?.commandsPerS)} commands/s | ${ratio(single?.commandsPerS, naive?.commandsPerS)} |`);
  const serial = run.naiveQueueSerial;
  const latencyP50Ms = latency?.latency ? latency.latency.percentilesUs['50'] / 1000 : null;
  rows.push(`| (b) naive durable queue, one command at a time: p50 latency | ${fixed(latencyP50Ms, 2)} ms | ${fixed(serial?.p50Ms, 2)} ms | ${ratio(latencyP50Ms, serial?.p50Ms)} |`);
  rows.push(`| (c) rana with a single member (no replication) | ${count(single?.commandsPerS)} commands/s | ${count(member?.commandsPerS)} commands/s | ${ratio(single?.commandsPerS, member?.commandsPerS)} |`);
  return rows;
}

function paramsLine(result: ScenarioResult): string {
  const p = result.params;
  const parts = [`${p.nodes} node(s)`, `${count(p.groups)} group(s) hosted`];
  if (p.active > 0) parts.push(`${count(p.active)} active`, `${p.clientsPerGroup} client(s) per group x ${p.inflightPerClient} in flight`, `${p.payloadBytes} B commands`);
  parts.push(`sync ${p.syncMethod}`, `warm-up ${p.warmupS} s`, `window ${p.durationS} s`);
  if (p.killAtS !== null) parts.push(`SIGKILL at ${p.killAtS} s`);
  return parts.join(', ');
}

function scenarioSection(result: ScenarioResult): string[] {
  const f = result.figures;
  const c = result.conditions;
  const lines = [
    `### ${result.name}`,
    '',
    `${PRESETS[result.name]?.description ?? ''}. Parameters: ${paramsLine(result)}. Setup (start, form, elect) took ${f.setupS.toFixed(1)} s${f.formRetries > 0 ? `, with ${f.formRetries} startCluster calls repeated because a peer was suspected` : ''}.`,
    `Conditions: load average ${c.loadAverage1mStart.toFixed(1)} at the start of the window and ${c.loadAverage1mEnd.toFixed(1)} at the end; the disk gave ${count(c.diskSyncsPerS)} fdatasyncs/s, p50 ${fixed(c.diskP50Ms, 3)} ms (${c.diskRegime} regime) just before the cluster started.`,
    '',
  ];
  if (f.committed > 0 || result.params.active > 0) {
    lines.push('| committed/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU s per 1,000 (all processes) | CPU s per 1,000 (nodes) | load generator CPU | fdatasyncs/s (all nodes) | entries per fdatasync | errors |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
    // An empty histogram reports 0 at every percentile; show that there were no samples.
    const l = f.latency !== null && f.latency.count > 0 ? f.latency : null;
    const errors = Object.entries(f.errors).map(([code, n]) => `${code} ${n}`).join(', ') || 'none';
    lines.push(`| ${count(f.commandsPerS)} | ${ms(l?.percentilesUs['50'])} | ${ms(l?.percentilesUs['99'])} | ${ms(l?.percentilesUs['99.9'])} | ${ms(l?.maxUs)} | ${fixed(f.cpuSecondsPer1000, 3)} | ${fixed(f.nodeCpuSecondsPer1000, 3)} | ${fixed(f.loadCpuPercent, 0)}% | ${rate(f.fsyncsPerS)} | ${fixed(f.entriesPerFsync, 1)} | ${errors} |`);
    lines.push('');
  }
  lines.push('| node | CPU % of one core | peak RSS MiB | fdatasyncs/s | entries per fdatasync | sent to nodes B/s | sent to nodes messages/s |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const [id, n] of Object.entries(f.nodes)) {
    lines.push(`| ${id} | ${n.cpuPercent.toFixed(1)} | ${n.peakRssMiB.toFixed(0)} | ${rate(n.fsyncsPerS)} | ${fixed(n.entriesPerFsync, 1)} | ${count(n.sentBytesPerS)} | ${count(n.sentMessagesPerS)} |`);
  }
  if (f.failover) {
    const fo = f.failover;
    lines.push('');
    lines.push(`Failover: killed ${fo.killedNode}, which led ${fo.groupsLedByKilled} of ${result.params.active} groups. Every group committed again ${fo.recoveryMs === null ? `never within the window (${fo.groupsNotRecovered} groups did not)` : `${Math.round(fo.recoveryMs)} ms`} after the kill; half of them within ${fo.recoveryMedianMs === null ? 'n/a' : `${Math.round(fo.recoveryMedianMs)} ms`}. The killed node's figures are missing from the table above.`);
  }
  lines.push('');
  return lines;
}

function writeCharts(run: RunResult, repoRoot: string): string[] {
  const dir = path.join(repoRoot, CHART_DIR);
  fs.mkdirSync(dir, { recursive: true });
  const links: string[] = [];

  const groupBars = run.scenarios
    .filter((s) => ['single-group', 'many-groups', 'many-groups-10k'].includes(s.name) && s.figures.committed > 0)
    .sort((a, b) => a.params.active - b.params.active)
    .map((s) => ({ label: `${count(s.params.active)} of ${count(s.params.groups)}`, value: s.figures.commandsPerS }));
  if (groupBars.length > 0) {
    fs.writeFileSync(path.join(dir, 'throughput-groups.svg'), barChart('Committed commands/s by active groups (of hosted)', 'commands/s', groupBars));
    links.push(`![Committed commands/s by number of active groups](benchmarks/throughput-groups.svg)`);
  }

  const series = run.scenarios
    .filter((s) => ['latency', 'closed-loop', 'single-group', 'payload-1k', 'many-groups'].includes(s.name) && s.figures.latency !== null && s.figures.latency.count > 0)
    .map((s) => ({
      name: s.name,
      points: Object.entries(s.figures.latency!.percentilesUs).map(([p, us]) => ({ percentile: Number(p), valueMs: us / 1000 })).sort((a, b) => a.percentile - b.percentile),
    }));
  if (series.length > 0) {
    fs.writeFileSync(path.join(dir, 'latency-percentiles.svg'), percentileChart('Command latency by percentile', series));
    links.push(`![Command latency by percentile](benchmarks/latency-percentiles.svg)`);
  }
  return links;
}

/** Returns the page's introduction: how to run the benchmarks and what a scenario does. */
function introLines(): string[] {
  return [
    '# Benchmarks',
    '',
    'This page is generated by `npm run bench` from its latest full run (bench/e2e/report.ts). Edit bench/profile-notes.md for the profile section, not this file.',
    '',
    '## How to run',
    '',
    '```sh',
    'npm run bench                                          # the default set, about 8 minutes on 2 cores',
    'npm run bench -- many-groups --groups 500 --duration 30 # one preset with overrides',
    'npm run bench -- single-group --cpu-prof                # CPU profiles of every process',
    'node dist-bench/e2e/profile-summary.js bench/results/profiles/<run> --commands <n>  # self time by function and component',
    'npm run bench -- report [bench/results/<run>.json]      # regenerate this page from a results file',
    '```',
    '',
    'Every scenario starts fresh child processes on 127.0.0.1: three rana nodes (one system each, `syncMethod: datasync`, data in a new directory under the temp directory) and a load generator. The load generator is a fourth rana `Node` that hosts no members and calls `processCommand`. Each command crosses the node transport to the leader, is replicated, is applied by the KV machine (a `put`) and is answered over the transport. The load generator remembers each group\'s leader from the last reply.',
    '',
    'Latency is measured in the load generator from the call to the reply, into an HDR histogram. CPU time, peak RSS, WAL counters and transport counters are sampled in every process at the start and the end of the window, over IPC. Options: `--groups --active --clients --inflight --payload --duration --warmup --nodes --sync --kill-at --cpu-prof --keep-logs --note`. Results go to `bench/results/<run>.json`, which git ignores.',
    '',
  ];
}

/** Returns the facts about one run: when, where, at which commit, and how busy the machine was. */
function runLines(run: RunResult): string[] {
  const m = run.machine;
  const quoted = run.argv.map((arg) => (/\s/.test(arg) ? JSON.stringify(arg) : arg));
  const command = ['npm run bench', ...(quoted.length > 0 ? ['--', ...quoted] : [])].join(' ');
  const lines = [
    '## This run',
    '',
    `- Run ${run.runId}, ${run.startedAt} to ${run.finishedAt}, \`${command}\``,
    `- Machine: ${m.cores} x ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.platform}; temp directory ${m.tmpdir}`,
    `- Node ${run.nodeVersion}, commit ${run.git.commit}${run.git.dirty ? ' with uncommitted changes in the tree' : ''}`,
    `- Load average at start ${run.loadAverage.start.map((l) => l.toFixed(2)).join(' / ')}, at end ${run.loadAverage.end.map((l) => l.toFixed(2)).join(' / ')} (1, 5, 15 min)`,
  ];
  if (run.note) lines.push(`- Note: ${run.note}`);
  if (run.diskProbe) {
    const d = run.diskProbe;
    lines.push(`- Disk probe: ${count(d.syncsPerS)} fdatasyncs/s of ${d.writeBytes} B appends, p50 ${d.p50Ms.toFixed(3)} ms, p99 ${d.p99Ms.toFixed(3)} ms: **${d.regime} regime** (each scenario below also records a short probe)`);
  }
  if (run.failures.length > 0) lines.push(`- Failed: ${run.failures.map((f) => `${f.name} (${f.error.split('\n')[0]})`).join('; ')}`);
  lines.push('');
  return lines;
}

export function writeReport(run: RunResult, repoRoot: string): void {
  const lines = [...introLines(), ...runLines(run)];

  lines.push('## Targets', '');
  lines.push('Goals for the benchmark on a 2-core machine with all three nodes and the load generator on it; never asserted in tests.', '');
  lines.push(...targetRows(run), '');

  lines.push('## Against the baselines of the same run', '');
  lines.push('The three rana nodes share one disk, so rana makes three WAL writes and three fdatasyncs per batch where baseline (a) makes one.', '');
  lines.push(...baselineRows(run));
  if (run.rawFdatasync) lines.push('', `Baseline (a) used the ${run.rawFdatasync.source}.`);
  lines.push('');

  lines.push('## Charts', '');
  lines.push(...writeCharts(run, repoRoot).flatMap((link) => [link, '']));

  lines.push('## Scenarios', '');
  for (const result of run.scenarios) lines.push(...scenarioSection(result));

  if (run.micro) {
    lines.push('## Micro benchmarks', '');
    for (const [name, output] of Object.entries(run.micro)) lines.push(`${name}:`, '', '```', ...output, '```', '');
  }

  const notesFile = path.join(repoRoot, 'bench/profile-notes.md');
  if (fs.existsSync(notesFile)) lines.push(fs.readFileSync(notesFile, 'utf8').trimEnd(), '');
  fs.writeFileSync(path.join(repoRoot, 'docs/benchmarks.md'), `${lines.join('\n')}\n`);
}
