// Types of yc-metadata-token/ydb-sdk: an IAuthService for ydb-sdk 5.
import type { IAuthService } from 'ydb-sdk'
import type { TokenProvider } from './index'

/**
 * Sends the service-account token of the metadata service as `x-ydb-auth-ticket` on every RPC of
 * a ydb-sdk Driver: `new Driver({ connectionString, authService: new MetadataTokenAuthService() })`.
 */
export declare class MetadataTokenAuthService implements IAuthService {
  /**
   * @param tokenProvider the provider to take tokens from; the default provider (the one behind
   *   `getToken()`) when absent.
   * @throws {MetadataTokenError} `ERR_INVALID_OPTION` when given something that is not a provider.
   */
  constructor(tokenProvider?: TokenProvider)
  getAuthMetadata: IAuthService['getAuthMetadata']
}
