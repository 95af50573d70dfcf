/**
 * A shipper process for the kill -9 test: ships the file partition in argv[2] (read through a
 * cross-process reader) to a file target (argv[3]) and an Azure Blob target (argv[4]
 * connection string, argv[5] container), reporting progress and alerts on stdout. It never
 * stops by itself: the test kills it.
 */
import { createAzureStorage } from '@sluice/store-azure';
import { createFileStorage, openFileReader } from '@sluice/store-file';
import { createShipper } from './index.js';

const [sourceDir, fileTarget, connectionString, container] = process.argv.slice(2);
const source = await openFileReader({ directory: sourceDir, pollIntervalMs: 20 });
const shipper = createShipper({
  source,
  partition: 'crash',
  targets: [
    { label: 'file', createStorage: () => createFileStorage({ directory: fileTarget, segmentBytes: 1024 * 1024 }) },
    {
      label: 'azure',
      createStorage: () => createAzureStorage({ connectionString, container, prefix: 'crash', leaseDurationSeconds: 15, attemptsMax: 2, retryDelayMs: 20, requestTimeoutMs: 5000 }),
    },
  ],
  retry: { initialDelayMs: 20, maxDelayMs: 250 },
  // Small writes and several per sync, so a kill often lands between the writes of a round.
  writeBytesMax: 8 * 1024,
  syncBytesMax: 64 * 1024,
});
shipper.on('progress', (s) => process.stdout.write(`progress ${s.target} ${s.head.lastSeq}\n`));
shipper.on('alert', (a) => process.stdout.write(`alert ${a.kind} ${a.target} ${a.message.replace(/\s+/g, ' ')}\n`));
shipper.start();
process.stdout.write('ready\n');
