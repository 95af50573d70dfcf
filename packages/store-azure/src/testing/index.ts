export {
  AZURITE_ACCOUNT_KEY,
  AZURITE_ACCOUNT_NAME,
  azuriteBlobMain,
  azuriteConnectionString,
  startAzurite,
  type AzuriteInstance,
  type AzuriteOptions,
} from './azurite-process.js';
export { AZURITE_PORT_KEY, type GlobalSetupProject } from './azurite-global-setup.js';
