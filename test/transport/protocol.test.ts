import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { reconnectDelayMs } from '../../src/main/transport/backoff.js';
import { encodeFrame, FrameDecoder, FrameError, FrameType, PROTOCOL_VERSION } from '../../src/main/transport/frame.js';
import { encodeArrayHeader, OutboundQueue } from '../../src/main/transport/outbound-queue.js';
import { PENDING_HANDSHAKES_MAX, type Transport } from '../../src/main/transport/transport.js';
import {
  captureLogger,
  collectMessages,
  decodePayload,
  HOST,
  introduce,
  nextEvent,
  nextLogLine,
  packr,
  RawPeer,
  Resources,
} from './helpers.js';

let resources = new Resources();

afterEach(async () => {
  await resources.closeAll();
  resources = new Resources();
});

/** Connects a RawPeer to `transport` as node `nodeId` and waits for the HELLO_ACK. */
async function handshakeAs(transport: Transport, nodeId: string): Promise<RawPeer> {
  const raw = await RawPeer.connect(resources, transport.address().port);
  raw.sendHello(nodeId, transport.nodeId);
  await raw.nextFrame(FrameType.HELLO_ACK);
  return raw;
}

/** Listens as node `nodeId` with raw sockets, replies HELLO_ACK to the first HELLO, then leaves the socket to the test. */
async function rawAcceptor(nodeId: string): Promise<{ port: number; accepted: Promise<RawPeer> }> {
  let resolveAccepted: (raw: RawPeer) => void = () => {};
  const accepted = new Promise<RawPeer>((resolve) => {
    resolveAccepted = resolve;
  });
  const server = net.createServer(async (socket) => {
    const raw = RawPeer.fromAccepted(resources, socket);
    await raw.nextFrame(FrameType.HELLO);
    socket.write(encodeFrame(FrameType.HELLO_ACK, packr.pack({ nodeId, protocolVersion: PROTOCOL_VERSION })));
    resolveAccepted(raw);
  });
  resources.servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, HOST, () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, accepted };
}

describe('handshake', () => {
  it.each([
    { name: 'unknown node id', hello: ['n0', 'n2', PROTOCOL_VERSION], reason: /n0 is not a known peer/ },
    { name: 'protocol version mismatch', hello: ['n1', 'n2', 99], reason: /protocol version 99/ },
    { name: 'wrong target node', hello: ['n1', 'n7', PROTOCOL_VERSION], reason: /expected node n7/ },
    { name: 'dial against the rule', hello: ['n3', 'n2', PROTOCOL_VERSION], reason: /sorts first/ },
  ] as const)('rejects $name', async ({ hello, reason }) => {
    const capture = captureLogger();
    const n2 = await resources.startTransport('n2', { logger: capture.logger });
    n2.setPeer('n1', { host: HOST, port: 1 });
    n2.setPeer('n3', { host: HOST, port: 1 });

    const raw = await RawPeer.connect(resources, n2.address().port);
    raw.sendHello(hello[0], hello[1], hello[2]);
    const reject = decodePayload(await raw.nextFrame(FrameType.REJECT)) as { reason: string };
    await raw.closed;

    expect(reject.reason).toMatch(reason);
    const logged = await nextLogLine(capture, (line) => String(line.msg).startsWith('rejected a connection'));
    expect(logged.level).toBe(50);
    expect(logged.msg).toMatch(reason);
    expect(n2.isUp('n1')).toBe(false);
  });

  it('dialer retries after a rejection', async () => {
    const capture = captureLogger();
    const n1 = await resources.startTransport('n1', { logger: capture.logger });
    const n2 = await resources.startTransport('n2');

    n1.setPeer('n2', n2.address());
    const logged = await nextLogLine(capture, (line) => line.msg === 'node n2 rejected the connection');
    expect(logged.reason).toMatch(/not a known peer/);
    expect(n1.isUp('n2')).toBe(false);

    const up = nextEvent(n1, 'peer_up');
    n2.setPeer('n1', n1.address());
    await up;
    expect(n1.stats().n2.connectFailures).toBeGreaterThanOrEqual(1);
  });

  it('replaces the connection of a redialing node', async () => {
    const n2 = await resources.startTransport('n2');
    n2.setPeer('n1', { host: HOST, port: 1 });
    const events: string[] = [];
    n2.on('peer_up', (id) => events.push(`up ${id}`));
    n2.on('peer_down', (id) => events.push(`down ${id}`));

    const first = await handshakeAs(n2, 'n1');
    const second = await handshakeAs(n2, 'n1');
    await first.closed;

    expect(events).toEqual(['up n1', 'down n1', 'up n1']);
    expect(n2.isUp('n1')).toBe(true);

    n2.send('n1', 'to the new connection');
    const batch = await second.nextFrame(FrameType.BATCH);
    expect(decodePayload(batch)).toEqual(['to the new connection']);
  });
});

