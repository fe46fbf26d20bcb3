import net from 'node:net';

/**
 * Reserves `count` distinct free TCP ports on 127.0.0.1 by listening on port 0, then releases
 * them. All listeners stay open until every port is known, so no port is returned twice.
 * NOTE: another process can take a port between release and use; a node that then fails to
 * bind exits, and the demo reports it with the node's log.
 */
export async function pickFreePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === 'string') {
        throw new Error(`listening on 127.0.0.1:0 returned address ${String(address)} instead of a port`);
      }
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
