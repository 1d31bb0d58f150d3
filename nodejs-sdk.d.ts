// Types of yc-metadata-token/nodejs-sdk: a Session of @yandex-cloud/nodejs-sdk 2.x/3.x.
import { Session } from '@yandex-cloud/nodejs-sdk'
import type { TokenProvider } from './index'

type SdkConfig = NonNullable<ConstructorParameters<typeof Session>[0]>

/** The SDK's session config without a token (the token comes from the metadata service). */
export type MetadataTokenSessionConfig = Omit<SdkConfig, 'iamToken' | 'oauthToken' | 'serviceAccountJson'> & {
  iamToken?: never
  oauthToken?: never
  serviceAccountJson?: never
  /** The provider to take tokens from; the default provider (the one behind `getToken()`) when absent. */
  tokenProvider?: TokenProvider
}

/**
 * A Session whose every call carries the current token of the metadata service (cached, refreshed
 * ahead of expiry): one Session for the whole process.
 */
export declare class MetadataTokenSession extends Session {
  /** @throws {MetadataTokenError} `ERR_INVALID_OPTION` for a token key in the config or a bad `tokenProvider`. */
  constructor(config?: MetadataTokenSessionConfig)
}
