// yc-metadata-token/ydbjs.mjs: a CredentialsProvider of @ydbjs/auth for @ydbjs/core's Driver
// (`new Driver(cs, { credentialsProvider })`). An ES module because @ydbjs/* are ES modules only.
//
// The base class's middleware calls getToken(false, signal) before every RPC: that stays on the
// cached path. `force` maps to forceRefresh (a caller that saw UNAUTHENTICATED asks for a new
// token), `signal` to the call's signal (a cancelled RPC stops waiting for a token).

import { channel, tracingChannel } from 'node:diagnostics_channel'
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
    publishForYdb(tokenProvider === undefined ? 'default' : tokenProvider.label)
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

// ---- what @ydbjs/auth 6.3 publishes, for its subscribers (@ydbjs/telemetry) ---------------------
//
// @ydbjs/auth's own providers publish their token fetches on diagnostics_channel (packages/auth
// README, "Observability"); dashboards built on them keep working with this provider. The fetches
// of the providers adapted here are published again in those names and shapes, with
// `provider: 'yc-metadata-token'`, from this package's own channels (README "Tracing and
// metrics"). Two things differ on purpose: the traced context never gets the token as `result`
// (@ydbjs/auth sets it there), and background refreshes are fetches too.
//
// @ydbjs/auth passes 'tracing:ydb:auth.token.fetch' to tracingChannel(), which prefixes it again:
// its channels are tracing:tracing:ydb:auth.token.fetch:start and so on. Its subscribers name the
// channel the same way, so this does too.

const YDB_PROVIDER = 'yc-metadata-token'
const ydbFetch = tracingChannel('tracing:ydb:auth.token.fetch')
const ydbRefreshed = channel('ydb:auth.token.refreshed')
const ydbExpired = channel('ydb:auth.token.expired')
const ydbFailed = channel('ydb:auth.provider.failed')

// The adapted providers, by the label their messages carry: when their last token expires (unix
// ms, for stalenessMs) and whether its expiry was published (once per incident, as @ydbjs/auth).
const adapted = new Map()
// This package's fetch contexts and the ones published for @ydbjs subscribers.
const contexts = new WeakMap()

function publishForYdb(label) {
  if (typeof label !== 'string') return
  if (adapted.size === 0) subscribe()
  if (!adapted.has(label)) adapted.set(label, { expiresAt: null, expiryPublished: false })
}

function subscribe() {
  const fetch = (event, handler) => channel('tracing:yc-metadata-token:fetch:' + event).subscribe(handler)
  fetch('start', (context) => {
    const provider = adapted.get(context.provider)
    if (provider === undefined) return
    if (context.reason === 'expired') expired(provider)
    const ours = { provider: YDB_PROVIDER }
    contexts.set(context, ours)
    ydbFetch.start.publish(ours)
  })
  fetch('end', (context) => forward(context, ydbFetch.end))
  fetch('error', (context) => {
    const ours = contexts.get(context)
    if (ours === undefined) return
    ours.error = context.error
    ydbFetch.error.publish(ours)
  })
  fetch('asyncStart', (context) => {
    const provider = adapted.get(context.provider)
    if (provider !== undefined && contexts.has(context) && context.errorCode === null) {
      provider.expiresAt = Date.now() + context.expiresInSeconds * 1000
      provider.expiryPublished = false
      ydbRefreshed.publish({ provider: YDB_PROVIDER, expiresAt: provider.expiresAt })
    }
    forward(context, ydbFetch.asyncStart)
  })
  fetch('asyncEnd', (context) => {
    const ours = contexts.get(context)
    forward(context, ydbFetch.asyncEnd)
    contexts.delete(context)
    if (ours !== undefined && ours.error !== undefined) ydbFailed.publish({ provider: YDB_PROVIDER, error: ours.error })
  })
  channel('yc-metadata-token:expired-while-failing').subscribe((message) => {
    const provider = adapted.get(message.provider)
    if (provider !== undefined) expired(provider)
  })
}

function forward(context, target) {
  const ours = contexts.get(context)
  if (ours !== undefined) target.publish(ours)
}

function expired(provider) {
  if (provider.expiryPublished) return
  provider.expiryPublished = true
  const stalenessMs = provider.expiresAt === null ? 0 : Math.max(0, Date.now() - provider.expiresAt)
  ydbExpired.publish({ provider: YDB_PROVIDER, stalenessMs })
}
