'use strict'

// Cloud Functions: the token of the invocation context (the handler's second argument) is used
// with no request; an event that merely looks like a context is never mistaken for one.

const test = require('node:test')
const assert = require('node:assert/strict')
const { startEmulator } = require('../emulator')

let emu
let lib

test.before(async () => {
  emu = await startEmulator({ token: 'metadata-token', expiresIn: 3600 })
  process.env.YC_METADATA_ADDR = emu.address
  lib = require('..')
})
test.after(() => emu.close())

const context = (accessToken, expiresIn) => ({
  requestId: 'req-1',
  functionName: 'f',
  token: { access_token: accessToken, expires_in: expiresIn, token_type: 'Bearer' },
})

test('getToken(event, context) takes the context token with no request', async () => {
  const before = emu.requests
  const t = await lib.getToken({ httpMethod: 'GET', body: '' }, context('ctx-token-1', 43200))
  assert.deepEqual(t, { token: 'ctx-token-1', expiresInSeconds: 43200 })
  assert.equal(emu.requests, before)
  assert.equal(await lib.getAuthorizationHeader({}, context('ctx-token-2', 60)), 'Bearer ctx-token-2')
  assert.equal(emu.requests, before)
  assert.ok(lib.defaultProvider().stats().contextTokens >= 2)
})

test('an event shaped like a context, passed first, still goes to the metadata service', async () => {
  const before = emu.requests
  const lookalike = context('event-token', 100)
  const t = await lib.getToken(lookalike)
  assert.equal(t.token, 'metadata-token')
  assert.ok(emu.requests >= before) // cached or fetched, but from the service
  const t2 = await lib.getToken(lookalike, undefined)
  assert.equal(t2.token, 'metadata-token')
  const t3 = await lib.getToken(lookalike, null)
  assert.equal(t3.token, 'metadata-token')
})

test('a context without a usable token falls back to the metadata service', async () => {
  const unusable = [
    {},
    { token: null },
    { token: 'string' },
    { token: { access_token: '', expires_in: 100 } },
    { token: { access_token: 'x', expires_in: 0 } },
    { token: { access_token: 'x', expires_in: -5 } },
    { token: { access_token: 'x', expires_in: '100' } },
    { token: { access_token: 'x', expires_in: NaN } },
    { token: { access_token: 'x', expires_in: Infinity } },
    { token: { access_token: 42, expires_in: 100 } },
    'not an object',
    42,
  ]
  for (const ctx of unusable) {
    const t = await lib.getToken({}, ctx)
    assert.equal(t.token, 'metadata-token', JSON.stringify(ctx))
  }
})

// The token's rule (RFC 6750's b64token) is the core's, for a context's token as for a fetched one.
test('a context token that is no RFC 6750 b64token is ignored: the metadata service answers', async () => {
  const provider = new lib.TokenProvider({ host: emu.address })
  for (const bad of ['abc, Basic YWRtaW46YWRtaW4=', 'abc def', 'ctx\u010D\u010AX-Evil: 1', 'a=b', '=', 'ctx\r\n']) {
    assert.equal((await lib.getToken({}, context(bad, 3600))).token, 'metadata-token', bad)
    assert.equal(await lib.getAuthorizationHeader({}, context(bad, 3600)), 'Bearer metadata-token', bad)
    assert.equal((await provider.getToken({ context: context(bad, 3600) })).token, 'metadata-token', bad)
  }
  assert.equal(provider.stats().contextTokens, 0)
  // Padding and every character the rule allows.
  const good = 'ctx.A-z_0~9+/x=='
  assert.equal((await provider.getToken({ context: context(good, 3600) })).token, good)
})

test('the context token counts down from the first time that context is seen', async () => {
  const ctx = context('ctx-short', 3)
  const first = await lib.getToken(undefined, ctx)
  const seen = performance.now()
  assert.deepEqual(first, { token: 'ctx-short', expiresInSeconds: 3 })
  await new Promise((r) => setTimeout(r, 1100))
  const later = await lib.getToken(undefined, ctx)
  if (performance.now() - seen < 2900) {
    assert.equal(later.token, 'ctx-short')
    assert.ok(later.expiresInSeconds >= 1 && later.expiresInSeconds <= 2, String(later.expiresInSeconds))
  }
  await new Promise((r) => setTimeout(r, Math.max(0, 3100 - (performance.now() - seen))))
  // Its time is up: never an expired token, the metadata service instead.
  const after = await lib.getToken(undefined, ctx)
  assert.equal(after.token, 'metadata-token')
})

test('forceRefresh skips the context; call options with a context still work', async () => {
  const before = emu.requests
  const forced = await lib.getToken({ forceRefresh: true }, context('ctx-3', 100))
  assert.equal(forced.token, 'metadata-token')
  assert.equal(emu.requests, before + 1)
  const withSignal = await lib.getToken({ signal: new AbortController().signal }, context('ctx-4', 100))
  assert.equal(withSignal.token, 'ctx-4')
  const aborted = AbortSignal.abort()
  await assert.rejects(lib.getToken({ signal: aborted }, context('ctx-5', 100)), { name: 'AbortError', code: 'ABORT_ERR' })
})

test('TokenProvider#getToken({ context })', async () => {
  const provider = new lib.TokenProvider({ host: emu.address })
  const before = emu.requests
  assert.deepEqual(await provider.getToken({ context: context('ctx-p', 300) }), { token: 'ctx-p', expiresInSeconds: 300 })
  assert.equal(await provider.getAuthorizationHeader({ context: context('ctx-q', 300) }), 'Bearer ctx-q')
  assert.equal(emu.requests, before)
  assert.equal(provider.stats().contextTokens, 2)
  assert.equal(provider.stats().upstreamRequests, 0)
  assert.equal((await provider.getToken({ context: {} })).token, 'metadata-token')
  assert.equal((await provider.getToken({ context: null })).token, 'metadata-token')
  await assert.rejects(provider.getToken({ context: 'ctx' }), { code: 'ERR_INVALID_OPTION' })
})

test("a context whose token cannot be read: the caller's own exception, as the cause of ERR_INVALID_OPTION", async () => {
  const mine = new Error('thrown by the caller')
  const provider = new lib.TokenProvider({ host: emu.address })
  for (const ctx of [
    { get token() { throw mine } },
    { token: { get access_token() { throw mine } } },
    // Read by their own properties only: a Proxy traps their lookup and their reading.
    { token: new Proxy({ access_token: 'x', expires_in: 60 }, { get() { throw mine } }) },
    { token: new Proxy({}, { getOwnPropertyDescriptor() { throw mine } }) },
    new Proxy({}, { getOwnPropertyDescriptor() { throw mine } }),
  ]) {
    for (const call of [() => lib.getToken({}, ctx), () => provider.getToken({ context: ctx })]) {
      let result
      assert.doesNotThrow(() => (result = call()))
      await assert.rejects(result, (err) => err.code === 'ERR_INVALID_OPTION' && err.cause === mine && /context/.test(err.message))
    }
  }
})

test('an event whose properties cannot be read is only an event: ignored', async () => {
  const hostile = new Proxy({}, { get() { throw new Error('strict event') }, ownKeys() { throw new Error('strict event') } })
  assert.equal((await lib.getToken(hostile)).token, 'metadata-token')
  assert.equal((await lib.getToken({ get signal() { throw new Error('strict event') } })).token, 'metadata-token')
})
