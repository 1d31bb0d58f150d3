'use strict'

// yc-metadata-token/opentelemetry with the real OpenTelemetry SDK and its in-memory exporters:
// the spans and metrics README "Tracing and metrics" documents, across a first fetch, a forced
// refresh, a failure and background refreshes that succeed and fail.

const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { setTimeout: sleep } = require('node:timers/promises')
const { withEmulator, runNode } = require('./helpers')

// The SDK's engines: ^18.19.0 || >=20.6.0.
const [major, minor] = process.versions.node.split('.').map(Number)
const skip = major > 20 || (major === 20 && minor >= 6) || (major === 18 && minor >= 19) ? false : 'the OpenTelemetry SDK needs Node 18.19 or 20.6'

// How long to wait for a span of a fetch in the background (loopback: milliseconds).
const SPAN_WAIT_MS = 5000

function secretToken() {
  return 'ya29.otel-' + crypto.randomBytes(12).toString('hex')
}

function fingerprint(token) {
  return 'sha256:' + crypto.createHash('sha256').update(token).digest('hex').slice(0, 8)
}

async function setup(t, providers) {
  const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')
  const { MeterProvider, PeriodicExportingMetricReader, InMemoryMetricExporter, AggregationTemporality } = require('@opentelemetry/sdk-metrics')
  const { MetadataTokenInstrumentation } = require('../opentelemetry')
  const spans = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
  const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  // Read on demand only (forceFlush): the interval is longer than any test.
  const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 3600000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  const instrumentation = new MetadataTokenInstrumentation({ enabled: false, providers })
  instrumentation.setTracerProvider(tracerProvider)
  instrumentation.setMeterProvider(meterProvider)
  instrumentation.enable()
  t.after(async () => {
    instrumentation.disable()
    await meterProvider.shutdown()
    await tracerProvider.shutdown()
  })
  return {
    instrumentation,
    spans: () => spans.getFinishedSpans(),
    async span(count) {
      const until = Date.now() + SPAN_WAIT_MS
      while (spans.getFinishedSpans().length < count && Date.now() < until) await sleep(10)
      assert.equal(spans.getFinishedSpans().length, count, 'spans')
      return spans.getFinishedSpans()[count - 1]
    },
    // The metric points by name, from a collection now.
    async metrics() {
      metrics.reset()
      await reader.forceFlush()
      const points = {}
      for (const resource of metrics.getMetrics()) {
        for (const scope of resource.scopeMetrics) {
          assert.equal(scope.scope.name, 'yc-metadata-token')
          for (const metric of scope.metrics) points[metric.descriptor.name] = metric.dataPoints
        }
      }
      return points
    },
  }
}

function sum(points, attributes) {
  return (points || [])
    .filter((p) => Object.keys(attributes).every((k) => p.attributes[k] === attributes[k]))
    .reduce((total, p) => total + (typeof p.value === 'number' ? p.value : p.value.count), 0)
}

function assertNoToken(spans, points, token) {
  const shown = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.events, s.status])) + JSON.stringify(points)
  assert.ok(!shown.includes(token), 'a span or a metric holds the token')
}

test('a span per fetch and the fetch metrics: first fetch, forced refresh, failure', { skip }, async (t) => {
  const token = secretToken()
  await withEmulator({ token, expiresIn: 3600 }, async (emu) => {
    const { TokenProvider, CODES } = require('..')
    const provider = new TokenProvider({ host: emu.address })
    const otel = await setup(t, [provider])
    const { SpanKind, SpanStatusCode } = require('@opentelemetry/api')
    await Promise.all([provider.getToken(), provider.getToken()])
    await provider.getToken()
    const first = await otel.span(1)
    const [host, port] = emu.address.split(':')
    assert.equal(first.name, 'yc-metadata-token.fetch')
    assert.equal(first.kind, SpanKind.CLIENT)
    assert.deepEqual(first.attributes, {
      'http.request.method': 'GET',
      'server.address': host,
      'server.port': Number(port),
      'url.full': 'http://' + emu.address + '/computeMetadata/v1/instance/service-accounts/default/token',
      'yc_metadata_token.provider': provider.label,
      'yc_metadata_token.driver': provider.stats().driver,
      'yc_metadata_token.reason': 'first',
      'yc_metadata_token.attempts': 1,
      'yc_metadata_token.background': false,
      'http.response.status_code': 200,
      'yc_metadata_token.token.fingerprint': fingerprint(token),
      'yc_metadata_token.token.expires_in': first.attributes['yc_metadata_token.token.expires_in'],
    })
    assert.ok(first.attributes['yc_metadata_token.token.expires_in'] > 3590)
    assert.equal(first.status.code, SpanStatusCode.UNSET)

    emu.fault({ status: 503, times: 1 })
    await provider.getToken({ forceRefresh: true })
    const forced = await otel.span(2)
    assert.deepEqual(
      [forced.attributes['yc_metadata_token.reason'], forced.attributes['yc_metadata_token.attempts'], forced.attributes['http.response.status_code']],
      ['forced', 2, 200]
    )

    emu.fault({ status: 404, times: 1 })
    await assert.rejects(provider.getToken({ forceRefresh: true }), { code: CODES.NO_SERVICE_ACCOUNT })
    const failed = await otel.span(3)
    assert.equal(failed.status.code, SpanStatusCode.ERROR)
    assert.equal(failed.status.message, CODES.NO_SERVICE_ACCOUNT)
    assert.equal(failed.attributes['error.type'], CODES.NO_SERVICE_ACCOUNT)
    assert.equal(failed.attributes['http.response.status_code'], 404)
    assert.equal(failed.events[0].name, 'exception')
    assert.equal(failed.events[0].attributes['exception.type'], CODES.NO_SERVICE_ACCOUNT)

    const points = await otel.metrics()
    const label = provider.label
    assert.equal(sum(points['yc_metadata_token.fetches'], { 'yc_metadata_token.provider': label }), 3)
    assert.equal(sum(points['yc_metadata_token.fetches'], { 'yc_metadata_token.outcome': 'success', 'yc_metadata_token.reason': 'forced' }), 1)
    assert.equal(sum(points['yc_metadata_token.fetches'], { 'yc_metadata_token.outcome': 'failure', 'error.type': CODES.NO_SERVICE_ACCOUNT }), 1)
    assert.equal(sum(points['yc_metadata_token.fetch.duration'], { 'server.address': host }), 3)
    assert.ok(points['yc_metadata_token.fetch.duration'].every((p) => p.value.min > 0 && p.value.max < 30))
    // The gauge: the time left on the token the provider still holds.
    const [left] = points['yc_metadata_token.token.expires_in']
    assert.equal(left.attributes['yc_metadata_token.provider'], label)
    assert.ok(left.value > 3590 && left.value <= 3600, String(left.value))
    assertNoToken(otel.spans(), points, token)
  })
})

