'use strict'

// Everything the benchmark compares, each as: how to load it (timed as "require"), one getToken
// call, and the way the library itself forces a new token. `url` and `host` point at the
// emulator. Each peer is loaded through its narrowest public entry point, so the peers are shown
// at their best. Those that can tell whether a metadata service is there have `available` too.

const path = require('path')

const ROOT = path.join(__dirname, '..')
const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token'

// The snippet from the README ("Migrating from the snippet"), with the emulator's address.
function snippet(fetch, url) {
  const headers = { 'Metadata-Flavor': 'Google' }
  return async function getToken(event) {
    const resp = await fetch(url, { headers: headers })
    const respJson = await resp.json()
    return { token: respJson['access_token'], expiresInSeconds: respJson['expires_in'] }
  }
}

// Ours with each driver of its core: the driver is chosen when the package loads.
function ours(driver, label) {
  return {
    label,
    load: () => {
      process.env.YC_METADATA_TOKEN_DRIVER = driver
      return require(ROOT)
    },
    call: (api) => api.getToken(),
    forcer: (api) => {
      const provider = new api.TokenProvider()
      return () => provider.getToken({ forceRefresh: true })
    },
    available: (api) => api.isAvailable(),
  }
}

const SUBJECTS = {
  ours: ours('native', 'yc-metadata-token (native)'),
  'ours-wasm': ours('wasm', 'yc-metadata-token (wasm)'),
  'snippet-node-fetch': {
    label: 'snippet + node-fetch@2',
    load: ({ url }) => snippet(require('node-fetch'), url),
    call: (getToken) => getToken(),
    forcer: (getToken) => () => getToken(),
  },
  'snippet-fetch': {
    label: 'snippet + native fetch',
    // Node's fetch (undici) is loaded lazily by the first call, so its cost lands there.
    load: ({ url }) => snippet(globalThis.fetch, url),
    call: (getToken) => getToken(),
    forcer: (getToken) => () => getToken(),
  },
  'gcp-metadata': {
    label: 'gcp-metadata',
    load: () => require('gcp-metadata'),
    call: (gcp) => gcp.instance('service-accounts/default/token'),
    forcer: (gcp) => () => gcp.instance('service-accounts/default/token'),
    available: (gcp) => gcp.isAvailable(),
  },
  'google-auth-library': {
    label: 'google-auth-library',
    load: () => {
      const { Compute } = require('google-auth-library')
      return new Compute()
    },
    call: (compute) => compute.getAccessToken(),
    forcer: (compute) => () => compute.refreshAccessToken().then((r) => r.credentials.access_token),
  },
  'yandex-sdk': {
    label: '@yandex-cloud/nodejs-sdk',
    load: ({ url }) => {
      const { MetadataTokenService } = require('@yandex-cloud/nodejs-sdk/dist/token-service/metadata-token-service')
      return new MetadataTokenService(url)
    },
    call: (service) => service.getToken(),
    forcer: (service) => () => service.fetchToken(),
  },
  ydbjs: {
    label: '@ydbjs/auth',
    // An ES module: import() is how CommonJS code loads it.
    load: ({ url }) =>
      import('@ydbjs/auth/metadata').then((m) => new m.MetadataCredentialsProvider({ endpoint: url })),
    call: (provider) => provider.getToken(),
    forcer: (provider) => () => provider.getToken(true),
  },
}

const OURS = ['ours', 'ours-wasm']
const PEERS = Object.keys(SUBJECTS).filter((name) => OURS.indexOf(name) === -1)

module.exports = { SUBJECTS, OURS, PEERS, TOKEN_PATH }
