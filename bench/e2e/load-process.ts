// The load generator of an end-to-end benchmark, run as a child process: a rana Node that
// hosts no members and calls `processCommand` on the cluster nodes, the way an application
// process that only talks to rana would. A call goes to the member this process last saw
// leading the group. A member that is not the leader rejects the call with a leader hint,
// which `processCommand` follows.

import { pack } from 'msgpackr';
import * as hdr from 'hdr-histogram-js';
import { Node, createLogger, type KvCommand } from '../../dist/main/index.js';
import { serveIpc } from './ipc.js';
import { epochNowMs, sampleProcess, type ProcessSample } from './sample.js';

export interface LoadStartArgs {
  id: string;
  listen: string;
  peers: Record<string, string>;
}

export interface LoadRunArgs {
  groups: string[];
  /** Cluster node ids, in the order first calls are spread over them. */
  nodes: string[];
  clientsPerGroup: number;
  /** Commands each client keeps in flight. */
  inflightPerClient: number;
  /** Size of one msgpack-encoded KV put command. */
  payloadBytes: number;
  timeoutMs: number;
}

export interface LatencySummary {
  count: number;
  meanUs: number;
  maxUs: number;
  /** Latency at each percentile of LATENCY_PERCENTILES, in microseconds. */
  percentilesUs: Record<string, number>;
}

export interface LoadCollectResult {
  committed: number;
  /** Commands committed since the load started, warm-up included: the divisor for a CPU profile of the whole run. */
  committedSinceStart: number;
  errors: Record<string, number>;
  latency: LatencySummary;
  sample: ProcessSample;
  /** Per group, the first commit that completed after the watch time (epoch ms); absent when none did. */
  firstCommitAfterWatchMs: Record<string, number>;
}

export const LATENCY_PERCENTILES = [50, 75, 90, 95, 99, 99.9, 99.99, 100];

/** Latencies above this are clamped; the command timeout is far below it. */
const LATENCY_US_MAX = 120_000_000;
/** Pause after a failed call, so a cluster with no leader is not hammered in a tight loop. */
const ERROR_PAUSE_MS = 5;

let node: Node | null = null;
let running = false;
let activeSlots = 0;
let committed = 0;
let committedSinceStart = 0;
let errors: Record<string, number> = {};
const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3, autoResize: false });
let watchSinceMs = Infinity;
let firstCommitAfterWatchMs: Record<string, number> = {};
let slotsDone: (() => void) | null = null;

async function start(args: LoadStartArgs): Promise<null> {
  node = await Node.start({ id: args.id, listen: args.listen, peers: args.peers, logger: createLogger({}) });
  return null;
}

async function waitForPeers(peers: string[]): Promise<null> {
  const current = requireNode();
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (!peers.every((peer) => current.transport.isUp(peer))) return;
      current.transport.off('peer_up', check);
      resolve();
    };
    current.transport.on('peer_up', check);
    check();
  });
  return null;
}

/** Builds a KV put whose msgpack encoding is exactly `payloadBytes` long (or as close as the key allows). */
export function sizedCommand(key: string, payloadBytes: number): KvCommand {
  const command = { op: 'put' as const, key, value: '' };
  const overhead = pack(command).length;
  let valueLength = Math.max(0, payloadBytes - overhead);
  command.value = 'x'.repeat(valueLength);
  // A longer string needs a longer msgpack length header; shrink until the total fits.
  while (valueLength > 0 && pack(command).length > payloadBytes) {
    valueLength--;
    command.value = 'x'.repeat(valueLength);
  }
  return command;
}

function run(args: LoadRunArgs): null {
  const current = requireNode();
  if (running) throw new Error('load is already running; send stopLoad first');
  running = true;
  const targets = new Map<string, string>();
  args.groups.forEach((group, i) => targets.set(group, args.nodes[i % args.nodes.length]));

  const nextUpNode = (after: string): string => {
    const start = args.nodes.indexOf(after);
    for (let step = 1; step <= args.nodes.length; step++) {
      const candidate = args.nodes[(start + step) % args.nodes.length];
      if (current.transport.isUp(candidate)) return candidate;
    }
    return after;
  };

  const slot = async (group: string, command: KvCommand): Promise<void> => {
    activeSlots++;
    try {
      while (running) {
        const target = targets.get(group)!;
        const startedMs = performance.now();
        try {
          const result = await current.processCommand({ name: group, node: target }, command, { timeoutMs: args.timeoutMs });
          const finishedMs = performance.now();
          committed++;
          committedSinceStart++;
          histogram.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round((finishedMs - startedMs) * 1000))));
          if (result.leader.node !== target) targets.set(group, result.leader.node);
          if (firstCommitAfterWatchMs[group] === undefined) {
            const finishedEpochMs = epochNowMs();
            if (finishedEpochMs >= watchSinceMs) firstCommitAfterWatchMs[group] = finishedEpochMs;
          }
        } catch (error) {
          const code = (error as { code?: string }).code ?? (error as Error).name ?? 'Error';
          errors[code] = (errors[code] ?? 0) + 1;
          // A down node cannot redirect: try the next live node, which forwards or parks the call.
          if (code === 'NODE_DOWN' || !current.transport.isUp(target)) targets.set(group, nextUpNode(target));
          await new Promise((resolve) => setTimeout(resolve, ERROR_PAUSE_MS));
        }
      }
    } finally {
      activeSlots--;
      if (activeSlots === 0) slotsDone?.();
    }
  };

  let slotNumber = 0;
  for (const group of args.groups) {
    for (let client = 0; client < args.clientsPerGroup; client++) {
      for (let i = 0; i < args.inflightPerClient; i++) {
        void slot(group, sizedCommand(`k${slotNumber++}`, args.payloadBytes));
      }
    }
  }
  return null;
}

function progress(): { committed: number; errors: number } {
  let errorCount = 0;
  for (const count of Object.values(errors)) errorCount += count;
  return { committed, errors: errorCount };
}

/** Starts the measured window: clears the counts and the histogram. */
function mark(): ProcessSample {
  committed = 0;
  errors = {};
  histogram.reset();
  return sampleProcess(node, () => null);
}

function watch(args: { sinceEpochMs: number }): null {
  watchSinceMs = args.sinceEpochMs;
  firstCommitAfterWatchMs = {};
  return null;
}

function collect(): LoadCollectResult {
  const sample = sampleProcess(node, () => null);
  const percentilesUs: Record<string, number> = {};
  for (const p of LATENCY_PERCENTILES) percentilesUs[String(p)] = histogram.getValueAtPercentile(p);
  return {
    committed,
    committedSinceStart,
    errors: { ...errors },
    latency: { count: histogram.totalCount, meanUs: histogram.mean, maxUs: histogram.maxValue, percentilesUs },
    sample,
    firstCommitAfterWatchMs: { ...firstCommitAfterWatchMs },
  };
}

/** Stops issuing commands and waits, at most `timeoutMs`, for the calls in flight to finish. */
async function stopLoad(args: { timeoutMs: number }): Promise<{ stillInFlight: number }> {
  running = false;
  if (activeSlots > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, args.timeoutMs);
      slotsDone = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  slotsDone = null;
  return { stillInFlight: activeSlots };
}

async function stop(): Promise<null> {
  running = false;
  await node?.stop();
  node = null;
  setTimeout(() => process.exit(0), 50);
  return null;
}

function requireNode(): Node {
  if (node === null) throw new Error('load generator not started; send start first');
  return node;
}

serveIpc({ start, waitForPeers, run, progress, mark, watch, collect, stopLoad, stop, sample: () => sampleProcess(node, () => null) });
