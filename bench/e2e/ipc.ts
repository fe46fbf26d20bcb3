// Request/response over the IPC channel of a forked child process. The controller sends
// `{ id, op, args }`, and the child replies `{ id, ok, value }` or `{ id, ok: false, error }`.

import type { ChildProcess } from 'node:child_process';

interface IpcRequest {
  id: number;
  op: string;
  args: unknown;
}

type IpcResponse = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

export type IpcHandlers = Record<string, (args: never) => unknown>;

/** Serves the controller's requests in a child process until the channel closes. */
export function serveIpc(handlers: IpcHandlers): void {
  if (typeof process.send !== 'function') {
    throw new Error('this script runs as a child of the benchmark controller; start it with `npm run bench`');
  }
  process.on('message', (message: IpcRequest) => {
    void answer(handlers, message);
  });
  // The controller died or closed the channel: nothing is left to measure.
  process.on('disconnect', () => process.exit(0));
}

async function answer(handlers: IpcHandlers, request: IpcRequest): Promise<void> {
  let response: IpcResponse;
  try {
    const handler = handlers[request.op];
    if (handler === undefined) throw new Error(`unknown IPC operation ${request.op}`);
    const value = await handler(request.args as never);
    response = { id: request.id, ok: true, value: value ?? null };
  } catch (error) {
    response = { id: request.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
  process.send?.(response);
}

export class IpcTimeoutError extends Error {
  readonly code = 'IPC_TIMEOUT';
}

/** The controller's end: sends requests to one child and matches the responses by id. */
export class IpcClient {
  readonly child: ChildProcess;
  readonly name: string;
  #nextId = 1;
  #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void; timer: NodeJS.Timeout }>();

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    child.on('message', (message: IpcResponse) => {
      const call = this.#pending.get(message.id);
      if (call === undefined) return;
      this.#pending.delete(message.id);
      clearTimeout(call.timer);
      if (message.ok) call.resolve(message.value);
      else call.reject(new Error(`${this.name}: ${message.error}`));
    });
    child.on('exit', (code, signal) => {
      for (const call of this.#pending.values()) {
        clearTimeout(call.timer);
        call.reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) with a request in flight`));
      }
      this.#pending.clear();
    });
  }

  call<T>(op: string, args: unknown = null, timeoutMs = 30_000): Promise<T> {
    if (!this.child.connected) return Promise.reject(new Error(`${this.name} is not running; cannot send ${op}`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new IpcTimeoutError(`${this.name} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.child.send({ id, op, args } satisfies IpcRequest);
    });
  }
}
