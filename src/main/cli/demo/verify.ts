import type { LocalCluster } from './cluster.js';
import type { KvHttpClient } from './kv-http.js';
import type { Violation, WriteHistory } from './history.js';
import { keyName } from './workload.js';

export interface CheckResult {
  keysChecked: number;
  /** Keys whose final read did not succeed within `readAttemptsMax` attempts. They count as failures. */
  unreadable: string[];
  violations: Violation[];
  passed: boolean;
}

/** Attempts per key of the final read before the key is reported unreadable. */
const readAttemptsMax = 20;
const readRetryDelayMs = 100;
/** Final reads in flight at once. */
const readConcurrency = 16;

/**
 * Reads every key once through the linearizable `GET /kv/:key` of a running node and checks
 * the value against the write history.
 */
export async function checkFinalValues(
  cluster: LocalCluster,
  client: KvHttpClient,
  history: WriteHistory,
  keyCount: number,
): Promise<CheckResult> {
  const result: CheckResult = { keysChecked: 0, unreadable: [], violations: [], passed: false };
  let next = 0;

  const reader = async (): Promise<void> => {
    while (next < keyCount) {
      const key = keyName(next++);
      const finalValue = await readKey(cluster, client, key);
      if (finalValue === undefined) {
        result.unreadable.push(key);
        continue;
      }
      result.keysChecked++;
      const violation = history.check(key, finalValue);
      if (violation !== null) {
        result.violations.push(violation);
      }
    }
  };
  await Promise.all(Array.from({ length: readConcurrency }, reader));

  result.passed = result.unreadable.length === 0 && result.violations.length === 0 && result.keysChecked === keyCount;
  return result;
}

/** Reads the key's value: null when missing, undefined when no node returned 200 or 404 within the attempts. */
async function readKey(cluster: LocalCluster, client: KvHttpClient, key: string): Promise<string | null | undefined> {
  for (let attempt = 0; attempt < readAttemptsMax; attempt++) {
    const node = cluster.nodes[attempt % cluster.nodes.length];
    if (cluster.isAlive(node)) {
      const outcome = await client.get(node.http, key);
      if (outcome.kind === 'response' && outcome.status === 200) {
        return outcome.body;
      }
      if (outcome.kind === 'response' && outcome.status === 404) {
        return null;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, readRetryDelayMs));
  }
  return undefined;
}
