import { pino, type Logger } from 'pino';

export type { Logger };

// One structured logger for the whole node. Child loggers add `node`, `group` and `term`
// so every line can be traced to a Raft group without context from neighbouring lines.

/** Creates the root logger. Level comes from the argument, then RANA_LOG_LEVEL, then `info`. */
export function createLogger(bindings: Record<string, unknown>, level?: string): Logger {
  return pino({ level: level ?? process.env.RANA_LOG_LEVEL ?? 'info', base: bindings });
}

/** A logger that drops everything, the default for embedded use and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
