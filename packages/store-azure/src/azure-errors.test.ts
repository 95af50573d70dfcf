import { RestError } from '@azure/storage-blob';
import { StorageError } from '@sluice/store';
import { describe, expect, it } from 'vitest';
import { azureErrorCode, mapAzureError, redactSecrets } from './azure-errors.js';

const rest = (statusCode: number | undefined, code: string, message = 'The service says no.\nRequestId:1\nTime:now'): RestError =>
  new RestError(message, { statusCode, code });

const map = (error: unknown): StorageError => mapAzureError(error, 'append 10 bytes to blob "c/p/00000001.log"', 'c');

describe('mapAzureError', () => {
  it.each([
    [401, 'InvalidAuthenticationInfo', 'Unauthorized', false],
    [403, 'AuthorizationFailure', 'Unauthorized', false],
    [403, 'AuthenticationFailed', 'Unauthorized', false],
    [404, 'ContainerNotFound', 'NotFound', false],
    [404, 'BlobNotFound', 'NotFound', false],
    [409, 'LeaseAlreadyPresent', 'Locked', true],
    [409, 'LeaseIsBreakingAndCannotBeAcquired', 'Locked', true],
    [412, 'LeaseNotPresentWithBlobOperation', 'Conflict', false],
    [412, 'LeaseIdMismatchWithBlobOperation', 'Conflict', false],
    [412, 'LeaseLost', 'Conflict', false],
    [412, 'LeaseIdMissing', 'Conflict', false],
    [409, 'LeaseIsBrokenAndCannotBeRenewed', 'Conflict', false],
    [409, 'LeaseIdMismatchWithLeaseOperation', 'Conflict', false],
    [412, 'AppendPositionConditionNotMet', 'Conflict', false],
    [412, 'ConditionNotMet', 'Conflict', false],
    [409, 'BlobAlreadyExists', 'Conflict', false],
    [412, 'MaxBlobSizeConditionNotMet', 'Full', false],
    [409, 'BlockCountExceedsLimit', 'Full', false],
    [413, 'RequestBodyTooLarge', 'Invalid', false],
    [400, 'InvalidResourceName', 'Invalid', false],
    [408, 'OperationTimedOut', 'Unavailable', true],
    [429, 'TooManyRequests', 'Unavailable', true],
    [500, 'InternalError', 'Unavailable', true],
    [502, 'BadGateway', 'Unavailable', true],
    [503, 'ServerBusy', 'Unavailable', true],
    [504, 'GatewayTimeout', 'Unavailable', true],
  ] as const)('maps %i %s to %s (retryable: %s)', (status, code, reason, retryable) => {
    const error = map(rest(status, code));
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ reason, retryable });
    expect(error.message).toMatch(/^\[sluice\/store-azure\] /);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'REQUEST_SEND_ERROR'])('maps the network error %s to a retryable Unavailable', (code) => {
    expect(map(rest(undefined, code, `connect ${code} 127.0.0.1:1`))).toMatchObject({ reason: 'Unavailable', retryable: true });
  });

  it('maps a timeout (abort) to a retryable Unavailable that names requestTimeoutMs', () => {
    const abort = Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' });
    const error = map(abort);
    expect(error).toMatchObject({ reason: 'Unavailable', retryable: true });
    expect(error.message).toMatch(/requestTimeoutMs/);
  });

  it('maps a download cut short to a retryable Unavailable', () => {
    expect(map(new Error('Stream drains before getting enough data needed. Data read: 1, data need: 2'))).toMatchObject({ reason: 'Unavailable', retryable: true });
  });

  it('maps an unknown non-SDK error to a non-retryable Unavailable', () => {
    expect(map(new TypeError('boom'))).toMatchObject({ reason: 'Unavailable', retryable: false });
  });

  it('says what to do about a missing container', () => {
    expect(map(rest(404, 'ContainerNotFound')).message).toBe('[sluice/store-azure] container "c" not found: create it or set createContainer: true');
  });

  it('says a second writer is a writer, and what to do', () => {
    expect(map(rest(409, 'LeaseAlreadyPresent')).message).toMatch(/another writer holds the partition's lease.*close the other writer/);
  });

  it('reads the service code from details.errorCode or code', () => {
    expect(azureErrorCode({ details: { errorCode: 'LeaseLost' }, code: 'x' })).toBe('LeaseLost');
    expect(azureErrorCode({ code: 'ECONNRESET' })).toBe('ECONNRESET');
    expect(azureErrorCode('nope')).toBeUndefined();
  });

  it('keeps a StorageError as it is', () => {
    const original = new StorageError('Conflict', 'x');
    expect(map(original)).toBe(original);
  });

  it('never copies a SAS signature or an account key into a message or cause', () => {
    const secretSig = 'sv=2024&sig=SECRETSIGNATURE%3D';
    const secretKey = 'AccountKey=SECRETKEY==';
    const error = map(rest(403, 'AuthorizationFailure', `Denied for https://a.blob.core.windows.net/c?${secretSig} with ${secretKey}; SharedKey acct:SECRETHMAC`));
    const seen = `${error.message} ${JSON.stringify(error.cause)}`;
    expect(seen).not.toMatch(/SECRET/);
    expect(redactSecrets('x?sig=abc&se=1 AccountKey=k; SharedAccessSignature=s;')).toBe('x?sig=REDACTED&se=1 AccountKey=REDACTED; SharedAccessSignature=REDACTED;');
  });

  it('keeps status, code and request id as the cause, not the request', () => {
    const error = map(rest(503, 'ServerBusy'));
    expect(error.cause).toMatchObject({ name: 'RestError', statusCode: 503, code: 'ServerBusy' });
    expect(error.cause).not.toHaveProperty('request');
  });
});
