import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { appendCommand } from './commands/append-command.js';
import { brokerCommand } from './commands/broker-command.js';
import { addBrokerLimitFlags, addNodeLimitFlags } from './limit-flags.js';
import { headCommand } from './commands/head-command.js';
import { keygenCommand } from './commands/keygen-command.js';
import { levelsCommand } from './commands/levels-command.js';
import { reindexCommand, scrubCommand } from './commands/maintenance-command.js';
import { nodeCommand } from './commands/node-command.js';
import { readCommand } from './commands/read-command.js';
import { tailCommand } from './commands/tail-command.js';
import { parseExpectedVersion } from './event-input.js';
import { ExitCode, exitCodeOf, type ExitCodeValue } from './exit-codes.js';
import type { CliIo } from './io.js';
import { integerAtLeast, positiveInteger } from './parse-options.js';
import { addTargetOptions } from './targets/target-options.js';

const EXIT_CODES_HELP = `
Exit codes:
  0    success (a broker, node or tail stopped by Ctrl-C / SIGTERM included)
  1    usage error: bad arguments, invalid input or config
  2    not found: no such partition folder, unknown partition, no route for a stream
  3    conflict: wrong expected version, command id already used for another commit
  4    unavailable: storage or cluster unreachable, locked, overloaded, broker timeout
  5    refused: CURVE authentication failed
  6    data error: corrupt log (\`sluice scrub\`: a damaged copy not repaired), incompatible protocol or format versions
  70   internal error (a bug: please report it)
  130  interrupted before the work was done`;

const TARGET_HELP = `
Where: --path <dir> reads or writes a local partition folder (file storage); --config <file>
or --broker <endpoint> --partition <name> go through a cluster's brokers.`;

/**
 * Runs the `sluice` command line (without the `node` and script arguments) and resolves with
 * the exit code. Never calls `process.exit` and writes only to `io`, so tests call it directly.
 *
 * @example
 * const { io, dispose } = processIo();
 * process.exitCode = await run(process.argv.slice(2), io);
 * dispose();
 */
export async function run(argv: readonly string[], io: CliIo): Promise<ExitCodeValue> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return ExitCode.Ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      const shown = error.code === 'commander.helpDisplayed' || error.code === 'commander.version';
      return shown || (error.code === 'commander.help' && error.exitCode === 0) ? ExitCode.Ok : ExitCode.Usage;
    }
    // The reader of stdout went away (`sluice read | head`): it has what it wanted.
    if ((io.signal.reason as { code?: unknown } | undefined)?.code === 'EPIPE') return ExitCode.Ok;
    // Stopped by a signal while waiting on something that then failed (an aborted request):
    // an interruption, not a bug.
    const code = io.signal.aborted && exitCodeOf(error) === ExitCode.Internal ? ExitCode.Interrupted : exitCodeOf(error);
    reportError(error, code, argv, io);
    return code;
  }
}

function reportError(error: unknown, code: ExitCodeValue, argv: readonly string[], io: CliIo): void {
  const message = error instanceof Error ? error.message : String(error);
  const command = argv.find((arg) => !arg.startsWith('-')) ?? '';
  if (argv.includes('--json')) {
    const errorCode = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : undefined;
    io.stderr.write(`${JSON.stringify({ error: { message, code: errorCode, exitCode: code } })}\n`);
    return;
  }
  io.stderr.write(`sluice${command === '' ? '' : ` ${command}`}: ${message}\n`);
  const hint = hintFor(error);
  if (hint !== undefined) io.stderr.write(`hint: ${hint}\n`);
  if (code === ExitCode.Internal && error instanceof Error && error.stack !== undefined) {
    io.stderr.write(`this is a bug in sluice; please report it with this trace:\n${error.stack}\n`);
  }
}

/** A command-line hint where a library's message speaks in API terms. */
function hintFor(error: unknown): string | undefined {
  const { code, reason } = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; reason?: unknown };
  if (code === 'SLUICE_STORAGE' && reason === 'Locked') {
    return (
      'another process writes this partition (a node, or another `sluice append`): append through it ' +
      '(--config / --broker) or stop it; read, tail and head work meanwhile'
    );
  }
  if (code === 'SLUICE_BROKER_PARTITION_UNAVAILABLE' || code === 'SLUICE_BROKER_TIMEOUT') {
    return 'is `sluice broker` running there, and a `sluice node` serving the partition? (`sluice broker --verbose` shows workers)';
  }
  return undefined;
}

