// Named scenarios with their default parameters. Any parameter can be overridden on the
// command line, for example `npm run bench -- many-groups --groups 500 --duration 30`.

import type { ScenarioParams } from './scenarios.js';

const base: ScenarioParams = {
  nodes: 3,
  groups: 1,
  active: 1,
  clientsPerGroup: 5,
  inflightPerClient: 500,
  payloadBytes: 100,
  warmupS: 3,
  durationS: 10,
  syncMethod: 'datasync',
  killAtS: null,
  timeoutMs: 10_000,
};

export const PRESETS: Record<string, { description: string; params: ScenarioParams }> = {
  'single-group': {
    description: '1 group, 5 clients each keeping 500 commands of 100 B in flight',
    params: base,
  },
  'many-groups': {
    description: '100 groups, one client per group keeping 10 commands in flight',
    params: { ...base, groups: 100, active: 100, clientsPerGroup: 1, inflightPerClient: 10 },
  },
  'many-groups-10k': {
    description: '10,000 hosted groups, 1,000 of them active, one client per active group keeping 10 in flight',
    params: { ...base, groups: 10_000, active: 1_000, clientsPerGroup: 1, inflightPerClient: 10, warmupS: 5 },
  },
  latency: {
    description: '1 group, 1 client, one command at a time',
    params: { ...base, clientsPerGroup: 1, inflightPerClient: 1 },
  },
  'closed-loop': {
    description: '1 group, 64 clients, each with one command at a time',
    params: { ...base, clientsPerGroup: 64, inflightPerClient: 1 },
  },
  'payload-1k': {
    description: 'as single-group with 1 KiB commands',
    params: { ...base, payloadBytes: 1024 },
  },
  idle: {
    description: '10,000 hosted groups, no load, 60 s',
    params: { ...base, groups: 10_000, active: 0, warmupS: 5, durationS: 60 },
  },
  failover: {
    description: '30 groups under load (1 client x 10 in flight each); SIGKILL the node leading the most groups 5 s into the window',
    params: { ...base, groups: 30, active: 30, clientsPerGroup: 1, inflightPerClient: 10, durationS: 15, killAtS: 5 },
  },
  'single-member': {
    description: 'baseline (c): single-group on one node, so each group has one member and no replication',
    params: { ...base, nodes: 1 },
  },
};

/** Scenarios and baselines that `npm run bench` runs with no names, in this order. */
export const DEFAULT_SET = [
  'disk-probe',
  'micro',
  'single-group',
  'raw-fdatasync',
  'naive-queue',
  'single-member',
  'many-groups',
  'many-groups-10k',
  'latency',
  'closed-loop',
  'payload-1k',
  'failover',
  'idle',
];
