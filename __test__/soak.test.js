'use strict'

// Soak, bounded: tokens that live a few seconds, many concurrent callers, faults injected at
// random. No caller may ever get an expired token or an unknown error, no rejection may go
// unhandled, upstream requests stay under the bound cache.rs documents, RSS stays flat.
//
// A short run by default (SOAK_SECONDS, default 12); set SOAK_SECONDS=600 for a long one.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { once } = require('node:events')

const { TokenProvider, CODES } = require('..')
const { startEmulator } = require('../emulator')

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS || 12)
const CALLERS = 200
/// Tokens live 4 s and the service rotates to a new one every 1.5-2.5 s, so the service always
/// holds a token with at least 1.5 s left, while the client's margins (half the lifetime) keep
/// it refreshing every couple of seconds.
const TOKEN_LIFETIME_S = 4
const ROTATE_MIN_MS = 1500
const ROTATE_SPREAD_MS = 1000
/// A fault is drawn this often, half of the time none.
const FAULT_EVERY_MS = 250
/// Small per-attempt timeouts so a hanging fault costs little; the numbers the provider runs with.
const PROVIDER_OPTIONS = { timeoutMs: 300, deadlineMs: 1500, maxAttempts: 3 }
/// cache.rs: background refreshes at least BACKGROUND_MIN_INTERVAL (1 s) apart; each fetch makes
/// at most maxAttempts requests. Foreground fetches happen only while no valid token is held.
const BACKGROUND_MIN_INTERVAL_S = 1
/// RSS after full collections at the end vs. after warm-up.
const MAX_RSS_DRIFT_BYTES = 10 * 1024 * 1024
const WARM_UP_MS = 2000

const FAULTS = [
  { status: 503 },
  { status: 500 },
  { status: 429 },
  { status: 404 },
  { hang: true },
  { hangAfterHeaders: true },
  { resetMidBody: true },
  { dropConnection: true },
  { garbage: true },
  { truncate: true },
  { delayMs: 200 },
  { dribbleMs: 5 },
]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const pick = (list) => list[Math.floor(Math.random() * list.length)]

/// The soak runs in a child: RSS is read after full collections (--expose-gc) with V8's young
/// generation pinned, so that V8 growing it under load does not pass for a leak (see
/// load.test.js), and a crash of the process shows as a failed test rather than a lost runner.
const CHILD_FLAGS = ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16']
const CHILD_MARK = '--soak-child'

function gc() {
  for (let i = 0; i < 5; i++) global.gc()
}

