// yc-metadata-token/ydbjs.mjs: a CredentialsProvider of @ydbjs/auth for @ydbjs/core's Driver
// (`new Driver(cs, { credentialsProvider })`). An ES module because @ydbjs/* are ES modules only.
//
// The base class's middleware calls getToken(false, signal) before every RPC: that stays on the
// cached path. `force` maps to forceRefresh (a caller that saw UNAUTHENTICATED asks for a new
// token), `signal` to the call's signal (a cancelled RPC stops waiting for a token).

import { CredentialsProvider } from '@ydbjs/auth'
import { defaultProvider, MetadataTokenError, CODES } from './index.js'

export class MetadataTokenCredentialsProvider extends CredentialsProvider {
  #provider

  /**
   * @param {import('./index').TokenProvider} [tokenProvider] the provider to take tokens from;
   *   the process-wide default provider (the one behind getToken()) when absent.
   */
  constructor(tokenProvider) {
    super()
    if (tokenProvider !== undefined &&
        (tokenProvider === null || typeof tokenProvider !== 'object' || typeof tokenProvider.getToken !== 'function')) {
      throw new MetadataTokenError(
        'MetadataTokenCredentialsProvider takes a TokenProvider (or nothing, for the default provider)',
        CODES.INVALID_OPTION
      )
    }
    this.#provider = tokenProvider
  }

  getToken(force = false, signal = undefined) {
    let provider = this.#provider
    if (provider === undefined) {
      try {
        provider = defaultProvider()
      } catch (err) {
        return Promise.reject(err)
      }
    }
    return provider.getToken({ forceRefresh: force === true, signal }).then(tokenOf)
  }
}

function tokenOf(t) {
  return t.token
}
