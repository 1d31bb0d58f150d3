'use strict'

// The thin JavaScript surface over the Rust core (src/). It keeps three things here because they
// are cheapest or only possible in JavaScript: the answer for a fresh token (no call into native
// code at all), one shared promise per provider for concurrent callers in this thread, and the
// `Error` objects with their `code`. Debug output, hit counters and the Cloud Functions context
// live here too; each costs one boolean or counter on the cached path.

const binding = require('./binding')

const { ownEnv, quote } = binding
const hasOwn = Object.prototype.hasOwnProperty

// A property of a user's object (options, call options, a Cloud Functions context), or undefined.
// Only its own: with a prototype-pollution bug elsewhere in the app, an inherited `context` or
// `forceRefresh` would be the attacker's.
function own(object, key) {
  return hasOwn.call(object, key) ? object[key] : undefined
}

const CODES = Object.freeze({
  UNREACHABLE: 'ERR_METADATA_UNREACHABLE',
  TIMEOUT: 'ERR_METADATA_TIMEOUT',
  NO_SERVICE_ACCOUNT: 'ERR_METADATA_NO_SERVICE_ACCOUNT',
  STATUS: 'ERR_METADATA_STATUS',
  BAD_RESPONSE: 'ERR_METADATA_BAD_RESPONSE',
  INVALID_OPTION: 'ERR_INVALID_OPTION',
  INTERNAL: 'ERR_METADATA_INTERNAL',
  NOT_FOUND: 'ERR_METADATA_NOT_FOUND',
})

class MetadataTokenError extends Error {
  constructor(message, code, status) {
    super(message)
    this.name = 'MetadataTokenError'
    this.code = code
    if (status !== undefined && status !== null) this.status = status
  }
}

// ---- debug output ------------------------------------------------------------------------------

const DEBUG_NAME = 'yc-metadata-token'

// Decided once at load, so the cached path pays for one constant check. Follows both habits:
// NODE_DEBUG (util.debuglog: comma-separated names, case-insensitive) and DEBUG (the `debug`
// package: comma/space-separated patterns, `*` wildcards, `-` to exclude).
const DEBUG = debugEnabled(ownEnv('NODE_DEBUG'), ownEnv('DEBUG'))
if (DEBUG) debug({ label: 'load' }, 'driver ' + binding.driver + ': ' + binding.reason)

function debugEnabled(nodeDebug, debugVar) {
  if (nodeDebug && patternsMatch(nodeDebug, false)) return true
  return Boolean(debugVar) && patternsMatch(debugVar, true)
}

function patternsMatch(list, allowExclusion) {
  let on = false
  for (const raw of String(list).toLowerCase().split(/[\s,]+/)) {
    if (raw === '') continue
    const exclude = allowExclusion && raw.charAt(0) === '-'
    if (globMatch(exclude ? raw.slice(1) : raw, DEBUG_NAME)) {
      if (exclude) return false
      on = true
    }
  }
  return on
}

// Whether `name` matches `pattern`, where '*' stands for any run of characters. A walk that goes
// back only to the last '*' seen: at most the pattern's length times the name's steps. (A regular
// expression of '.*'s backtracks exponentially: DEBUG='************x' took a second at require.)
function globMatch(pattern, name) {
  let p = 0
  let n = 0
  let star = -1 // where the last '*' was, and the name's position it was tried at
  let starAt = 0
  while (n < name.length) {
    if (pattern[p] === '*') {
      star = p++
      starAt = n
    } else if (p < pattern.length && pattern[p] === name[n]) {
      p++
      n++
    } else if (star !== -1) {
      // Let the last '*' take one more character, and match the rest from there.
      p = star + 1
      n = ++starAt
    } else {
      return false
    }
  }
  while (pattern[p] === '*') p++
  return p === pattern.length
}

let crypto = null
// The last token fingerprinted: a debug line or a message per call then hashes nothing.
let printed = { token: null, fingerprint: null }

// The token never reaches the debug output or a published message; the first 8 hex digits of its
// SHA-256 tell two apart.
function fingerprint(token) {
  if (token === printed.token) return printed.fingerprint
  // process.getBuiltinModule where Node has it: an ES module bundle has no require (binding.js).
  if (crypto === null) crypto = process.getBuiltinModule ? process.getBuiltinModule('crypto') : require('crypto')
  printed = { token, fingerprint: 'sha256:' + crypto.createHash('sha256').update(token).digest('hex').slice(0, 8) }
  return printed.fingerprint
}

