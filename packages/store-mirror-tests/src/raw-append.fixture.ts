/**
 * The backends' own raw-append test helpers (not part of their public API), loaded from their
 * sources: what a crash in the middle of a write leaves, for the conformance suite's appendRaw.
 */
type RawAppend = (directory: string, bytes: Uint8Array) => Promise<void>;

async function load(path: string, name: string): Promise<RawAppend> {
  const module = (await import(/* @vite-ignore */ new URL(path, import.meta.url).href)) as Record<string, RawAppend>;
  return module[name];
}

export const appendRawToFileLog: RawAppend = async (directory, bytes) => (await load('../../store-file/src/raw-append.fixture.ts', 'appendRawToFileLog'))(directory, bytes);
export const appendRawToLmdbLog: RawAppend = async (directory, bytes) => (await load('../../store-lmdb/src/raw-tail.fixture.ts', 'appendRawToLmdbLog'))(directory, bytes);
