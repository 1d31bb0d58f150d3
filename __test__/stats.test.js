'use strict'

// provider.stats(), the Authorization-header helper, and what inspect / JSON show (never the token).

const test = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')
const { startEmulator } = require('../emulator')

const SECRET = 'stats-secret-token-0123456789'
let emu
let lib

test.before(async () => {
  emu = await startEmulator({ token: SECRET, expiresIn: 3600 })
  process.env.YC_METADATA_ADDR = emu.address
  lib = require('..')
})
test.after(() => emu.close())

test('stats count hits, requests, retries, failures, and show the current expiry', async () => {
  const provider = new lib.TokenProvider({ host: emu.address })
  assert.deepEqual(provider.stats(), {
    driver: process.env.YC_METADATA_TOKEN_DRIVER === 'wasm' ? 'wasm' : 'native',
    cacheHits: 0,
    contextTokens: 0,
    upstreamRequests: 0,
    retries: 0,
    fetches: 0,
    backgroundRefreshes: 0,
    failures: 0,
    lastErrorCode: null,
    expiresInSeconds: null,
  })
  emu.fault({ status: 503, times: 2 })
  await provider.getToken()
  await provider.getToken()
  await provider.getToken()
  let s = provider.stats()
  assert.equal(s.upstreamRequests, 3)
  assert.equal(s.retries, 2)
  assert.equal(s.fetches, 1)
  assert.equal(s.cacheHits, 2)
  assert.equal(s.failures, 0)
  assert.equal(s.lastErrorCode, null)
  assert.ok(s.expiresInSeconds > 3590 && s.expiresInSeconds <= 3600, String(s.expiresInSeconds))

  emu.fault({ status: 404, times: 1 })
  await assert.rejects(provider.getToken({ forceRefresh: true }), { code: 'ERR_METADATA_NO_SERVICE_ACCOUNT' })
  s = provider.stats()
  assert.equal(s.failures, 1)
  assert.equal(s.lastErrorCode, 'ERR_METADATA_NO_SERVICE_ACCOUNT')
  assert.equal(s.fetches, 2)
  assert.ok(s.expiresInSeconds > 0, 'the cached token stays valid after a failed refresh')
})

test('defaultProvider() is the provider behind getToken()', async () => {
  const provider = lib.defaultProvider()
  assert.ok(provider instanceof lib.TokenProvider)
  assert.equal(lib.defaultProvider(), provider)
  const before = provider.stats()
  await lib.getToken()
  await lib.getToken()
  const after = provider.stats()
  assert.equal(after.cacheHits + after.upstreamRequests - before.cacheHits - before.upstreamRequests, 2)
  assert.equal((await provider.getToken()).token, SECRET)
})

test('getAuthorizationHeader gives "Bearer <token>"', async () => {
  assert.equal(await lib.getAuthorizationHeader(), 'Bearer ' + SECRET)
  assert.equal(await lib.getAuthorizationHeader({ httpMethod: 'POST' }), 'Bearer ' + SECRET)
  const provider = new lib.TokenProvider({ host: emu.address })
  assert.equal(await provider.getAuthorizationHeader(), 'Bearer ' + SECRET)
  assert.equal(await provider.getAuthorizationHeader({ forceRefresh: true }), 'Bearer ' + SECRET)
  await assert.rejects(provider.getAuthorizationHeader('x'), { code: 'ERR_INVALID_OPTION' })
  const off = new lib.TokenProvider({ host: '127.0.0.1:1', maxAttempts: 1 })
  await assert.rejects(off.getAuthorizationHeader(), { code: 'ERR_METADATA_UNREACHABLE' })
})

test('util.inspect and JSON.stringify show the URL and stats, never the token', async () => {
  const provider = new lib.TokenProvider({ host: emu.address })
  await provider.getToken()
  await lib.getToken(undefined, { token: { access_token: SECRET + '-ctx', expires_in: 100 } })
  const views = [
    util.inspect(provider),
    util.inspect(provider, { showHidden: true, depth: Infinity }),
    util.inspect(provider, { showHidden: true, depth: Infinity, customInspect: false, getters: true }),
    util.format('%o', provider),
    util.format('%O', provider),
    util.inspect({ nested: { provider } }, { depth: Infinity, showHidden: true }),
    util.inspect(lib.defaultProvider(), { showHidden: true, depth: Infinity }),
    util.inspect(lib, { showHidden: true, depth: Infinity }),
    JSON.stringify(provider),
    JSON.stringify({ provider, d: lib.defaultProvider() }),
    String(Object.keys(provider)),
    String(Object.getOwnPropertyNames(provider)),
    String(Object.getOwnPropertySymbols(provider).length),
  ]
  for (const view of views) assert.ok(!view.includes(SECRET.slice(0, 12)), 'the token shows in: ' + view)
  assert.match(views[0], /^TokenProvider \{/)
  assert.match(views[0], new RegExp('url: .http://' + emu.address.replace(/\./g, '\\.')))
  assert.match(views[0], /upstreamRequests: 1/)
  const json = JSON.parse(views[8])
  assert.equal(json.url, 'http://' + emu.address + '/computeMetadata/v1/instance/service-accounts/default/token')
  assert.equal(json.stats.upstreamRequests, 1)
})

test('methods called on something that is not a provider fail clearly', async () => {
  const fake = Object.create(lib.TokenProvider.prototype)
  await assert.rejects(fake.getToken(), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => fake.stats(), TypeError)
  assert.equal(util.inspect(fake), 'TokenProvider {}')
  assert.equal(JSON.stringify(fake), '{}')
})
