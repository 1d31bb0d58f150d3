'use strict'

// AbortSignal: an aborted caller leaves promptly and alone; the shared request carries on.

const test = require('node:test')
const assert = require('node:assert/strict')
const { startEmulator } = require('../emulator')
const { runNode } = require('./helpers')

let emu
let lib

test.before(async () => {
  emu = await startEmulator({ token: 'abort-token', expiresIn: 3600 })
  process.env.YC_METADATA_ADDR = emu.address
  lib = require('..')
})
test.after(() => emu.close())

const SLOW_MS = 800
// Generous bound for "promptly": well under the upstream delay, so it proves the caller did not
// wait for the request.
const PROMPT_MS = SLOW_MS / 2
const ABORT = { name: 'AbortError', code: 'ABORT_ERR' }

async function abortMidFlight(getToken) {
  emu.reset()
  emu.fault({ delayMs: SLOW_MS, times: 1 })
  const before = emu.requests
  const controller = new AbortController()
  const patient = getToken(undefined)
  const impatient = getToken(controller.signal)
  const started = performance.now()
  setTimeout(() => controller.abort(), 50)
  await assert.rejects(impatient, ABORT)
  const waited = performance.now() - started
  assert.ok(waited < PROMPT_MS, 'aborted caller waited ' + waited + ' ms')
  const t = await patient
  assert.equal(t.token, 'abort-token')
  assert.equal(emu.requests - before, 1, 'one upstream request for both callers')
}

test('TokenProvider: a signal aborted mid-flight rejects that caller alone', () =>
  abortMidFlight((() => {
    const provider = new lib.TokenProvider({ host: emu.address })
    return (signal) => provider.getToken(signal ? { signal } : undefined)
  })()))

test('default getToken({ signal }): same, through the process-wide provider', async () => {
  await abortMidFlight((signal) => lib.getToken(signal ? { signal } : { httpMethod: 'GET' }))
  // The patient caller's token is now cached: a later call with a live signal gets it.
  const t = await lib.getToken({ signal: new AbortController().signal })
  assert.equal(t.token, 'abort-token')
})

test('the abort reason is kept as cause', async () => {
  emu.fault({ delayMs: SLOW_MS, times: 1 })
  const provider = new lib.TokenProvider({ host: emu.address })
  const controller = new AbortController()
  const p = provider.getToken({ signal: controller.signal })
  const reason = new Error('handler is done')
  controller.abort(reason)
  const err = await p.then(() => null, (e) => e)
  assert.equal(err.name, 'AbortError')
  assert.equal(err.code, 'ABORT_ERR')
  assert.equal(err.cause, reason)
  await provider.getToken() // let the shared request finish before the next test
})

test('an already-aborted signal rejects at once with no request', async () => {
  const provider = new lib.TokenProvider({ host: emu.address })
  const before = emu.requests
  await assert.rejects(provider.getToken({ signal: AbortSignal.abort() }), ABORT)
  await assert.rejects(provider.getToken({ signal: AbortSignal.abort(), forceRefresh: true }), ABORT)
  await assert.rejects(lib.getToken({ signal: AbortSignal.abort(), forceRefresh: true }), ABORT)
  assert.equal(emu.requests, before)
  assert.equal(provider.stats().upstreamRequests, 0)
})

test('a signal that aborts after the token arrived changes nothing', async () => {
  const provider = new lib.TokenProvider({ host: emu.address })
  const controller = new AbortController()
  const t = await provider.getToken({ signal: controller.signal })
  controller.abort()
  assert.equal(t.token, 'abort-token')
  assert.equal((await provider.getToken({ signal: controller.signal }).catch((e) => e)).code, 'ABORT_ERR')
})

test('every caller aborting leaves no unhandled rejection and the fetch still fills the cache', async () => {
  emu.reset()
  emu.fault({ delayMs: 300, times: 1 })
  const provider = new lib.TokenProvider({ host: emu.address })
  const controllers = [new AbortController(), new AbortController()]
  const calls = controllers.map((c) => provider.getToken({ signal: c.signal }))
  controllers.forEach((c) => c.abort())
  for (const call of calls) await assert.rejects(call, ABORT)
  await new Promise((r) => setTimeout(r, 500))
  const before = emu.requests
  assert.equal((await provider.getToken()).token, 'abort-token')
  assert.equal(emu.requests, before, 'the aborted callers\' fetch cached the token')
})

test('a failing shared fetch still reaches the caller with a live signal', async () => {
  const provider = new lib.TokenProvider({ host: emu.address, maxAttempts: 1 })
  emu.fault({ status: 404, times: 1 })
  await assert.rejects(provider.getToken({ signal: new AbortController().signal }), { code: 'ERR_METADATA_NO_SERVICE_ACCOUNT' })
})

