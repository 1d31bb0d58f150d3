// yc-metadata-token/ydbjs.mjs against the real @ydbjs/core Driver and a local YDB stand-in that
// checks x-ydb-auth-ticket on every call, across a token change.

import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { startEmulator } = require('../emulator')
const { TokenProvider } = require('..')
const { dropProxyEnv, shortLivedToken, tokenBook, startAuthServer, ydbjsRuns, ydbServices } = require('./fixtures/auth-server')

dropProxyEnv(process.env)

// @ydbjs/* need Node >= 20.19 (their engines field); import them only where they run.
const skip = ydbjsRuns() ? false : '@ydbjs/* need Node >= 20.19; this is ' + process.version

async function setup(t) {
  const { Driver } = await import('@ydbjs/core')
  const { SchemeServiceDefinition } = await import('@ydbjs/api/scheme')
  const { MetadataTokenCredentialsProvider } = await import('../ydbjs.mjs')
  const grpc = require('@grpc/grpc-js')
  const book = tokenBook()
  // A short first token: the provider must fetch again within the test.
  const { emu, first, rotate, firstExpired } = await shortLivedToken(startEmulator, book)
  let port = 0
  const server = await startAuthServer({
    grpc,
    services: await ydbServices(() => port),
    credential: (md) => md.get('x-ydb-auth-ticket')[0],
    valid: book.valid,
  })
  port = server.port
  const provider = new TokenProvider({ host: emu.address })
  const credentials = new MetadataTokenCredentialsProvider(provider)
  // Made on demand: a Driver whose first discovery fails leaves an unhandled rejection behind.
  let driver = null
  const connect = () => (driver = new Driver('grpc://' + server.address + '/local', { credentialsProvider: credentials }))
  t.after(async () => {
    if (driver !== null) driver.close()
    await server.close()
    await emu.close()
  })
  const scheme = () => driver.createClient(SchemeServiceDefinition)
  return { MetadataTokenCredentialsProvider, book, first, rotate, firstExpired, emu, server, provider, credentials, connect, scheme }
}

test('@ydbjs/core Driver: every call carries the current token, across a refresh', { skip }, async (t) => {
  const { first, rotate, emu, server, connect, scheme } = await setup(t)
  await connect().ready()
  for (let i = 0; i < 3; i++) {
    const res = await scheme().listDirectory({ path: '/local' })
    assert.equal(res.operation.ready, true)
  }
  const second = await rotate() // resolves once the first token has expired
  for (let i = 0; i < 3; i++) await scheme().listDirectory({ path: '/local' })

  const tokens = server.calls.map((c) => c.token)
  assert.ok(server.calls.every((c) => c.ok), JSON.stringify(server.calls.map((c) => [c.method, c.ok])))
  assert.ok(server.calls.length >= 7, 'discovery + 6 listings, got ' + server.calls.length)
  assert.deepEqual(tokens.slice(-3), [second, second, second])
  assert.ok(tokens.lastIndexOf(first) < tokens.indexOf(second) && tokens.includes(first), 'tokens in order')
  assert.ok(emu.requests >= 2 && emu.requests <= 4, emu.requests + ' token requests')
})

test('getToken(force, signal): forceRefresh and the abort signal', { skip }, async (t) => {
  const { first, emu, credentials } = await setup(t)
  assert.equal(await credentials.getToken(false), first)
  assert.equal(await credentials.getToken(), first)
  assert.equal(emu.requests, 1)
  assert.equal(await credentials.getToken(true), first)
  assert.equal(emu.requests, 2)
  const aborted = AbortSignal.abort()
  await assert.rejects(credentials.getToken(true, aborted), { name: 'AbortError', code: 'ABORT_ERR' })
  emu.fault({ delayMs: 1000 })
  const controller = new AbortController()
  const pending = credentials.getToken(true, controller.signal)
  setTimeout(() => controller.abort(), 50)
  await assert.rejects(pending, { name: 'AbortError' })
})

test('a metadata failure fails the RPC with its code, before it is sent; the token never shows', { skip }, async (t) => {
  const { MetadataTokenCredentialsProvider, first, emu, server } = await setup(t)
  const { Driver } = await import('@ydbjs/core')
  emu.fault({ status: 404 })
  const failing = new MetadataTokenCredentialsProvider(new TokenProvider({ host: emu.address }))
  await assert.rejects(failing.getToken(), (err) => {
    assert.equal(err.code, 'ERR_METADATA_NO_SERVICE_ACCOUNT')
    assert.doesNotMatch(String(err.stack), new RegExp(first))
    return true
  })
  const driver = new Driver('grpc://' + server.address + '/local', {
    credentialsProvider: failing,
    'ydb.sdk.enable_discovery': false,
  })
  t.after(() => driver.close())
  const { SchemeServiceDefinition } = await import('@ydbjs/api/scheme')
  await assert.rejects(driver.createClient(SchemeServiceDefinition).listDirectory({ path: '/local' }),
    { code: 'ERR_METADATA_NO_SERVICE_ACCOUNT' })
  assert.equal(server.calls.length, 0)
  emu.fault(null)
  const util = await import('node:util')
  await failing.getToken()
  assert.doesNotMatch(util.inspect(failing, { showHidden: true, depth: 5 }), new RegExp(first))
})

