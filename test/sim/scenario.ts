// One simulation run. Settings are drawn from a seed, and a workload of commands and reads
// runs under a random schedule of faults for `faultDurationMs`. Then all faults are repaired,
// and every group must elect a leader, commit a fresh command and converge within a bound.

import { LivenessViolation, SimCluster, type SimSettings, type SimStats } from './cluster.js';
import { Prng } from './prng.js';

/**
 * `default`: latency up to 80 ms and at most 10 % drops, which continue after the repair.
 * `harsh`: latency up to 1,500 ms (beyond the failure detector's 1,000 ms), 20 % drops and
 * 20 % duplicates. Raft cannot elect while messages take longer than the election timeout,
 * so the repair also calms the network.
 */
export type SimProfile = 'default' | 'harsh';

export interface RunOptions {
  /** Network behaviour; default `default`. */
  profile?: SimProfile;
  /** Virtual time with faults, before everything is repaired. */
  faultDurationMs?: number;
  /** Virtual time allowed after the repair for every group to elect, commit and converge. */
  convergeBoundMs?: number;
  /** Overrides of the settings the seed would pick. */
  overrides?: Partial<SimSettings>;
}

export interface RunResult {
  seed: number;
  settings: SimSettings;
  stats: SimStats;
  digest: number;
  /** Virtual time from the repair until the cluster converged. */
  convergeMs: number;
}

/** Draws the cluster shape, network and disk behaviour for a seed. */
export function settingsForSeed(seed: number): SimSettings {
  const prng = new Prng(seed).fork('settings');
  const delayMaxMs = prng.pick([2, 10, 30, 80]);
  return {
    seed,
    nodeCount: prng.chance(0.5) ? 3 : 5,
    groupCount: prng.between(2, 4),
    dropRate: prng.pick([0, 0, 0.01, 0.05, 0.1]),
    duplicateRate: prng.pick([0, 0.01, 0.05]),
    delayMinMs: 1,
    delayMaxMs,
    syncMinMs: 1,
    syncMaxMs: prng.pick([2, 10, 40]),
    tickMs: 10,
    heartbeatIntervalMs: 100,
    suspectAfterMs: 1000,
    reconnectIntervalMs: 100,
    preVote: prng.chance(0.8),
    electionTimeoutMinMs: 300,
    electionTimeoutMaxMs: 600,
  };
}

export function describeSettings(settings: SimSettings): string {
  return Object.entries(settings).map(([key, value]) => `${key}=${String(value)}`).join(' ');
}

/** Adds the seed, the settings and the last fault lines to an error, so the failure can be rerun. */
export class SimFailure extends Error {
  readonly code = 'SIM_FAILURE' as const;
  readonly seed: number;

  constructor(seed: number, settings: SimSettings, cause: Error, cluster: SimCluster | undefined, profile: SimProfile = 'default') {
    const where = cluster === undefined ? '' : `\nat ${cluster.nowMs} ms virtual time\n${cluster.describe()}\nlast faults:\n${cluster.trace.slice(-30).join('\n')}`;
    super(
      `simulation seed ${seed} (profile ${profile}) failed: ${cause.message}\nsettings: ${describeSettings(settings)}${where}\n` +
        `rerun: SIM_SEED=${seed} SIM_PROFILE=${profile} npx vitest run test/sim/sim.test.ts (or npm run test:sim -- --seed ${seed} --profile ${profile})`,
      { cause },
    );
    this.name = 'SimFailure';
    this.seed = seed;
  }
}

/** Runs one seed. Throws SimFailure on a safety or liveness violation. */
export function runSeed(seed: number, options: RunOptions = {}): RunResult {
  const harsh = options.profile === 'harsh';
  const settings = { ...settingsForSeed(seed), ...(harsh ? HARSH_NETWORK : {}), ...options.overrides };
  const faultDurationMs = options.faultDurationMs ?? 10_000;
  const convergeBoundMs = options.convergeBoundMs ?? 20_000;
  let cluster: SimCluster | undefined;
  try {
    cluster = new SimCluster(settings);
    const convergeMs = drive(cluster, seed, faultDurationMs, convergeBoundMs, harsh);
    return { seed, settings, stats: cluster.stats, digest: cluster.digest, convergeMs };
  } catch (error) {
    throw new SimFailure(seed, settings, error as Error, cluster, options.profile);
  }
}

const HARSH_NETWORK: Partial<SimSettings> = { delayMaxMs: 1_500, dropRate: 0.2, duplicateRate: 0.2 };