test('the default getToken treats only { signal?, forceRefresh? } as call options', async () => {
  const provider = lib.defaultProvider()
  const before = provider.stats().upstreamRequests
  // Looks like options but has another key, or a non-signal: an event, ignored.
  const events = [
    { signal: 'abort', body: '' },
    { signal: { aborted: true } },
    { forceRefresh: 'yes' },
    { forceRefresh: true, headers: {} },
  ]
  for (const event of events) assert.equal((await lib.getToken(event)).token, 'abort-token')
  assert.equal(provider.stats().upstreamRequests, before, 'none of them forced a refresh')
  await lib.getToken({ forceRefresh: true })
  assert.equal(provider.stats().upstreamRequests, before + 1)
})

test('a request whose every caller aborted no longer keeps the process alive', async () => {
  // The emulator answers after 4 s; the script's only time limit is its signal.
  const slow = await startEmulator({ token: 'slow-token' })
  slow.fault({ delayMs: 4000 })
  try {
    const code = `
      const { getToken } = require('.')
      getToken({ signal: AbortSignal.timeout(100) }).catch((e) => console.log(e.code))`
    const run = await runNode(code, { YC_METADATA_ADDR: slow.address })
    assert.equal(run.stdout.trim(), 'ABORT_ERR', run.stderr)
    assert.equal(run.code, 0)
    assert.ok(run.ms < 2500, 'the process lived ' + run.ms + ' ms after its only caller aborted')
  } finally {
    await slow.close()
  }
})

test('many callers sharing one signal add one listener, and no MaxListenersExceededWarning', async () => {
  emu.reset()
  emu.fault({ delayMs: 200, times: 1 })
  const provider = new lib.TokenProvider({ host: emu.address })
  const controller = new AbortController()
  const warnings = []
  const onWarning = (w) => warnings.push(w.name)
  process.on('warning', onWarning)
  try {
    const calls = Array.from({ length: 50 }, () => provider.getToken({ signal: controller.signal }))
    const { getEventListeners } = require('events')
    if (getEventListeners) assert.equal(getEventListeners(controller.signal, 'abort').length, 1)
    const tokens = await Promise.all(calls)
    assert.ok(tokens.every((t) => t.token === 'abort-token'))
    await new Promise((r) => setImmediate(r))
    if (getEventListeners) assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
    assert.deepEqual(warnings, [])
  } finally {
    process.off('warning', onWarning)
  }
})

// The caller's signal is the caller's: what it throws is their error, not a bug of this package.
test("a signal whose addEventListener throws: ERR_INVALID_OPTION with the caller's error as cause", async () => {
  emu.reset()
  emu.fault({ delayMs: 200, times: 1 })
  const provider = new lib.TokenProvider({ host: emu.address })
  const mine = new Error('thrown by the caller')
  const real = new AbortController().signal
  real.addEventListener = () => {
    throw mine
  }
  const fake = { aborted: false, addEventListener() { throw mine }, removeEventListener() {} }
  const patient = provider.getToken()
  for (const signal of [real, fake]) {
    let call
    assert.doesNotThrow(() => (call = provider.getToken({ signal })))
    await assert.rejects(call, (err) => err.code === 'ERR_INVALID_OPTION' && err.cause === mine && /signal/.test(err.message))
    // Forced: a cached token answers without looking at the signal.
    await assert.rejects(lib.getToken({ signal, forceRefresh: true }), (err) => err.code === 'ERR_INVALID_OPTION' && err.cause === mine)
  }
  // The shared request goes on for the caller that waits.
  assert.equal((await patient).token, 'abort-token')
  // A signal whose aborted getter throws, on the second look: the same.
  let looks = 0
  const flaky = { get aborted() { if (++looks > 1) throw mine; return false }, addEventListener() {}, removeEventListener() {} }
  await assert.rejects(provider.getToken({ signal: flaky, forceRefresh: true }), (err) => err.code === 'ERR_INVALID_OPTION' && err.cause === mine)
})

test('a throwing signal leaves nothing behind: when the other caller aborts, the request no longer holds the process', async () => {
  // The emulator answers after 4 s; the script's only time limits are its signals.
  const slow = await startEmulator({ token: 'slow-token' })
  slow.fault({ delayMs: 4000 })
  try {
    const code = `
      const { getToken } = require('.')
      const throwing = new AbortController().signal
      throwing.addEventListener = () => { throw new Error('mine') }
      getToken({ signal: AbortSignal.timeout(100) }).catch((e) => console.log(e.code))
      getToken({ signal: throwing }).catch((e) => console.log(e.code + ' ' + e.cause.message))`
    const run = await runNode(code, { YC_METADATA_ADDR: slow.address })
    assert.equal(run.stdout, 'ERR_INVALID_OPTION mine\nABORT_ERR\n', run.stderr)
    assert.equal(run.stderr, '')
    assert.equal(run.code, 0)
    assert.ok(run.ms < 2500, 'the process lived ' + run.ms + ' ms after its only caller aborted')
  } finally {
    await slow.close()
  }
})
