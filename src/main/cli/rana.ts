#!/usr/bin/env node
// The `rana` command line: run a KV node, or the local three-node demo that `npm start` runs.

import { Command, InvalidArgumentError, Option } from 'commander';
import { RanaError } from '../errors.js';
import { startKvService, type KvService } from './kv.js';
import { demoOptionsFromCli, runDemo } from './demo.js';
import { segmentTool, snapshotTool, walTool } from './tools.js';

function positiveInteger(name: string) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got "${text}"`);
    return value;
  };
}

function peerList(text: string): Record<string, string> {
  const peers: Record<string, string> = {};
  if (text.trim() === '') return peers;
  for (const part of text.split(',')) {
    const [id, address] = part.split('=');
    if (!id || !address) throw new InvalidArgumentError(`peer "${part}" must look like n2=127.0.0.1:7002`);
    peers[id.trim()] = address.trim();
  }
  return peers;
}

/** Prints a start-up failure as one line, without a stack trace for the errors rana names, and exits. */
function failStartup(error: unknown): never {
  const message = error instanceof RanaError || (error as NodeJS.ErrnoException)?.code !== undefined
    ? (error as Error).message
    : String((error as Error)?.stack ?? error);
  process.stderr.write(`rana kv: ${message}\n`);
  process.exit(1);
}

const program = new Command();
program.name('rana').description('Raft replication for Node.js: run a KV node or the local demo cluster');

program
  .command('kv')
  .description('run one node of the replicated key-value service with an HTTP API')
  .requiredOption('--id <id>', 'node id, for example n1')
  .requiredOption('--listen <host:port>', 'address for other nodes (TCP)')
  .requiredOption('--http <host:port>', 'address of the HTTP API')
  .option('--peers <list>', 'other nodes as id=host:port,id=host:port', peerList, {})
  .requiredOption('--data <dir>', 'data directory of this node')
  .option('--groups <n>', 'number of Raft groups the keys are spread over (the same on every node)', positiveInteger('--groups'), 16)
  .addOption(new Option('--sync-method <method>', 'how the WAL makes batches durable').choices(['datasync', 'sync', 'none']).default('datasync'))
  .option('--wal-max-batch-size <n>', 'entries per WAL write and sync', positiveInteger('--wal-max-batch-size'))
  .option('--wal-max-size-bytes <n>', 'size in bytes at which the WAL rolls over to a new file (default 256000000)', positiveInteger('--wal-max-size-bytes'))
  .option('--wal-max-entries <n>', 'entries after which the WAL rolls over to a new file (default 1048576)', positiveInteger('--wal-max-entries'))
  .option('--segment-max-entries <n>', 'entries per segment file (default 4096)', positiveInteger('--segment-max-entries'))
  .option('--snapshot-interval <n>', 'commands between two snapshots of a group (default 4096)', positiveInteger('--snapshot-interval'))
  .option('--snapshot-chunk-bytes <n>', 'bytes per chunk when streaming a snapshot to a follower (default 1048576)', positiveInteger('--snapshot-chunk-bytes'))
  .option('--timeout-ms <ms>', 'timeout of one command or read, in milliseconds', positiveInteger('--timeout-ms'), 5000)
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
  .action(async (opts) => {
    let service: KvService;
    try {
      service = await startKvService({
      id: opts.id,
      listen: opts.listen,
      http: opts.http,
      peers: opts.peers,
      dataDir: opts.data,
      groups: opts.groups,
      syncMethod: opts.syncMethod,
      walMaxBatchSize: opts.walMaxBatchSize,
      walMaxSizeBytes: opts.walMaxSizeBytes,
      walMaxEntries: opts.walMaxEntries,
      segmentMaxEntries: opts.segmentMaxEntries,
      snapshotInterval: opts.snapshotInterval,
      snapshotChunkBytes: opts.snapshotChunkBytes,
      timeoutMs: opts.timeoutMs,
      logLevel: opts.logLevel,
      });
    } catch (error) {
      failStartup(error);
    }
    service.ready.catch((error: unknown) => {
      service.node.logger.fatal({ err: error }, 'could not form or rejoin the KV groups');
      void service.stop().finally(() => failStartup(error));
    });
    const shutdown = (signal: string): void => {
      service.node.logger.info({ signal }, 'stopping');
      service.stop().then(
        () => process.exit(0),
        (error: unknown) => {
          service.node.logger.error({ err: error }, 'stop failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

program
  .command('demo')
  .description('start three KV nodes as child processes, drive a workload, kill and restart a leader, and report')
  .option('--duration <s>', 'length of the workload in seconds', '20')
  .option('--clients <n>', 'concurrent HTTP clients', '32')
  .option('--groups <n>', 'Raft groups the keys are spread over', '16')
  .option('--no-kill', 'do not kill and restart the leading node halfway through')
  .option('--keep-data', 'keep the temporary data directory and node logs')
  .action(async (opts) => {
    process.exitCode = await runDemo(demoOptionsFromCli(opts));
  });

const print = (line: string): void => console.log(line);
const printError = (line: string): void => console.error(line);

const wal = program.command('wal').description('inspect a WAL file');
wal.command('dump <file>').description('print every record of a WAL file and verify it')
  .action((file: string) => { process.exitCode = walTool(file, true, print, printError); });
wal.command('verify <file>').description('verify every record of a WAL file; exit 1 naming the offset of the first bad one')
  .action((file: string) => { process.exitCode = walTool(file, false, print, printError); });

const segment = program.command('segment').description('inspect a segment file');
segment.command('dump <file>').description('print every slot of a segment file and verify it')
  .action((file: string) => { process.exitCode = segmentTool(file, true, print, printError); });
segment.command('verify <file>').description('verify every entry of a segment file; exit 1 naming the offset of the first bad one')
  .action((file: string) => { process.exitCode = segmentTool(file, false, print, printError); });

program.command('snapshot').description('inspect snapshots')
  .command('verify <dir>').description('verify a snapshot directory, or every snapshot in a server\'s snapshots directory')
  .action((dir: string) => { process.exitCode = snapshotTool(dir, print, printError); });

await program.parseAsync(process.argv);
