import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runDemo, demoOptionsFromCli } from '../src/main/cli/demo.js';
import { WriteHistory } from '../src/main/cli/demo/history.js';
import { cliFilePath } from '../src/shared/worker-path.js';

const fakeKv = fileURLToPath(new URL('./support/fake-kv.mjs', import.meta.url));

/** Creates a stream that keeps everything written to it. */
function captureOutput(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  return { stream, text: () => chunks.join('') };
}

/** Pids of the nodes the demo printed in its "started node n1 pid 123" lines. */
function printedPids(output: string): number[] {
  return [...output.matchAll(/started node n\d pid (\d+)/g)].map((match) => Number(match[1]));
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('WriteHistory.check', () => {
  it('accepts the last acknowledged value', () => {
    const history = new WriteHistory();
    history.recordPut('k', 'a', 0, 1, 'acked');
    history.recordPut('k', 'b', 2, 3, 'acked');
    expect(history.check('k', 'b')).toBeNull();
  });

  it('rejects a value overwritten later', () => {
    const history = new WriteHistory();
    history.recordPut('k', 'a', 0, 1, 'acked');
    history.recordPut('k', 'b', 2, 3, 'acked');
    expect(history.check('k', 'a')?.verdict).toBe('stale');
  });

  it('accepts either of two concurrent writes', () => {
    const history = new WriteHistory();
    history.recordPut('k', 'a', 0, 3, 'acked');
    history.recordPut('k', 'b', 1, 2, 'acked');
    expect(history.check('k', 'a')).toBeNull();
    expect(history.check('k', 'b')).toBeNull();
  });

  it('accepts an unknown-outcome value', () => {
    const history = new WriteHistory();
    history.recordPut('k', 'a', 0, 1, 'acked');
    history.recordPut('k', 'b', 2, 3, 'unknown');
    expect(history.check('k', 'b')).toBeNull();
    expect(history.check('k', 'a')).toBeNull();
  });

  it('rejects a value never written', () => {
    const history = new WriteHistory();
    history.recordPut('k', 'a', 0, 1, 'acked');
    history.recordPut('k', 'b', 2, 3, 'failed');
    expect(history.check('k', 'b')?.verdict).toBe('never-written');
    expect(history.check('other', 'a')?.verdict).toBe('never-written');
  });

  it('rejects a missing key after an acknowledged put', () => {
    const history = new WriteHistory();
    history.recordPut('k', 'a', 0, 1, 'acked');
    expect(history.check('k', null)?.verdict).toBe('lost');
  });

  it('accepts a missing key after a delete', () => {
    const acked = new WriteHistory();
    acked.recordPut('k', 'a', 0, 1, 'acked');
    acked.recordDelete('k', 2, 3, 'acked');
    expect(acked.check('k', null)).toBeNull();
    expect(acked.check('k', 'a')?.verdict).toBe('stale');

    const unknown = new WriteHistory();
    unknown.recordPut('k', 'a', 0, 1, 'acked');
    unknown.recordDelete('k', 2, 3, 'unknown');
    expect(unknown.check('k', null)).toBeNull();
  });

  it('rejects a missing key when the delete preceded the put', () => {
    const history = new WriteHistory();
    history.recordDelete('k', 0, 1, 'acked');
    history.recordPut('k', 'a', 2, 3, 'acked');
    expect(history.check('k', null)?.verdict).toBe('lost');
  });
});

describe('demoOptionsFromCli', () => {
  it('converts commander strings', () => {
    expect(demoOptionsFromCli({ duration: '20', clients: '32', groups: '16', kill: false, keepData: true }))
      .toEqual({ durationS: 20, clients: 32, groups: 16, kill: false, keepData: true });
  });

  it('rejects a non-integer duration', () => {
    expect(() => demoOptionsFromCli({ duration: '1.5', clients: '32', groups: '16', kill: true })).toThrow(/--duration 1\.5 is invalid: pass a whole number/);
  });
});

describe('runDemo with the fake kv node', () => {
  it.concurrent('passes the check across a kill', async () => {
    const output = captureOutput();
    const exitCode = await runDemo({
      durationS: 2, clients: 4, groups: 4, kill: true, keepData: false, keyCount: 200,
      output: output.stream, kvCommand: [process.execPath, fakeKv],
    });
    const text = output.text();

    expect(exitCode, text).toBe(0);
    expect(text).toContain('=== rana demo report');
    expect(text).toMatch(/killed n1 \(leader of 4 groups\) with SIGKILL/);
    expect(text).toMatch(/failover: \d+ ms/);
    expect(text).toContain('CHECK PASS: 200/200 keys read');
    const pids = printedPids(text);
    expect(pids).toHaveLength(4);
    expect(pids.filter(isRunning)).toEqual([]);
  });

  it.concurrent('fails the check on lost writes', async () => {
    const output = captureOutput();
    const exitCode = await runDemo({
      durationS: 2, clients: 4, groups: 4, kill: true, keepData: false, keyCount: 200,
      output: output.stream, kvCommand: [process.execPath, fakeKv, '--forget-on-restart'],
    });
    const text = output.text();

    expect(exitCode, text).toBe(1);
    expect(text).toMatch(/CHECK FAIL: 200\/200 keys read, \d+ stale, 0 never written, [1-9]\d* lost/);
    expect(printedPids(text).filter(isRunning)).toEqual([]);
  });
});

// Runs the real `rana kv` nodes through the built CLI. It fails until `rana kv` and the `demo`
// subcommand are wired into dist/main/cli/rana.js; `npm test` builds first.
describe('rana demo command', () => {
  it.concurrent('passes the check on a real cluster', async () => {
    expect(existsSync(cliFilePath()), `${cliFilePath()} is missing; run "npm run build"`).toBe(true);
    const child = spawn(process.execPath, [cliFilePath(), 'demo', '--duration', '6', '--clients', '8', '--groups', '4'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => { text += chunk.toString('utf8'); });
    child.stderr.on('data', (chunk: Buffer) => { text += chunk.toString('utf8'); });
    const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    expect(exitCode, text).toBe(0);
    expect(text).toContain('=== rana demo report');
    expect(text).toContain('CHECK PASS');
    const pids = printedPids(text);
    expect(pids.length).toBeGreaterThanOrEqual(3);
    expect(pids.filter(isRunning)).toEqual([]);
  }, 90_000);
});
