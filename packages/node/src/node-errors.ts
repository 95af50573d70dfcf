import { BrokerError } from '@sluice/majordomo';

/** A node could not open some of its partitions; none was left open. */
export class NodeStartError extends BrokerError {
  override readonly name = 'NodeStartError';
  override readonly code = 'SLUICE_BROKER_NODE_START';
  constructor(
    readonly nodeName: string,
    /** Each partition that failed to open, with the error. */
    readonly failures: readonly { readonly partition: string; readonly error: unknown }[],
  ) {
    const lines = failures.map(({ partition, error }) => `  - "${partition}": ${error instanceof Error ? error.message : String(error)}`);
    super(
      `[sluice/node] node "${nodeName}" could not open ${failures.length} partition(s); it opened none:\n${lines.join('\n')}`,
      { cause: failures[0]?.error },
    );
  }
}
