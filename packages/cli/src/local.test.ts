import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.js';
import { jsonLines, sluice, startSluice, tempFolder } from './testing/cli-harness.js';

/**
 * The commands against a local partition folder, run in-process through `run(argv, io)`.
 * Invariants: what `append` acknowledges, `read` and `head` show; every failure maps to its
 * documented exit code and says what to do; nothing but events goes to stdout.
 */

async function partitionPath(): Promise<string> {
  return join(await tempFolder(), 'p1');
}

describe('sluice: help and usage errors', () => {
  it('prints help with every command and the exit codes (exit 0)', async () => {
    const result = await sluice(['--help']);
    expect(result.code).toBe(ExitCode.Ok);
    for (const command of ['broker', 'node', 'append', 'read', 'tail', 'head', 'levels', 'scrub', 'reindex', 'keygen']) {
      expect(result.stdout).toContain(command);
    }
    expect(result.stdout).toContain('Exit codes:');
  });

  it.each(['broker', 'node', 'append', 'read', 'tail', 'head', 'levels', 'scrub', 'reindex', 'keygen'])('has --help with examples for %s', async (command) => {
    const result = await sluice([command, '--help']);
    expect(result.code).toBe(ExitCode.Ok);
    expect(result.stdout).toContain(`Usage: sluice ${command}`);
    expect(result.stdout).toContain('Examples:');
  });

  it('exits 1 for unknown commands and options, bad numbers and missing targets', async () => {
    const unknown = await sluice(['raed']);
    expect(unknown.code).toBe(ExitCode.Usage);
    expect(unknown.stderr).toContain("unknown command 'raed'");
    expect(unknown.stderr).toContain('read'); // the suggestion
    expect((await sluice(['read', '--path', 'x', '--from-seq', 'abc'])).stderr).toContain('--from-seq must be an integer');
    expect((await sluice(['read', '--path', 'x', '--from-seq', '0'])).code).toBe(ExitCode.Usage);
    const noTarget = await sluice(['read']);
    expect(noTarget.code).toBe(ExitCode.Usage);
    expect(noTarget.stderr).toContain('--path <dir> (local) or --config <file>');
    const both = await sluice(['read', '--path', 'x', '--broker', 'tcp://127.0.0.1:1']);
    expect(both.code).toBe(ExitCode.Usage);
    expect(both.stderr).toContain('cannot be used with');
    expect((await sluice(['append', '--path', 'x', '--data', '{}'])).stderr).toContain('--data needs --stream');
    const version = await sluice(['append', '--path', 'x', '--stream', 's', '--type', 't', '--data', '1', '--expected-version', 'soon']);
    expect(version.code).toBe(ExitCode.Usage);
    expect(version.stderr).toContain('"any", "no-stream" or "exists"');
    const noInput = await sluice(['append', '--path', 'x']);
    expect(noInput.code).toBe(ExitCode.Usage);
    expect(noInput.stderr).toContain('pipe JSON lines into stdin');
  });

  it('reports errors as JSON on stderr with --json', async () => {
    const result = await sluice(['read', '--path', '/nonexistent/sluice/p', '--json']);
    expect(result.code).toBe(ExitCode.NotFound);
    expect(result.stdout).toBe('');
    expect(jsonLines(result.stderr)[0]).toMatchObject({ error: { code: 'SLUICE_CLI_NOT_FOUND', exitCode: 2 } });
  });
});

