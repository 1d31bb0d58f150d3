'use strict'

// Runs inside a clean install of the packed package (copied next to its node_modules, where a user's
// code would sit), on every Node major from 14 on, so it keeps to Node 14 syntax and APIs.
//
//   node check.js time cold|warm → prints the milliseconds `require('yc-metadata-token')` took
//   node check.js check   → loads, fetches from the emulator, checks error codes; prints a JSON summary
//
// Input (check): YC_METADATA_ADDR (a running emulator), EXPECT_TOKEN (the token it hands out),
// CLOSED_PORT (a loopback port nobody listens on), EXPECT_DRIVER (native or wasm: the driver the
// install must choose by itself). Exits non-zero with the failed assertion.

const assert = require('assert')
const util = require('util')
const Module = require('module')

const PACKAGE = 'yc-metadata-token'
// Generous on purpose (see check()): the emulator is on loopback, only CPU starvation delays it.
const PATIENT_TIMEOUT_MS = 15000
const PATIENT_DEADLINE_MS = 30000

// `warm`: after one require of a built-in, as in any program that has loaded anything (Node 18
// spends 1-3 ms more on its first require of all). `cold`: the first require of the process.
function timeRequire(warm) {
  if (warm) require('fs')
  const started = process.hrtime.bigint()
  require(PACKAGE)
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  console.log(String(ms))
}

// Loads the package while watching what it touches: the loader must not read process.report or
// start a child process (each costs tens of milliseconds on a cold start).
function loadWatched() {
  const requested = []
  const originalLoad = Module._load
  Module._load = function (request) {
    requested.push(request)
    return originalLoad.apply(this, arguments)
  }
  let reportRead = false
  const report = Object.getOwnPropertyDescriptor(process, 'report')
  if (report && report.configurable) {
    Object.defineProperty(process, 'report', {
      configurable: true,
      enumerable: report.enumerable,
      get: function () {
        reportRead = true
        return report.get ? report.get.call(process) : report.value
      },
    })
  }
  let pkg
  try {
    pkg = require(PACKAGE)
  } finally {
    Module._load = originalLoad
    if (report && report.configurable) Object.defineProperty(process, 'report', report)
  }
  assert.ok(!reportRead, 'the loader read process.report')
  const spawning = requested.filter((r) => r === 'child_process' || r === 'node:child_process')
  assert.deepStrictEqual(spawning, [], 'the loader required child_process')
  // The loader opens the addon with process.dlopen (no require.cache entry): the process's memory
  // map shows what was loaded. Only Linux has one; elsewhere the origin is not checked.
  if (process.platform !== 'linux') return { pkg, addon: null }
  const maps = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\n')
  const addons = Array.from(new Set(maps.map((l) => l.split(' ').pop()).filter((f) => /\.node$/.test(f))))
  const expected = process.env.EXPECT_DRIVER === 'wasm' ? 0 : 1
  assert.strictEqual(addons.length, expected, expected + ' native addon(s) loaded, got ' + JSON.stringify(addons))
  return { pkg, addon: addons[0] || null }
}

