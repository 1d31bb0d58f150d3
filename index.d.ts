// Types of yc-metadata-token: the service-account IAM token from the instance metadata service
// (Yandex Cloud Serverless Containers, Cloud Functions, VMs; Google Compute Engine).

/// <reference types="node" />

/** A token and the time it has left. */
export interface Token {
  /** The IAM token: send it as `Authorization: Bearer <token>`. A secret: do not log it. */
  token: string
  /** Whole seconds the token has left *now* (rounded up, always > 0), not the lifetime it was issued with. */
  expiresInSeconds: number
}

/** Options of `new TokenProvider(options)`. Each has a default chosen for the metadata service. */
export interface TokenProviderOptions {
  /**
   * `host[:port]` of the metadata service, e.g. `'127.0.0.1:8080'` (no scheme, no path). An IPv4
   * address is written as four decimal numbers (`127.1`, `2130706433`, `0x7f.0.0.1` are refused:
   * the message says to write `127.0.0.1`), a port without leading zeros.
   * @default env `YC_METADATA_ADDR` (the Yandex Cloud SDKs' variable), else env `GCE_METADATA_HOST`
   * (Google's), else `'169.254.169.254'` — the link-local address of the service in Yandex Cloud and on GCE.
   */
  host?: string
  /**
   * One attempt, connect + response, in milliseconds (1 … 2^31-1).
   * @default 1000 — the service is link-local and answers in milliseconds; a second still covers a
   * slow first token mint while a black hole off-cloud gives up quickly.
   */
  timeoutMs?: number
  /**
   * The whole call, retries included, in milliseconds (1 … 2^31-1).
   * @default 3000 — inside the shortest handler timeouts users set (3 s), so the caller sees this
   * package's clear error rather than the platform killing the handler.
   */
  deadlineMs?: number
  /**
   * Attempts per call, a whole number from 1 to 100. Refused connections, resets, timeouts, 429 and
   * 5xx are retried with jittered backoff; a 404 is not.
   * @default 5 — the backoff waits at most 1.5 s in all: a metadata service that refuses connections
   * in the first second of a container is covered, and nothing listening still fails in under 2 s.
   */
  maxAttempts?: number
  /**
   * Refresh in the background when less than this many seconds are left (0 … 86400; capped at half
   * the token's lifetime, so short-lived tokens stay useful).
   * @default 240 — below the 5 minutes before expiry at which metadata servers renew the token they
   * hand out, so a refresh rarely gets the old token back.
   */
  refreshMarginSeconds?: number
}

/**
 * The invocation context of a Yandex Cloud Function (the handler's second argument). When a service
 * account is attached to the function, `token` carries its IAM token; nothing else is read.
 *
 * No index signature: an interface (such as `Context` of `@yandex-cloud/function-types`) is never
 * assignable to a type with one. The runtime's other fields are listed, all optional, so that a
 * context written as an object literal still passes the excess-property check.
 */
export interface CloudFunctionContext {
  token?: {
    access_token: string
    /** Seconds from the start of the invocation. */
    expires_in: number
    token_type?: string
  } | null
  functionName?: string
  functionVersion?: string
  /** The folder the function is in: what `getFolderId(context)` returns first. */
  functionFolderId?: string
  memoryLimitInMB?: string
  requestId?: string
  /** When the invocation is cut off, in milliseconds since the epoch. */
  deadlineMs?: number
  /** The Cloud Logging group the function's output goes to. */
  logGroupName?: string
  getPayload?(): unknown
  getRemainingTimeInMillis?(): number
}

/** Per-call options of `TokenProvider#getToken`. */
export interface GetTokenOptions {
  /** Skip the cache (and any `context`) and ask the metadata service now. @default false */
  forceRefresh?: boolean
  /**
   * Reject this call with an `AbortError` (`code` `'ABORT_ERR'`) when the signal aborts; a request
   * shared with other callers carries on for them.
   */
  signal?: AbortSignal
  /**
   * A Cloud Functions context: when it carries a usable token, that token is returned with no request.
   * Otherwise (no service account attached, its time is up, or the token is no RFC 6750 b64token)
   * the metadata service is asked as usual.
   */
  context?: CloudFunctionContext | null
}

