'use strict'

// What index.js publishes on diagnostics_channel: every upstream fetch as a trace, and the events
// a dashboard counts (README "Tracing and metrics"). Names and message shapes are public API; no
// message ever holds the token (its fingerprint tells tokens apart). The drivers tell index.js of
// each fetch as it starts and ends, and index.js hands them on here: fetchStarted, fetchEnded,
// servedStale, each with the provider's state. One place for both drivers.
//
// Loaded by index.js at the first fetch (see `publishing` there), with what it shares:
// { MetadataTokenError, fingerprint, driver, publishing }.

let shared = null

const FETCH_CHANNEL = 'yc-metadata-token:fetch'
const TRACING_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error']
const EVENT_CHANNELS = {
  refreshSucceeded: 'yc-metadata-token:background-refresh-succeeded',
  refreshFailed: 'yc-metadata-token:background-refresh-failed',
  servedStale: 'yc-metadata-token:served-stale',
  expiredWhileFailing: 'yc-metadata-token:expired-while-failing',
}

// The channels. diagnostics_channel is not loaded by Node at start (it costs ~0.2 ms of a cold
// start on Node 20): this file, and so the module, is loaded by the first fetch. null where Node
// has no diagnostics_channel (before 14.17, and in an ES module bundle on a Node without
// process.getBuiltinModule).
const channels = loadChannels()

function loadChannels() {
  let dc = null
  try {
    dc = process.getBuiltinModule ? process.getBuiltinModule('diagnostics_channel') : require('diagnostics_channel')
  } catch (_) {}
  if (dc === null || dc === undefined || typeof dc.channel !== 'function') return null
  // The tracing channels by the names tracingChannel(FETCH_CHANNEL) gives them: the same channels
  // where Node has tracingChannel (18.19, 20), and channels a subscriber can still name where it
  // has not. Held here, so that no subscriber's channel is ever collected (Node < 18 could).
  const fetch = {}
  for (const event of TRACING_EVENTS) fetch[event] = dc.channel('tracing:' + FETCH_CHANNEL + ':' + event)
  const tracing = TRACING_EVENTS.map((event) => fetch[event])
  const loaded = { fetch, tracing, all: tracing.slice() }
  for (const key of Object.keys(EVENT_CHANNELS)) {
    loaded[key] = dc.channel(EVENT_CHANNELS[key])
    loaded.all.push(loaded[key])
  }
  return loaded
}

function listening(list) {
  for (const channel of list) if (channel.hasSubscribers) return true
  return false
}

// Subscribers run synchronously, inside this package's calls. Node (every version that has
// diagnostics_channel, 14.17 on) catches a subscriber's exception and throws it again on the next
// tick, as an 'uncaughtException'; should publish() itself ever throw, this does the same. Either
// way a subscriber never breaks a call or the cache.
function publish(channel, message) {
  if (!channel.hasSubscribers) return
  try {
    channel.publish(message)
  } catch (err) {
    process.nextTick(rethrow, err)
  }
}

function rethrow(err) {
  throw err
}

// What every message says of the provider: its name in the debug output, the driver, where it
// fetches from. A fresh object each time: subscribers may keep what they are given.
function about(state) {
  if (state.address === null) {
    state.address = { url: state.native.url, host: state.native.host, port: state.native.port }
  }
  const a = state.address
  return { provider: state.label, driver: shared.driver, url: a.url, serverAddress: a.host, serverPort: a.port }
}

// The drivers leave a value out (native) or undefined (wasm) where messages say null.
function orNull(value) {
  return value === undefined ? null : value
}

function secondsLeft(expiresAtMs) {
  return Math.max(0, Math.ceil((expiresAtMs - Date.now()) / 1000))
}