async function check() {
  const notes = []
  const expected = process.env.EXPECT_TOKEN
  const closedPort = process.env.CLOSED_PORT
  assert.ok(expected && process.env.YC_METADATA_ADDR && closedPort, 'EXPECT_TOKEN, YC_METADATA_ADDR and CLOSED_PORT are required')

  const loaded = loadWatched()
  const pkg = loaded.pkg
  assert.ok(
    loaded.addon === null || /node_modules[\\/]yc-metadata-token-[a-z0-9-]+[\\/]/.test(loaded.addon),
    'the addon comes from the platform package, not ' + loaded.addon
  )

  // Timeouts for a busy CI machine: this checks loading and answers, not latency. The first fetch
  // also starts the addon's runtime, so that the default provider's call below (default 1-s
  // attempts, which no option can widen) only has one loopback request left to make.
  const provider = new pkg.TokenProvider({ host: process.env.YC_METADATA_ADDR, timeoutMs: PATIENT_TIMEOUT_MS, deadlineMs: PATIENT_DEADLINE_MS })
  const driver = provider.stats().driver
  if (process.env.EXPECT_DRIVER) assert.strictEqual(driver, process.env.EXPECT_DRIVER, 'the driver chosen')
  const own = await provider.getToken()
  assert.strictEqual(own.token, expected, 'TokenProvider#getToken returned the wrong token')
  assert.ok(Number.isInteger(own.expiresInSeconds) && own.expiresInSeconds > 0, 'expiresInSeconds ' + own.expiresInSeconds)

  // The default provider finds the emulator through YC_METADATA_ADDR, as on a laptop.
  const first = await pkg.getToken()
  assert.strictEqual(first.token, expected, 'getToken() returned the wrong token')
  const cached = await pkg.getToken({ httpMethod: 'GET', body: '' })
  assert.strictEqual(cached.token, expected, 'getToken(event) returned the wrong token')

  for (const value of [provider, pkg, pkg.getToken, pkg.TokenProvider]) {
    const shown = util.inspect(value, { depth: 10, showHidden: true })
    assert.ok(shown.indexOf(expected) === -1, 'util.inspect shows the token')
  }

  // One attempt, so that a refused connection is reported as such rather than as a deadline.
  const unreachable = new pkg.TokenProvider({ host: '127.0.0.1:' + closedPort, maxAttempts: 1 })
  await assert.rejects(unreachable.getToken(), (err) => {
    assert.ok(err instanceof Error, 'rejects with an Error')
    assert.strictEqual(err.code, pkg.CODES.UNREACHABLE)
    assert.ok(err.message.indexOf(expected) === -1, 'the message shows the token')
    return true
  })

  const invalid = [{ timeoutMs: -1 }, { host: 'http://127.0.0.1' }, { maxAttempts: 0.5 }, { hots: 'x' }]
  for (const options of invalid) {
    assert.throws(
      () => new pkg.TokenProvider(options),
      (err) => err.code === 'ERR_INVALID_OPTION' && err instanceof pkg.MetadataTokenError,
      'ERR_INVALID_OPTION for ' + JSON.stringify(options)
    )
  }
  await assert.rejects(provider.getToken({ forceRefresh: 'yes' }), (err) => err.code === 'ERR_INVALID_OPTION')

  // The emulator ships too (users run it off-cloud): serve a token with it on this Node as well.
  const emulatorDir = require('path').join(require.resolve(PACKAGE + '/package.json'), '..', 'emulator')
  const emulator = await require(emulatorDir).startEmulator({ token: 'own-' + expected, expiresIn: 60 })
  try {
    const fromOwn = await new pkg.TokenProvider({ host: emulator.address, timeoutMs: PATIENT_TIMEOUT_MS, deadlineMs: PATIENT_DEADLINE_MS }).getToken()
    assert.strictEqual(fromOwn.token, 'own-' + expected, 'token from the packaged emulator')
  } finally {
    await emulator.close()
  }
  const cli = require('path').join(emulatorDir, 'cli.js')
  // Under qemu-user with no binfmt_misc the kernel cannot start process.execPath by itself: the
  // caller names the emulator to put in front of it (a JSON array, e.g. ["qemu-aarch64"]).
  const launcher = process.env.CHECK_EXEC_LAUNCHER ? JSON.parse(process.env.CHECK_EXEC_LAUNCHER) : []
  const argv = launcher.concat([process.execPath, '--check', cli])
  const syntax = require('child_process').spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' })
  assert.strictEqual(syntax.status, 0, 'emulator/cli.js does not parse on Node ' + process.version + ':\n' + syntax.stderr)

  if (typeof AbortController === 'function') {
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(provider.getToken({ forceRefresh: true, signal: controller.signal }), (err) => {
      return err.name === 'AbortError' && err.code === 'ABORT_ERR'
    })
  } else {
    notes.push('no AbortController on Node ' + process.version + ': abort not checked')
  }

  notes.push('diagnostics_channel: ' + (await checkDiagnostics(pkg, require(emulatorDir), expected, closedPort)))

  // No explicit exit: the process must end by itself once the work is done (no handle keeps it alive).
  console.log(JSON.stringify({ node: process.version, driver: driver, addon: loaded.addon, notes }))
}

// README "Tracing and metrics", on this Node: a subscriber by channel name (every Node with
// diagnostics_channel) and one through tracingChannel() where Node has it see a first fetch, a
// cache hit (nothing), a forced refresh, a background refresh and a failed fetch, in order, with
// the documented fields, and the token in none of it. Returns what this Node offers.
const TRACING_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error']
const PLAIN_EVENTS = ['background-refresh-succeeded', 'background-refresh-failed', 'served-stale', 'expired-while-failing']
// A token this short needs a refresh after 2 s (half its lifetime) and is usable until 3.6 s:
// the background refresh below has 1.5 s of slack on a slow machine (qemu, Wine).
const DIAGNOSTICS_LIFETIME_S = 4
const DIAGNOSTICS_REFRESH_AFTER_MS = 2050
const EVENT_WAIT_MS = 10000

