'use strict'

// yc-metadata-token/ydb-sdk: an IAuthService for ydb-sdk 5 (`new Driver({ connectionString,
// authService })`) that sends this package's token as `x-ydb-auth-ticket`.
//
// Why not ydb-sdk's own MetadataAuthService with our provider in it: unless the service is the
// Yandex SDK's own class, it calls getToken() synchronously and sends "[object Promise]". Why
// TokenAuthService builds the metadata: ydb-sdk's grpc-js checks `instanceof Metadata`, and a
// Metadata from any other copy of grpc-js is silently dropped. getAuthMetadata() runs before every
// RPC, so it stays on the cached path: no request while the token is fresh.

const { defaultProvider, MetadataTokenError, CODES } = require('./index.js')

let TokenAuthService
try {
  ;({ TokenAuthService } = require('ydb-sdk'))
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && /'ydb-sdk'/.test(err.message)) {
    err.message = 'yc-metadata-token/ydb-sdk needs the package ydb-sdk (5.x), an optional peer: npm install ydb-sdk'
  }
  throw err
}
if (typeof TokenAuthService !== 'function') {
  throw new MetadataTokenError(
    'yc-metadata-token/ydb-sdk: this ydb-sdk exports no TokenAuthService class; versions 5.x are supported',
    CODES.INVALID_OPTION
  )
}

const providers = new WeakMap()

class MetadataTokenAuthService {
  /**
   * @param {import('./index').TokenProvider} [tokenProvider] the provider to take tokens from;
   *   the process-wide default provider (the one behind getToken()) when absent.
   */
  constructor(tokenProvider) {
    if (tokenProvider !== undefined && !isProvider(tokenProvider)) {
      throw new MetadataTokenError(
        'MetadataTokenAuthService takes a TokenProvider (or nothing, for the default provider)',
        CODES.INVALID_OPTION
      )
    }
    // Out of reach of util.inspect, like the provider's own state.
    providers.set(this, tokenProvider)
  }

  getAuthMetadata() {
    let provider = providers.get(this)
    if (provider === undefined) {
      try {
        provider = defaultProvider()
      } catch (err) {
        return Promise.reject(err)
      }
    }
    return provider.getToken().then(toMetadata)
  }
}

function toMetadata(t) {
  return new TokenAuthService(t.token).getAuthMetadata()
}

function isProvider(value) {
  return value !== null && typeof value === 'object' && typeof value.getToken === 'function'
}

module.exports = { MetadataTokenAuthService }
