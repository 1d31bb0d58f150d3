// A CommonJS TypeScript user of the package (compiled with module nodenext: this file is CJS).
// Type-checked by __test__/types.test.js; the @ts-expect-error lines must stay errors.
import http = require('http')
import {
  getToken,
  getAuthorizationHeader,
  TokenProvider,
  defaultProvider,
  MetadataTokenError,
  CODES,
} from 'yc-metadata-token'
import type { Token, TokenProviderStats, MetadataTokenErrorCode, CloudFunctionContext } from 'yc-metadata-token'

// Serverless Container: an HTTP server handler.
http.createServer(async (req, res) => {
  try {
    const authorization: string = await getAuthorizationHeader()
    res.end(authorization.length > 0 ? 'ok' : 'empty')
  } catch (err) {
    if (err instanceof MetadataTokenError && err.code === CODES.NO_SERVICE_ACCOUNT) {
      res.statusCode = 500
    }
    res.end()
  }
})

// Cloud Function handler with its context.
export async function handler(event: unknown, context: CloudFunctionContext) {
  const { token, expiresInSeconds }: Token = await getToken(event, context)
  return { statusCode: 200, body: String(token.length + expiresInSeconds) }
}

async function withProvider(): Promise<number | null> {
  const provider = new TokenProvider({ host: '127.0.0.1:8080', timeoutMs: 500, deadlineMs: 2000, maxAttempts: 3, refreshMarginSeconds: 60 })
  const controller = new AbortController()
  const t = await provider.getToken({ signal: controller.signal, forceRefresh: false })
  const header: string = await provider.getAuthorizationHeader({ context: { token: { access_token: t.token, expires_in: 10 } } })
  const stats: TokenProviderStats = provider.stats()
  const driver: 'native' | 'wasm' = stats.driver
  const last: MetadataTokenErrorCode | null = stats.lastErrorCode
  const fromDefault = defaultProvider().stats().cacheHits
  await getToken({ signal: AbortSignal.timeout(1000) })
  void header, last, fromDefault, driver
  return stats.expiresInSeconds
}

function classify(err: unknown): string {
  if (!(err instanceof MetadataTokenError)) return 'other'
  switch (err.code) {
    case 'ERR_METADATA_UNREACHABLE':
    case 'ERR_METADATA_TIMEOUT':
      return 'start the emulator'
    case 'ERR_METADATA_STATUS':
      return 'HTTP ' + err.status
    case 'ERR_METADATA_NO_SERVICE_ACCOUNT':
    case 'ERR_METADATA_BAD_RESPONSE':
    case 'ERR_INVALID_OPTION':
      // An option, call option or context that threw when read: the caller's own error.
      return err.cause instanceof Error ? err.cause.message : err.code
    case 'ERR_METADATA_INTERNAL':
      return err.code
    case 'ERR_METADATA_NOT_FOUND':
      return 'no such metadata key'
    // @ts-expect-error: not one of the codes
    case 'ERR_METADATA_TYPO':
      return 'never'
  }
}

// @ts-expect-error: option names are checked (timeoutMS is a typo)
new TokenProvider({ timeoutMS: 500 })
// @ts-expect-error: host is a string
new TokenProvider({ host: 8080 })
// @ts-expect-error: a token is a string, not a number
const wrong: number = (await0()).token
declare function await0(): Token

void withProvider, classify, wrong

// The published message shapes (README "Tracing and metrics").
import { tracingChannel } from 'node:diagnostics_channel'
import type { FetchContext, ServedStaleMessage } from 'yc-metadata-token'
tracingChannel<FetchContext, FetchContext>('yc-metadata-token:fetch').subscribe({
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd(context: FetchContext) {
    const reason: 'first' | 'expired' | 'refresh-ahead' | 'forced' | 'retry-after-failure' = context.reason
    void reason, context.fingerprint?.startsWith('sha256:')
  },
  error() {},
})
const stale: ServedStaleMessage | null = null
void stale
