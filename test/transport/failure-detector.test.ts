import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { PeerAddress, TransportOptions } from '../../src/main/transport/transport.js';
import { FAST, HOST, nextEvent, Resources } from './helpers.js';

// The peer runs in a child process so that it can be killed or stopped with a signal, the way
// a crashed or frozen node behaves. The child loads the compiled transport from dist/, so
// `npm run build` must come first (`npm test` does it).

const compiledTransport = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'dist',
  'main',
  'transport',
  'transport.js',
);

const CHILD_SCRIPT = `
const { Transport } = await import(process.env.TRANSPORT_MODULE_URL);
const transport = new Transport(JSON.parse(process.env.TRANSPORT_OPTIONS));
await transport.start();
process.stdout.write(JSON.stringify(transport.address()) + '\\n');
`;

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

/** Starts a Transport in a child process and resolves with its pid and bound address. */
async function spawnPeer(options: TransportOptions): Promise<{ child: ChildProcess; address: PeerAddress }> {
  if (!existsSync(compiledTransport)) {
    throw new Error(`${compiledTransport} is missing; run "npm run build" before this test`);
  }
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT], {
    env: {
      ...process.env,
      TRANSPORT_MODULE_URL: pathToFileURL(compiledTransport).href,
      TRANSPORT_OPTIONS: JSON.stringify(options),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);

  const lines = createInterface({ input: child.stdout! });
  const firstLine = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code, signal) => reject(new Error(`peer process exited early (code ${code}, signal ${signal})`)));
  });
  lines.close();
  return { child, address: JSON.parse(firstLine) as PeerAddress };
}

/** Starts a local transport `localId` and a child-process transport `childId`, and waits until they are connected. */
async function connectToChild(
  localId: string,
  childId: string,
  timings: { heartbeatIntervalMs: number; suspectAfterMs: number },
): Promise<{ local: Awaited<ReturnType<Resources['startTransport']>>; child: ChildProcess }> {
  const local = await resources.startTransport(localId, timings);
  const { child, address } = await spawnPeer({
    nodeId: childId,
    listen: { host: HOST, port: 0 },
    peers: { [localId]: local.address() },
    ...FAST,
    ...timings,
  });
  const up = nextEvent(local, 'peer_up');
  local.setPeer(childId, address);
  await up;
  return { local, child };
}

describe('failure detector', () => {
  it('detects a killed peer at once', async () => {
    // The silence timeout is far longer than the expected detection time, so only the
    // connection reset can explain a fast peer_down.
    const timings = { heartbeatIntervalMs: 50, suspectAfterMs: 10_000 };
    const { local, child } = await connectToChild('n1', 'n2', timings);

    const down = nextEvent(local, 'peer_down');
    const killedAtMs = performance.now();
    child.kill('SIGKILL');
    await down;
    const elapsedMs = performance.now() - killedAtMs;

    expect(elapsedMs).toBeLessThan(2000);
    expect(local.isUp('n2')).toBe(false);
  });

  // The child is the accepting side in the first case and the dialing side in the second.
  it.each([
    { localId: 'n1', childId: 'n2' },
    { localId: 'n1', childId: 'n0' },
  ])('detects stopped peer $childId within suspectAfterMs', async ({ localId, childId }) => {
    const timings = { heartbeatIntervalMs: 20, suspectAfterMs: 300 };
    const { local, child } = await connectToChild(localId, childId, timings);

    const down = nextEvent(local, 'peer_down');
    const stoppedAtMs = performance.now();
    child.kill('SIGSTOP');
    await down;
    const elapsedMs = performance.now() - stoppedAtMs;

    // The last PING may have arrived up to one heartbeat interval before the stop.
    expect(elapsedMs).toBeGreaterThanOrEqual(timings.suspectAfterMs - 2 * timings.heartbeatIntervalMs);
    expect(elapsedMs).toBeLessThan(timings.suspectAfterMs + 100);
    expect(local.isUp(childId)).toBe(false);

    const up = nextEvent(local, 'peer_up');
    child.kill('SIGCONT');
    await up;
    expect(local.isUp(childId)).toBe(true);
    expect(local.stats()[childId].reconnects).toBe(1);
  });

  it('lets the process exit after close', async () => {
    // Two connected transports, one that dials a closed port, then close(): any timer or
    // socket left behind would keep the child alive and fail the race below.
    const script = `
const { Transport } = await import(process.env.TRANSPORT_MODULE_URL);
const fast = { heartbeatIntervalMs: 20, suspectAfterMs: 300, reconnectMinMs: 10, reconnectMaxMs: 100 };
const n1 = new Transport({ nodeId: 'n1', listen: { host: '127.0.0.1', port: 0 }, peers: {}, ...fast });
const n2 = new Transport({ nodeId: 'n2', listen: { host: '127.0.0.1', port: 0 }, peers: {}, ...fast });
await n1.start();
await n2.start();
const up = new Promise((resolve) => n1.once('peer_up', resolve));
n2.setPeer('n1', n1.address());
n1.setPeer('n2', n2.address());
n1.setPeer('n3', { host: '127.0.0.1', port: 1 });
await up;
n1.send('n2', { data: new Uint8Array(10) });
await Promise.all([n1.close(), n2.close()]);
process.stdout.write('closed\\n');
`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, TRANSPORT_MODULE_URL: pathToFileURL(compiledTransport).href },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });

    const exitCode = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('process still running 5 s after close()')), 5000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });

    expect(output).toBe('closed\n');
    expect(exitCode).toBe(0);
  });
});