function debug(state, message) {
  process.stderr.write(DEBUG_NAME + ' ' + process.pid + ': [' + state.label + '] ' + message + '\n')
}

function ms(value) {
  return value < 10000 ? value.toFixed(1) + ' ms' : (value / 1000).toFixed(1) + ' s'
}

// ---- providers ---------------------------------------------------------------------------------

// Provider state lives here, out of reach of util.inspect and JSON.stringify: it holds the token.
const states = new WeakMap()
let providersMade = 0

function newState(options, shared, label) {
  const plain = readOptions(options)
  let native
  try {
    native = new binding.Provider(plain, ownEnv('YC_METADATA_ADDR'), ownEnv('GCE_METADATA_HOST'), shared)
  } catch (err) {
    if (err === null || typeof err !== 'object' || err.code !== CODES.INVALID_OPTION) throw internalError(err)
    throw new MetadataTokenError(err.message, err.code)
  }
  // memo: the last token seen and until when it needs no refresh (see remember).
  // timers: a box the FinalizationRegistry below can hold without holding the state.
  // onStart, observed, traces, address: what the drivers tell of fetches, for diagnostics_channel.
  const state = {
    native, memo: null, timers: { memo: null }, inflight: null, hits: 0, contextTokens: 0, label, seen: null,
    onStart: null, observed: false, traces: null, address: null,
  }
  state.onStart = (flight, reason) => publishing((p) => p.fetchStarted(state, flight, reason))
  if (DEBUG) {
    state.seen = native.stats()
    debug(state, 'provider for ' + native.url)
  }
  return state
}

// The options are copied here into a plain object that the core reads back. A getter or Proxy trap
// of the caller's that throws then throws in JavaScript, where its error can be handed back as the
// cause, rather than inside the addon, where it became an opaque internal error. The core reads
// the same own enumerable keys; the rest (types, names, ranges) it still checks itself.
function readOptions(options) {
  if (options === null || typeof options !== 'object') return options
  let keys
  try {
    keys = Object.keys(options)
  } catch (err) {
    throw unreadable('options', err)
  }
  const plain = Object.create(null)
  for (const key of keys) {
    try {
      plain[key] = options[key]
    } catch (err) {
      throw unreadable('option ' + quote(key), err)
    }
  }
  return plain
}

// The caller's own exception, handed back as the cause: it is theirs, not a bug of this package.
function callerError(message, cause) {
  const err = new MetadataTokenError(message, CODES.INVALID_OPTION)
  // Non-enumerable, as `new Error(message, { cause })` makes it (which Node < 16.9 lacks).
  Object.defineProperty(err, 'cause', { value: cause, writable: true, configurable: true })
  return err
}

function unreadable(what, cause) {
  return callerError(what + ' could not be read: reading it threw the error in err.cause', cause)
}

// Monotonic milliseconds. process.hrtime rather than perf_hooks: loading perf_hooks alone takes ~1 ms
// of a cold start.
function monotonicMs() {
  const [seconds, nanos] = process.hrtime()
  return seconds * 1e3 + nanos / 1e6
}

// The memo answers while the token needs no refresh, with one clock read per call. Two clocks
// bound that window, as in the core: the wall clock, read on each call, counts the time a VM spends
// suspended; an unref'd timer on the monotonic clock closes the window even if the wall clock is
// stepped back. The timer holds only a tiny fence object, never the token or the provider, and
// never keeps the process alive. (A loop that only ever awaits cached answers never lets the timer
// run; it still stops at the wall-clock bound, which a stepped-back clock alone could stretch.)
//
// `t` carries wall-clock deadlines (milliseconds since the epoch) from the core, not durations, so
// a thread that was busy when the fetch ended does not stretch them. Returns null if the token ran
// out before this thread could take it.
function remember(state, t) {
  const wall = Date.now()
  const expiresInMs = t.expiresAtMs - wall
  const freshForMs = t.freshUntilMs - wall
  if (!(expiresInMs > 0)) return null
  if (DEBUG && (state.memo === null || state.memo.token !== t.token)) {
    debug(state, 'new token ' + fingerprint(t.token) + ', expires in ' + ms(expiresInMs) +
      ', no refresh needed for ' + ms(Math.max(freshForMs, 0)))
  }
  const expiresInSeconds = Math.ceil(expiresInMs / 1000)
  const fence = { open: freshForMs > 0 }
  const timers = state.timers
  if (timers.memo !== null) clearTimeout(timers.memo)
  timers.memo = fence.open ? closeLater(fence, freshForMs) : null
  state.memo = {
    token: t.token,
    fence,
    freshWall: t.freshUntilMs,
    expiresWall: t.expiresAtMs,
    // A wall clock stepped back must not make the token look longer-lived than the core said.
    expiresInSeconds,
  }
  return { token: t.token, expiresInSeconds }
}

