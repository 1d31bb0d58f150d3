'use strict'

// yc-metadata-token/opentelemetry: spans and metrics for the token fetches, made from what the
// package publishes on diagnostics_channel (README "Tracing and metrics"). @opentelemetry/api is an
// optional peer: install it yourself; require('yc-metadata-token') never loads this file.
//
//   const { MetadataTokenInstrumentation } = require('yc-metadata-token/opentelemetry')
//   registerInstrumentations({ instrumentations: [new MetadataTokenInstrumentation()] })
//
// It has the surface of an OpenTelemetry Instrumentation (enable, disable, setTracerProvider,
// setMeterProvider, getConfig, setConfig), so registerInstrumentations() and the Node SDK take it,
// but needs no @opentelemetry/instrumentation: nothing is patched, it only subscribes.

const api = require('@opentelemetry/api')
const dc = require('diagnostics_channel')
const { defaultProvider } = require('./index.js')
const { version } = require('./package.json')

const NAME = 'yc-metadata-token'
const SPAN_NAME = 'yc-metadata-token.fetch'
const FETCH = 'tracing:yc-metadata-token:fetch:'
const EVENT = 'yc-metadata-token:'
// A fetch takes milliseconds on the link-local hop, seconds when it retries (the default deadline
// is 3 s, the longest allowed far more): buckets from 1 ms to 30 s.
const DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

// Attribute names: OpenTelemetry's HTTP client conventions where they fit, ours under yc_metadata_token.
const ATTR = {
  method: 'http.request.method',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  url: 'url.full',
  statusCode: 'http.response.status_code',
  errorType: 'error.type',
  provider: 'yc_metadata_token.provider',
  driver: 'yc_metadata_token.driver',
  reason: 'yc_metadata_token.reason',
  attempts: 'yc_metadata_token.attempts',
  background: 'yc_metadata_token.background',
  outcome: 'yc_metadata_token.outcome',
  fingerprint: 'yc_metadata_token.token.fingerprint',
  expiresIn: 'yc_metadata_token.token.expires_in',
}

function monotonicMs() {
  const [seconds, nanos] = process.hrtime()
  return seconds * 1e3 + nanos / 1e6
}

class MetadataTokenInstrumentation {
  /**
   * config.enabled (default true): subscribe at once. config.providers: TokenProviders whose
   * token's time left the gauge reports, besides the default provider (reported once it has
   * fetched in this thread).
   */
  constructor(config) {
    this.instrumentationName = NAME
    this.instrumentationVersion = version
    this._config = Object.assign({ enabled: true }, config)
    this._tracer = api.trace.getTracer(NAME, version)
    this._meter = null
    this._instruments = null
    this._spans = new WeakMap()
    this._defaultSeen = false
    this._subscriptions = null
    this._observe = (result) => this._observeExpiry(result)
    this.setMeterProvider(api.metrics.getMeterProvider())
    const enabled = this._config.enabled !== false
    this._config.enabled = false
    if (enabled) this.enable()
  }

  enable() {
    if (this._subscriptions !== null) return
    const handlers = {
      [FETCH + 'start']: (context) => this._started(context),
      [FETCH + 'asyncEnd']: (context) => this._ended(context),
      [EVENT + 'background-refresh-succeeded']: (message) => this._refreshed(message, null),
      [EVENT + 'background-refresh-failed']: (message) => this._refreshed(message, message.errorCode),
      [EVENT + 'served-stale']: (message) => this._instruments.servedStale.add(1, { [ATTR.provider]: message.provider }),
      [EVENT + 'expired-while-failing']: (message) => this._instruments.expiredWhileFailing.add(1, { [ATTR.provider]: message.provider }),
    }
    this._subscriptions = Object.keys(handlers).map((name) => {
      const channel = dc.channel(name)
      channel.subscribe(handlers[name])
      return () => channel.unsubscribe(handlers[name])
    })
    this._config.enabled = true
  }

  disable() {
    if (this._subscriptions === null) return
    for (const unsubscribe of this._subscriptions) unsubscribe()
    this._subscriptions = null
    this._config.enabled = false
  }

  setTracerProvider(tracerProvider) {
    this._tracer = tracerProvider.getTracer(NAME, version)
  }

