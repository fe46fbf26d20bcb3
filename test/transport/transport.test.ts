import { afterEach, describe, expect, it } from 'vitest';
import { InvalidConfigError } from '../../src/main/errors.js';
import { Transport } from '../../src/main/transport/transport.js';
import { collectMessages, HOST, introduce, nextEvent, Resources } from './helpers.js';

let resources = new Resources();

afterEach(async () => {
  await resources.closeAll();
  resources = new Resources();
});

async function startPair(): Promise<[Transport, Transport]> {
  const n1 = await resources.startTransport('n1');
  const n2 = await resources.startTransport('n2');
  const n1Up = nextEvent(n1, 'peer_up');
  const n2Up = nextEvent(n2, 'peer_up');
  introduce(n1, n2);
  await Promise.all([n1Up, n2Up]);
  return [n1, n2];
}

describe('Transport messaging', () => {
  it('round-trips messages both ways', async () => {
    const [n1, n2] = await startPair();

    const atN2 = collectMessages(n2, 'n1', 1);
    const atN1 = collectMessages(n1, 'n2', 1);
    n1.send('n2', { type: 'append_entries', term: 3, data: new Uint8Array([1, 2, 3, 255]) });
    n2.send('n1', { type: 'append_entries_reply', term: 3, data: new Uint8Array(0) });

    const [toN2] = (await atN2) as Array<{ type: string; term: number; data: Uint8Array }>;
    const [toN1] = (await atN1) as Array<{ type: string; term: number; data: Uint8Array }>;
    expect(toN2.type).toBe('append_entries');
    expect(toN2.term).toBe(3);
    expect(toN2.data).toBeInstanceOf(Uint8Array);
    expect([...toN2.data]).toEqual([1, 2, 3, 255]);
    expect(toN1.type).toBe('append_entries_reply');
    expect(toN1.data).toBeInstanceOf(Uint8Array);
    expect(toN1.data.length).toBe(0);
  });

  it('coalesces sends of one turn into one frame', async () => {
    const [n1, n2] = await startPair();
    const batchesBefore = n2.stats().n1.receivedBatches;

    const received = collectMessages(n2, 'n1', 1000);
    for (let i = 0; i < 1000; i++) n1.send('n2', { seq: i, data: new Uint8Array([i & 0xff]) });
    const messages = (await received) as Array<{ seq: number }>;

    expect(messages.map((message) => message.seq)).toEqual([...Array(1000).keys()]);
    expect(n1.stats().n2.sentBatches).toBe(1);
    expect(n1.stats().n2.sentMessages).toBe(1000);
    expect(n2.stats().n1.receivedBatches - batchesBefore).toBe(1);
    expect(n2.stats().n1.receivedMessages).toBe(1000);
  });

  it('splits a turn larger than maxFrameBytes', async () => {
    const n1 = await resources.startTransport('n1', { maxFrameBytes: 64 * 1024 });
    const n2 = await resources.startTransport('n2', { maxFrameBytes: 64 * 1024 });
    const up = nextEvent(n1, 'peer_up');
    introduce(n1, n2);
    await up;

    const received = collectMessages(n2, 'n1', 40);
    for (let i = 0; i < 40; i++) n1.send('n2', { seq: i, data: new Uint8Array(10_000) });
    const messages = (await received) as Array<{ seq: number; data: Uint8Array }>;

    expect(messages.map((message) => message.seq)).toEqual([...Array(40).keys()]);
    expect(messages[39].data.length).toBe(10_000);
    expect(n1.stats().n2.sentBatches).toBeGreaterThanOrEqual(7);
  });

  it('connects three nodes pairwise', async () => {
    const nodes = [
      await resources.startTransport('n1'),
      await resources.startTransport('n2'),
      await resources.startTransport('n3'),
    ];
    const ups = nodes.flatMap((node) =>
      nodes.filter((other) => other !== node).map((other) => nextEvent(node, 'peer_up', (id) => id === other.nodeId)),
    );
    for (const node of nodes) {
      for (const other of nodes) {
        if (node.nodeId < other.nodeId) introduce(node, other);
      }
    }
    await Promise.all(ups);

    const deliveries = nodes.flatMap((node) =>
      nodes.filter((other) => other !== node).map((other) => collectMessages(other, node.nodeId, 1)),
    );
    for (const node of nodes) {
      for (const other of nodes) {
        if (other !== node) node.send(other.nodeId, { from: node.nodeId, to: other.nodeId });
      }
    }
    const received = (await Promise.all(deliveries)).flat() as Array<{ from: string; to: string }>;

    expect(received).toHaveLength(6);
    for (const node of nodes) {
      const stats = node.stats();
      expect(Object.keys(stats).sort()).toEqual(nodes.filter((other) => other !== node).map((other) => other.nodeId));
      for (const peerStats of Object.values(stats)) {
        expect(peerStats.up).toBe(true);
        expect(peerStats.reconnects).toBe(0);
      }
    }
  });
});

