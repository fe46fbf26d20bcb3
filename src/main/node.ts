// A node: one Node.js process with an id, a TCP transport shared by every group, the systems
// it runs, and the scheduler tick that all of its servers share.

import { InvalidConfigError, NodeDownError, NotLeaderError, OverloadedError, RanaError, StoppedError, TimeoutError, type RanaErrorCode, type ServerRef } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import type { MachineRef } from './machine.js';
import type { Member, RaftMessage } from './raft/types.js';
import type { RaftServer, ServerStatus } from './server.js';
import { System, validateName, type StartClusterResult, type SystemOptions } from './system.js';
import { Transport } from './transport/transport.js';

export interface NodeOptions {
  id: string;
  /** `host:port` to listen on for other nodes. Port 0 picks a free port (see `address`). */
  listen: string;
  /** Other nodes by id, as `host:port`. */
  peers?: Record<string, string>;
  logger?: Logger;
  /** Period of the shared scheduler tick; drives election timeouts, resends and call deadlines. */
  tickIntervalMs?: number;
  /** Default timeout of processCommand and queries. */
  defaultTimeoutMs?: number;
}

export interface CallOptions {
  timeoutMs?: number;
}

export interface CommandResult<Reply = unknown> {
  reply: Reply;
  leader: ServerRef;
}

/** Messages between nodes. Raft messages go to the named cluster's member on the receiving node. */
type NodeMessage =
  | { t: 'raft'; c: string; m: RaftMessage }
  | { t: 'req'; id: number; op: 'command'; name: string; command: unknown; timeoutMs: number }
  | { t: 'req'; id: number; op: 'query'; name: string; query: string; args: unknown; timeoutMs: number }
  | { t: 'req'; id: number; op: 'start_server'; system: string; name: string; machine: MachineRef; members: Member[] }
  | { t: 'res'; id: number; ok: true; value: unknown }
  | { t: 'res'; id: number; ok: false; error: { code: RanaErrorCode | 'INTERNAL'; message: string; leader?: ServerRef | null } };

type RemoteRequest = Extract<NodeMessage, { t: 'req' }>;
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

/** How many times one call follows a leader hint before giving up, so a flapping leadership cannot loop forever. */
const REDIRECTS_MAX = 8;

/** Bound on requests this node waits on from other nodes; more fail at once with OverloadedError. */
const REMOTE_CALLS_MAX = 100_000;

export class Node {
  readonly id: string;

  #transport: Transport;
  #log: Logger;
  #systems = new Map<string, System>();
  #ticking = new Set<RaftServer>();
  #tickTimer: NodeJS.Timeout;
  #defaultTimeoutMs: number;
  #nextRequestId = 1;
  #remoteCalls = new Map<number, { node: string; resolve(value: unknown): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  #stopped = false;