function drive(cluster: SimCluster, seed: number, faultDurationMs: number, convergeBoundMs: number, calmAtRepair: boolean): number {
  const root = new Prng(seed);
  const faultPrng = root.fork('faults');
  const workloadPrng = root.fork('workload');
  const { nodeCount, groupCount } = cluster.settings;
  let faultsActive = true;

  // Workload: commands and reads on every group until the repair.
  const commandGapMs = workloadPrng.pick([20, 50, 150]);
  for (let group = 0; group < groupCount; group++) {
    const loop = (): void => {
      if (!faultsActive) return;
      if (workloadPrng.chance(0.8)) cluster.submitCommand(group, workloadPrng);
      else cluster.submitRead(group, workloadPrng);
      cluster.at(cluster.nowMs + workloadPrng.between(1, commandGapMs * 2), loop);
    };
    cluster.at(workloadPrng.int(commandGapMs), loop);
  }

  // Faults: one action every few hundred milliseconds.
  const nodes = Array.from({ length: nodeCount }, (_, i) => i);
  const faultLoop = (): void => {
    if (!faultsActive) return;
    injectFault(cluster, faultPrng, nodes);
    cluster.at(cluster.nowMs + faultPrng.between(100, 1500), faultLoop);
  };
  cluster.at(faultPrng.between(200, 1000), faultLoop);

  cluster.runUntil(faultDurationMs);

  // Repair: heal the network, resume and restart every node.
  faultsActive = false;
  cluster.heal();
  if (calmAtRepair) cluster.calmNetwork();
  for (const i of nodes) cluster.resume(i);
  for (const i of nodes) cluster.restart(i);
  const repairedMs = cluster.nowMs;

  // Every group must commit a fresh command; resubmit until one is acknowledged.
  const acknowledged = new Array<boolean>(groupCount).fill(false);
  for (let group = 0; group < groupCount; group++) {
    const probe = (): void => {
      if (acknowledged[group]) return;
      cluster.submitCommand(group, workloadPrng, () => {
        acknowledged[group] = true;
      });
      cluster.at(cluster.nowMs + 300, probe);
    };
    cluster.at(cluster.nowMs + 1, probe);
  }
  const done = cluster.runUntil(repairedMs + convergeBoundMs, () => acknowledged.every(Boolean) && cluster.converged());
  if (!done) {
    const missing = acknowledged.flatMap((ok, group) => (ok ? [] : [group]));
    throw new LivenessViolation(
      `the cluster did not converge within ${convergeBoundMs} ms of virtual time after the faults stopped` +
        (missing.length > 0 ? `; groups without a committed probe command: ${missing.join(', ')}` : '; every probe committed but the members differ'),
    );
  }
  return cluster.nowMs - repairedMs;
}

/** Injects one fault, or none (15 %), which lets the cluster run undisturbed for a while. */
function injectFault(cluster: SimCluster, prng: Prng, nodes: number[]): void {
  const roll = prng.next();
  if (roll < 0.35) {
    partition(cluster, prng, nodes);
  } else if (roll < 0.5) {
    cluster.heal();
  } else if (roll < 0.7) {
    const victim = prng.pick(nodes);
    cluster.crash(victim, prng.chance(0.2) ? 'fsync_error' : 'crash');
    cluster.at(cluster.nowMs + prng.between(100, 3000), () => cluster.restart(victim));
  } else if (roll < 0.85) {
    const victim = prng.pick(nodes);
    cluster.pause(victim);
    cluster.at(cluster.nowMs + prng.between(100, 3000), () => cluster.resume(victim));
  }
}

/** Replaces the current partition with a new one of a random shape. */
function partition(cluster: SimCluster, prng: Prng, nodes: number[]): void {
  const n = nodes.length;
  const shuffled = [...nodes];
  for (let i = n - 1; i > 0; i--) {
    const j = prng.int(i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  const links: [number, number][] = [];
  const cutBoth = (a: number, b: number): void => {
    links.push([a, b], [b, a]);
  };
  const shape = prng.pick(n === 5 ? (['isolate', 'split', 'ring', 'one_way', 'bridge'] as const) : (['isolate', 'split', 'one_way', 'bridge'] as const));
  switch (shape) {
    case 'isolate': {
      const victim = shuffled[0];
      for (const other of nodes) if (other !== victim) cutBoth(victim, other);
      break;
    }
    case 'split': {
      const left = new Set(shuffled.slice(0, prng.between(1, Math.floor(n / 2))));
      for (const a of left) for (const b of nodes) if (!left.has(b)) cutBoth(a, b);
      break;
    }
    case 'ring': {
      // Each node reaches only its two ring neighbours: every node reaches a majority, no two the same one.
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const distance = Math.min(j - i, n - (j - i));
          if (distance > 1) cutBoth(shuffled[i], shuffled[j]);
        }
      }
      break;
    }
    case 'one_way': {
      // Either one directed link, or everything into one node.
      if (prng.chance(0.5)) links.push([shuffled[0], shuffled[1]]);
      else for (const other of nodes) if (other !== shuffled[0]) links.push([other, shuffled[0]]);
      break;
    }
    case 'bridge': {
      // Two sides that cannot reach each other, except through one bridge node (shuffled[0]) that reaches all.
      const rest = shuffled.slice(1);
      const left = new Set(rest.slice(0, Math.floor(rest.length / 2)));
      for (const a of rest) for (const b of rest) if (a < b && left.has(a) !== left.has(b)) cutBoth(a, b);
      break;
    }
  }
  cluster.setBlocked(links, shape);
}