describe('Transport restarts', () => {
  it('reconnects after the accepting peer restarts', async () => {
    const [n1, n2] = await startPair();
    const port = n2.address().port;

    const down = nextEvent(n1, 'peer_down');
    await n2.close();
    await down;
    expect(n1.isUp('n2')).toBe(false);

    const events: string[] = [];
    n1.on('peer_down', (id) => events.push(`down ${id}`));
    n1.on('peer_up', (id) => events.push(`up ${id}`));
    const up = nextEvent(n1, 'peer_up');
    const restarted = await resources.startTransport('n2', { listen: { host: HOST, port }, peers: { n1: n1.address() } });
    await up;

    expect(events).toEqual(['up n2']);
    expect(n1.isUp('n2')).toBe(true);
    expect(restarted.isUp('n1')).toBe(true);
    expect(n1.stats().n2.reconnects).toBe(1);

    const received = collectMessages(restarted, 'n1', 1);
    n1.send('n2', 'after restart');
    expect(await received).toEqual(['after restart']);
  });

  it('reconnects after the dialing peer restarts', async () => {
    const [n1, n2] = await startPair();
    const port = n1.address().port;

    const events: string[] = [];
    n2.on('peer_down', (id) => events.push(`down ${id}`));
    n2.on('peer_up', (id) => events.push(`up ${id}`));

    const down = nextEvent(n2, 'peer_down');
    await n1.close();
    await down;
    const up = nextEvent(n2, 'peer_up');
    const restarted = await resources.startTransport('n1', { listen: { host: HOST, port }, peers: { n2: n2.address() } });
    await up;

    expect(events).toEqual(['down n1', 'up n1']);
    const received = collectMessages(restarted, 'n2', 1);
    n2.send('n1', 'after restart');
    expect(await received).toEqual(['after restart']);
  });

  it('keeps messages sent while down and delivers them', async () => {
    const [n1, n2] = await startPair();
    const port = n2.address().port;
    const down = nextEvent(n1, 'peer_down');
    await n2.close();
    await down;

    for (let i = 0; i < 5; i++) n1.send('n2', { seq: i });
    expect(n1.stats().n2.queuedBytes).toBeGreaterThan(0);

    const restarted = new Transport({ nodeId: 'n2', listen: { host: HOST, port }, peers: { n1: n1.address() } });
    resources.transports.push(restarted);
    const received = collectMessages(restarted, 'n1', 5);
    await restarted.start();

    expect(await received).toEqual([0, 1, 2, 3, 4].map((seq) => ({ seq })));
    expect(n1.stats().n2.queuedBytes).toBe(0);
    expect(n1.stats().n2.droppedMessages).toBe(0);
  });
});

describe('Transport queue bound', () => {
  it('drops and counts messages over maxQueueBytes', async () => {
    const n1 = await resources.startTransport('n1', { maxQueueBytes: 1000 });
    const n2 = new Transport({ nodeId: 'n2', listen: { host: HOST, port: 0 }, peers: {} });
    resources.transports.push(n2);
    // n2 is not started yet: n1 dials, fails and queues.
    n1.setPeer('n2', { host: HOST, port: 1 });

    const payload = new Uint8Array(90);
    for (let i = 0; i < 50; i++) n1.send('n2', { seq: i, payload });
    const stats = n1.stats().n2;

    expect(stats.up).toBe(false);
    expect(stats.queuedBytes).toBeLessThanOrEqual(1000);
    expect(stats.queuedBytes).toBeGreaterThan(900);
    expect(stats.droppedMessages).toBeGreaterThan(0);
    const kept = 50 - stats.droppedMessages;

    const received = collectMessages(n2, 'n1', kept);
    await n2.start();
    n2.setPeer('n1', n1.address());
    n1.setPeer('n2', n2.address());
    const messages = (await received) as Array<{ seq: number }>;

    expect(messages.map((message) => message.seq)).toEqual([...Array(kept).keys()]);
  });
});

describe('Transport options', () => {
  it('rejects invalid options', () => {
    const base = { nodeId: 'n1', listen: { host: HOST, port: 0 }, peers: {} };
    expect(() => new Transport({ ...base, nodeId: '' })).toThrow(InvalidConfigError);
    expect(() => new Transport({ ...base, listen: { host: HOST, port: 70000 } })).toThrow(/listen.port is 70000/);
    expect(() => new Transport({ ...base, heartbeatIntervalMs: 500, suspectAfterMs: 400 })).toThrow(/must exceed/);
    expect(() => new Transport({ ...base, reconnectMinMs: 10, reconnectMaxMs: 5 })).toThrow(/exceeds reconnectMaxMs/);
    expect(() => new Transport({ ...base, maxQueueBytes: 0 })).toThrow(/maxQueueBytes is 0/);
    expect(() => new Transport({ ...base, maxFrameBytes: 2 ** 32 })).toThrow(/maxFrameBytes/);
  });

  it('rejects sends to an unknown node', async () => {
    const n1 = await resources.startTransport('n1');
    expect(() => n1.send('n9', 'x')).toThrow(/no peer n9/);
    expect(() => n1.send('n1', 'x')).toThrow(/directly/);
  });

  it('ignores its own id in peers', async () => {
    const n1 = await resources.startTransport('n1', { peers: { n1: { host: HOST, port: 1 } } });
    expect(Object.keys(n1.stats())).toEqual([]);
  });

  it('reports a busy listen port', async () => {
    const n1 = await resources.startTransport('n1');
    const clash = new Transport({ nodeId: 'n2', listen: n1.address(), peers: {} });
    resources.transports.push(clash);
    await expect(clash.start()).rejects.toThrow(/failed to listen/);
  });
});