describe('sluice append / read / head on a local path', () => {
  it('appends one event, reads it back and shows the head', async () => {
    const path = await partitionPath();
    const appended = await sluice([
      'append', '--path', path, '--stream', 'account-1', '--type', 'Opened', '--data', '{"owner":"Ada"}', '--expected-version', '0',
    ]);
    expect(appended).toMatchObject({ code: ExitCode.Ok, stderr: '' });
    expect(appended.lines).toEqual(['appended #1 account-1@1']);
    await sluice(['append', '--path', path, '--stream', 'account-1', '--type', 'Noted', '--data', 'plain text']);

    const read = await sluice(['read', '--path', path]);
    expect(read.code).toBe(ExitCode.Ok);
    expect(read.lines).toEqual(['#1 account-1@1 Opened {"owner":"Ada"}', '#2 account-1@2 Noted "plain text"']);

    const head = await sluice(['head', '--path', path, '--stream', 'account-1']);
    expect(head.lines).toEqual([`partition: ${path}`, 'last seq: 2', 'streams: 1', 'stream account-1: version 2']);
  });

  it('exits 3 on a wrong expected version and appends nothing', async () => {
    const path = await partitionPath();
    const args = ['append', '--path', path, '--stream', 's-1', '--type', 'Created', '--data', '{}', '--expected-version', 'no-stream'];
    expect((await sluice(args)).code).toBe(ExitCode.Ok);
    const conflict = await sluice(args);
    expect(conflict.code).toBe(ExitCode.Conflict);
    expect(conflict.stdout).toBe('');
    expect(conflict.stderr).toContain('stream "s-1" is at version 1, the append expected no-stream');
    expect((await sluice(['head', '--path', path, '--json'])).lines.map((line) => JSON.parse(line))).toEqual([
      { partition: path, lastSeq: 1, streamCount: 1 },
    ]);
  });

  it('returns the original result for a repeated command id', async () => {
    const path = await partitionPath();
    const args = ['append', '--path', path, '--stream', 's-1', '--type', 'Paid', '--data', '{"n":1}', '--command-id', 'pay-1', '--json'];
    const first = jsonLines((await sluice(args)).stdout)[0];
    const again = jsonLines((await sluice(args)).stdout)[0];
    expect(first).toMatchObject({ firstSeq: 1, duplicate: false });
    expect(again).toMatchObject({ firstSeq: 1, duplicate: true });
    expect((await sluice(['read', '--path', path])).lines).toHaveLength(1);
  });

  it('appends JSON lines from stdin and reads them back as JSON', async () => {
    const path = await partitionPath();
    const appended = await sluice(['append', '--path', path, '--json'], {
      stdin: [
        '{"stream":"account-1","type":"Opened","data":{"owner":"Ada"},"commandId":"open-1"}',
        '',
        '{"stream":"account-2","type":"Opened","data":"text data","metadata":{"by":"test"}}',
        '{"stream":"account-1","type":"Deposited","data":{"amount":5},"expectedVersion":1,"correlationId":"c-1"}',
      ],
    });
    expect(appended.code).toBe(ExitCode.Ok);
    expect(jsonLines(appended.stdout).map((line) => [line.line, line.firstSeq])).toEqual([
      [1, 1],
      [3, 2],
      [4, 3],
    ]);

    const read = await sluice(['read', '--path', path, '--json']);
    const events = jsonLines(read.stdout);
    expect(events).toMatchObject([
      { seq: 1, stream: 'account-1', version: 1, type: 'Opened', data: { owner: 'Ada' }, commandIds: ['open-1'] },
      { seq: 2, stream: 'account-2', version: 1, type: 'Opened', text: 'text data', metadata: { by: 'test' } },
      { seq: 3, stream: 'account-1', version: 2, type: 'Deposited', data: { amount: 5 }, correlationId: 'c-1' },
    ]);
    expect(typeof events[0].timestamp).toBe('string');

    const filtered = await sluice(['read', '--path', path, '--stream', 'account-1', '--from-seq', '2', '--json']);
    expect(jsonLines(filtered.stdout).map((event) => event.seq)).toEqual([3]);
    const limited = await sluice(['read', '--path', path, '--max-count', '2', '--to-seq', '3']);
    expect(limited.lines).toHaveLength(2);
    expect((await sluice(['read', '--path', path, '--from-seq', '3', '--to-seq', '2'])).code).toBe(ExitCode.Usage);
    const head = await sluice(['head', '--path', path, '--stream', 'account-1', '--json']);
    expect(JSON.parse(head.lines[0])).toMatchObject({ lastSeq: 3, streamCount: 2, stream: 'account-1', streamVersion: 2 });
  });

  it('stops at the first bad stdin line with its exit code, keeping the lines before it', async () => {
    const path = await partitionPath();
    const badLine = await sluice(['append', '--path', path, '--stream', 's', '--type', 'T'], {
      stdin: ['{"data":1}', '{"data":2,"colour":"red"}', '{"data":3}'],
    });
    expect(badLine.code).toBe(ExitCode.Usage);
    expect(badLine.lines).toEqual(['appended #1 s@1']);
    expect(badLine.stderr).toContain('stdin line 2 has unknown keys "colour"');

    const conflict = await sluice(['append', '--path', path], {
      stdin: ['{"stream":"s","type":"T","data":4,"expectedVersion":1}', '{"stream":"s","type":"T","data":5,"expectedVersion":1}'],
    });
    expect(conflict.code).toBe(ExitCode.Conflict);
    expect(conflict.lines).toEqual(['appended #2 s@2']);
    expect(conflict.stderr).toContain('stopped at stdin line 2');
    expect((await sluice(['append', '--path', path], { stdin: ['not json'] })).code).toBe(ExitCode.Usage);
  });

  it('exits 2 for a folder that is not a partition', async () => {
    const missing = await sluice(['read', '--path', join(await tempFolder(), 'nope')]);
    expect(missing.code).toBe(ExitCode.NotFound);
    expect(missing.stderr).toContain('no partition at');
    const empty = await tempFolder();
    const notAPartition = await sluice(['head', '--path', empty]);
    expect(notAPartition.code).toBe(ExitCode.NotFound);
    expect(notAPartition.stderr).toContain('holds no partition log');
  });

  it('exits 4 when another writer holds the partition, and reads while it writes', async () => {
    const path = await partitionPath();
    await mkdir(path, { recursive: true });
    const writer = await openPartition({ storage: createFileStorage({ directory: path }), name: 'p1' });
    try {
      await writer.append({ streamId: 's', events: [{ type: 'T', data: new TextEncoder().encode('{"a":1}') }] });
      const locked = await sluice(['append', '--path', path, '--stream', 's', '--type', 'T', '--data', '1']);
      expect(locked.code).toBe(ExitCode.Unavailable);
      expect(locked.stderr).toContain('is open by another writer');
      expect(locked.stderr).toContain('hint: another process writes this partition');
      expect((await sluice(['read', '--path', path])).lines).toEqual(['#1 s@1 T {"a":1}']);
    } finally {
      await writer.close();
    }
  });
});

