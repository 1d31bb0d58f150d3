'use strict'

// yc-metadata-token/ydb-sdk against the real ydb-sdk 5 Driver and a local YDB stand-in that
// checks x-ydb-auth-ticket on every call, across a token change.

const test = require('node:test')
const assert = require('node:assert/strict')

const { startEmulator } = require('../emulator')
const { TokenProvider } = require('..')
const { dropProxyEnv, newToken, shortLivedToken, tokenBook, startAuthServer, ydbjsRuns, ydbServices } = require('./fixtures/auth-server')

dropProxyEnv(process.env)

// The stand-in's services come from @ydbjs/api, which needs Node >= 20.19.
const skip = ydbjsRuns() ? false : 'the YDB stand-in uses @ydbjs/api, which needs Node >= 20.19; this is ' + process.version

const SILENT = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} }

async function setup(t) {
  const ydb = require('ydb-sdk')
  const grpc = require('@grpc/grpc-js')
  const { MetadataTokenAuthService } = require('../ydb-sdk')
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
  const connectionString = 'grpc://' + server.address + '/local'
  const drivers = []
  const driver = (authService) => {
    const d = new ydb.Driver({ connectionString, authService, logger: SILENT, poolSettings: { minLimit: 0 } })
    drivers.push(d)
    return d
  }
  t.after(async () => {
    for (const d of drivers) await d.destroy()
    await server.close()
    await emu.close()
  })
  return { ydb, MetadataTokenAuthService, book, first, rotate, firstExpired, emu, server, provider, driver }
}

test('ydb-sdk Driver: every call carries the current token, across a refresh', { skip }, async (t) => {
  const { MetadataTokenAuthService, first, rotate, emu, server, provider, driver } = await setup(t)
  const d = driver(new MetadataTokenAuthService(provider))
  assert.equal(await d.ready(5000), true)
  for (let i = 0; i < 3; i++) {
    const listing = await d.schemeClient.listDirectory('/local')
    assert.equal(listing.children[0].name, 'table')
  }
  const second = await rotate() // resolves once the first token has expired
  for (let i = 0; i < 3; i++) await d.schemeClient.listDirectory('/local')

  const tokens = server.calls.map((c) => c.token)
  assert.ok(server.calls.every((c) => c.ok), JSON.stringify(server.calls.map((c) => [c.method, c.ok])))
  assert.ok(server.calls.length >= 7, 'discovery + 6 listings, got ' + server.calls.length)
  assert.deepEqual(tokens.slice(-3), [second, second, second])
  assert.ok(tokens.includes(first))
  assert.equal(tokens.lastIndexOf(first) < tokens.indexOf(second), true, 'tokens in order')
  assert.ok(emu.requests >= 2 && emu.requests <= 4, emu.requests + ' token requests')
})

test('the stand-in rejects an expired or missing ticket (the check above can fail)', { skip }, async (t) => {
  const { first, firstExpired, server } = await setup(t)
  const grpc = require('@grpc/grpc-js')
  // A plain grpc-js client: ydb-sdk's Driver leaves a failed discovery as an unhandled rejection.
  const client = new grpc.Client(server.address, grpc.credentials.createInsecure())
  t.after(() => client.close())
  const call = (md) => new Promise((resolve) => {
    client.makeUnaryRequest('/Ydb.Discovery.V1.DiscoveryService/ListEndpoints', (x) => x, (x) => x,
      Buffer.alloc(0), md, (err) => resolve(err && err.code))
  })
  const withTicket = (ticket) => {
    const md = new grpc.Metadata()
    md.set('x-ydb-auth-ticket', ticket)
    return md
  }
  assert.equal(await call(withTicket(first)), null)
  assert.equal(await call(new grpc.Metadata()), grpc.status.UNAUTHENTICATED)
  await firstExpired()
  assert.equal(await call(withTicket(first)), grpc.status.UNAUTHENTICATED)
  assert.deepEqual(server.calls.map((c) => c.ok), [true, false, false])
})

test('a metadata failure fails the call with its code; the token never shows', { skip }, async (t) => {
  const { MetadataTokenAuthService, first, emu, server } = await setup(t)
  emu.fault({ status: 404 })
  const auth = new MetadataTokenAuthService(new TokenProvider({ host: emu.address }))
  await assert.rejects(auth.getAuthMetadata(), { code: 'ERR_METADATA_NO_SERVICE_ACCOUNT' })
  emu.fault(null)
  const md = await auth.getAuthMetadata()
  // Built by ydb-sdk's own grpc-js, so its clients keep it.
  assert.ok(md instanceof require('@grpc/grpc-js').Metadata)
  assert.deepEqual(md.get('x-ydb-auth-ticket'), [first])
  assert.doesNotMatch(require('node:util').inspect(auth, { showHidden: true, depth: 5 }), new RegExp(first))
  assert.equal(server.calls.length, 0)
})

test('bad input: a typed error', { skip }, () => {
  const { MetadataTokenAuthService } = require('../ydb-sdk')
  assert.throws(() => new MetadataTokenAuthService('127.0.0.1:8080'), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => new MetadataTokenAuthService(null), { code: 'ERR_INVALID_OPTION' })
})

test('getAuthMetadata stays on the cached path: no request per call', { skip }, async (t) => {
  const { MetadataTokenAuthService } = require('../ydb-sdk')
  const emu = await startEmulator({ token: newToken('t'), expiresIn: 3600 })
  t.after(() => emu.close())
  const auth = new MetadataTokenAuthService(new TokenProvider({ host: emu.address }))
  await auth.getAuthMetadata()
  const n = 20000
  const started = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await auth.getAuthMetadata()
  const perCall = Number(process.hrtime.bigint() - started) / n
  t.diagnostic('getAuthMetadata from the cache: ' + (perCall / 1000).toFixed(2) + ' µs per call')
  assert.equal(emu.requests, 1)
})
