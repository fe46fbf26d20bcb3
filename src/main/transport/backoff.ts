/**
 * Returns the delay before reconnect attempt number `failures + 1`: exponential from `minMs`,
 * capped at `maxMs`, with "equal jitter" (a uniform pick in the upper half of the step) so that
 * nodes that lost a peer at the same moment do not redial it in lockstep.
 * `random` returns a number in [0, 1), like Math.random.
 */
export function reconnectDelayMs(failures: number, minMs: number, maxMs: number, random: () => number): number {
  const exponent = Math.min(failures, 30);
  const stepMs = Math.min(maxMs, minMs * 2 ** exponent);
  return stepMs / 2 + random() * (stepMs / 2);
}