// setTimeout's ceiling; a longer window simply closes early and the core answers from then on.
const MAX_TIMER_MS = 2147483647

function closeLater(fence, delayMs) {
  const timer = setTimeout(close, Math.min(delayMs, MAX_TIMER_MS), fence)
  timer.unref()
  return timer
}

function close(fence) {
  fence.open = false
}

// A provider its user dropped (one per request is a common mistake) must leave nothing behind once
// collected: its memo timer would otherwise stay pending for the token's whole fresh window (~11.9 h
// of a 12-h token), one per provider ever made. The registry holds only the small `timers` box, so
// the state (the token, the native cache) goes with the provider. Node < 14.6 has no
// FinalizationRegistry: there each timer runs out by itself, as it always did.
const dropped = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry(clearTimers) : null

function clearTimers(timers) {
  if (timers.memo !== null) clearTimeout(timers.memo)
  timers.memo = null
}

// The core turns its own panics into thrown errors (catch_unwind in src/lib.rs). Whatever a bug
// throws reaches the caller as a rejected promise with a code, never as a synchronous throw. The
// panic's own message went to stderr; it is not passed on, so nothing from the core's memory can
// reach a log through an error message. Errors this file made on purpose (a caller's unreadable
// context) pass through as they are.
function request(state, forceRefresh, signal, context) {
  try {
    return requestNow(state, forceRefresh, signal, context)
  } catch (err) {
    return Promise.reject(err instanceof MetadataTokenError ? err : internalError(err))
  }
}

function internalError(cause) {
  reportInternal(cause)
  return new MetadataTokenError(
    'Internal error in yc-metadata-token (a bug; the details are on stderr). Please report it.',
    CODES.INTERNAL
  )
}

// What a bug report needs: the kind of error and where it was thrown. Its message is left out: a
// native error's message can quote what the core held (a response, the token), and stderr ends up
// in logs.
function reportInternal(err) {
  let detail
  try {
    const isObject = err !== null && (typeof err === 'object' || typeof err === 'function')
    const name = isObject && typeof err.name === 'string' ? err.name : typeof err
    const code = isObject && typeof err.code === 'string' ? ' (code ' + err.code + ')' : ''
    const frames = isObject && typeof err.stack === 'string'
      ? err.stack.split('\n').filter((line) => /^\s+at /.test(line)).join('\n')
      : '    (no stack)'
    detail = name + code + ', message withheld\n' + frames
  } catch (_) {
    detail = 'an error that could not be described'
  }
  process.stderr.write(
    DEBUG_NAME + ' ' + process.pid + ': internal error (ERR_METADATA_INTERNAL), a bug: please report it with ' +
      'these lines (' + DEBUG_NAME + ' ' + version() + ', Node ' + process.version + ', ' + process.platform +
      '-' + process.arch + ')\n' + detail + '\n'
  )
}

function version() {
  try {
    return require('./package.json').version
  } catch (_) {
    return 'version unknown'
  }
}