// A driver says a fetch started (called inside peek or fetch, before or just after it is under way).
function fetchStarted(state, flight, reason) {
  if (channels === null || !listening(channels.all)) return
  if (!state.observed) observe(state)
  if (!listening(channels.tracing)) return
  const tracing = channels.fetch
  // Filled in when the fetch ends; `result` and `error` as tracePromise() would set them.
  const context = Object.assign(about(state), {
    reason,
    attempts: null,
    status: null,
    errorCode: null,
    expiresInSeconds: null,
    background: null,
    fingerprint: null,
  })
  if (state.traces === null) state.traces = new Map()
  state.traces.set(flight, context)
  // As tracePromise() publishes them: the synchronous part of the call is over at once.
  publish(tracing.start, context)
  publish(tracing.end, context)
}

// The driver tells this thread of the ends of the fetches it started that no caller of it waits
// for. The driver holds the callback (the native one in a thread-safe function), which must not
// hold the provider's state: a dropped provider would never be collected.
function observe(state) {
  state.observed = true
  const ref = new WeakRef(state)
  state.native.observe((outcome) => {
    const s = ref.deref()
    if (s !== undefined) shared.publishing(() => fetchEnded(s, outcome, null))
  })
}

// A fetch this thread started ended with `outcome` (its `report` says how); `error` is the error
// its callers get, if it has callers and failed.
function fetchEnded(state, outcome, error) {
  const report = outcome.report
  if (!channels) return
  const failed = outcome.code !== undefined && outcome.code !== null
  if (failed && error === null) error = new shared.MetadataTokenError(outcome.message, outcome.code, outcome.status)
  // The token held ran out while this fetch was under way (or before it, unnoticed until then).
  const expired = report.expired
  if (expired !== undefined && expired !== null && channels.expiredWhileFailing.hasSubscribers) {
    publish(channels.expiredWhileFailing, Object.assign(about(state), {
      fingerprint: shared.fingerprint(expired.token),
      consecutiveFailures: expired.failures,
      lastErrorCode: expired.lastErrorCode,
    }))
  }
  const context = state.traces === null ? undefined : state.traces.get(report.flight)
  if (context !== undefined) {
    state.traces.delete(report.flight)
    context.attempts = outcome.attempts
    context.status = orNull(report.status)
    context.errorCode = failed ? outcome.code : null
    context.background = report.background
    const tracing = channels.fetch
    if (failed) {
      context.error = error
      publish(tracing.error, context)
    } else {
      context.expiresInSeconds = secondsLeft(outcome.expiresAtMs)
      context.fingerprint = shared.fingerprint(outcome.token)
      context.result = { fingerprint: context.fingerprint, expiresInSeconds: context.expiresInSeconds }
    }
    publish(tracing.asyncStart, context)
    publish(tracing.asyncEnd, context)
  }
  if (report.reason === 'refresh-ahead') {
    const channel = failed ? channels.refreshFailed : channels.refreshSucceeded
    if (channel.hasSubscribers) {
      const message = Object.assign(about(state), { attempts: outcome.attempts, status: orNull(report.status) })
      if (failed) {
        const held = report.held
        Object.assign(message, {
          errorCode: outcome.code,
          error,
          consecutiveFailures: report.failures,
          fingerprint: held ? shared.fingerprint(held.token) : null,
          expiresInSeconds: held ? secondsLeft(held.expiresAtMs) : null,
        })
      } else {
        Object.assign(message, { fingerprint: shared.fingerprint(outcome.token), expiresInSeconds: secondsLeft(outcome.expiresAtMs) })
      }
      publish(channel, message)
    }
  }
}

// A call answered from memory with a token past its refresh point, because refreshing it failed.
function servedStale(state, snapshot) {
  if (!channels || !channels.servedStale.hasSubscribers) return
  publish(channels.servedStale, Object.assign(about(state), {
    fingerprint: shared.fingerprint(snapshot.token),
    expiresInSeconds: secondsLeft(snapshot.expiresAtMs),
    consecutiveFailures: snapshot.failures,
  }))
}

module.exports = function (given) {
  shared = given
  return { fetchStarted, fetchEnded, servedStale }
}
