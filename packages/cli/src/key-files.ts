import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { deriveCurvePublicKey, isCurveKey } from '@sluice/majordomo';
import { NotFoundError, UsageError } from './cli-errors.js';

/** A CURVE key pair read from a secret key file. The secret is for sockets only: never print it. */
export interface KeyFilePair {
  readonly publicKey: string;
  readonly secretKey: string;
  /** Set when the file is readable by other users. */
  readonly warning: string | undefined;
}

/**
 * Reads a CURVE secret key file: the 40-character Z85 key on the first line that is not empty
 * or a `#` comment (the format `sluice keygen` writes). Error messages name the file, never
 * its content.
 */
export async function readSecretKeyFile(path: string): Promise<KeyFilePair> {
  // Both halves of a pair look alike (40 characters of Z85): the file name is the one clue.
  if (path.endsWith('.pub')) {
    throw new UsageError(`${path} is a public key file: give the secret key file (\`sluice keygen\` writes <name>.key)`);
  }
  const text = await readKeyFile(path, 'secret key');
  const lines = meaningfulLines(text);
  const secretKey = lines[0]?.text;
  if (secretKey === undefined || lines.length !== 1 || !isCurveKey(secretKey)) {
    throw new UsageError(
      `${path} must hold one CURVE secret key (40 characters of Z85) on one line: create one with \`sluice keygen --out <name>\``,
    );
  }
  const mode = (await stat(path)).mode;
  const warning =
    (mode & 0o077) !== 0
      ? `warning: ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 ${path}`
      : undefined;
  return { secretKey, publicKey: deriveCurvePublicKey(secretKey) as string, warning };
}

/**
 * A public key given inline (40 characters of Z85) or as a file holding one (`<name>.pub`,
 * relative to `cwd`).
 */
export async function readPublicKey(valueOrPath: string, cwd: string): Promise<string> {
  if (isCurveKey(valueOrPath)) return valueOrPath;
  const path = resolve(cwd, valueOrPath);
  const lines = meaningfulLines(await readKeyFile(path, 'public key'));
  const key = lines[0]?.text;
  if (key === undefined || lines.length !== 1 || !isCurveKey(key)) {
    throw new UsageError(`${path} must hold one CURVE public key (40 characters of Z85)`);
  }
  return key;
}

/**
 * Reads an allow-list file: one CURVE public key (Z85) per line; empty lines and `#` comments
 * are ignored, and so is anything after the key on its line (a name, for people).
 */
export async function readKeyListFile(path: string): Promise<string[]> {
  const keys: string[] = [];
  const bad: number[] = [];
  for (const { number, text } of meaningfulLines(await readKeyFile(path, 'key list'))) {
    const key = text.split(/\s+/)[0];
    if (isCurveKey(key)) keys.push(key);
    else bad.push(number);
  }
  if (bad.length > 0) {
    throw new UsageError(
      `${path}: line(s) ${bad.slice(0, 10).join(', ')} do not start with a CURVE public key (40 characters of Z85)`,
    );
  }
  return keys;
}

async function readKeyFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`${what} file ${path} does not exist`, { cause: error });
    }
    throw new UsageError(`cannot read ${what} file ${path}: ${(error as Error).message}`, { cause: error });
  }
}

function meaningfulLines(text: string): { number: number; text: string }[] {
  return text
    .split('\n')
    .map((line, index) => ({ number: index + 1, text: line.trim() }))
    .filter((line) => line.text.length > 0 && !line.text.startsWith('#'));
}