// `context`: a Cloud Functions invocation context, whose token wins unless forceRefresh asks the
// metadata service.
function requestNow(state, forceRefresh, signal, context) {
  if (signal && isAborted(signal)) {
    if (DEBUG) debug(state, 'signal already aborted: rejected without a request')
    return Promise.reject(abortError(signal))
  }
  if (!forceRefresh) {
    if (context !== undefined && context !== null) {
      const fromContext = contextToken(state, context)
      if (fromContext !== null) return Promise.resolve(fromContext)
    }
    const memo = state.memo
    if (memo !== null) {
      const wall = Date.now()
      if (memo.fence.open && wall < memo.freshWall) {
        state.hits++
        const left = memo.expiresWall - wall
        if (DEBUG) debug(state, 'memo hit: ' + fingerprint(memo.token) + ', expires in ' + ms(left))
        return Promise.resolve({
          token: memo.token,
          expiresInSeconds: Math.min(Math.ceil(left / 1000), memo.expiresInSeconds),
        })
      }
    }
    // Inside the refresh margin the core answers from memory and refreshes in the background.
    const snapshot = state.native.peek(state.onStart)
    const fromCore = snapshot === null ? null : remember(state, snapshot)
    if (fromCore !== null) {
      state.hits++
      if (DEBUG) debugPeek(state, snapshot)
      if (snapshot.failures > 0) publishing((p) => p.servedStale(state, snapshot))
      return Promise.resolve(fromCore)
    }
  }
  let flight = state.inflight
  if (flight === null) {
    const started = DEBUG ? monotonicMs() : 0
    if (DEBUG) {
      debug(state, (forceRefresh ? 'forced refresh' : 'no usable token') + ': fetch started, callers wait')
    }
    flight = state.inflight = { promise: null, callers: 0, signals: null }
    flight.promise = state.native.fetch(Boolean(forceRefresh), state.onStart).then(
      (outcome) => {
        if (state.inflight === flight) state.inflight = null
        // Every caller gave up (release below); the core's fetch goes on to fill the cache.
        if (outcome.released) return null
        if (DEBUG) debugFetchEnd(state, outcome, monotonicMs() - started)
        const error = outcome.code !== undefined && outcome.code !== null
          ? new MetadataTokenError(outcome.message, outcome.code, outcome.status)
          : null
        // This thread started the fetch: its end is published before the callers go on.
        if (outcome.report !== undefined && outcome.report !== null) publishing((p) => p.fetchEnded(state, outcome, error))
        if (error !== null) throw error
        // The token ran out while this thread was too busy to take it: fetch again.
        const got = remember(state, outcome)
        return got !== null ? got : requestNow(state, false, undefined, undefined)
      },
      (err) => {
        // The core settles with an Outcome; a rejection is a bug in the binding. Free the
        // flight so that the next call tries again.
        if (state.inflight === flight) state.inflight = null
        throw internalError(err)
      }
    )
    // Every caller gets the rejection through its own chain; this one only keeps a call whose
    // callers all aborted from becoming an unhandled rejection.
    flight.promise.catch(noop)
  } else if (DEBUG) {
    debug(state, 'joined the fetch under way')
  }
  flight.callers++
  return signal ? abortable(state, flight, signal) : flight.promise
}

// Debug only: what the core's cache did, read from the change in its counters since last look.
function debugPeek(state, snapshot) {
  const now = state.native.stats()
  const before = state.seen
  state.seen = now
  if (now.failures > before.failures) {
    debug(state, 'background refresh failed (' + now.lastErrorCode + '); the cached token is still valid')
  }
  if (now.requests > before.requests) {
    debug(state, 'background refreshes sent ' + (now.requests - before.requests) + ' request(s) since the last look')
  }
  const started = now.backgroundRefreshes > before.backgroundRefreshes
  const wall = Date.now()
  const expiresIn = ms(snapshot.expiresAtMs - wall)
  if (snapshot.freshUntilMs > wall) {
    debug(state, 'cache hit in the core: ' + fingerprint(snapshot.token) + ', expires in ' + expiresIn)
  } else {
    debug(state, 'cache hit inside the refresh margin: ' + fingerprint(snapshot.token) + ', expires in ' +
      expiresIn + (started ? '; background refresh started' : '; background refresh under way or backing off'))
  }
}

function debugFetchEnd(state, outcome, elapsed) {
  state.seen = state.native.stats()
  const failed = outcome.code !== undefined && outcome.code !== null
  const attempts = outcome.attempts
  const retries = attempts > 1 ? ', ' + (attempts - 1) + ' retried' : ''
  if (failed) {
    debug(state, 'fetch failed in ' + ms(elapsed) + ' after ' + attempts + ' attempt(s)' + retries + ': ' +
      outcome.code + (outcome.status ? ' (HTTP ' + outcome.status + ')' : ''))
  } else {
    debug(state, 'fetch done in ' + ms(elapsed) + ', ' + attempts + ' request(s)' + retries + ': ' +
      fingerprint(outcome.token) + ', expires in ' + ms(outcome.expiresAtMs - Date.now()))
  }
}