describe('sluice tail on a local path', () => {
  it('follows new commits written by another writer until stopped, then exits 0', async () => {
    const path = await partitionPath();
    await sluice(['append', '--path', path, '--stream', 'old', '--type', 'T', '--data', '0']);
    const tail = startSluice(['tail', '--path', path, '--from-seq', '2', '--json']);
    const writer = await openPartition({ storage: createFileStorage({ directory: path }), name: 'p1' });
    try {
      for (let n = 1; n <= 3; n += 1) {
        await writer.append({ streamId: 'live', events: [{ type: 'Tick', data: new TextEncoder().encode(String(n)) }] });
      }
      const lines = await tail.stdout.waitForLines(3);
      expect(lines.map((line) => JSON.parse(line))).toMatchObject([
        { seq: 2, stream: 'live', data: 1 },
        { seq: 3, stream: 'live', data: 2 },
        { seq: 4, stream: 'live', data: 3 },
      ]);
    } finally {
      await writer.close();
    }
    expect(await tail.stop()).toBe(ExitCode.Ok);
    expect(tail.stderr.text).toBe('');
  });

  it('starts after the last commit by default: only new commits are printed', async () => {
    const path = await partitionPath();
    await sluice(['append', '--path', path, '--stream', 'old', '--type', 'T', '--data', '0']);
    const tail = startSluice(['tail', '--path', path]);
    const writer = await openPartition({ storage: createFileStorage({ directory: path }), name: 'p1' });
    try {
      // When the tail reads the head is not observable from outside: keep committing until it
      // prints. Whatever the timing, seq 1 (committed before it started) must never show.
      const first = tail.stdout.waitForLines(1);
      let settled = false;
      void first.finally(() => {
        settled = true;
      });
      while (!settled) {
        await writer.append({ streamId: 'new', events: [{ type: 'T', data: new TextEncoder().encode('1') }] });
        await Promise.race([first, new Promise((resolve) => setTimeout(resolve, 100))]);
      }
      const [line] = await first;
      expect(line).toMatch(/^#\d+ new@\d+ T 1$/);
      expect(tail.stdout.text).not.toContain('old@1');
    } finally {
      await writer.close();
    }
    expect(await tail.stop()).toBe(ExitCode.Ok);
  });

  it('replays from --from-seq, filtered by --stream', async () => {
    const path = await partitionPath();
    await sluice(['append', '--path', path], {
      stdin: ['{"stream":"a","type":"T","data":1}', '{"stream":"b","type":"T","data":2}', '{"stream":"a","type":"T","data":3}'],
    });
    const tail = startSluice(['tail', '--path', path, '--from-seq', '1', '--stream', 'a']);
    expect(await tail.stdout.waitForLines(2)).toEqual(['#1 a@1 T 1', '#3 a@2 T 3']);
    expect(await tail.stop()).toBe(ExitCode.Ok);
  });
});

describe('progress bars', () => {
  it('draws a bar on a terminal stderr for long reads, never on stdout and never with --json', async () => {
    const path = await partitionPath();
    const lines = Array.from({ length: 1200 }, (_, n) => `{"stream":"s-${n % 7}","type":"T","data":${n}}`);
    expect((await sluice(['append', '--path', path, '--fsync', 'none'], { stdin: lines })).code).toBe(ExitCode.Ok);

    const onTerminal = await sluice(['read', '--path', path], { stderrIsTTY: true });
    expect(onTerminal.lines).toHaveLength(1200);
    expect(onTerminal.stderr).toContain('read [');
    expect(onTerminal.stdout).not.toContain('read [');

    const json = await sluice(['read', '--path', path, '--json'], { stderrIsTTY: true });
    expect(json.stderr).toBe('');
    expect(jsonLines(json.stdout)).toHaveLength(1200);
    const piped = await sluice(['read', '--path', path]);
    expect(piped.stderr).toBe('');

    const head = await sluice(['head', '--path', path], { stderrIsTTY: true });
    expect(head.stderr).toContain('counting streams [');
    expect(head.lines).toContain('streams: 7');
  });
});

describe('sluice keygen', () => {
  it('writes a private secret key file and a public one, and prints only the public key', async () => {
    const folder = await tempFolder();
    const result = await sluice(['keygen', '--out', 'broker'], { cwd: folder });
    expect(result.code).toBe(ExitCode.Ok);
    const publicKey = result.lines[0];
    expect(publicKey).toHaveLength(40);
    const secretFile = join(folder, 'broker.key');
    const secretText = await readFile(secretFile, 'utf8');
    const secretKey = secretText.split('\n').find((line) => line.length === 40) as string;
    expect(result.stdout).not.toContain(secretKey);
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600);
    expect((await readFile(join(folder, 'broker.pub'), 'utf8')).trim()).toBe(publicKey);
    const again = await sluice(['keygen', '--out', 'broker'], { cwd: folder });
    expect(again.code).toBe(ExitCode.Usage);
    expect(again.stderr).toContain('--force');
  });

  it('warns about a secret key file others can read, and never prints the key', async () => {
    const folder = await tempFolder();
    await sluice(['keygen', '--out', 'app'], { cwd: folder });
    await chmod(join(folder, 'app.key'), 0o644);
    const secretKey = (await readFile(join(folder, 'app.key'), 'utf8')).trim().split('\n').at(-1) as string;
    const result = await sluice(
      ['head', '--broker', 'tcp://127.0.0.1:9', '--partition', 'p1', '--timeout-ms', '20', '--curve-server-key', './app.pub', '--curve-secret-key-file', 'app.key'],
      { cwd: folder },
    );
    expect(result.code).toBe(ExitCode.Unavailable);
    expect(result.stderr).toContain('can be read by other users (mode 644): chmod 600');
    expect(result.stderr).not.toContain(secretKey);
    const curveHead = (secretKeyFile: string) =>
      sluice(['head', '--broker', 'tcp://127.0.0.1:9', '--partition', 'p1', '--curve-server-key', './app.pub', '--curve-secret-key-file', secretKeyFile], {
        cwd: folder,
      });
    const publicAsSecret = await curveHead('app.pub');
    expect(publicAsSecret.code).toBe(ExitCode.Usage);
    expect(publicAsSecret.stderr).toContain('is a public key file');
    await writeFile(join(folder, 'garbage.key'), 'not a key\n', { mode: 0o600 });
    const notAKey = await curveHead('garbage.key');
    expect(notAKey.code).toBe(ExitCode.Usage);
    expect(notAKey.stderr).toContain('must hold one CURVE secret key');
    expect(notAKey.stderr).not.toContain('not a key');
    expect((await sluice(['head', '--broker', 'tcp://127.0.0.1:9', '--partition', 'p1', '--curve-server-key', 'x', '--curve-secret-key-file', 'missing.key'], { cwd: folder })).code).toBe(
      ExitCode.NotFound,
    );
  });

  it('exits 1 with the help on stderr when no command is given', async () => {
    const result = await sluice([]);
    expect(result.code).toBe(ExitCode.Usage);
    expect(result.stderr).toContain('Usage: sluice');
  });
});

describe('sluice on a damaged partition (issue 8: damage below the durable watermark is never a clean end)', () => {
  it('read, head and append exit non-zero naming the damage when an acknowledged batch was changed', async () => {
    const path = await partitionPath();
    for (let n = 1; n <= 3; n++) expect((await sluice(['append', '--path', path, '--stream', 's', '--type', 'E', '--data', `{"n":${n}}`])).code).toBe(ExitCode.Ok);
    // Flip one byte inside the last acknowledged batch (its frames end at the last non-zero byte).
    const file = join(path, '00000001.seg');
    const bytes = await readFile(file);
    let last = bytes.length - 1;
    while (bytes[last] === 0) last--;
    bytes[last - 120] ^= 0xff;
    await writeFile(file, bytes);
    for (const argv of [
      ['read', '--path', path],
      ['head', '--path', path],
      ['append', '--path', path, '--stream', 's', '--type', 'E', '--data', '{"n":4}'],
    ]) {
      const result = await sluice(argv);
      expect(result.code, argv[0]).toBe(ExitCode.DataError);
      expect(result.stderr).toMatch(/holds seq 1\.\.2 .* made seq 3 durable: acknowledged commits are missing or damaged; restore the partition/);
    }
  });
});
