import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { PeerAddress } from '../../src/main/transport/transport.js';
import { FAST, nextEvent, Resources } from './helpers.js';

// When this process's event loop is blocked for longer than suspectAfterMs, the peer's pings
// wait unread in the socket, and the overdue silence timer runs before the loop reads them.
// The peer runs in a child process so that it keeps pinging while this process is blocked. It
// loads the compiled transport from dist/, so `npm run build` must come first.

const compiledTransport = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'main', 'transport', 'transport.js');

const CHILD_SCRIPT = `
const { Transport } = await import(process.env.TRANSPORT_MODULE_URL);
const transport = new Transport(JSON.parse(process.env.TRANSPORT_OPTIONS));
await transport.start();
transport.setPeer('n1', JSON.parse(process.env.PEER_ADDRESS));
process.stdout.write(JSON.stringify(transport.address()) + '\\n');
`;

/** Longer than the local suspectAfterMs, so the local silence timer is overdue when the block ends. */
const BLOCK_MS = 700;
/** Heartbeats of the child that the test waits through after the block before it checks the link. */
const OBSERVE_MS = 10 * FAST.heartbeatIntervalMs;

let resources = new Resources();
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.length = 0;
  await resources.closeAll();
  resources = new Resources();
});

function blockEventLoop(durationMs: number): void {
  const endMs = performance.now() + durationMs;
  while (performance.now() < endMs) {
    // Busy-wait: nothing else runs in this process, as during a long synchronous fsync.
  }
}

describe('failure detector with a blocked event loop', () => {
  it('keeps a pinging peer up', async () => {
    if (!existsSync(compiledTransport)) throw new Error(`${compiledTransport} is missing; run "npm run build" before this test`);
    const local = await resources.startTransport('n1');
    // The child never suspects n1 (10 s bound), so only n1's own detector can take the link down.
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT], {
      env: {
        ...process.env,
        TRANSPORT_MODULE_URL: pathToFileURL(compiledTransport).href,
        TRANSPORT_OPTIONS: JSON.stringify({ nodeId: 'n2', listen: { host: '127.0.0.1', port: 0 }, peers: {}, ...FAST, suspectAfterMs: 10_000 }),
        PEER_ADDRESS: JSON.stringify(local.address()),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    const address = JSON.parse(await new Promise<string>((resolve) => lines.once('line', resolve))) as PeerAddress;
    lines.close();
    const up = nextEvent(local, 'peer_up');
    local.setPeer('n2', address);
    await up;

    const downs: string[] = [];
    local.on('peer_down', (peer) => downs.push(peer));
    const receivedBefore = local.stats().n2.receivedBytes;
    blockEventLoop(BLOCK_MS);
    // Observing that no peer_down happens needs a bounded wait; the child pings every 20 ms.
    await new Promise((resolve) => setTimeout(resolve, OBSERVE_MS));

    expect(downs).toEqual([]);
    expect(local.isUp('n2')).toBe(true);
    expect(local.stats().n2.receivedBytes).toBeGreaterThan(receivedBefore);
  });
});