describe('invalid frames', () => {
  it('closes on an oversized frame', async () => {
    const capture = captureLogger();
    const n2 = await resources.startTransport('n2', { logger: capture.logger, maxFrameBytes: 1024 * 1024 });
    n2.setPeer('n1', { host: HOST, port: 1 });
    const raw = await handshakeAs(n2, 'n1');

    const down = nextEvent(n2, 'peer_down');
    const header = Buffer.alloc(5);
    header.writeUInt32LE(1024 * 1024 + 1, 0);
    header[4] = FrameType.BATCH;
    raw.socket.write(header);
    await down;
    await raw.closed;

    const logged = await nextLogLine(capture, (line) => line.code === 'FRAME_TOO_LARGE');
    expect(logged.level).toBe(50);
    expect(logged.peer).toBe('n1');
    expect(logged.msg).toMatch(/node n1/);
    expect(logged.msg).toMatch(/1048577 bytes/);
  });

  it.each([
    { name: 'invalid msgpack', frame: encodeFrame(FrameType.BATCH, Uint8Array.of(0xc1)) },
    { name: 'batch that is not an array', frame: encodeFrame(FrameType.BATCH, packr.pack({ not: 'an array' })) },
    { name: 'unknown frame type', frame: encodeFrame(99 as typeof FrameType.PING, null) },
    { name: 'zero length', frame: Buffer.alloc(4) },
  ])('closes on $name', async ({ frame }) => {
    const capture = captureLogger();
    const n2 = await resources.startTransport('n2', { logger: capture.logger });
    n2.setPeer('n1', { host: HOST, port: 1 });
    const raw = await handshakeAs(n2, 'n1');

    const down = nextEvent(n2, 'peer_down');
    raw.socket.write(frame);
    await down;
    await raw.closed;

    const logged = await nextLogLine(capture, (line) => line.code === 'FRAME_INVALID');
    expect(logged.peer).toBe('n1');
  });

  it('closes on garbage before the handshake', async () => {
    const capture = captureLogger();
    const n2 = await resources.startTransport('n2', { logger: capture.logger });
    const raw = await RawPeer.connect(resources, n2.address().port);

    raw.socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await raw.closed;

    const logged = await nextLogLine(capture, (line) => line.code === 'FRAME_TOO_LARGE');
    expect(logged.msg).toMatch(/unidentified node/);
  });

  it('bounds connections waiting for a handshake', async () => {
    const capture = captureLogger();
    const n2 = await resources.startTransport('n2', { logger: capture.logger, suspectAfterMs: 10_000 });

    const waiting: RawPeer[] = [];
    for (let i = 0; i < PENDING_HANDSHAKES_MAX; i++) waiting.push(await RawPeer.connect(resources, n2.address().port));
    const extra = await RawPeer.connect(resources, n2.address().port);
    await extra.closed;

    expect(waiting.every((raw) => !raw.socket.destroyed && raw.socket.readyState === 'open')).toBe(true);
    const logged = await nextLogLine(capture, (line) => String(line.msg).includes('too many connections'));
    expect(logged.level).toBe(40);

    // Once the waiting connections close, their slots are free again.
    for (const raw of waiting) raw.socket.destroy();
    await Promise.all(waiting.map((raw) => raw.closed));
    n2.setPeer('n1', { host: HOST, port: 1 });
    const up = nextEvent(n2, 'peer_up');
    let accepted: RawPeer | null = null;
    for (let attempt = 0; attempt < 20 && accepted === null; attempt++) {
      // The server may not have seen every close yet; a rejected attempt closes at once.
      const raw = await RawPeer.connect(resources, n2.address().port);
      raw.sendHello('n1', 'n2');
      const outcome = await Promise.race([raw.nextFrame(FrameType.HELLO_ACK).then(() => 'ack'), raw.closed.then(() => 'closed')]);
      if (outcome === 'ack') accepted = raw;
    }
    await up;
    expect(accepted).not.toBeNull();
  });

  it('keeps serving after an invalid frame', async () => {
    const n1 = await resources.startTransport('n1');
    const n2 = await resources.startTransport('n2');
    const garbage = await RawPeer.connect(resources, n2.address().port);
    garbage.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]));
    await garbage.closed;

    const up = nextEvent(n2, 'peer_up');
    introduce(n1, n2);
    await up;
    const received = collectMessages(n2, 'n1', 1);
    n1.send('n2', 'still working');
    expect(await received).toEqual(['still working']);
  });
});