  private constructor(options: NodeOptions, transport: Transport, logger: Logger) {
    this.id = options.id;
    this.#transport = transport;
    this.#log = logger;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 5_000;

    transport.on('message', (from: string, message: unknown) => this.#receive(from, message as NodeMessage));
    transport.on('peer_up', (peer: string) => this.#peerStatus(peer, true));
    transport.on('peer_down', (peer: string) => this.#peerStatus(peer, false));

    const tickIntervalMs = options.tickIntervalMs ?? 50;
    this.#tickTimer = setInterval(() => this.#tick(), tickIntervalMs);
    this.#tickTimer.unref();
  }

  static async start(options: NodeOptions): Promise<Node> {
    validateName('node', options.id);
    const logger = (options.logger ?? silentLogger()).child({ node: options.id });
    const peers: Record<string, { host: string; port: number }> = {};
    for (const [id, address] of Object.entries(options.peers ?? {})) {
      validateName('node', id);
      if (id === options.id) throw new InvalidConfigError(`peers must not include this node's own id ${id}`);
      peers[id] = parseAddress(address, `peer ${id}`);
    }
    // The transport adds the node id to its own log lines, so it gets the logger without it.
    const transport = new Transport({ nodeId: options.id, listen: parseAddress(options.listen, 'listen'), peers, logger: options.logger ?? silentLogger() });
    await transport.start();
    const node = new Node(options, transport, logger);
    logger.info({ listen: transport.address(), peers: Object.keys(peers) }, 'node started');
    return node;
  }

  /** Returns the address the transport listens on, with the actual port when port 0 was requested. */
  address(): { host: string; port: number } {
    return this.#transport.address();
  }

  get logger(): Logger {
    return this.#log;
  }

  get transport(): Transport {
    return this.#transport;
  }

  async startSystem(options: SystemOptions): Promise<System> {
    if (this.#systems.has(options.name)) {
      throw new InvalidConfigError(`system ${options.name} is already running on node ${this.id}`);
    }
    const system = await System.start(options, {
      nodeId: this.id,
      logger: this.#log,
      send: (toNode, cluster, message) => this.#transport.send(toNode, { t: 'raft', c: cluster, m: message } satisfies NodeMessage),
      setTicking: (server, ticking) => {
        if (ticking) this.#ticking.add(server);
        else this.#ticking.delete(server);
      },
      nowMs: () => performance.now(),
      random: Math.random,
      startCluster: (systemName, name, machine, servers) => this.startCluster(systemName, name, machine, servers),
    });
    this.#systems.set(options.name, system);
    return system;
  }

  system(name = 'default'): System | undefined {
    return this.#systems.get(name);
  }

  /**
   * Starts a cluster: the member on every listed node, through the node that hosts it. Every
   * member must be named `name`; rana keeps one member of a group per node.
   */
  async startCluster(system: string, name: string, machine: MachineRef, servers: ServerRef[]): Promise<StartClusterResult> {
    validateName('cluster', name);
    for (const server of servers) {
      if (server.name !== name) {
        throw new InvalidConfigError(`member ${server.name}@${server.node} of cluster ${name} must be named ${name}`);
      }
    }
    const nodes = servers.map((s) => s.node);
    if (new Set(nodes).size !== nodes.length) {
      throw new InvalidConfigError(`cluster ${name} lists a node twice (${nodes.join(',')}); place one member per node`);
    }
    const members: Member[] = nodes.map((id) => ({ id, membership: 'voter' }));
    const results = await Promise.allSettled(
      servers.map((server) =>
        server.node === this.id
          ? this.#startLocal(system, name, machine, members)
          : this.#request(server.node, { op: 'start_server', system, name, machine, members }, this.#defaultTimeoutMs),
      ),
    );
    const started: ServerRef[] = [];
    const notStarted: { server: ServerRef; error: Error }[] = [];
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') started.push(servers[i]);
      else notStarted.push({ server: servers[i], error: result.reason as Error });
    });
    return { started, notStarted };
  }

  /**
   * Proposes a command through `server`, following leader hints, and resolves once the leader
   * has applied it. A TimeoutError means the outcome is unknown.
   */
  async processCommand<Reply = unknown>(server: ServerRef, command: unknown, options: CallOptions = {}): Promise<CommandResult<Reply>> {
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    return this.#followLeader(server, timeoutMs, false, async (target, remainingMs) => {
      const reply = target.node === this.id
        ? await this.#localServer(target.name).command(command, remainingMs)
        : await this.#request(target.node, { op: 'command', name: target.name, command, timeoutMs: remainingMs }, remainingMs);
      return { reply: reply as Reply, leader: target };
    });
  }

  /** Runs the machine's named query on the leader after a quorum round: a linearizable read. */
  async consistentQuery<T = unknown>(server: ServerRef, query: string, args?: unknown, options: CallOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    return this.#followLeader(server, timeoutMs, true, async (target, remainingMs) => {
      const value = target.node === this.id
        ? await this.#localServer(target.name).consistentQuery(query, args, remainingMs)
        : await this.#request(target.node, { op: 'query', name: target.name, query, args, timeoutMs: remainingMs }, remainingMs);
      return value as T;
    });
  }

  /** Runs `fn` on the local member's state without a consensus round: fast, possibly stale. */
  localQuery<T>(server: ServerRef, fn: (state: unknown) => T): T {
    this.#checkLocal(server);
    return this.#localServer(server.name).localQuery(fn);
  }

  /** Returns the members of a group and its leader, as recorded by the local member. */
  members(server: ServerRef): { members: ServerRef[]; leader: ServerRef | null } {
    this.#checkLocal(server);
    const status = this.#localServer(server.name).status();
    return {
      members: status.members.map((m) => ({ name: server.name, node: m.id })),
      leader: status.leader === null ? null : { name: server.name, node: status.leader },
    };
  }

  /** Status of every local server, for `/status` and tests. */
  overview(): ServerStatus[] {
    const all: ServerStatus[] = [];
    for (const system of this.#systems.values()) {
      for (const server of system.servers()) all.push(server.status());
    }
    return all;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#tickTimer);
    for (const [id, call] of this.#remoteCalls) {
      clearTimeout(call.timer);
      call.reject(new RanaError('STOPPED', `node ${this.id} stopped while request ${id} was in flight; its outcome is unknown`));
    }
    this.#remoteCalls.clear();
    for (const system of this.#systems.values()) await system.close();
    await this.#transport.close();
    this.#log.info('node stopped');
  }

  // ---- routing ----

  /**
   * Calls `call` at `server`, then at each leader it names. When the named leader's node is
   * down, waits for the local member to learn of a new leader. A call that may have reached a
   * node that then went down is retried only when `idempotent`, because a command's outcome is
   * unknown then.
   */
  async #followLeader<T>(server: ServerRef, timeoutMs: number, idempotent: boolean, call: (target: ServerRef, remainingMs: number) => Promise<T>): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    let target = server;
    for (let redirect = 0; ; redirect++) {
      const remainingMs = Math.max(1, Math.round(deadline - performance.now()));
      try {
        return await call(target, remainingMs);
      } catch (error) {
        if (redirect >= REDIRECTS_MAX || performance.now() >= deadline) throw error;
        if (error instanceof NodeDownError && (!error.sent || idempotent)) {
          target = await this.#awaitNewLeader(server, error.node, deadline, timeoutMs, idempotent ? 'read' : 'command');
          continue;
        }
        if (!(error instanceof NotLeaderError) || error.leader === null) throw error;
        if (error.leader.node === target.node && error.leader.name === target.name) throw error;
        target = error.leader;
      }
    }
  }

  /** Waits until the local member of `server`'s group names a leader not on `downNode`. */
  async #awaitNewLeader(server: ServerRef, downNode: string, deadline: number, timeoutMs: number, kind: 'command' | 'read'): Promise<ServerRef> {
    const local = this.#findServer(server.name);
    if (!local) throw new NodeDownError(downNode, false);
    const leader = await local.waitForLeaderOtherThan(downNode, Math.max(1, deadline - performance.now()));
    if (leader === null) throw new TimeoutError(`call to ${server.name}@${server.node} while its leader's node ${downNode} is down`, timeoutMs, kind);
    return { name: server.name, node: leader };
  }

  #localServer(name: string): RaftServer {
    for (const system of this.#systems.values()) {
      const server = system.server(name);
      if (server) return server;
    }
    throw new RanaError('CLUSTER_NOT_FOUND', `no server ${name}@${this.id} is running; start it with startCluster or restartServer`);
  }

  #checkLocal(server: ServerRef): void {
    if (server.node !== this.id) {
      throw new InvalidConfigError(`${server.name}@${server.node} is not on this node ${this.id}; local calls need a local server`);
    }
  }

  async #startLocal(systemName: string, name: string, machine: MachineRef, members: Member[]): Promise<void> {
    const system = this.#systems.get(systemName);
    // StoppedError rather than InvalidConfigError: a peer that is still starting has no system
    // yet, and its caller may retry.
    if (!system) throw new StoppedError(`system ${systemName} is not running on node ${this.id}; start it with startSystem`);
    await system.startServer(name, machine.machine, members, machine.args);
  }

  #request(node: string, body: DistributiveOmit<RemoteRequest, 't' | 'id'>, timeoutMs: number): Promise<unknown> {
    if (this.#remoteCalls.size >= REMOTE_CALLS_MAX) {
      return Promise.reject(new OverloadedError(`node ${this.id} already waits on ${REMOTE_CALLS_MAX} requests to other nodes; retry later`));
    }
    if (!this.#transport.isUp(node)) return Promise.reject(new NodeDownError(node, false));
    const id = this.#nextRequestId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#remoteCalls.delete(id);
        reject(new TimeoutError(`${body.op} request to node ${node}`, timeoutMs, body.op === 'query' ? 'read' : 'command'));
      }, timeoutMs);
      this.#remoteCalls.set(id, { node, resolve, reject, timer });
      this.#transport.send(node, { t: 'req', id, ...body } as NodeMessage);
    });
  }

  #receive(from: string, message: NodeMessage): void {
    switch (message.t) {
      case 'raft': {
        const server = this.#findServer(message.c);
        // A message for a server not running here is dropped; Raft resends what matters.
        server?.receive(from, message.m);
        break;
      }
      case 'req':
        void this.#serve(from, message);
        break;
      case 'res': {
        const call = this.#remoteCalls.get(message.id);
        if (!call) return;
        this.#remoteCalls.delete(message.id);
        clearTimeout(call.timer);
        if (message.ok) call.resolve(message.value);
        else call.reject(decodeError(message.error, from));
        break;
      }
      default:
        this.#log.warn({ from }, 'dropped a message of unknown type from another node');
    }
  }

  async #serve(from: string, request: RemoteRequest): Promise<void> {
    let response: NodeMessage;
    try {
      let value: unknown;
      switch (request.op) {
        case 'command':
          value = await this.#localServer(request.name).command(request.command, request.timeoutMs);
          break;
        case 'query':
          value = await this.#localServer(request.name).consistentQuery(request.query, request.args, request.timeoutMs);
          break;
        case 'start_server':
          await this.#startLocal(request.system, request.name, request.machine, request.members);
          value = null;
          break;
      }
      response = { t: 'res', id: request.id, ok: true, value };
    } catch (error) {
      response = { t: 'res', id: request.id, ok: false, error: encodeError(error) };
    }
    this.#transport.send(from, response);
  }

  #findServer(name: string): RaftServer | undefined {
    for (const system of this.#systems.values()) {
      const server = system.server(name);
      if (server) return server;
    }
    return undefined;
  }

  #peerStatus(peer: string, up: boolean): void {
    this.#log.info({ peer, up }, up ? 'peer node up' : 'peer node down');
    if (!up) {
      for (const [id, call] of this.#remoteCalls) {
        if (call.node !== peer) continue;
        this.#remoteCalls.delete(id);
        clearTimeout(call.timer);
        call.reject(new NodeDownError(peer, true));
      }
    }
    for (const system of this.#systems.values()) {
      for (const server of system.servers()) server.peerStatus(peer, up);
    }
  }

  #tick(): void {
    if (this.#ticking.size === 0) return;
    const nowMs = performance.now();
    for (const server of [...this.#ticking]) server.tick(nowMs);
  }
}

function encodeError(error: unknown): { code: RanaErrorCode | 'INTERNAL'; message: string; leader?: ServerRef | null } {
  if (error instanceof NotLeaderError) return { code: error.code, message: error.message, leader: error.leader };
  if (error instanceof RanaError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

function decodeError(error: { code: RanaErrorCode | 'INTERNAL'; message: string; leader?: ServerRef | null }, node: string): Error {
  if (error.code === 'NOT_LEADER') {
    const notLeader = new NotLeaderError({ name: '?', node }, error.leader ?? null);
    notLeader.message = error.message;
    return notLeader;
  }
  if (error.code === 'TIMEOUT') {
    const timeout = new TimeoutError(`request to node ${node}`, 0);
    timeout.message = error.message;
    return timeout;
  }
  if (error.code === 'NODE_DOWN') {
    // The remote node saw a third node go down; for this caller the outcome is just as unknown.
    const down = new NodeDownError(node, true);
    down.message = error.message;
    return down;
  }
  if (error.code === 'INTERNAL') return new Error(`node ${node} failed the request: ${error.message}`);
  return new RanaError(error.code, error.message);
}

/** Parses `host:port` or `[ipv6]:port`. */
export function parseAddress(address: string, what: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(String(address));
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new InvalidConfigError(`invalid ${what} address ${JSON.stringify(address)}: expected host:port, for example 127.0.0.1:7001`);
  }
  return { host: match[1] ?? match[2], port };
}