function noop() {}

function abortError(signal) {
  const err = new Error('The operation was aborted')
  err.name = 'AbortError'
  err.code = 'ABORT_ERR'
  let reason
  try {
    reason = signal.reason
  } catch (_) {
    // A signal of the caller's own making: the abort stands, without a reason.
  }
  if (reason !== undefined) err.cause = reason
  return err
}

// `signal.aborted`; when reading it throws, the caller's error as ERR_INVALID_OPTION.
function isAborted(signal) {
  try {
    return Boolean(signal.aborted)
  } catch (err) {
    throw unreadable('option signal', err)
  }
}

// `count` callers of the flight are gone. With none left it is released: it no longer keeps the
// process alive, and the core's fetch goes on to fill the cache.
function leave(state, flight, count) {
  flight.callers -= count
  if (flight.callers === 0 && state.inflight === flight) {
    state.inflight = null
    state.native.release()
  }
}

// Rejects this caller alone when its signal aborts; the shared fetch carries on for the others.
// One listener per signal and flight, however many callers share both. When the last caller of
// the flight has aborted, the flight is released: it no longer keeps the process alive.
function abortable(state, flight, signal) {
  if (flight.signals === null) flight.signals = new Map()
  let callers = flight.signals.get(signal)
  if (callers === undefined) {
    callers = []
    const onAbort = () => {
      flight.signals.delete(signal)
      if (DEBUG) {
        const who = callers.length === 1 ? 'a caller' : callers.length + ' callers'
        debug(state, who + ' aborted; the shared fetch carries on for the others')
      }
      for (const reject of callers) reject(abortError(signal))
      leave(state, flight, callers.length)
    }
    try {
      signal.addEventListener('abort', onAbort, { once: true })
    } catch (err) {
      // The caller's signal, the caller's error: this call leaves the flight as if it never came.
      leave(state, flight, 1)
      return Promise.reject(callerError('option signal could not be used: its addEventListener threw the error in err.cause', err))
    }
    flight.signals.set(signal, callers)
    const done = () => {
      try {
        signal.removeEventListener('abort', onAbort)
      } catch (_) {
        // Every caller of the signal has its answer: nobody is left to hand the error to.
      }
    }
    flight.promise.then(done, done)
  }
  return new Promise((resolve, reject) => {
    callers.push(reject)
    flight.promise.then(resolve, reject)
  })
}

function isSignal(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.aborted === 'boolean' &&
    typeof value.addEventListener === 'function'
  )
}

function invalidCall(message) {
  return Promise.reject(new MetadataTokenError(message, CODES.INVALID_OPTION))
}

// ---- diagnostics_channel -----------------------------------------------------------------------

// Every upstream fetch, and the events a dashboard counts, are published on diagnostics_channel
// by diagnostics.js (README "Tracing and metrics"). The drivers tell of each fetch of this thread
// as it starts (onStart, passed to peek and fetch) and as it ends (the report that comes with this
// thread's answer, or through the observer diagnostics.js sets when no caller of it waits); the
// core decides both (src/core/cache.rs: Reason, Report). diagnostics.js is loaded by the first
// fetch: in this file its code cost every cold require 0.12 ms (measured A/B), and nobody can have
// subscribed to a fetch before there is one.
let diagnostics = null

// Runs `publish` with diagnostics.js. Publishing never fails a call, leaves a fetch half set up or
// throws out of a driver's callback: a bug in it is reported as one (subscribers' own exceptions
// never get here, see diagnostics.js).
function publishing(publish) {
  try {
    if (diagnostics === null) diagnostics = require('./diagnostics')({ MetadataTokenError, fingerprint, driver: binding.driver, publishing })
    publish(diagnostics)
  } catch (err) {
    reportInternal(err)
  }
}

// ---- Cloud Functions context -------------------------------------------------------------------

// When each context object was first seen: its `expires_in` counts from the invocation start,
// which JavaScript cannot see, so time is counted from the first look (a few milliseconds late at
// most, against a lifetime of hours). Weak, so contexts of finished invocations go away.
const contextsSeen = new WeakMap()