/** Call options the default `getToken` accepts as its first argument (an object with nothing else). */
export interface DefaultGetTokenOptions {
  forceRefresh?: boolean
  signal?: AbortSignal
}

/** Counters of a provider since it was made. */
export interface TokenProviderStats {
  /**
   * The driver of the core in use: `'native'` (the platform package's addon) or `'wasm'` (the
   * WebAssembly module inside this package, wherever no addon loads). YC_METADATA_TOKEN_DRIVER
   * forces one.
   */
  driver: 'native' | 'wasm'
  /** Calls answered from memory (this thread). */
  cacheHits: number
  /** Calls answered from a Cloud Functions context (this thread). */
  contextTokens: number
  /** HTTP requests sent to the metadata service, retries included (all threads, for the default provider). */
  upstreamRequests: number
  /** Of those, the requests that were retries. */
  retries: number
  /** Fetches started (each makes one or more requests), background refreshes included. */
  fetches: number
  /** Fetches started ahead of expiry in the background. */
  backgroundRefreshes: number
  /** Fetches that ended in an error. */
  failures: number
  /** The code of the latest failure, or null if there was none. */
  lastErrorCode: MetadataTokenErrorCode | null
  /** Whole seconds the cached token has left, or null when nothing usable is cached. */
  expiresInSeconds: number | null
}

/** A token source with its own cache, settings and counters. */
export class TokenProvider {
  /** @throws {MetadataTokenError} with code `'ERR_INVALID_OPTION'` for an option it cannot use. */
  constructor(options?: TokenProviderOptions)
  /** From memory while fresh; otherwise one request shared by every concurrent caller. */
  getToken(options?: GetTokenOptions): Promise<Token>
  /** `'Bearer ' + token`, ready for an `Authorization` header. */
  getAuthorizationHeader(options?: GetTokenOptions): Promise<string>
  /** Counters and the current expiry; never the token. */
  stats(): TokenProviderStats
  /** `{ url, stats }`: what `JSON.stringify(provider)` shows; never the token. */
  toJSON(): { url: string; stats: TokenProviderStats }
  /**
   * Its name in the debug output and in published diagnostics_channel messages (`provider`):
   * `'default'` for the provider behind `getToken()`, `'provider N'` for this thread's Nth
   * `new TokenProvider()`.
   */
  readonly label: string
}

/**
 * The token from the process-wide default provider (settings from the environment). The first
 * argument (a handler's event) is ignored unless it is nothing but `{ forceRefresh?, signal? }`;
 * the second, a Cloud Functions context, supplies the token when it carries one.
 */
export function getToken(options: DefaultGetTokenOptions, context?: CloudFunctionContext | null): Promise<Token>
export function getToken(event?: unknown, context?: CloudFunctionContext | null): Promise<Token>

/** `'Bearer ' + token` from the default provider; arguments as `getToken`. */
export function getAuthorizationHeader(event?: unknown, context?: CloudFunctionContext | null): Promise<string>

/**
 * The provider behind `getToken()`, e.g. for `defaultProvider().stats()`.
 * @throws {MetadataTokenError} with code `'ERR_INVALID_OPTION'` when `YC_METADATA_ADDR` or
 * `GCE_METADATA_HOST` is not a valid `host[:port]`.
 */
export function defaultProvider(): TokenProvider

/**
 * Every `code` a `MetadataTokenError` can carry. (`require('yc-metadata-token')` itself throws a
 * plain Error with code `'ERR_METADATA_UNSUPPORTED_PLATFORM'` where no prebuilt addon fits.)
 */
