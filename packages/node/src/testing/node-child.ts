/**
 * Child process of the node crash test: runs one node from a config file until it is killed.
 * Prints "ready" once its workers have sent READY; on SIGTERM it closes gracefully.
 *
 * argv: <config path> <node name> <heartbeat interval ms> <concurrency>
 */
import { createFileStorage } from '@sluice/store-file';
import { locationFactory } from '../locations.js';
import { startNode } from '../node.js';

async function main(): Promise<void> {
  const [config, nodeName, heartbeatText, concurrencyText] = process.argv.slice(2);
  const node = await startNode({
    config,
    nodeName,
    heartbeatIntervalMs: Number(heartbeatText),
    heartbeatLiveness: 3,
    reconnectDelayMs: 50,
    concurrency: Number(concurrencyText),
    locations: { file: locationFactory('file', createFileStorage) },
  });
  process.on('SIGTERM', () => {
    void node.close().then(() => process.exit(0));
  });
  process.stdout.write('ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
