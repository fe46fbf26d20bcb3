// One chaos run against real `rana kv` processes. Register and set workloads run over HTTP
// while a nemesis kills, pauses, partitions and delays nodes. Then every fault is repaired,
// the register history is checked for linearizability, and every acknowledged set element
// must still be present.

import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { cliFilePath } from '../../src/shared/worker-path.js';
import { Prng } from '../sim/prng.js';
import { checkLinearizable, describeCounterexample, type CheckVerdict, type HistoryOperation } from '../support/linearizability.js';
import { ChaosCluster } from './cluster.js';

export interface ChaosProfile {
  nodes: number;
  groups: number;
  /** How long the nemesis injects faults. */
  faultDurationMs: number;
  /** Concurrent clients of the register workload, and of the set workload. */
  registerClients: number;
  setClients: number;
  registerKeys: number;
  /** Seed of the nemesis and workload choices. Timing is real, so a seed does not replay a run exactly. */
  seed: number;
  /** Client-side timeout of one HTTP request; the outcome is unknown past it. */
  requestTimeoutMs: number;
  /** Time allowed for every group to elect a leader after the faults stop. */
  recoveryBoundMs: number;
  /** Wall-clock budget of the linearizability search per key. */
  checkBudgetMsPerKey: number;
}

export interface ChaosReport {
  profile: ChaosProfile;
  operations: number;
  operationsOk: number;
  operationsUnknown: number;
  verdict: CheckVerdict;
  /** Counterexamples of invalid keys, for the failure message. */
  details: string[];
  setAcknowledged: number;
  setMissing: string[];
  faults: Record<string, number>;
  recoveryMs: number;
}

export const SHORT_PROFILE_3: Omit<ChaosProfile, 'seed'> = {
  nodes: 3, groups: 3, faultDurationMs: 25_000, registerClients: 6, setClients: 2, registerKeys: 4,
  requestTimeoutMs: 3_000, recoveryBoundMs: 30_000, checkBudgetMsPerKey: 10_000,
};

export const SHORT_PROFILE_5: Omit<ChaosProfile, 'seed'> = { ...SHORT_PROFILE_3, nodes: 5, registerClients: 8 };

export async function runChaos(profile: ChaosProfile, log: (line: string) => void = () => {}): Promise<ChaosReport> {
  const startMs = performance.now();
  const cluster = await ChaosCluster.start({ nodes: profile.nodes, groups: profile.groups, timeoutMs: 2_000 });
  let keepData = false;
  try {
    await cluster.waitForLeaders(30_000);
    log(`chaos run: ${profile.nodes} nodes up in ${Math.round(performance.now() - startMs)} ms, seed ${profile.seed}, data in ${cluster.root}`);
    const report = await exercise(cluster, profile, log);
    keepData = report.verdict === 'invalid' || report.setMissing.length > 0;
    return report;
  } catch (error) {
    keepData = true;
    throw new Error(`chaos run with seed ${profile.seed} failed: ${(error as Error).message}\ndata and logs kept in ${cluster.root}`, { cause: error });
  } finally {
    await cluster.stop(keepData);
  }
}

