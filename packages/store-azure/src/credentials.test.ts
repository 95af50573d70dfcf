import { inspect } from 'node:util';
import { AccountSASPermissions, AccountSASResourceTypes, ContainerSASPermissions } from '@azure/storage-blob';
import { isStorageError, openPartition, type PartitionStorage } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAzureStorage, type AzureStorageOptions } from './index.js';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME } from './testing/azurite-process.js';
import { azuriteConnection, azuriteEndpoint, createTestContainer, storedBlobs, testServiceClient, uniqueContainerName, type TestContainer } from './testing/azurite-context.fixture.js';

const te = new TextEncoder();
const WRONG_KEY = Buffer.from('not the account key, but 64 bytes long enough to look like one!!').toString('base64');

/** Opens a partition on `storage`, appends and reads back one event, closes. */
async function roundTrip(storage: PartitionStorage): Promise<void> {
  const p = await openPartition({ storage, name: 'credentials' });
  try {
    await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('x') }] });
    const seqs: number[] = [];
    for await (const e of p.read()) seqs.push(e.seq);
    expect(seqs.at(-1)).toBe(p.lastSeq);
  } finally {
    await p.close();
  }
}

async function openError(storage: PartitionStorage): Promise<unknown> {
  try {
    await storage.open();
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await storage.close();
  }
}

describe('credentials', () => {
  let container: TestContainer;
  beforeEach(async () => {
    container = await createTestContainer();
  });
  afterEach(async () => {
    await container.destroy();
  });

  it('connects with a connection string', async () => {
    await roundTrip(createAzureStorage({ connectionString: container.connectionString, container: container.name, prefix: 'p' }));
  });

  it('connects with an account name and key', async () => {
    await roundTrip(
      createAzureStorage({ accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY, serviceUrl: azuriteEndpoint(), container: container.name, prefix: 'p' }),
    );
  });

  it('connects with a container SAS URL and with an account SAS URL', async () => {
    const expiresOn = new Date(Date.now() + 3600_000);
    const containerSas = await container.client.generateSasUrl({ permissions: ContainerSASPermissions.parse('racwl'), expiresOn });
    await roundTrip(createAzureStorage({ sasUrl: containerSas, container: container.name, prefix: 'container-sas' }));
    const accountSas = testServiceClient(container.connectionString).generateAccountSasUrl(expiresOn, AccountSASPermissions.parse('racwl'), AccountSASResourceTypes.parse('sco').toString());
    await roundTrip(createAzureStorage({ sasUrl: accountSas, container: container.name, prefix: 'account-sas' }));
  });

  it('uses an injected service client factory and container client instance', async () => {
    let made = 0;
    await roundTrip(
      createAzureStorage({
        serviceClient: () => {
          made++;
          return testServiceClient(container.connectionString);
        },
        container: container.name,
        prefix: 'factory',
      }),
    );
    expect(made).toBe(1);
    await roundTrip(createAzureStorage({ containerClient: container.client, prefix: 'instance' }));
    expect((await storedBlobs(container.client, 'instance')).length).toBe(1);
  });

  it('refuses a wrong account key with reason Unauthorized, without showing the key', async () => {
    const error = await openError(
      createAzureStorage({ accountName: AZURITE_ACCOUNT_NAME, accountKey: WRONG_KEY, serviceUrl: azuriteEndpoint(), container: container.name, prefix: 'p' }),
    );
    expect(isStorageError(error)).toBe(true);
    expect(error).toMatchObject({ reason: 'Unauthorized', retryable: false });
    const text = `${(error as Error).message} ${JSON.stringify((error as Error).cause)}`;
    expect(text).toMatch(/account key, connection string or SAS token/);
    expect(text).not.toContain(WRONG_KEY);
    expect(text).not.toContain(WRONG_KEY.slice(0, 20));
  });

  it('refuses an expired SAS with reason Unauthorized, without showing its signature', async () => {
    const sasUrl = await container.client.generateSasUrl({ permissions: ContainerSASPermissions.parse('racwl'), expiresOn: new Date(Date.now() - 60_000) });
    const signature = new URL(sasUrl).searchParams.get('sig') as string;
    const error = await openError(createAzureStorage({ sasUrl, container: container.name, prefix: 'p' }));
    expect(error).toMatchObject({ reason: 'Unauthorized' });
    expect(`${(error as Error).message} ${JSON.stringify((error as Error).cause)}`).not.toContain(signature);
  });
});

describe('missing container', () => {
  it('fails open with reason NotFound and says what to do', async () => {
    const name = uniqueContainerName();
    const error = await openError(createAzureStorage({ connectionString: azuriteConnection(), container: name, prefix: 'p' }));
    expect(error).toMatchObject({ reason: 'NotFound', message: `[sluice/store-azure] container "${name}" not found: create it or set createContainer: true` });
    expect(await testServiceClient().getContainerClient(name).exists()).toBe(false);
  });

  it('creates it with createContainer: true', async () => {
    const name = uniqueContainerName();
    const client = testServiceClient().getContainerClient(name);
    try {
      await roundTrip(createAzureStorage({ connectionString: azuriteConnection(), container: name, prefix: 'p', createContainer: true }));
      expect((await storedBlobs(client, 'p')).map((b) => b.name)).toEqual(['p/00000001.log']);
    } finally {
      await client.deleteIfExists();
    }
  });
});

describe('options', () => {
  it('reports every problem at once with reason Invalid, never echoing a credential', () => {
    const secret = 'DefaultEndpointsProtocol=http;AccountName=a;AccountKey=SECRETKEY==;';
    let error: unknown;
    try {
      createAzureStorage({
        connectionString: secret,
        sasUrl: 'https://a.blob.core.windows.net/c',
        container: 'Bad_Name',
        prefix: '/p',
        blockBytesMax: 0,
        blobBlocksMax: 60_000,
        leaseDurationSeconds: 5,
        attemptsMax: 0,
      } as AzureStorageOptions);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ reason: 'Invalid', retryable: false });
    const message = (error as Error).message;
    for (const expected of ['give only one of connectionString, sasUrl', 'sasUrl has no SAS token', 'container "Bad_Name"', 'prefix "/p"', 'blockBytesMax', 'blobBlocksMax', 'leaseDurationSeconds', 'attemptsMax']) {
      expect(message).toContain(expected);
    }
    expect(message).not.toContain('SECRETKEY');
  });

  it('asks for a way to authenticate and a container', () => {
    expect(() => createAzureStorage({ prefix: 'p' })).toThrow(/give one of connectionString.*\n- container is required/s);
  });

  it('keeps credentials out of the storage object', () => {
    const storage = createAzureStorage({ accountName: AZURITE_ACCOUNT_NAME, accountKey: AZURITE_ACCOUNT_KEY, serviceUrl: azuriteEndpoint(), container: 'c-c', prefix: 'p' });
    expect(inspect(storage, { depth: 20, showHidden: true })).not.toContain(AZURITE_ACCOUNT_KEY);
  });
});