// The token a Cloud Functions context carries, or null when it carries none that is usable now
// (no service account attached, or its time is up): the caller then asks the metadata service.
function contextToken(state, context) {
  if (typeof context !== 'object' || context === null) return null
  let token, expiresIn
  try {
    const t = own(context, 'token')
    if (typeof t !== 'object' || t === null) return null
    token = own(t, 'access_token')
    expiresIn = own(t, 'expires_in')
  } catch (err) {
    throw unreadable('the Cloud Functions context (option context)', err)
  }
  if (typeof token !== 'string' || token === '' || typeof expiresIn !== 'number' || !(expiresIn > 0) ||
      expiresIn === Infinity) {
    return null
  }
  // The rule a fetched token must pass, the core's (RFC 6750's b64token): a token that would not
  // make an Authorization header as it is goes unused, and the metadata service is asked instead.
  if (!binding.isB64Token(token)) {
    if (DEBUG) debug(state, 'the context token is not an RFC 6750 b64token; asking the metadata service')
    return null
  }
  const mono = monotonicMs()
  const wall = Date.now()
  let seen = contextsSeen.get(context)
  if (seen === undefined) {
    seen = { mono, wall }
    contextsSeen.set(context, seen)
  }
  // The larger of the two clocks' readings, as the core judges time: a frozen instance counts.
  const elapsed = Math.max(mono - seen.mono, wall - seen.wall, 0)
  // Expired a little early, by the core's skew (src/core/cache.rs): time to use it against an API.
  const left = binding.usableForMs(expiresIn * 1000, elapsed)
  if (left === null) {
    if (DEBUG) debug(state, 'the context token has expired; asking the metadata service')
    return null
  }
  state.contextTokens++
  if (DEBUG) debug(state, 'token from the Cloud Functions context: ' + fingerprint(token) + ', expires in ' + ms(left))
  return { token, expiresInSeconds: Math.ceil(left / 1000) }
}

// ---- public API --------------------------------------------------------------------------------

const inspectCustom = Symbol.for('nodejs.util.inspect.custom')

class TokenProvider {
  constructor(options) {
    const state = newState(options, false, 'provider ' + ++providersMade)
    states.set(this, state)
    if (dropped !== null) dropped.register(this, state.timers)
  }

  // options: { forceRefresh?, signal?, context? }; a usable `context` token wins unless
  // forceRefresh asks the metadata service.
  getToken(options) {
    const state = states.get(this)
    if (state === undefined) return invalidCall('getToken must be called on a TokenProvider')
    if (options === undefined || options === null) return request(state, false, undefined)
    if (typeof options !== 'object') {
      return invalidCall('getToken options must be an object, got ' + typeof options)
    }
    let forceRefresh, signal, context, signalOk
    try {
      forceRefresh = own(options, 'forceRefresh')
      signal = own(options, 'signal')
      context = own(options, 'context')
      signalOk = signal === undefined || isSignal(signal)
    } catch (err) {
      return Promise.reject(unreadable('getToken options', err))
    }
    if (forceRefresh !== undefined && typeof forceRefresh !== 'boolean') {
      return invalidCall('option forceRefresh must be a boolean, got ' + typeof forceRefresh)
    }
    if (!signalOk) {
      return invalidCall('option signal must be an AbortSignal')
    }
    if (context !== undefined && context !== null && typeof context !== 'object') {
      return invalidCall('option context must be the Cloud Functions context object, got ' + typeof context)
    }
    return request(state, forceRefresh === true, signal, context)
  }

  getAuthorizationHeader(options) {
    return this.getToken(options).then(bearer)
  }

  // The provider's name in the debug output and in published messages (`provider`): 'default'
  // for the one behind getToken(), 'provider N' for this thread's Nth new TokenProvider().
  get label() {
    const state = states.get(this)
    return state === undefined ? undefined : state.label
  }

