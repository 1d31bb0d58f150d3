'use strict'

// Load: many concurrent callers on a cold provider share one upstream request, and a million
// answers from the cache leave no memory behind. Loopback only, bounded counts.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { once } = require('node:events')

const { TokenProvider } = require('..')
const { startEmulator } = require('../emulator')

const CONCURRENT_CALLERS = 10000
const CACHED_CALLS = 1000000
/// The bar for memory drift over a million cached calls.
const MAX_RSS_DRIFT_BYTES = 5 * 1024 * 1024

test(`${CONCURRENT_CALLERS} concurrent calls on a cold provider: exactly one upstream request`, async () => {
  const emu = await startEmulator({ token: 'load-token', expiresIn: 3600 })
  try {
    // A slow answer keeps the request in flight while every caller arrives.
    emu.fault({ delayMs: 100, times: 1 })
    const provider = new TokenProvider({ host: emu.address })
    const calls = []
    for (let i = 0; i < CONCURRENT_CALLERS; i++) calls.push(provider.getToken())
    const results = await Promise.all(calls)
    assert.equal(emu.requests, 1)
    assert.ok(results.every((r) => r.token === 'load-token' && r.expiresInSeconds > 0))
    // Spread over a few turns of the event loop, a second wave also shares (now from memory).
    const again = await Promise.all(Array.from({ length: 1000 }, () => provider.getToken()))
    assert.ok(again.every((r) => r.token === 'load-token'))
    assert.equal(emu.requests, 1)
  } finally {
    await emu.close()
  }
})

test(`${CONCURRENT_CALLERS} concurrent calls with forceRefresh: still one request at a time`, async () => {
  const emu = await startEmulator({ token: 'force-token', expiresIn: 3600 })
  try {
    const provider = new TokenProvider({ host: emu.address })
    await provider.getToken()
    emu.fault({ delayMs: 100, times: 1 })
    const results = await Promise.all(
      Array.from({ length: CONCURRENT_CALLERS }, () => provider.getToken({ forceRefresh: true }))
    )
    assert.ok(results.every((r) => r.token === 'force-token'))
    assert.equal(emu.requests, 2)
  } finally {
    await emu.close()
  }
})

// The measurement runs in a child with --expose-gc so that RSS is read after full collections,
// without garbage from the rest of this file. V8 grows its young generation in steps under heavy
// allocation (heapTotal 12 -> 36 MiB here while heapUsed stays at 3.6 MiB), which would show as
// RSS "drift" that is not retained memory; pinning the semi-space size takes that out.
const RSS_FLAGS = ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16']
const RSS_CHILD = `
const { TokenProvider } = require(${JSON.stringify(path.join(__dirname, '..'))})
const { Provider } = require(${JSON.stringify(path.join(__dirname, '..', 'binding'))})
const [host, calls] = process.argv.slice(1)
async function viaJs(provider, n) {
  // Batches keep many promises alive at once, as a busy server would.
  for (let i = 0; i < n; i += 1000) {
    const batch = []
    for (let j = 0; j < 1000; j++) batch.push(provider.getToken())
    const results = await Promise.all(batch)
    if (results[999].token !== 'rss-token') throw new Error('wrong token')
  }
}
// The driver's cached path (what answers inside the refresh margin): a core string to a JS one.
function viaNative(native, n) {
  for (let i = 0; i < n; i++) {
    if (native.peek().token !== 'rss-token') throw new Error('wrong token')
  }
}
function settled() {
  for (let i = 0; i < 5; i++) global.gc()
  const { rss, heapUsed } = process.memoryUsage()
  return { rss, heapUsed }
}
async function measure(run) {
  await run(200000) // warm-up: JIT, heap sizes
  const before = settled()
  const start = process.hrtime.bigint()
  await run(Number(calls))
  const ns = Number(process.hrtime.bigint() - start)
  return { before, after: settled(), nsPerCall: ns / Number(calls) }
}
;(async () => {
  const provider = new TokenProvider({ host })
  const js = await measure((n) => viaJs(provider, n))
  const native = new Provider({ host }, undefined, undefined, false)
  const outcome = await native.fetch(false)
  if (outcome.token !== 'rss-token') throw new Error(outcome.code)
  const nat = await measure((n) => viaNative(native, n))
  process.stdout.write(JSON.stringify({ js, native: nat }))
})().catch((e) => { console.error(e); process.exit(1) })
`

test(`${CACHED_CALLS} cached calls (JS memo and the driver's peek): RSS drift under 5 MB, one request each`, async () => {
  const emu = await startEmulator({ token: 'rss-token', expiresIn: 3600 })
  try {
    const child = spawn(process.execPath, [...RSS_FLAGS, '-e', RSS_CHILD, emu.address, String(CACHED_CALLS)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const [code] = await once(child, 'exit')
    assert.equal(code, 0)
    const result = JSON.parse(out)
    const mib = (n) => (n / 2 ** 20).toFixed(2)
    for (const [path, { before, after, nsPerCall }] of Object.entries(result)) {
      const drift = after.rss - before.rss
      console.log(
        `  ${path}: RSS ${mib(before.rss)} -> ${mib(after.rss)} MiB (drift ${mib(drift)} MiB), ` +
          `heapUsed ${mib(before.heapUsed)} -> ${mib(after.heapUsed)} MiB over ${CACHED_CALLS} calls, ${nsPerCall.toFixed(0)} ns/call`
      )
      assert.ok(drift < MAX_RSS_DRIFT_BYTES, `${path}: RSS grew by ${drift} bytes`)
    }
    assert.equal(emu.requests, 2)
  } finally {
    await emu.close()
  }
})
