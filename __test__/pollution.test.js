'use strict'

// A prototype-pollution bug elsewhere in an app must not reach this package: every user object
// (constructor options, call options, the Cloud Functions context and its token, process.env) is
// read by its own properties only. Each name is set on Object.prototype in a child process, which
// then runs one scenario; what it sees and what the metadata service sees must be as without it.

const test = require('node:test')
const assert = require('node:assert/strict')
const { startEmulator } = require('../emulator')
const { runNode, closedPort } = require('./helpers')

// POLLUTE: { names: { name: value, ... }, at, unset } or null. Names are set before require
// ('load'), except `signal` ('call'): Node's own sockets read `signal` from their option objects
// through the prototype, so set before a socket is made it aborts every socket of the process
// (stdout, the wasm driver's), whatever this package does. It is set once each provider has its
// token; every call after that is answered from memory, where only this package's reading of
// `signal` can change anything. `unset` takes an environment variable out of process.env first.
const SCENARIO = `
  const pollute = POLLUTE
  const apply = () => {
    for (const [name, value] of Object.entries(pollute.names)) {
      Object.defineProperty(Object.prototype, name, { value, writable: true, configurable: true })
    }
  }
  if (pollute && pollute.unset) delete process.env[pollute.unset]
  process.stdout, process.stderr
  if (pollute && pollute.at === 'load') apply()
  const { getToken, getAuthorizationHeader, TokenProvider, defaultProvider } = require('.')
  const outcome = (p) => p.then((t) => (typeof t === 'string' ? t : t.token), (e) => e.code)
  ;(async () => {
    const seen = []
    const provider = new TokenProvider({ host: process.env.GCE_METADATA_HOST })
    seen.push(await outcome(getToken()))
    seen.push(await outcome(provider.getToken()))
    seen.push(await outcome(new TokenProvider({}).getToken()))
    if (pollute && pollute.at === 'call') apply()
    const live = new AbortController().signal
    seen.push(await outcome(getToken({ httpMethod: 'GET', body: '' }, { requestId: 'r1', functionName: 'f' })))
    seen.push(await outcome(getToken({ signal: live })))
    seen.push(await outcome(getToken({ forceRefresh: false })))
    seen.push(await outcome(getToken({})))
    seen.push(await outcome(getAuthorizationHeader(undefined, {})))
    seen.push(await outcome(provider.getToken({})))
    seen.push(await outcome(provider.getToken({ signal: live })))
    seen.push(await outcome(provider.getToken({ forceRefresh: false })))
    seen.push(await outcome(provider.getToken({ context: { requestId: 'r2' } })))
    seen.push(await outcome(provider.getToken({ context: { token: {} } })))
    const stats = [defaultProvider().stats(), provider.stats()].map((s) => [s.driver, s.upstreamRequests, s.contextTokens])
    console.log(JSON.stringify({ seen, stats }))
  })()
`

test('Object.prototype polluted with each name the package reads: nothing changes', async () => {
  const emu = await startEmulator({ token: 'metadata-token', expiresIn: 3600 })
  const nowhere = '127.0.0.1:' + (await closedPort())
  const attacker = { access_token: 'attacker-token', expires_in: 3600 }
  // What each name is polluted with: what would change the outcome if it were read.
  const polluted = [
    { names: { forceRefresh: true } },
    { names: { signal: { aborted: true } }, at: 'call' },
    { names: { context: { token: attacker } } },
    { names: { token: attacker } },
    { names: { access_token: 'attacker-token', expires_in: 3600 } },
    { names: { host: nowhere } },
    { names: { timeoutMs: 0.5 } },
    { names: { maxAttempts: 0 } },
    { names: { YC_METADATA_ADDR: nowhere } },
    { names: { DEBUG: 'yc-metadata-token' } },
    { names: { NODE_DEBUG: 'yc-metadata-token' } },
  ]
  // The driver variable is set for the whole suite: unset in the child, the default (native)
  // must stay, and only a run on that driver compares like with like.
  if (process.env.YC_METADATA_TOKEN_DRIVER !== 'wasm') {
    polluted.push({ names: { YC_METADATA_TOKEN_DRIVER: 'wasm' }, unset: 'YC_METADATA_TOKEN_DRIVER' })
  }
  // The metadata service comes from GCE_METADATA_HOST, so a polluted YC_METADATA_ADDR (read first)
  // would show; one of the two is always set, so nothing ever asks the real address.
  const env = { GCE_METADATA_HOST: emu.address }
  const run = async (pollute) => {
    const before = emu.requests
    const r = await runNode(SCENARIO.replace('POLLUTE', JSON.stringify(pollute)), env)
    assert.equal(r.code, 0, r.stderr)
    return { out: JSON.parse(r.stdout), stderr: r.stderr, requests: emu.requests - before }
  }
  try {
    const clean = await run(null)
    assert.equal(clean.stderr, '')
    assert.equal(clean.requests, 3)
    assert.ok(clean.out.seen.every((t) => t === 'metadata-token' || t === 'Bearer metadata-token'), JSON.stringify(clean.out))
    const changed = []
    for (const pollute of polluted) {
      const seen = await run(Object.assign({ at: 'load' }, pollute))
      try {
        assert.deepEqual(seen, clean)
      } catch (_) {
        changed.push(Object.keys(pollute.names).join(' + ') + ': ' + JSON.stringify(seen))
      }
    }
    assert.deepEqual(changed, [], 'clean: ' + JSON.stringify(clean) + '\npolluted:\n' + changed.join('\n'))
  } finally {
    await emu.close()
  }
})