export declare const CODES: Readonly<{
  /** Connection refused, no route, reset: off-cloud, or the service is not up yet (retried). */
  UNREACHABLE: 'ERR_METADATA_UNREACHABLE'
  /** No answer within `timeoutMs` (retried) or `deadlineMs`. */
  TIMEOUT: 'ERR_METADATA_TIMEOUT'
  /** HTTP 404: no service account is attached to the revision, function or VM (not retried). */
  NO_SERVICE_ACCOUNT: 'ERR_METADATA_NO_SERVICE_ACCOUNT'
  /** Any other non-2xx; `err.status` holds it (429 and 5xx retried). */
  STATUS: 'ERR_METADATA_STATUS'
  /** Not JSON, a field missing or of the wrong type, body over 16 KiB, or a redirect. */
  BAD_RESPONSE: 'ERR_METADATA_BAD_RESPONSE'
  /** A bad option, call argument or environment value; the message names it. */
  INVALID_OPTION: 'ERR_INVALID_OPTION'
  /** A bug in this package; please report it. */
  INTERNAL: 'ERR_METADATA_INTERNAL'
  /**
   * `getMetadata`: HTTP 404, no such key at this metadata service (not retried; `err.status` 404).
   * `getFolderId`: the folder ID is in none of its three places.
   */
  NOT_FOUND: 'ERR_METADATA_NOT_FOUND'
}>

/** The union of the code strings in `CODES`. */
export type MetadataTokenErrorCode = (typeof CODES)[keyof typeof CODES]

/**
 * How every failure rejects (aborts excepted: they reject with an `Error` whose `name` is
 * `'AbortError'` and `code` is `'ABORT_ERR'`). The message names the URL and a hint, never the token.
 */
export class MetadataTokenError extends Error {
  constructor(message: string, code: MetadataTokenErrorCode, status?: number)
  name: 'MetadataTokenError'
  code: MetadataTokenErrorCode
  /** The HTTP status, for `'ERR_METADATA_STATUS'` (and 404 for `'ERR_METADATA_NO_SERVICE_ACCOUNT'`). */
  status?: number
  /**
   * For `'ERR_INVALID_OPTION'` when options, call options or a Cloud Functions context threw as
   * they were read (a getter, a Proxy trap), or a `signal`'s `addEventListener` threw: the caller's
   * own error, as thrown.
   */
  cause?: unknown
}

// ---- diagnostics_channel (README "Tracing and metrics"): public, versioned message shapes ----

/** What every published message says of the provider. */
export interface PublishedProviderFields {
  /** `'default'` or `'provider N'`: `TokenProvider#label`. */
  provider: string
  driver: 'native' | 'wasm'
  url: string
  /** The host fetched from (an IPv6 address without brackets). */
  serverAddress: string
  serverPort: number
}

export type FetchReason = 'first' | 'expired' | 'refresh-ahead' | 'forced' | 'retry-after-failure'

/**
 * The context of `tracing:yc-metadata-token:fetch:{start,end,asyncStart,asyncEnd,error}`
 * (`diagnostics_channel.tracingChannel('yc-metadata-token:fetch')`): one object per upstream
 * fetch; the fields after `reason` are null until it ends.
 */
export interface FetchContext extends PublishedProviderFields {
  reason: FetchReason
  attempts: number | null
  /** The HTTP status of the last attempt; null if it got no answer. */
  status: number | null
  errorCode: MetadataTokenErrorCode | null
  expiresInSeconds: number | null
  /** No caller waited for it when it ended. */
  background: boolean | null
  /** `'sha256:'` and 8 hex digits: the new token's fingerprint. */
  fingerprint: string | null
  /** On success: never the token. */
  result?: { fingerprint: string; expiresInSeconds: number }
  /** On failure: the error the callers get. */
  error?: MetadataTokenError
}

/** `yc-metadata-token:background-refresh-succeeded` */
export interface BackgroundRefreshSucceededMessage extends PublishedProviderFields {
  attempts: number
  status: number | null
  fingerprint: string
  expiresInSeconds: number
}

/** `yc-metadata-token:background-refresh-failed`: `fingerprint` and `expiresInSeconds` of the token still served. */
export interface BackgroundRefreshFailedMessage extends PublishedProviderFields {
  attempts: number
  status: number | null
  errorCode: MetadataTokenErrorCode
  error: MetadataTokenError
  consecutiveFailures: number
  fingerprint: string | null
  expiresInSeconds: number | null
}

/** `yc-metadata-token:served-stale` */
export interface ServedStaleMessage extends PublishedProviderFields {
  fingerprint: string
  expiresInSeconds: number
  consecutiveFailures: number
}

