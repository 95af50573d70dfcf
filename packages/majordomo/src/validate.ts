import { InvalidBrokerOptionsError } from './errors.js';
import { MMI_PREFIX, NAME_BYTES_MAX, isValidServiceName } from './mdp.js';

/**
 * Collects every problem of one options object, so a user sees them all at once.
 * Internal helper of the options resolvers.
 */
export class OptionProblems {
  readonly problems: string[] = [];

  constructor(private readonly component: string) {}

  integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
      this.problems.push(`${name} must be an integer ${range} (got ${describe(value)})`);
    }
  }

  endpoint(name: string, value: unknown): void {
    if (typeof value !== 'string' || !/^(tcp|ipc|inproc):\/\/.+/.test(value)) {
      this.problems.push(
        `${name} must be a ZeroMQ endpoint such as "tcp://127.0.0.1:5555" (got ${describe(value)})`,
      );
    }
  }

  serviceName(name: string, value: unknown, allowMmi: boolean): void {
    if (typeof value !== 'string' || !isValidServiceName(Buffer.from(value, 'utf8'))) {
      this.problems.push(
        `${name} must be 1-${NAME_BYTES_MAX} bytes of UTF-8 without control characters ` +
          `(got ${describe(value)})`,
      );
    } else if (!allowMmi && value.startsWith(MMI_PREFIX)) {
      this.problems.push(
        `${name} "${value}" is in the "${MMI_PREFIX}" namespace, which brokers reserve (RFC 8/MMI)`,
      );
    }
  }

  check(condition: boolean, problem: string): void {
    if (!condition) this.problems.push(problem);
  }

  /** Throws {@link InvalidBrokerOptionsError} when any problem was found. */
  throwIfAny(): void {
    if (this.problems.length > 0) throw new InvalidBrokerOptionsError(this.component, this.problems);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}
