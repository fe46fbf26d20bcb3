// Summarizes `.cpuprofile` files written by `node --cpu-prof` (run the benchmark with
// --cpu-prof): self time per function, largest first, and the share the process spent idle.
// Usage: node dist-bench/e2e/profile-summary.js <dir or file>... [--top N] [--commands N]
// With --commands (the commands committed while the profiles ran), it also prints the self
// time per committed command by category.

import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  gcMs: number;
  /** Functions by self time, largest first. */
  top: { name: string; selfMs: number; percentOfBusy: number }[];
  /** Self time by the CATEGORIES bucket of the function's source, in milliseconds. */
  categoriesMs: Record<string, number>;
}

/** Buckets for self time, matched in order against the function name and source URL. */
const CATEGORIES: [string, RegExp][] = [
  ['garbage collection', /^\(garbage collector\)/],
  ['msgpackr encode/decode', /node_modules\/msgpackr\//],
  ['socket writes and reads', /^(writeBuffer|writev|writeGeneric|writevGeneric|handleWriteReq|onStreamRead)\b/],
  ['raft core', /dist\/main\/raft\//],
  ['server (effects, apply, calls)', /dist\/main\/server\.js/],
  ['node (routing, remote calls)', /dist\/main\/node\.js/],
  ['transport (framing, queues)', /dist\/main\/transport\//],
  ['WAL client and rings', /dist\/(main\/storage|shared)\//],
  ['kv machine', /dist\/main\/machines\//],
  ['benchmark load generator', /dist-bench\//],
  ['promises, microtasks, timers', /^(runMicrotasks|processTicksAndRejections|listOnTimeout|processTimers|insert|setTimeout|clearTimeout|unenroll|Timeout)/],
  ['Node.js internals', / node:|^\(program\)/],
];

function categoryOf(name: string): string {
  for (const [category, pattern] of CATEGORIES) if (pattern.test(name)) return category;
  return 'other';
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url === '' ? '' : ` ${url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/')}:${lineNumber + 1}`;
  return `${functionName || '(anonymous)'}${file}`;
}

// NOTE: the WAL worker threads wrote no profile under `--cpu-prof` in the runs so far, so their time is missing.
export function summarizeProfile(file: string, topCount: number): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, number>();
  let idleUs = 0;
  let gcUs = 0;
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const deltaUs = profile.timeDeltas[i] ?? 0;
    totalUs += deltaUs;
    const node = byId.get(id);
    if (node === undefined) return;
    const name = node.callFrame.functionName;
    if (name === '(idle)') idleUs += deltaUs;
    if (name === '(garbage collector)') gcUs += deltaUs;
    const key = frameName(node);
    selfUs.set(key, (selfUs.get(key) ?? 0) + deltaUs);
  });
  const busyUs = Math.max(1, totalUs - idleUs);
  const categoriesMs: Record<string, number> = {};
  for (const [name, us] of selfUs) {
    if (name.startsWith('(idle)')) continue;
    const category = categoryOf(name);
    categoriesMs[category] = (categoriesMs[category] ?? 0) + us / 1000;
  }
  const top = [...selfUs.entries()]
    .filter(([name]) => !name.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, topCount)
    .map(([name, us]) => ({ name, selfMs: us / 1000, percentOfBusy: (us / busyUs) * 100 }));
  return { file, totalMs: totalUs / 1000, idleMs: idleUs / 1000, gcMs: gcUs / 1000, top, categoriesMs };
}

function main(): void {
  const args = process.argv.slice(2);
  const topIndex = args.indexOf('--top');
  const topCount = topIndex === -1 ? 15 : Number(args[topIndex + 1]);
  const commandsIndex = args.indexOf('--commands');
  const optionIndexes = new Set([topIndex, topIndex + 1, commandsIndex, commandsIndex + 1].filter((i) => i >= 0));
  const inputs = args.filter((_, i) => !optionIndexes.has(i));
  if (inputs.length === 0) {
    console.error('usage: node dist-bench/e2e/profile-summary.js <dir or .cpuprofile file>... [--top N] [--commands N]');
    process.exitCode = 1;
    return;
  }
  const files = inputs.flatMap((input) =>
    fs.statSync(input).isDirectory()
      ? fs.readdirSync(input).filter((f) => f.endsWith('.cpuprofile')).sort().map((f) => path.join(input, f))
      : [input],
  );
  const totals: Record<string, number> = {};
  for (const file of files) {
    const s = summarizeProfile(file, topCount);
    console.log(`\n${path.basename(file)}: ${(s.totalMs / 1000).toFixed(1)} s profiled, ${((s.idleMs / s.totalMs) * 100).toFixed(0)}% idle, GC ${s.gcMs.toFixed(0)} ms`);
    for (const entry of s.top) console.log(`  ${entry.percentOfBusy.toFixed(1).padStart(5)}%  ${entry.selfMs.toFixed(0).padStart(7)} ms  ${entry.name}`);
    for (const [category, valueMs] of Object.entries(s.categoriesMs)) totals[category] = (totals[category] ?? 0) + valueMs;
  }
  const commands = commandsIndex === -1 ? null : Number(args[commandsIndex + 1]);
  const allMs = Object.values(totals).reduce((sum, v) => sum + v, 0);
  console.log(`\nall profiles, self time by category${commands === null ? '' : `, per committed command (${commands.toLocaleString('en-US')} commands)`}:`);
  for (const [category, valueMs] of Object.entries(totals).sort((a, b) => b[1] - a[1])) {
    const perCommand = commands === null ? '' : `  ${((valueMs * 1000) / commands).toFixed(2).padStart(7)} us/command`;
    console.log(`  ${((valueMs / allMs) * 100).toFixed(1).padStart(5)}%  ${valueMs.toFixed(0).padStart(7)} ms${perCommand}  ${category}`);
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) main();