/** `yc-metadata-token:expired-while-failing` */
export interface ExpiredWhileFailingMessage extends PublishedProviderFields {
  fingerprint: string
  consecutiveFailures: number
  lastErrorCode: MetadataTokenErrorCode
}

/** Options of `isAvailable()`. */
export interface IsAvailableOptions {
  /**
   * `host[:port]` of the metadata service, as for `TokenProvider`.
   * @default env `YC_METADATA_ADDR`, else env `GCE_METADATA_HOST`, else `'169.254.169.254'`
   */
  host?: string
  /**
   * The whole probe in milliseconds, its one second try included (1 … 2^31-1).
   * @default 400 — the service is link-local and answers in a millisecond or two; this is all a
   * black hole off-cloud costs.
   */
  timeoutMs?: number
}

/**
 * Whether a GCE-compatible metadata service answers at the address (`GET /computeMetadata/v1/`
 * with `Metadata-Flavor: Google`, true when the answer carries `Metadata-Flavor: Google`). One
 * probe for any number of concurrent callers; a `true` is remembered for the life of the process,
 * a `false` for 5 seconds. Never rejects for "not there" (refused, unreachable, no answer in time,
 * not HTTP, no header): only for options it cannot use (`ERR_INVALID_OPTION`).
 */
export function isAvailable(options?: IsAvailableOptions): Promise<boolean>

/** Options of `getMetadata()`. */
export interface GetMetadataOptions {
  /** As `TokenProviderOptions.host`. */
  host?: string
  /** One attempt, connect + answer, in milliseconds. @default 1000 */
  timeoutMs?: number
  /** The whole call, retries included, in milliseconds. @default 3000 */
  deadlineMs?: number
  /** Attempts per call: refused connections, resets, timeouts, 429 and 5xx are retried; a 404 is not. @default 5 */
  maxAttempts?: number
  /** Read a directory (a key ending in '/') and everything under it: `?recursive=true`. @default false */
  recursive?: boolean
  /**
   * The value is JSON: checked, and resolved as what it says (`ERR_METADATA_BAD_RESPONSE` if it is
   * not JSON). @default `recursive` — a recursive answer is JSON
   */
  json?: boolean
  /**
   * Take a remembered value and remember this one, for keys that never change while the instance
   * lives (`instance/id`, `instance/zone`, `instance/vendor/folder-id`). Off by default: a call
   * without it always asks the service. @default false
   */
  cache?: boolean
}

/**
 * The value at `/computeMetadata/v1/<key>`, e.g. `'instance/id'`, `'instance/zone'`,
 * `'instance/vendor/folder-id'`, `'project/project-id'`: its text, or with `json` (and by default
 * with `recursive`) what its JSON says. The key is a relative path of letters, digits, `-_.~@` and
 * `/`; anything that could leave `/computeMetadata/v1/` (`..`, `%2e`, `?`, `#`, line ends, a URL)
 * is refused with `ERR_INVALID_OPTION` before anything is sent. A missing key rejects with
 * `ERR_METADATA_NOT_FOUND`; the service account's token has its own call, `getToken()`.
 * Concurrent reads of one key share one request.
 */
export function getMetadata<T = unknown>(key: string, options: GetMetadataOptions & { json: true }): Promise<T>
export function getMetadata(key: string, options: GetMetadataOptions & { json: false }): Promise<string>
export function getMetadata<T = unknown>(key: string, options: GetMetadataOptions & { recursive: true }): Promise<T>
export function getMetadata(key: string, options?: GetMetadataOptions): Promise<string>

/**
 * The folder ID (for `gpt://<folder-id>/…`, `x-folder-id`): from the Cloud Functions context
 * (`context.functionFolderId`), else from the metadata service (`instance/vendor/folder-id`, then
 * `yandex/folder-id`, when `isAvailable()`), else from the environment variable `YC_FOLDER_ID`.
 * Found in the metadata service or the environment, it is remembered for the life of the process.
 * Rejects with `ERR_METADATA_NOT_FOUND` naming all three places when none has it.
 */
export function getFolderId(context?: CloudFunctionContext | null): Promise<string>
