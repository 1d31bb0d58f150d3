// Types of yc-metadata-token/ydbjs.mjs: a CredentialsProvider for @ydbjs/core.
import { CredentialsProvider } from '@ydbjs/auth'
import type { TokenProvider } from './index.js'

/**
 * Sends the service-account token of the metadata service as `x-ydb-auth-ticket` on every RPC of
 * an @ydbjs/core Driver: `new Driver(cs, { credentialsProvider: new MetadataTokenCredentialsProvider() })`.
 */
export declare class MetadataTokenCredentialsProvider extends CredentialsProvider {
  /**
   * @param tokenProvider the provider to take tokens from; the default provider (the one behind
   *   `getToken()`) when absent.
   * @throws {MetadataTokenError} `ERR_INVALID_OPTION` when given something that is not a provider.
   */
  constructor(tokenProvider?: TokenProvider)
  /** `force`: skip the cache (forceRefresh); `signal`: stop waiting when it aborts. */
  getToken(force?: boolean, signal?: AbortSignal): Promise<string>
}