async function exercise(cluster: ChaosCluster, profile: ChaosProfile, log: (line: string) => void): Promise<ChaosReport> {
  const root = new Prng(profile.seed);
  const nemesisPrng = root.fork('nemesis');
  const history: HistoryOperation[] = [];
  const setAcknowledged: string[] = [];
  const faults: Record<string, number> = {};
  let running = true;
  let nextId = 1;
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;

  const request = async (method: 'GET' | 'PUT', key: string, body?: URLSearchParams): Promise<{ status: number; text: string } | null> => {
    const nodes = cluster.running();
    if (nodes.length === 0) return null;
    const node = nodes[Math.floor(Math.random() * nodes.length)];
    try {
      const response = await fetch(`http://127.0.0.1:${node.httpPort}/kv/${encodeURIComponent(key)}`, {
        method, body, signal: AbortSignal.timeout(profile.requestTimeoutMs),
      });
      return { status: response.status, text: await response.text() };
    } catch {
      return null;
    }
  };

  // Register workload: read, write and compare-and-set on a few keys, every written value unique.
  const registerClient = async (client: number): Promise<void> => {
    const prng = root.fork(`register:${client}`);
    const lastSeen = new Map<string, string | null>();
    while (running) {
      const key = `r${prng.int(profile.registerKeys)}`;
      const id = nextId++;
      const roll = prng.next();
      const callMs = now();
      if (roll < 0.4) {
        const result = await request('GET', key);
        if (result?.status === 200 || result?.status === 404) {
          const value = result.status === 200 ? result.text : null;
          lastSeen.set(key, value);
          history.push({ id, key, client, input: { type: 'read' }, callMs, returnMs: now(), status: 'ok', output: value });
        }
        // A failed read has no effect and constrains nothing, so it is left out.
      } else if (roll < 0.75) {
        const value = `v${id}`;
        const result = await request('PUT', key, new URLSearchParams({ value }));
        const ok = result?.status === 204;
        history.push({ id, key, client, input: { type: 'write', value }, callMs, returnMs: now(), status: ok ? 'ok' : 'unknown' });
        if (ok) lastSeen.set(key, value);
      } else {
        const value = `v${id}`;
        const expected = lastSeen.get(key) ?? null;
        const body = new URLSearchParams({ value });
        if (expected === null) body.set('expectedMissing', '1');
        else body.set('expected', expected);
        const result = await request('PUT', key, body);
        const status = result?.status === 204 || result?.status === 409 ? 'ok' : 'unknown';
        history.push({
          id, key, client, input: { type: 'cas', expected, value }, callMs, returnMs: now(), status, output: result?.status === 204,
        });
        if (result?.status === 204) lastSeen.set(key, value);
        else if (result?.status === 409) lastSeen.set(key, result.text === '' && expected !== null ? null : result.text);
      }
    }
  };

  // Set workload: each element is its own key, so adds spread over every group.
  const setClient = async (client: number): Promise<void> => {
    let n = 0;
    while (running) {
      const element = `s${client}-${n++}`;
      const result = await request('PUT', element, new URLSearchParams({ value: element }));
      if (result?.status === 204) setAcknowledged.push(element);
    }
  };

  const count = (kind: string): void => {
    faults[kind] = (faults[kind] ?? 0) + 1;
  };
  const ids = cluster.nodes.map((n) => n.id);
  const processFaultsMax = Math.floor((profile.nodes - 1) / 2);
  const processFaults = new Set<string>();
  const pending: Promise<void>[] = [];
  const storagePoints = storageFaultPoints();

  const nemesis = async (): Promise<void> => {
    const endMs = now() + profile.faultDurationMs;
    while (now() < endMs) {
      await sleep(nemesisPrng.between(500, 2_500));
      const roll = nemesisPrng.next();
      const candidates = ids.filter((id) => !processFaults.has(id));
      if (roll < 0.25 && processFaults.size < processFaultsMax) {
        const victim = nemesisPrng.pick(candidates);
        processFaults.add(victim);
        count('kill');
        await cluster.kill(victim);
        const downMs = nemesisPrng.between(500, 4_000);
        pending.push(sleep(downMs).then(() => {
          cluster.startNode(victim);
          processFaults.delete(victim);
        }));
      } else if (roll < 0.3 && storagePoints.length > 0 && processFaults.size < processFaultsMax) {
        // Restart a node with a storage fault armed: at the nth time the WAL reaches the point,
        // the process kills itself (RANA_CRASH_AT) or the call fails with EIO (RANA_FAIL_AT).
        const victim = nemesisPrng.pick(candidates);
        processFaults.add(victim);
        const variable = nemesisPrng.chance(0.5) ? 'RANA_CRASH_AT' : 'RANA_FAIL_AT';
        const setting = `${nemesisPrng.pick(storagePoints)}:${nemesisPrng.between(1, 100)}`;
        count(variable === 'RANA_CRASH_AT' ? 'storage_crash' : 'storage_fail');
        await cluster.kill(victim);
        cluster.node(victim).env = { [variable]: setting };
        cluster.startNode(victim);
        const armedMs = nemesisPrng.between(1_000, 4_000);
        pending.push(sleep(armedMs).then(async () => {
          await cluster.kill(victim);
          cluster.node(victim).env = {};
          cluster.startNode(victim);
          processFaults.delete(victim);
        }));
      } else if (roll < 0.4 && processFaults.size < processFaultsMax) {
        const victim = nemesisPrng.pick(candidates);
        processFaults.add(victim);
        count('pause');
        cluster.pause(victim);
        const pausedMs = nemesisPrng.between(500, 4_000);
        pending.push(sleep(pausedMs).then(() => {
          cluster.resume(victim);
          processFaults.delete(victim);
        }));
      } else if (roll < 0.8) {
        cluster.heal();
        count(partition(cluster, nemesisPrng, ids));
      } else {
        cluster.heal();
        count('heal');
      }
    }
  };

  const clients = [
    ...Array.from({ length: profile.registerClients }, (_, i) => registerClient(i)),
    ...Array.from({ length: profile.setClients }, (_, i) => setClient(profile.registerClients + i)),
  ];
  await nemesis();

  // Repair: heal the links, resume and restart every node, then wait for leaders.
  cluster.heal();
  await Promise.all(pending);
  for (const node of cluster.nodes) {
    cluster.resume(node.id);
    if (node.process === null) cluster.startNode(node.id);
  }
  const repairMs = now();
  await cluster.waitForLeaders(profile.recoveryBoundMs);
  const recoveryMs = now() - repairMs;
  // Some more load on the healed cluster, then stop the clients.
  await sleep(2_000);
  running = false;
  await Promise.all(clients);

  // Final reads: one per register key, and every acknowledged set element.
  for (let k = 0; k < profile.registerKeys; k++) {
    const key = `r${k}`;
    const result = await retry(() => request('GET', key), (r) => r?.status === 200 || r?.status === 404);
    if (result !== null) {
      history.push({
        id: nextId++, key, client: -1, input: { type: 'read' }, callMs: now(), returnMs: now(), status: 'ok',
        output: result.status === 200 ? result.text : null,
      });
    }
  }
  const setMissing: string[] = [];
  const readsStartMs = now();
  for (let i = 0; i < setAcknowledged.length; i += FINAL_READS_PARALLEL) {
    await Promise.all(setAcknowledged.slice(i, i + FINAL_READS_PARALLEL).map(async (element) => {
      const result = await retry(() => request('GET', element), (r) => r?.status === 200 || r?.status === 404);
      if (result === null || result.status !== 200 || result.text !== element) setMissing.push(element);
    }));
  }
  const checkStartMs = now();
  const check = checkLinearizable(history, { budgetMsPerKey: profile.checkBudgetMsPerKey });
  log(`chaos phases: recovery ${Math.round(recoveryMs)} ms, clients stopped at ${Math.round(readsStartMs)} ms, ` +
    `final reads ${Math.round(checkStartMs - readsStartMs)} ms, linearizability check ${Math.round(now() - checkStartMs)} ms`);
  const report: ChaosReport = {
    profile,
    operations: history.length,
    operationsOk: history.filter((o) => o.status === 'ok').length,
    operationsUnknown: history.filter((o) => o.status === 'unknown').length,
    verdict: check.verdict,
    details: check.keys.filter((k) => k.verdict !== 'valid').map(describeCounterexample),
    setAcknowledged: setAcknowledged.length,
    setMissing,
    faults,
    recoveryMs: Math.round(recoveryMs),
  };
  log(`chaos report: ${JSON.stringify({ ...report, details: report.details.length })}`);
  return report;
}

