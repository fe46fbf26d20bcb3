// A point-in-time sample of one benchmark process, taken at the start and the end of the
// measured window so the controller can compute rates from the difference.

import type { Node } from '../../dist/main/index.js';

export interface WalSample {
  batches: number;
  entries: number;
  bytes: number;
  fsyncs: number;
}

export interface PeerTraffic {
  sentBytes: number;
  sentMessages: number;
}

export interface ProcessSample {
  /** Wall clock in milliseconds since the epoch, with sub-millisecond precision. */
  epochMs: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Peak resident set size of the process so far (`process.resourceUsage().maxRSS`), in KiB. */
  maxRssKb: number;
  rssBytes: number;
  /** Summed over the node's systems; absent for a process without a rana system. */
  wal: WalSample | null;
  /** Bytes and messages sent to each peer node, by node id. */
  peers: Record<string, PeerTraffic>;
}

export function epochNowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sampleProcess(node: Node | null, walOf: () => WalSample | null): ProcessSample {
  const cpu = process.cpuUsage();
  const peers: Record<string, PeerTraffic> = {};
  if (node !== null) {
    for (const [id, stats] of Object.entries(node.transport.stats())) {
      peers[id] = { sentBytes: stats.sentBytes, sentMessages: stats.sentMessages };
    }
  }
  return {
    epochMs: epochNowMs(),
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    maxRssKb: process.resourceUsage().maxRSS,
    rssBytes: process.memoryUsage.rss(),
    wal: walOf(),
    peers,
  };
}