  setMeterProvider(meterProvider) {
    if (this._instruments !== null) this._instruments.expiresIn.removeCallback(this._observe)
    const meter = meterProvider.getMeter(NAME, version)
    this._instruments = {
      duration: meter.createHistogram('yc_metadata_token.fetch.duration', {
        unit: 's',
        description: 'Upstream token fetches, retries included, from start to end.',
        advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
      }),
      fetches: meter.createCounter('yc_metadata_token.fetches', {
        unit: '{fetch}',
        description: 'Upstream token fetches by outcome (success or failure, with error.type).',
      }),
      backgroundRefreshes: meter.createCounter('yc_metadata_token.background_refreshes', {
        unit: '{refresh}',
        description: 'Refreshes ahead of expiry, in the background, by outcome.',
      }),
      servedStale: meter.createCounter('yc_metadata_token.served_stale', {
        unit: '{call}',
        description: 'Calls answered with a token past its refresh point because refreshing it failed.',
      }),
      expiredWhileFailing: meter.createCounter('yc_metadata_token.expired_while_failing', {
        unit: '{token}',
        description: 'Tokens that ran out while the metadata service kept failing.',
      }),
      expiresIn: meter.createObservableGauge('yc_metadata_token.token.expires_in', {
        unit: 's',
        description: 'Time left on the token each provider holds.',
      }),
    }
    this._instruments.expiresIn.addCallback(this._observe)
  }

  getConfig() {
    return this._config
  }

  setConfig(config) {
    this._config = Object.assign({}, config, { enabled: this._config.enabled })
  }

  _started(context) {
    if (context.provider === 'default') this._defaultSeen = true
    // A refresh ahead of expiry belongs to no caller: it starts a trace of its own rather than
    // hang, outliving it, under whichever request happened to trigger it.
    const parent = context.reason === 'refresh-ahead' ? api.ROOT_CONTEXT : api.context.active()
    const span = this._tracer.startSpan(SPAN_NAME, {
      kind: api.SpanKind.CLIENT,
      attributes: {
        [ATTR.method]: 'GET',
        [ATTR.serverAddress]: context.serverAddress,
        [ATTR.serverPort]: context.serverPort,
        [ATTR.url]: context.url,
        [ATTR.provider]: context.provider,
        [ATTR.driver]: context.driver,
        [ATTR.reason]: context.reason,
      },
    }, parent)
    this._spans.set(context, { span, started: monotonicMs() })
  }

  _ended(context) {
    const entry = this._spans.get(context)
    if (entry === undefined) return
    this._spans.delete(context)
    const { span } = entry
    const failed = context.errorCode !== null
    span.setAttribute(ATTR.attempts, context.attempts)
    span.setAttribute(ATTR.background, context.background)
    if (context.status !== null) span.setAttribute(ATTR.statusCode, context.status)
    if (failed) {
      span.setAttribute(ATTR.errorType, context.errorCode)
      span.recordException(context.error)
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: context.errorCode })
    } else {
      span.setAttribute(ATTR.fingerprint, context.fingerprint)
      span.setAttribute(ATTR.expiresIn, context.expiresInSeconds)
    }
    span.end()
    const attributes = {
      [ATTR.serverAddress]: context.serverAddress,
      [ATTR.serverPort]: context.serverPort,
      [ATTR.provider]: context.provider,
      [ATTR.reason]: context.reason,
      [ATTR.background]: context.background,
      [ATTR.outcome]: failed ? 'failure' : 'success',
    }
    if (failed) attributes[ATTR.errorType] = context.errorCode
    this._instruments.duration.record((monotonicMs() - entry.started) / 1000, attributes)
    this._instruments.fetches.add(1, attributes)
  }

  _refreshed(message, errorCode) {
    const attributes = { [ATTR.provider]: message.provider, [ATTR.outcome]: errorCode === null ? 'success' : 'failure' }
    if (errorCode !== null) attributes[ATTR.errorType] = errorCode
    this._instruments.backgroundRefreshes.add(1, attributes)
  }

  // The core's own count of the time left, for the providers watched: with the native driver the
  // default provider's cache is the whole process's, worker threads included.
  _observeExpiry(result) {
    const providers = (this._config.providers || []).slice()
    if (this._defaultSeen) providers.push(defaultProvider())
    for (const provider of providers) {
      const left = provider.stats().expiresInSeconds
      if (left !== null) result.observe(left, { [ATTR.provider]: provider.label })
    }
  }
}

module.exports = { MetadataTokenInstrumentation }
