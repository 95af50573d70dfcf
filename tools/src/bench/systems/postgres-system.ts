import { join } from 'node:path';
import type { Pool } from 'pg';
import { SystemSkippedError, type BenchSystem } from '../bench-system.js';
import { EVENT_TYPE, eventLogSession, type EventLog, type ReadTotals } from '../event-log-session.js';
import { startPostgres } from '../servers/postgres-server.js';
import { requireServerBinary } from '../servers/server-binaries.js';

/** Connections in the pool: enough for PostgreSQL's group commit to batch WAL flushes of concurrent appenders. */
export const POSTGRES_POOL_SIZE = 100;
/** Rows per page of the catch-up read (message-db's default batch size). */
const READ_PAGE_ROWS = 1000;

/**
 * PostgreSQL from Debian's packages, started by the bench on a free loopback port, with an
 * events table like message-db's `messages` (global position, stream name, position, type,
 * data, metadata, time; unique stream+position). One INSERT per append: a single row, or all
 * of a batch's rows through `unnest` in one statement.
 */
export const postgresSystem: BenchSystem = {
  id: 'postgresql',
  label: 'PostgreSQL',
  group: 'peer',
  configuration: `message-db-like messages table, unique (stream_name, position), one INSERT (unnest) per append, fsync=on, synchronous_commit=on, pool of ${POSTGRES_POOL_SIZE}`,
  durability: 'WAL flushed (fdatasync) before each commit returns: survives power loss',
  async setup(context) {
    const pg = await loadPg();
    const binDir = await requireServerBinary('postgresql', context);
    let server;
    try {
      server = await startPostgres({ binDir, directory: join(context.directory, 'postgres') });
    } catch (error) {
      throw new SystemSkippedError((error as Error).message, { cause: error });
    }
    context.log(`started ${server.version} on 127.0.0.1:${server.port} (pid ${server.pid})`);
    const pool = new pg.Pool({ host: server.host, port: server.port, user: server.user, database: server.database, max: POSTGRES_POOL_SIZE });
    // An idle pooled connection closed by the server (at shutdown) is not a failed append.
    pool.on('error', () => undefined);
    const started = server;
    return eventLogSession({
      open: (name) => PostgresEventLog.create(pool, `messages_${name.toLowerCase().replace(/[^a-z0-9]+/g, '_')}`),
      teardown: async () => {
        try {
          await pool.end();
        } finally {
          await started.stop();
        }
      },
    });
  },
};

async function loadPg(): Promise<(typeof import('pg'))['default']> {
  try {
    return (await import('pg')).default;
  } catch (error) {
    throw new SystemSkippedError(`the "pg" client does not load (${(error as Error).message}): run "npm install" at the repository root`, { cause: error });
  }
}

class PostgresEventLog implements EventLog {
  /** The workload reuses one payload array per scenario: view it as Buffers once. */
  private readonly buffers = new WeakMap<readonly Uint8Array[], Buffer[]>();

  private constructor(
    private readonly pool: Pool,
    private readonly table: string,
  ) {}

  static async create(pool: Pool, table: string): Promise<PostgresEventLog> {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.query(`
      CREATE TABLE ${table} (
        global_position bigserial PRIMARY KEY,
        position bigint NOT NULL,
        time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
        stream_name text NOT NULL,
        type text NOT NULL,
        data bytea NOT NULL,
        metadata bytea
      )`);
    await pool.query(`CREATE UNIQUE INDEX ${table}_stream ON ${table} (stream_name, position)`);
    return new PostgresEventLog(pool, table);
  }

  append(streamId: string, expectedVersion: number, payloads: readonly Uint8Array[]): Promise<unknown> {
    let buffers = this.buffers.get(payloads);
    if (buffers === undefined) {
      buffers = payloads.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      this.buffers.set(payloads, buffers);
    }
    if (buffers.length === 1) {
      return this.pool.query({
        name: `${this.table}_insert_1`,
        text: `INSERT INTO ${this.table} (stream_name, position, type, data) VALUES ($1, $2, $3, $4)`,
        values: [streamId, expectedVersion + 1, EVENT_TYPE, buffers[0]],
      });
    }
    const positions = Array.from({ length: buffers.length }, (_, i) => expectedVersion + i + 1);
    return this.pool.query({
      name: `${this.table}_insert_n`,
      text: `INSERT INTO ${this.table} (stream_name, position, type, data)
             SELECT $1, p, $2, d FROM unnest($3::bigint[], $4::bytea[]) AS u(p, d)`,
      values: [streamId, EVENT_TYPE, positions, buffers],
    });
  }

  async readAll(): Promise<ReadTotals> {
    const client = await this.pool.connect();
    try {
      let events = 0;
      let payloadBytes = 0;
      let after = '0';
      for (;;) {
        const page = await client.query<{ global_position: string; data: Buffer }>({
          name: `${this.table}_page`,
          text: `SELECT global_position, stream_name, position, type, data FROM ${this.table}
                 WHERE global_position > $1 ORDER BY global_position LIMIT ${READ_PAGE_ROWS}`,
          values: [after],
        });
        for (const row of page.rows) payloadBytes += row.data.length;
        events += page.rows.length;
        if (page.rows.length < READ_PAGE_ROWS) return { events, payloadBytes };
        after = page.rows[page.rows.length - 1].global_position;
      }
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    // Drop the table so the next scenario's checkpoints do not write it out again.
    await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`);
  }
}