function version(): string {
  try {
    const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function expectedVersion(value: string): ReturnType<typeof parseExpectedVersion> {
  try {
    return parseExpectedVersion(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function buildProgram(io: CliIo): Command {
  const program = new Command('sluice')
    .description('Run a Sluice broker or node; append, read, tail and inspect partitions, locally or in a cluster.')
    .version(version(), '-V, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true)
    .addHelpText('after', EXIT_CODES_HELP);

  addBrokerLimitFlags(program
    .command('broker')
    .description('Run a Majordomo (MDP/0.1) broker until Ctrl-C / SIGTERM. Prints the bound endpoint first.')
    .option('--endpoint <endpoint>', 'where clients (and workers) connect; port 0 or * picks a free port', 'tcp://127.0.0.1:5555')
    .option('--worker-endpoint <endpoint>', 'a separate endpoint for workers (nodes), with its own CURVE allow-list')
    .option('--config <file>', 'read "heartbeats" and "limits.broker" from this sluice.json (flags win)')
    .option('--curve-secret-key-file <file>', "enable CURVE: the broker's secret key file (from `sluice keygen`)")
    .option('--allow-client-keys-file <file>', 'CURVE: public keys allowed to connect, one per line (clients, and nodes unless --worker-endpoint)')
    .option('--allow-worker-keys-file <file>', 'CURVE with --worker-endpoint: public keys allowed to register workers')
    .option('--verbose', 'report workers coming and going, refused peers and rejected requests', false)
    .option('--json', 'JSON lines on stdout: {"event":"listening",...} first, {"event":"stopped",...} last', false)
    .addHelpText(
      'after',
      `
Examples:
  sluice broker --endpoint tcp://0.0.0.0:5555
  sluice broker --endpoint tcp://127.0.0.1:0            # prints e.g. tcp://127.0.0.1:41233
  sluice broker --config sluice.json --client-in-flight-max 500000 --busy-timeout-ms 120000
  sluice keygen --out broker && sluice keygen --out app
  sluice broker --endpoint tcp://0.0.0.0:5555 \\
    --curve-secret-key-file broker.key --allow-client-keys-file clients.txt`,
    )
    .action((flags) => brokerCommand(flags, io)));

  addNodeLimitFlags(program
    .command('node')
    .description("Run a node: serve the config's partitions for this node through its brokers until Ctrl-C / SIGTERM.")
    .requiredOption('--config <file>', 'the cluster config (sluice.json)')
    .option('--node <name>', 'this node\'s name under "nodes" in the config (default: the host name)')
    .option('--curve-server-key <key|file>', "brokers with CURVE: the brokers' public key, or a file holding it")
    .option('--curve-secret-key-file <file>', "brokers with CURVE: this node's secret key file")
    .option('--json', 'JSON lines on stdout', false)
    .addHelpText(
      'after',
      `
Examples:
  sluice node --config sluice.json --node node-a
  sluice node --config sluice.json --curve-server-key broker.pub --curve-secret-key-file node-a.key`,
    )
    .action((flags) => nodeCommand(flags, io)));

  addTargetOptions(
    program
      .command('append')
      .description('Append events: one with --stream/--type/--data, or JSON lines from stdin (one commit per line).'),
  )
    .option('--stream <id>', 'the stream (default for stdin lines without "stream")')
    .option('--type <name>', 'the event type (default for stdin lines without "type")')
    .option('--data <json|text>', 'the event data, stored as given (UTF-8)')
    .option('--metadata <json|text>', 'event metadata, stored as given (with --data)')
    .addOption(new Option('--expected-version <v>', 'a version number, any, no-stream or exists (with --data)').argParser(expectedVersion))
    .option('--command-id <id>', 'idempotency key: sent again, the append returns the first result (with --data)')
    .option('--correlation-id <id>', 'correlation id recorded with the commit (with --data)')
    .option('--fsync <policy>', 'local: commit, none or interval:<ms>ms', 'commit')
    .addOption(
      new Option('--in-flight <n>', 'stdin lines appended at once (default 256 locally, 1 in a cluster, which may reorder concurrent appends)').argParser(
        positiveInteger('--in-flight'),
      ),
    )
    .option('--json', 'one JSON object per commit on stdout', false)
    .addHelpText(
      'after',
      `${TARGET_HELP}

Stdin lines are JSON objects: {"stream":"account-1","type":"Deposited","data":{"amount":5}}
with optional "metadata", "expectedVersion", "commandId", "correlationId", "causationId".
A "data" string is stored as its text, anything else as JSON. The first failing line stops
the input; lines already sent are reported.

Examples:
  sluice append --path ./data/p1 --stream account-1 --type Opened --data '{"owner":"Ada"}' --expected-version 0
  cat events.jsonl | sluice append --path ./data/p1 --json
  sluice append --config sluice.json --stream account-1 --type Deposited --data '{"amount":5}' --command-id dep-17`,
    )
    .action((flags) => appendCommand(flags, io));

  addTargetOptions(program.command('read').description('Print committed events by seq, then exit.'))
    .addOption(new Option('--from-seq <seq>', 'first seq').argParser(positiveInteger('--from-seq')).default(1))
    .addOption(new Option('--to-seq <seq>', 'last seq, inclusive (default: the last committed)').argParser(positiveInteger('--to-seq')))
    .option('--stream <id>', "only this stream's events")
    .addOption(new Option('--max-count <n>', 'stop after this many events').argParser(integerAtLeast('--max-count', 0)))
    .option('--json', 'one JSON object per event on stdout (no progress bar)', false)
    .addHelpText(
      'after',
      `${TARGET_HELP}

Text output: "#seq stream@version type data". JSON output: {"seq","stream","version","type",
"timestamp","data"} ("text" or "base64" instead of "data" when the payload is not JSON).
Long reads draw a progress bar on stderr when it is a terminal.

Examples:
  sluice read --path ./data/p1
  sluice read --path ./data/p1 --stream account-1 --json | jq .data
  sluice read --broker tcp://10.0.0.1:5555 --partition p1 --from-seq 1000 --max-count 50`,
    )
    .action((flags) => readCommand(flags, io));

  addTargetOptions(program.command('tail').description('Print new commits as they are written, until Ctrl-C / SIGTERM.'))
    .addOption(new Option('--from-seq <seq>', 'start here (default: after the last committed seq)').argParser(positiveInteger('--from-seq')))
    .option('--stream <id>', "only this stream's events")
    .addOption(new Option('--poll-ms <ms>', 'ignored (cluster tail is pushed by the node since issue 10); kept for old scripts').argParser(positiveInteger('--poll-ms')).default(250))
    .option('--json', 'one JSON object per event on stdout', false)
    .addHelpText(
      'after',
      `${TARGET_HELP}
A local tail takes no lock: it follows a partition while another process writes it.

Examples:
  sluice tail --path ./data/p1
  sluice tail --path ./data/p1 --from-seq 1 --json`,
    )
    .action((flags) => tailCommand(flags, io));

  addTargetOptions(program.command('head').description("Show a partition's last seq, stream count and a stream's version."))
    .option('--stream <id>', "also show this stream's version (0: no events)")
    .option('--json', 'one JSON object on stdout', false)
    .addHelpText(
      'after',
      `${TARGET_HELP}
A local head counts streams by scanning the log (with a progress bar on a terminal).

Examples:
  sluice head --path ./data/p1 --stream account-1
  sluice head --config sluice.json --partition p1 --json`,
    )
    .action((flags) => headCommand(flags, io));

  program
    .command('levels')
    .description("Validate a sluice.json and print each partition's effective reliability level: locations, fsync, ship targets, lag alert, ack mode.")
    .requiredOption('--config <file>', 'the cluster config (sluice.json)')
    .option('--node <name>', 'only the partitions of this node (under "nodes")')
    .option('--json', 'one JSON object per partition on stdout', false)
    .addHelpText(
      'after',
      `
Paths are absolute, {partition} is substituted, credentials in target options are hidden.
Errors list every problem in the config at once, as \`sluice node\` would report them.

Examples:
  sluice levels --config examples/levels/sluice.json
  sluice levels --config sluice.json --node node-a --json`,
    )
    .action((flags) => levelsCommand(flags, io));

  program
    .command('scrub')
    .description("Re-verify every copy of a partition's log (checksums, digests, chain); repair a damaged mirror copy from a good one.")
    .option('--path <dir>', 'a local partition folder (file storage)')
    .option('--config <file>', "the config's partitions, each on all of its level's locations")
    .option('--partition <name...>', 'with --config: only these partitions')
    .option('--node <name>', 'with --config: only the partitions of this node')
    .option('--no-repair', 'only verify and report')
    .option('--json', 'one JSON object per partition on stdout', false)
    .addHelpText(
      'after',
      `
Opens each partition as its writer: stop the node serving it first. Exits 6 when a copy is
damaged and was not repaired (a single folder has no other copy to repair it from).

Examples:
  sluice scrub --path ./data/p1
  sluice scrub --config sluice.json --partition payments --json
  sluice scrub --config sluice.json --no-repair`,
    )
    .action((flags) => scrubCommand(flags, io));

  program
    .command('reindex')
    .description("Rebuild a partition folder's persisted index from its log (the log is only read).")
    .requiredOption('--path <dir>', 'the partition folder (file storage)')
    .option('--index <dir>', 'the folder the partition keeps its index files in (default: <path>.index, where sluice node keeps it)')
    .option('--json', 'one JSON object on stdout', false)
    .addHelpText(
      'after',
      `
Takes the partition's writer lock: stop the node serving it first.

Examples:
  sluice reindex --path ./data/p1
  sluice reindex --path ./data/p1 --index ./index/p1 --json`,
    )
    .action((flags) => reindexCommand(flags, io));

  program
    .command('keygen')
    .description('Create a CURVE key pair: NAME.key (secret, mode 600) and NAME.pub. Prints the public key.')
    .requiredOption('--out <name>', 'file name without extension, e.g. broker or clients/app-1')
    .option('--force', 'replace existing key files', false)
    .option('--json', 'print {"publicKey","secretKeyFile","publicKeyFile"}', false)
    .addHelpText(
      'after',
      `
Examples:
  sluice keygen --out broker     # give broker.pub to clients and nodes; broker.key stays on the broker
  sluice keygen --out app-1 >> allowed-clients.txt`,
    )
    .action((flags) => keygenCommand(flags, io));

  return program;
}