describe('silence and back-pressure', () => {
  it('marks a silent peer down', async () => {
    const { port, accepted } = await rawAcceptor('n2');
    const n1 = await resources.startTransport('n1', { heartbeatIntervalMs: 50, suspectAfterMs: 300 });

    const up = nextEvent(n1, 'peer_up');
    n1.setPeer('n2', { host: HOST, port });
    await up;
    const upAtMs = performance.now();
    const raw = await accepted;

    await nextEvent(n1, 'peer_down');
    const elapsedMs = performance.now() - upAtMs;

    expect(elapsedMs).toBeGreaterThanOrEqual(300 - 5);
    expect(elapsedMs).toBeLessThan(300 + 100);
    expect(raw.frames.some((frame) => frame.type === FrameType.PING)).toBe(true);
    await raw.closed;
  });

  it('queues behind a socket that is not read', async () => {
    const { port, accepted } = await rawAcceptor('n2');
    const maxQueueBytes = 1024 * 1024;
    const n1 = await resources.startTransport('n1', { maxQueueBytes, suspectAfterMs: 10_000 });
    const up = nextEvent(n1, 'peer_up');
    n1.setPeer('n2', { host: HOST, port });
    await up;
    const raw = await accepted;
    raw.socket.pause();

    // Send one 256 KiB message per turn until the kernel buffers and then the queue are full.
    const payload = new Uint8Array(256 * 1024);
    let sent = 0;
    while (n1.stats().n2.droppedMessages === 0 && sent < 1000) {
      n1.send('n2', { seq: sent, payload });
      sent += 1;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const full = n1.stats().n2;

    expect(full.droppedMessages).toBe(1);
    expect(full.queuedBytes).toBeGreaterThan(maxQueueBytes - payload.length - 100);
    expect(full.queuedBytes).toBeLessThanOrEqual(maxQueueBytes);
    expect(full.up).toBe(true);

    const expectedCount = sent - full.droppedMessages;
    const allDelivered = new Promise<void>((resolve) => {
      let count = 0;
      const onData = (): void => {
        const batches = raw.frames.filter((frame) => frame.type === FrameType.BATCH);
        count = batches.reduce((total, frame) => total + (decodePayload(frame) as unknown[]).length, 0);
        if (count === expectedCount) {
          raw.socket.off('data', onData);
          resolve();
        }
      };
      raw.socket.on('data', onData);
    });
    raw.socket.resume();
    await allDelivered;

    const seqs = raw.frames
      .filter((frame) => frame.type === FrameType.BATCH)
      .flatMap((frame) => (decodePayload(frame) as Array<{ seq: number }>).map((message) => message.seq));
    expect(seqs).toEqual([...Array(sent - 1).keys()]);
    expect(n1.stats().n2.queuedBytes).toBe(0);
  });
});

describe('frame codec', () => {
  it('decodes frames split across chunks', () => {
    const frames = [
      encodeFrame(FrameType.PING, null),
      encodeFrame(FrameType.BATCH, packr.pack(['a', new Uint8Array(3000)])),
      encodeFrame(FrameType.PING, null),
    ];
    const stream = Buffer.concat(frames);
    for (const chunkBytes of [1, 2, 3, 7, 1000, stream.length]) {
      const decoder = new FrameDecoder(1 << 20);
      const types: number[] = [];
      for (let offset = 0; offset < stream.length; offset += chunkBytes) {
        decoder.push(stream.subarray(offset, offset + chunkBytes));
        for (let frame = decoder.next(); frame !== null; frame = decoder.next()) types.push(frame.type);
      }
      expect(types, `chunks of ${chunkBytes} bytes`).toEqual([FrameType.PING, FrameType.BATCH, FrameType.PING]);
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it('rejects a length above the bound before the body arrives', () => {
    const decoder = new FrameDecoder(100);
    const header = Buffer.alloc(4);
    header.writeUInt32LE(101, 0);
    decoder.push(header);
    expect(() => decoder.next()).toThrow(FrameError);
  });

  it('builds batches that msgpack decodes as arrays', () => {
    for (const count of [1, 15, 16, 65535, 65536]) {
      const queue = new OutboundQueue(1 << 24);
      for (let i = 0; i < count; i++) queue.push(packr.pack(i));
      const batch = queue.takeBatchFrame(1 << 24);
      expect(batch?.messageCount).toBe(count);
      const decoded = packr.unpack(batch!.frame.subarray(5)) as number[];
      expect(decoded.length, `${count} messages`).toBe(count);
      expect(decoded[count - 1]).toBe(count - 1);
      expect(queue.queuedBytes).toBe(0);
    }
    expect(encodeArrayHeader(70000)[0]).toBe(0xdd);
  });

  it('bounds reconnect delays', () => {
    expect(reconnectDelayMs(0, 50, 2000, () => 0)).toBe(25);
    expect(reconnectDelayMs(0, 50, 2000, () => 0.999)).toBeLessThan(50);
    expect(reconnectDelayMs(3, 50, 2000, () => 0)).toBe(200);
    expect(reconnectDelayMs(100, 50, 2000, () => 0.999)).toBeLessThan(2000);
    expect(reconnectDelayMs(100, 50, 2000, () => 0)).toBe(1000);
  });
});