  // Counters since the provider was made. Hits are this thread's; the rest come from the core,
  // which for the default provider is shared by every thread of the process.
  stats() {
    const state = states.get(this)
    if (state === undefined) throw new TypeError('stats must be called on a TokenProvider')
    const s = state.native.stats()
    return {
      driver: binding.driver,
      cacheHits: state.hits,
      contextTokens: state.contextTokens,
      upstreamRequests: s.requests,
      retries: s.retries,
      fetches: s.fetches,
      backgroundRefreshes: s.backgroundRefreshes,
      failures: s.failures,
      lastErrorCode: s.lastErrorCode === undefined ? null : s.lastErrorCode,
      expiresInSeconds: s.expiresInMs === undefined || s.expiresInMs === null ? null : Math.ceil(s.expiresInMs / 1000),
    }
  }

  toJSON() {
    const state = states.get(this)
    return state === undefined ? {} : { url: state.native.url, stats: this.stats() }
  }

  [inspectCustom](depth, options) {
    const state = states.get(this)
    if (state === undefined) return 'TokenProvider {}'
    const util = process.getBuiltinModule ? process.getBuiltinModule('util') : require('util')
    return 'TokenProvider ' + util.inspect({ url: state.native.url, stats: this.stats() }, options)
  }
}

function bearer(t) {
  return 'Bearer ' + t.token
}

let defaultState = null
let defaultInstance = null

function defaults() {
  if (defaultState === null) defaultState = newState(undefined, true, 'default')
  return defaultState
}

// The snippet's `getToken(event)`, and a Cloud Function's `getToken(event, context)`. The event is
// ignored unless it is nothing but call options ({ forceRefresh, signal }), which no platform
// event looks like; only the second argument is ever read as a context.
function getToken(event, context) {
  let state = defaultState
  if (state === null) {
    try {
      state = defaults()
    } catch (err) {
      return Promise.reject(err)
    }
  }
  const options = callOptions(event)
  if (options === null) return request(state, false, undefined, context)
  return request(state, options.forceRefresh, options.signal, context)
}

function getAuthorizationHeader(event, context) {
  return getToken(event, context).then(bearer)
}

// The provider behind getToken(): for its stats(), or to pass around as a TokenProvider.
// Throws MetadataTokenError (ERR_INVALID_OPTION) when the environment names a bad host.
function defaultProvider() {
  if (defaultInstance === null) {
    const state = defaults()
    defaultInstance = Object.create(TokenProvider.prototype)
    states.set(defaultInstance, state)
  }
  return defaultInstance
}

// The call options an event is, { forceRefresh, signal }, or null when it is just an event. An
// event that cannot be read (a strict Proxy, a throwing getter) is not call options: it is ignored
// like any other event, not blamed on the caller.
function callOptions(event) {
  try {
    return readCallOptions(event)
  } catch (_) {
    return null
  }
}

function readCallOptions(value) {
  // The snippet passes its event on every call: rule most events out without listing their keys.
  if (typeof value !== 'object' || value === null || !(hasOwn.call(value, 'signal') || hasOwn.call(value, 'forceRefresh'))) {
    return null
  }
  const keys = Object.keys(value)
  if (keys.length === 0) return null
  const options = { forceRefresh: false, signal: undefined }
  for (const key of keys) {
    const option = value[key]
    if (key === 'forceRefresh' && typeof option === 'boolean') options.forceRefresh = option
    else if (key === 'signal' && isSignal(option)) options.signal = option
    else return null
  }
  return options
}

// ---- beyond the token: isAvailable, getMetadata, getFolderId -----------------------------------

// They live in metadata.js, loaded at their first call: a program that only takes tokens does not
// pay for reading them at require.
let metadataApi = null

function metadata() {
  if (metadataApi === null) {
    metadataApi = require('./metadata')({ binding, MetadataTokenError, CODES, readOptions, callerError, internalError, invalidCall })
  }
  return metadataApi
}

// Whether a GCE-compatible metadata service answers; rejects only for options it cannot use.
function isAvailable(options) {
  return metadata().isAvailable(options)
}

// The value at /computeMetadata/v1/<key>.
function getMetadata(key, options) {
  return metadata().getMetadata(key, options)
}

// The folder ID: from the Cloud Functions context, else the metadata service, else YC_FOLDER_ID.
function getFolderId(context) {
  return metadata().getFolderId(context)
}

module.exports = {
  getToken,
  getAuthorizationHeader,
  TokenProvider,
  defaultProvider,
  MetadataTokenError,
  CODES,
  isAvailable,
  getMetadata,
  getFolderId,
}