test('background refreshes: a root span each, counted by outcome; stale answers and expiry counted', { skip }, async (t) => {
  const token = secretToken()
  await withEmulator({ token, expiresIn: 4 }, async (emu) => {
    const { TokenProvider } = require('..')
    const provider = new TokenProvider({ host: emu.address, maxAttempts: 1 })
    const otel = await setup(t, [provider])
    const fetched = Date.now()
    await provider.getToken()
    const next = secretToken()
    emu.setToken(next, 4)
    // Refreshes are due after half the 4-s lifetime.
    await sleep(2100 - (Date.now() - fetched))
    await provider.getToken()
    const refreshed = await otel.span(2)
    const refreshedAt = Date.now()
    assert.equal(refreshed.attributes['yc_metadata_token.reason'], 'refresh-ahead')
    assert.equal(refreshed.attributes['yc_metadata_token.background'], true)
    assert.equal(refreshed.parentSpanContext, undefined, 'a trace of its own')
    assert.equal(refreshed.attributes['yc_metadata_token.token.fingerprint'], fingerprint(next))

    emu.fault({ status: 503, times: 1000 })
    await sleep(2100 - (Date.now() - refreshedAt))
    assert.equal((await provider.getToken()).token, next)
    const failed = await otel.span(3)
    assert.equal(failed.attributes['error.type'], 'ERR_METADATA_STATUS')
    assert.equal((await provider.getToken()).token, next, 'served stale')
    // It runs out while the service fails (usable for 3.6 s of its 4).
    await sleep(3700 - (Date.now() - refreshedAt))
    await assert.rejects(provider.getToken(), { code: 'ERR_METADATA_STATUS' })

    const points = await otel.metrics()
    const label = { 'yc_metadata_token.provider': provider.label }
    assert.equal(sum(points['yc_metadata_token.background_refreshes'], { ...label, 'yc_metadata_token.outcome': 'success' }), 1)
    assert.equal(sum(points['yc_metadata_token.background_refreshes'], { ...label, 'yc_metadata_token.outcome': 'failure', 'error.type': 'ERR_METADATA_STATUS' }), 1)
    assert.equal(sum(points['yc_metadata_token.served_stale'], label), 1)
    assert.equal(sum(points['yc_metadata_token.expired_while_failing'], label), 1)
    assert.equal(sum(points['yc_metadata_token.fetches'], { ...label, 'yc_metadata_token.background': true }), 2)
    // Nothing usable is held any more: the gauge reports nothing for the provider.
    assert.equal((points['yc_metadata_token.token.expires_in'] || []).length, 0)
    assertNoToken(otel.spans(), points, token)
    assertNoToken(otel.spans(), points, next)
  })
})

test('disable() stops the spans; the main entry never loads @opentelemetry/api', { skip }, async (t) => {
  await withEmulator({ token: 'not-traced' }, async (emu) => {
    const { TokenProvider } = require('..')
    const otel = await setup(t)
    otel.instrumentation.disable()
    assert.equal(otel.instrumentation.getConfig().enabled, false)
    await new TokenProvider({ host: emu.address }).getToken()
    assert.equal(otel.spans().length, 0)
    const r = await runNode(
      `require('./').getToken().then(() => console.log(Object.keys(require.cache).some((f) => f.includes('@opentelemetry'))))`,
      { YC_METADATA_ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'false')
  })
})