/**
 * Returns the storage fault points that the built WAL worker checks, or none when the
 * fault-point layer is not built (the nodes run dist/, so that is what counts).
 */
function storageFaultPoints(): string[] {
  const distDir = path.resolve(path.dirname(cliFilePath()), '..', '..');
  const layer = path.join(distDir, 'shared', 'file-system.js');
  const walWorker = path.join(distDir, 'workers', 'wal.js');
  if (!fs.existsSync(layer) || !fs.existsSync(walWorker)) return [];
  const workerText = fs.readFileSync(walWorker, 'utf8');
  return ['wal-mid-batch', 'wal-before-rename', 'wal-after-rename'].filter((point) => workerText.includes(`faultPoint('${point}')`));
}

/** Final reads of set elements in flight at once. */
const FINAL_READS_PARALLEL = 32;

/** Cuts links in a random shape: isolate one node, one-way, a clean split, a bridge, a majorities ring, or delays. */
function partition(cluster: ChaosCluster, prng: Prng, ids: string[]): string {
  const shuffled = [...ids];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = prng.int(i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  const shapes = ids.length === 5 ? ['isolate', 'one_way', 'split', 'bridge', 'ring', 'delay'] : ['isolate', 'one_way', 'bridge', 'delay'];
  const shape = prng.pick(shapes);
  switch (shape) {
    case 'isolate':
      for (const other of ids) if (other !== shuffled[0]) cluster.cut(shuffled[0], other);
      break;
    case 'one_way':
      if (prng.chance(0.5)) cluster.cutOneWay(shuffled[0], shuffled[1]);
      else for (const other of ids) if (other !== shuffled[0]) cluster.cutOneWay(other, shuffled[0]);
      break;
    case 'split': {
      const left = shuffled.slice(0, 2);
      for (const a of left) for (const b of shuffled.slice(2)) cluster.cut(a, b);
      break;
    }
    case 'bridge': {
      // shuffled[0] reaches everyone; the others form two sides that cannot reach each other.
      const rest = shuffled.slice(1);
      const half = Math.floor(rest.length / 2);
      for (const a of rest.slice(0, half)) for (const b of rest.slice(half)) cluster.cut(a, b);
      break;
    }
    case 'ring':
      for (let i = 0; i < shuffled.length; i++) {
        for (let j = i + 1; j < shuffled.length; j++) {
          const distance = Math.min(j - i, shuffled.length - (j - i));
          if (distance > 1) cluster.cut(shuffled[i], shuffled[j]);
        }
      }
      break;
    case 'delay': {
      const delayMs = prng.between(20, 300);
      cluster.delay(shuffled[0], shuffled[1], delayMs);
      cluster.delay(shuffled[1], shuffled[0], delayMs);
      break;
    }
  }
  return shape;
}

async function retry<T>(attempt: () => Promise<T>, done: (value: T) => boolean, attempts = 20): Promise<T | null> {
  for (let i = 0; i < attempts; i++) {
    const value = await attempt();
    if (done(value)) return value;
    await sleep(250);
  }
  return null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
