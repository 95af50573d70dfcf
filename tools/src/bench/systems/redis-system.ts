import { join } from 'node:path';
import { SystemSkippedError, type BenchSystem } from '../bench-system.js';
import { EVENT_TYPE, eventLogSession, type EventLog, type ReadTotals } from '../event-log-session.js';
import { startRedis } from '../servers/redis-server.js';
import { requireServerBinary } from '../servers/server-binaries.js';

type RedisModule = typeof import('redis');
type RedisClient = ReturnType<RedisModule['createClient']>;

/**
 * Appends a batch to one stream atomically if it is still at the expected version (its
 * length: nothing is ever trimmed), entry ids `0-<version>`. Scripts run atomically and their
 * writes reach the append-only file as one transaction.
 */
const APPEND_SCRIPT = `
local version = tonumber(ARGV[1])
if redis.call('XLEN', KEYS[1]) ~= version then
  return redis.error_reply('WRONGVERSION ' .. KEYS[1] .. ' is not at version ' .. ARGV[1])
end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '0-' .. (version + i - 2), 'type', ARGV[2], 'data', ARGV[i])
end
return #ARGV - 2
`;
/** Entries per XRANGE page of the catch-up read, and streams read at once. */
const READ_PAGE_ENTRIES = 1000;
const READ_STREAMS_IN_FLIGHT = 64;

/**
 * Redis streams, one stream key per event stream, on a redis-server the bench starts with the
 * append-only file fsynced before every reply. One connection: concurrent appenders are
 * pipelined on it, and Redis syncs once per event-loop pass for all of them.
 */
export const redisSystem: BenchSystem = {
  id: 'redis',
  label: 'Redis streams',
  group: 'peer',
  configuration: 'XADD per event in a Lua script checking the expected version (XLEN), appendonly yes, appendfsync always, no RDB, one pipelined connection; catch-up = XRANGE per stream',
  durability: 'append-only file fsynced before each reply: survives power loss',
  async setup(context) {
    const redis = await loadRedis();
    const binary = await requireServerBinary('redis-server', context);
    let server;
    try {
      server = await startRedis({ binary, directory: join(context.directory, 'redis') });
    } catch (error) {
      throw new SystemSkippedError((error as Error).message, { cause: error });
    }
    context.log(`started redis-server ${server.version} on 127.0.0.1:${server.port} (pid ${server.pid})`);
    const started = server;
    let client: RedisClient | undefined;
    try {
      client = redis.createClient({ socket: { host: server.host, port: server.port } });
      client.on('error', () => undefined); // failed commands reject; a lost connection fails the scenario
      await client.connect();
      const sha = String(await client.sendCommand(['SCRIPT', 'LOAD', APPEND_SCRIPT]));
      const connected = client;
      return eventLogSession({
        open: async (name) => new RedisEventLog(connected, redis, sha, name),
        teardown: async () => {
          try {
            await connected.close();
          } finally {
            await started.stop();
          }
        },
      });
    } catch (error) {
      client?.destroy();
      await started.stop();
      throw error;
    }
  },
};

async function loadRedis(): Promise<RedisModule> {
  try {
    return await import('redis');
  } catch (error) {
    throw new SystemSkippedError(`the "redis" client does not load (${(error as Error).message}): run "npm install" at the repository root`, { cause: error });
  }
}

class RedisEventLog implements EventLog {
  private readonly keys = new Set<string>();
  /** The workload reuses one payload array per scenario: view it as Buffers once. */
  private readonly buffers = new WeakMap<readonly Uint8Array[], Buffer[]>();

  constructor(
    private readonly client: RedisClient,
    private readonly redis: RedisModule,
    private readonly sha: string,
    private readonly prefix: string,
  ) {}

  append(streamId: string, expectedVersion: number, payloads: readonly Uint8Array[]): Promise<unknown> {
    let buffers = this.buffers.get(payloads);
    if (buffers === undefined) {
      buffers = payloads.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      this.buffers.set(payloads, buffers);
    }
    const key = `${this.prefix}:${streamId}`;
    this.keys.add(key);
    return this.client.sendCommand(['EVALSHA', this.sha, '1', key, String(expectedVersion), EVENT_TYPE, ...buffers]);
  }

  async readAll(): Promise<ReadTotals> {
    const client = this.client.withTypeMapping({ [this.redis.RESP_TYPES.BLOB_STRING]: Buffer });
    const keys = [...this.keys];
    let events = 0;
    let payloadBytes = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: READ_STREAMS_IN_FLIGHT }, async () => {
        while (next < keys.length) {
          const key = keys[next++];
          let start = '-';
          for (;;) {
            const page = (await client.sendCommand(['XRANGE', key, start, '+', 'COUNT', String(READ_PAGE_ENTRIES)])) as Array<[Buffer, Buffer[]]>;
            for (const [, fields] of page) payloadBytes += fields[3].length;
            events += page.length;
            if (page.length < READ_PAGE_ENTRIES) break;
            start = `(${page[page.length - 1][0].toString()}`;
          }
        }
      }),
    );
    return { events, payloadBytes };
  }

  async close(): Promise<void> {
    // Redis keeps everything in memory: free it before the next scenario (like dropping a table).
    await this.client.sendCommand(['FLUSHDB']);
  }
}
