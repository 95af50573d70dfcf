import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { SystemSkippedError, type BenchSystem } from '../bench-system.js';
import { EVENT_TYPE, eventLogSession, type EventLog, type ReadTotals } from '../event-log-session.js';

type DatabaseConstructor = typeof BetterSqlite3;

/** The events table: a global position, and the unique stream+version index that refuses a stale append. */
const SCHEMA = `
  CREATE TABLE events (
    global_position INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    metadata BLOB,
    time INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX events_stream_version ON events (stream_id, version);
`;

/**
 * SQLite through better-sqlite3 in its durable configuration: WAL with `synchronous=FULL`
 * (the WAL is fsynced at every commit), one transaction per append.
 */
export const sqliteSystem: BenchSystem = {
  id: 'sqlite',
  label: 'SQLite (better-sqlite3)',
  group: 'peer',
  configuration: 'WAL, synchronous=FULL, events table + unique (stream, version) index, one transaction per append',
  durability: 'WAL fsynced at every commit: survives power loss',
  async setup(context) {
    const Database = await loadBetterSqlite3();
    return eventLogSession({
      open: async (name) => new SqliteEventLog(new Database(join(context.directory, `${name}.sqlite`))),
      appendersMax: 1,
      concurrencyUnsupported: 'better-sqlite3 is synchronous and SQLite has one writer with no group commit: its single-event rate is the sequential row',
    });
  },
};

async function loadBetterSqlite3(): Promise<DatabaseConstructor> {
  try {
    // A CommonJS `export =` module: Node hands it over as `default`.
    const module: unknown = await import('better-sqlite3');
    const Database = ((module as { default?: DatabaseConstructor }).default ?? module) as DatabaseConstructor;
    // Opening a database proves the native binding loads (it is built at install time).
    new Database(':memory:').close();
    return Database;
  } catch (error) {
    throw new SystemSkippedError(
      `better-sqlite3 does not load (${(error as Error).message.split('\n')[0]}): run "npm rebuild better-sqlite3" (needs python3, make and g++ when no prebuilt binary can be downloaded)`,
      { cause: error },
    );
  }
}

class SqliteEventLog implements EventLog {
  private readonly insert: BetterSqlite3.Statement<[string, number, string, Buffer, number]>;
  private readonly appendAll: BetterSqlite3.Transaction<(streamId: string, expectedVersion: number, payloads: readonly Buffer[]) => void>;
  /** better-sqlite3 binds Buffers as BLOBs: view each payload array as Buffers once. */
  private readonly buffers = new WeakMap<readonly Uint8Array[], Buffer[]>();

  constructor(private readonly db: BetterSqlite3.Database) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(SCHEMA);
    this.insert = db.prepare('INSERT INTO events (stream_id, version, type, data, time) VALUES (?, ?, ?, ?, ?)');
    this.appendAll = db.transaction((streamId: string, expectedVersion: number, payloads: readonly Buffer[]) => {
      const now = Date.now();
      for (let i = 0; i < payloads.length; i++) this.insert.run(streamId, expectedVersion + i + 1, EVENT_TYPE, payloads[i], now);
    });
  }

  async append(streamId: string, expectedVersion: number, payloads: readonly Uint8Array[]): Promise<void> {
    let buffers = this.buffers.get(payloads);
    if (buffers === undefined) {
      buffers = payloads.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      this.buffers.set(payloads, buffers);
    }
    this.appendAll(streamId, expectedVersion, buffers);
  }

  async readAll(): Promise<ReadTotals> {
    let events = 0;
    let payloadBytes = 0;
    const rows = this.db.prepare('SELECT global_position, stream_id, version, type, data FROM events ORDER BY global_position').raw(true);
    for (const row of rows.iterate() as IterableIterator<[number, string, number, string, Buffer]>) {
      events++;
      payloadBytes += row[4].length;
    }
    return { events, payloadBytes };
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
