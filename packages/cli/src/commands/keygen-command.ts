import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { generateCurveKeyPair } from '@sluice/majordomo';
import { UsageError } from '../cli-errors.js';
import { LineWriter, type CliIo } from '../io.js';

/** Options of `sluice keygen`. */
export interface KeygenFlags {
  readonly out: string;
  readonly force: boolean;
  readonly json: boolean;
}

/**
 * `sluice keygen --out NAME`: a new CURVE key pair in `NAME.key` (secret, mode 600) and
 * `NAME.pub` (public). Prints the public key; the secret key is written to its file only.
 */
export async function keygenCommand(flags: KeygenFlags, io: CliIo): Promise<void> {
  const base = resolve(io.cwd ?? process.cwd(), flags.out);
  const pair = generateCurveKeyPair();
  const secretFile = `${base}.key`;
  const publicFile = `${base}.pub`;
  await writeNew(secretFile, `# CURVE secret key: keep it private (chmod 600)\n${pair.secretKey}\n`, 0o600, flags.force);
  await writeNew(publicFile, `${pair.publicKey}\n`, 0o644, flags.force);
  const stdout = new LineWriter(io.stdout);
  if (flags.json) await stdout.json({ publicKey: pair.publicKey, secretKeyFile: secretFile, publicKeyFile: publicFile });
  else await stdout.line(pair.publicKey);
}

async function writeNew(path: string, text: string, mode: number, force: boolean): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | (force ? constants.O_TRUNC : constants.O_EXCL);
  let handle;
  try {
    handle = await open(path, flags, mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError(`${path} exists: choose another --out, or add --force to replace the key`, { cause: error });
    }
    throw error;
  }
  try {
    await handle.chmod(mode); // also when --force replaced a file with looser permissions
    await handle.writeFile(text, 'utf8');
  } finally {
    await handle.close();
  }
}