async function soak() {
  let unhandled = 0
  const onUnhandled = () => unhandled++
  process.on('unhandledRejection', onUnhandled)

  // Every token the service handed out, with its end by the service's clock.
  const issued = new Map()
  let serial = 0
  const emu = await startEmulator({ token: 'soak-0', expiresIn: TOKEN_LIFETIME_S, countdown: true })
  issued.set('soak-0', Date.now() + TOKEN_LIFETIME_S * 1000)
  const rotate = () => {
    const token = `soak-${++serial}`
    emu.setToken(token, TOKEN_LIFETIME_S)
    issued.set(token, Date.now() + TOKEN_LIFETIME_S * 1000)
  }

  const provider = new TokenProvider(Object.assign({ host: emu.address }, PROVIDER_OPTIONS))
  const codes = new Set(Object.values(CODES))
  const stats = { ok: 0, errors: {}, faults: 0, worst: Infinity }
  const violations = []
  let running = true

  async function caller() {
    while (running) {
      await sleep(Math.random() * 20)
      let t
      try {
        t = await provider.getToken()
      } catch (err) {
        if (!codes.has(err.code)) violations.push(`unknown error ${err.code}: ${err.message}`)
        stats.errors[err.code] = (stats.errors[err.code] || 0) + 1
        continue
      }
      const now = Date.now()
      const end = issued.get(t.token)
      if (end === undefined) {
        violations.push(`a token the service never issued: ${t.token}`)
      } else if (now >= end) {
        violations.push(`${t.token} returned ${now - end} ms after it expired`)
      } else if (!(Number.isInteger(t.expiresInSeconds) && t.expiresInSeconds > 0)) {
        violations.push(`expiresInSeconds ${t.expiresInSeconds}`)
      } else if (t.expiresInSeconds * 1000 > end - now + 1000) {
        violations.push(`${t.token} claims ${t.expiresInSeconds} s with ${end - now} ms left`)
      }
      stats.worst = Math.min(stats.worst, end - now)
      stats.ok++
    }
  }

  async function rotator() {
    while (running) {
      await sleep(ROTATE_MIN_MS + Math.random() * ROTATE_SPREAD_MS)
      rotate()
    }
  }

  async function saboteur() {
    while (running) {
      await sleep(FAULT_EVERY_MS)
      if (Math.random() < 0.5) {
        emu.fault(Object.assign({ times: 1 + Math.floor(Math.random() * 3) }, pick(FAULTS)))
        stats.faults++
      }
    }
  }

  const start = Date.now()
  const workers = [rotator(), saboteur()]
  for (let i = 0; i < CALLERS; i++) workers.push(caller())
  await sleep(WARM_UP_MS)
  gc()
  const rssBefore = process.memoryUsage().rss
  const requestsBefore = emu.requests
  await sleep(SOAK_SECONDS * 1000 - WARM_UP_MS)
  running = false
  await Promise.all(workers)
  const seconds = (Date.now() - start) / 1000
  emu.fault(null)
  gc()
  const rssAfter = process.memoryUsage().rss
  const requests = emu.requests
  await emu.close()
  process.off('unhandledRejection', onUnhandled)

  return { seconds, requests, requestsBefore, rssBefore, rssAfter, unhandled, violations: violations.slice(0, 10), stats, issued: issued.size }
}

if (process.argv[2] === CHILD_MARK) {
  soak().then(
    (result) => process.stdout.write(JSON.stringify(result)),
    (err) => {
      console.error(err)
      process.exit(1)
    }
  )
} else {
  test(`soak for ${SOAK_SECONDS} s: ${CALLERS} callers, ${TOKEN_LIFETIME_S}-s tokens, random faults`, { timeout: (SOAK_SECONDS + 60) * 1000 }, async () => {
    const child = spawn(process.execPath, [...CHILD_FLAGS, __filename, CHILD_MARK], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const [code, signal] = await once(child, 'exit')
    assert.equal(code, 0, `the soak process ended with ${signal || code}`)
    const r = JSON.parse(out)
    const { stats, seconds, requests } = r
    const mib = (n) => (n / 2 ** 20).toFixed(1)
    console.log(
      `  ${seconds.toFixed(1)} s: ${stats.ok} tokens, errors ${JSON.stringify(stats.errors)}, ` +
        `${stats.faults} faults injected, ${r.issued} tokens issued, ${requests} upstream requests ` +
        `(${(requests / seconds).toFixed(2)}/s; ${r.requestsBefore} during warm-up), ` +
        `least time left on a returned token ${stats.worst} ms, RSS ${mib(r.rssBefore)} -> ${mib(r.rssAfter)} MiB`
    )
    assert.deepEqual(r.violations, [])
    assert.equal(r.unhandled, 0, 'unhandled rejections')
    assert.ok(stats.ok > CALLERS * SOAK_SECONDS, `only ${stats.ok} tokens returned`)
    // One fetch per background interval, each of at most maxAttempts requests, plus the first
    // fetch and one foreground fetch per rotation in the worst case.
    const bound = PROVIDER_OPTIONS.maxAttempts * (seconds / BACKGROUND_MIN_INTERVAL_S + r.issued + 1)
    assert.ok(requests <= bound, `${requests} upstream requests in ${seconds} s, bound ${bound}`)
    assert.ok(r.rssAfter - r.rssBefore < MAX_RSS_DRIFT_BYTES, `RSS grew by ${r.rssAfter - r.rssBefore} bytes`)
  })
}