async function checkDiagnostics(pkg, emulatorModule, expected, closedPort) {
  let dc
  try {
    dc = require('diagnostics_channel')
  } catch (_) {
    return 'none on Node ' + process.version + ' (nothing published)'
  }
  const events = []
  const unsubscribe = []
  const subscribe = (name, label) => {
    const channel = dc.channel(name)
    const fn = (message) => events.push({ label: label, message: message, fields: Object.assign({}, message) })
    channel.subscribe(fn)
    unsubscribe.push(() => channel.unsubscribe(fn))
  }
  TRACING_EVENTS.forEach((e) => subscribe('tracing:yc-metadata-token:fetch:' + e, e))
  PLAIN_EVENTS.forEach((e) => subscribe('yc-metadata-token:' + e, e))
  let traced = null
  if (typeof dc.tracingChannel === 'function') {
    traced = []
    const handlers = {}
    TRACING_EVENTS.forEach((e) => { handlers[e] = (context) => traced.push(e + ' ' + context.reason) })
    const channel = dc.tracingChannel('yc-metadata-token:fetch')
    channel.subscribe(handlers)
    unsubscribe.push(() => channel.unsubscribe(handlers))
  }
  const token = 'dc-' + expected
  const next = 'dc-next-' + expected
  const emulator = await emulatorModule.startEmulator({ token: token, expiresIn: DIAGNOSTICS_LIFETIME_S })
  try {
    const provider = new pkg.TokenProvider({ host: emulator.address, timeoutMs: PATIENT_TIMEOUT_MS, deadlineMs: PATIENT_DEADLINE_MS })
    await provider.getToken()
    await provider.getToken()
    await provider.getToken({ forceRefresh: true })
    const forcedAt = Date.now()
    emulator.setToken(next, DIAGNOSTICS_LIFETIME_S)
    await new Promise((resolve) => setTimeout(resolve, DIAGNOSTICS_REFRESH_AFTER_MS - (Date.now() - forcedAt)))
    assert.strictEqual((await provider.getToken()).token, token, 'answered from memory while refreshing')
    const until = Date.now() + EVENT_WAIT_MS
    while (!events.some((e) => e.label === 'background-refresh-succeeded') && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const failing = new pkg.TokenProvider({ host: '127.0.0.1:' + closedPort, maxAttempts: 1 })
    await assert.rejects(failing.getToken(), (err) => err.code === pkg.CODES.UNREACHABLE)
  } finally {
    unsubscribe.forEach((off) => off())
    await emulator.close()
  }
  const labels = events.map((e) => e.label + (e.fields.reason ? ' ' + e.fields.reason : ''))
  const trace = (reason) => ['start', 'end', 'asyncStart', 'asyncEnd'].map((e) => e + ' ' + reason)
  const expectedLabels = trace('first').concat(trace('forced'), trace('refresh-ahead'), ['background-refresh-succeeded'],
    ['start first', 'end first', 'error first', 'asyncStart first', 'asyncEnd first'])
  assert.deepStrictEqual(labels, expectedLabels, 'the events, in order')
  const ends = events.filter((e) => e.label === 'asyncEnd').map((e) => e.fields)
  assert.deepStrictEqual(ends.map((f) => [f.attempts, f.status, f.errorCode, f.background]),
    [[1, 200, null, false], [1, 200, null, false], [1, 200, null, true], [1, null, 'ERR_METADATA_UNREACHABLE', false]])
  assert.ok(ends.slice(0, 3).every((f) => /^sha256:[0-9a-f]{8}$/.test(f.fingerprint) && f.expiresInSeconds > 0), 'fingerprints')
  assert.notStrictEqual(ends[2].fingerprint, ends[1].fingerprint, 'the refresh brought the next token')
  const refreshed = events.filter((e) => e.label === 'background-refresh-succeeded')[0].fields
  assert.strictEqual(refreshed.fingerprint, ends[2].fingerprint)
  const context = events[0].message
  assert.ok(events.slice(0, 4).every((e) => e.message === context), 'one context per fetch')
  assert.deepStrictEqual(Object.keys(events[0].fields), ['provider', 'driver', 'url', 'serverAddress', 'serverPort', 'reason',
    'attempts', 'status', 'errorCode', 'expiresInSeconds', 'background', 'fingerprint'])
  for (const e of events) {
    const shown = JSON.stringify(e.message) + (e.message.error ? e.message.error.message + e.message.error.stack : '') + util.inspect(e.message, { depth: 10, showHidden: true, getters: true })
    assert.ok(shown.indexOf(token) === -1 && shown.indexOf(next) === -1, e.label + ' shows the token')
  }
  if (traced !== null) {
    assert.deepStrictEqual(traced, labels.filter((l) => l.indexOf('background-refresh') !== 0), 'what tracingChannel() subscribers see')
  }
  return traced === null ? 'channels by name (no tracingChannel on ' + process.version + ')' : 'tracingChannel and channels by name'
}

const mode = process.argv[2]
if (mode === 'time') {
  timeRequire(process.argv[3] === 'warm')
} else if (mode === 'check') {
  check().catch((err) => {
    console.error(err && err.stack ? err.stack : err)
    process.exitCode = 1
  })
} else {
  console.error('usage: node check.js time cold|warm, or node check.js check')
  process.exitCode = 2
}