test('bad input: a typed error', { skip }, async () => {
  const { MetadataTokenCredentialsProvider } = await import('../ydbjs.mjs')
  assert.throws(() => new MetadataTokenCredentialsProvider({ host: '127.0.0.1' }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => new MetadataTokenCredentialsProvider(null), { code: 'ERR_INVALID_OPTION' })
})

// What @ydbjs/auth 6.3+ publishes (packages/auth README, "Observability via node:diagnostics_channel";
// CHANGELOG 6.3.0, PR #599), subscribed to as @ydbjs/telemetry does: the same names (the tracing
// channel named with its 'tracing:' prefix) and shapes, with provider 'yc-metadata-token', and the
// token in none of it. @ydbjs/auth 6.3 itself is not installable here (the registry has 6.0.4).
test('publishes the token events @ydbjs/auth subscribers consume, without the token', { skip }, async (t) => {
  const dc = await import('node:diagnostics_channel')
  const { MetadataTokenCredentialsProvider } = await import('../ydbjs.mjs')
  const { startEmulator: start } = require('../emulator')
  const token = 'ydb-secret-' + Math.random().toString(36).slice(2)
  const emu = await start({ token, expiresIn: 3 })
  const seen = []
  const handlers = {}
  for (const event of ['start', 'end', 'asyncStart', 'asyncEnd', 'error']) {
    handlers[event] = (context) => seen.push([event, { ...context }])
  }
  const fetches = dc.tracingChannel('tracing:ydb:auth.token.fetch')
  fetches.subscribe(handlers)
  const plain = {}
  for (const name of ['ydb:auth.token.refreshed', 'ydb:auth.token.expired', 'ydb:auth.provider.failed']) {
    plain[name] = (message) => seen.push([name, { ...message }])
    dc.channel(name).subscribe(plain[name])
  }
  t.after(async () => {
    fetches.unsubscribe(handlers)
    for (const name of Object.keys(plain)) dc.channel(name).unsubscribe(plain[name])
    await emu.close()
  })
  const provider = new TokenProvider({ host: emu.address, maxAttempts: 1 })
  const credentials = new MetadataTokenCredentialsProvider(provider)
  const before = Date.now()
  assert.equal(await credentials.getToken(false), token)
  assert.equal(await credentials.getToken(false), token)
  assert.deepEqual(seen.map(([name]) => name), ['start', 'end', 'ydb:auth.token.refreshed', 'asyncStart', 'asyncEnd'])
  assert.ok(seen.slice(0, 2).every(([, context]) => context.provider === 'yc-metadata-token' && Object.keys(context).length === 1))
  const refreshed = seen[2][1]
  assert.equal(refreshed.provider, 'yc-metadata-token')
  assert.ok(refreshed.expiresAt >= before + 2000 && refreshed.expiresAt <= Date.now() + 3000, String(refreshed.expiresAt - before))
  assert.equal('result' in seen[4][1], false, 'the token is not the traced result')

  // A provider not adapted publishes nothing here.
  await new TokenProvider({ host: emu.address }).getToken()
  assert.equal(seen.length, 5)

  // A failed fetch: error, then provider.failed after the trace ends.
  emu.fault({ status: 500, times: 1 })
  await assert.rejects(credentials.getToken(true), { code: 'ERR_METADATA_STATUS' })
  assert.deepEqual(seen.slice(5).map(([name]) => name), ['start', 'end', 'error', 'asyncStart', 'asyncEnd', 'ydb:auth.provider.failed'])
  assert.equal(seen[7][1].error.code, 'ERR_METADATA_STATUS')
  assert.deepEqual(Object.keys(seen[10][1]).sort(), ['error', 'provider'])
  assert.equal(seen[10][1].error, seen[7][1].error)

  // The token runs out unused: the next call publishes token.expired, once.
  await new Promise((resolve) => setTimeout(resolve, 3000 - (Date.now() - before)))
  assert.equal(await credentials.getToken(false), token)
  const expired = seen.filter(([name]) => name === 'ydb:auth.token.expired')
  assert.equal(expired.length, 1)
  assert.equal(expired[0][1].provider, 'yc-metadata-token')
  assert.ok(expired[0][1].stalenessMs >= 0 && expired[0][1].stalenessMs < 1000, String(expired[0][1].stalenessMs))
  for (const [name, message] of seen) {
    const shown = JSON.stringify(message) + (message.error ? message.error.message + message.error.stack : '')
    assert.ok(!shown.includes(token), name + ' shows the token')
  }
})
