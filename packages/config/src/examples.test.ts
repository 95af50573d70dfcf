import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadSluiceConfig } from './sluice-config.js';

/** The example configs shipped in examples/levels (documented in this package's README) stay valid. */
const example = (name: string): string => fileURLToPath(new URL(`../../../examples/levels/${name}`, import.meta.url));

describe('examples/levels', () => {
  it('sluice.json: commodity, standard, critical (file + lmdb mirror), regulated (quorum) and scratch levels', async () => {
    const config = await loadSluiceConfig(example('sluice.json'));
    const folder = fileURLToPath(new URL('../../../examples/levels/', import.meta.url)).replace(/\/$/, '');
    expect(Object.keys(config.levels)).toEqual(['commodity', 'standard', 'critical', 'regulated', 'scratch']);
    expect(config.partitions.payments).toMatchObject({
      level: 'critical',
      locations: [{ kind: 'file', directory: `${folder}/disk1/payments` }, { kind: 'lmdb', options: { directory: `${folder}/disk2/payments` } }],
      ship: [{ kind: 'file', directory: `${folder}/west/payments` }, { kind: 'lmdb', options: { directory: `${folder}/north/payments` } }],
      alertLagMs: 1000,
      ack: { mode: 'local' },
    });
    expect(config.partitions.ledger).toMatchObject({ level: 'regulated', ack: { mode: 'quorum', quorum: 2 } });
    expect(config.partitions.ledger.ship).toHaveLength(3);
    expect(config.partitions.catalog).toMatchObject({ level: 'standard', ship: [{ kind: 'file', directory: `${folder}/archive/catalog` }] });
    expect(config.partitions.analytics).toMatchObject({ fsync: { kind: 'interval', intervalMs: 100 }, ship: [] });
    expect(config.partitions.sessions.locations).toEqual([{ kind: 'memory' }]);
  });

  it('sluice.azure.json: Azure targets (Azurite\'s development connection string), one prefix per partition', async () => {
    const config = await loadSluiceConfig(example('sluice.azure.json'));
    expect(config.partitions.payments.ship).toEqual([
      { kind: 'azure', options: { connectionString: 'UseDevelopmentStorage=true', container: 'west', createContainer: true, prefix: 'payments' } },
      { kind: 'azure', options: { connectionString: 'UseDevelopmentStorage=true', container: 'north', createContainer: true, prefix: 'payments' } },
    ]);
  });
});
