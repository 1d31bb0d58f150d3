'use strict'

// The thin JavaScript surface over the Rust core (src/). It keeps three things here because they
// are cheapest or only possible in JavaScript: the answer for a fresh token (no call into native
// code at all), one shared promise per provider for concurrent callers in this thread, and the
// `Error` objects with their `code`.

const { NativeProvider } = require('./binding')

const CODES = Object.freeze({
  UNREACHABLE: 'ERR_METADATA_UNREACHABLE',
  TIMEOUT: 'ERR_METADATA_TIMEOUT',
  NO_SERVICE_ACCOUNT: 'ERR_METADATA_NO_SERVICE_ACCOUNT',
  STATUS: 'ERR_METADATA_STATUS',
  BAD_RESPONSE: 'ERR_METADATA_BAD_RESPONSE',
  INVALID_OPTION: 'ERR_INVALID_OPTION',
  INTERNAL: 'ERR_METADATA_INTERNAL',
})

class MetadataTokenError extends Error {
  constructor(message, code, status) {
    super(message)
    this.name = 'MetadataTokenError'
    this.code = code
    if (status !== undefined && status !== null) this.status = status
  }
}

// Provider state lives here, out of reach of util.inspect and JSON.stringify: it holds the token.
const states = new WeakMap()

function newState(options, shared) {
  const env = process.env
  let native
  try {
    native = new NativeProvider(options, env.YC_METADATA_ADDR, env.GCE_METADATA_HOST, shared)
  } catch (err) {
    throw new MetadataTokenError(err.message, err.code || CODES.INVALID_OPTION)
  }
  // memo: the last token seen with the moments (on both clocks, as the core judges them) until
  // which it needs no refresh and at which it expires.
  return { native, memo: null, inflight: null, hits: 0 }
}

// Monotonic milliseconds. process.hrtime rather than perf_hooks: loading perf_hooks alone takes ~1 ms
// of a cold start.
function monotonicMs() {
  const [seconds, nanos] = process.hrtime()
  return seconds * 1e3 + nanos / 1e6
}

function remember(state, t) {
  const mono = monotonicMs()
  const wall = Date.now()
  state.memo = {
    token: t.token,
    freshMono: mono + t.freshForMs,
    freshWall: wall + t.freshForMs,
    expiresMono: mono + t.expiresInMs,
    expiresWall: wall + t.expiresInMs,
  }
  return { token: t.token, expiresInSeconds: Math.ceil(t.expiresInMs / 1000) }
}

function request(state, forceRefresh, signal) {
  if (signal && signal.aborted) return Promise.reject(abortError(signal))
  if (!forceRefresh) {
    const memo = state.memo
    if (memo !== null) {
      const mono = monotonicMs()
      const wall = Date.now()
      if (mono < memo.freshMono && wall < memo.freshWall) {
        state.hits++
        const left = Math.min(memo.expiresMono - mono, memo.expiresWall - wall)
        return Promise.resolve({ token: memo.token, expiresInSeconds: Math.ceil(left / 1000) })
      }
    }
    // Inside the refresh margin the core answers from memory and refreshes in the background.
    const snapshot = state.native.peek()
    if (snapshot !== null) {
      state.hits++
      return Promise.resolve(remember(state, snapshot))
    }
  }
  let shared = state.inflight
  if (shared === null) {
    shared = state.inflight = state.native.fetch(Boolean(forceRefresh)).then((outcome) => {
      state.inflight = null
      if (outcome.code !== undefined && outcome.code !== null) {
        throw new MetadataTokenError(outcome.message, outcome.code, outcome.status)
      }
      return remember(state, outcome)
    })
    // Every caller gets the rejection through its own chain; this one only keeps a call whose
    // callers all aborted from becoming an unhandled rejection.
    shared.catch(noop)
  }
  return signal ? abortable(shared, signal) : shared
}

function noop() {}

function abortError(signal) {
  const err = new Error('The operation was aborted')
  err.name = 'AbortError'
  err.code = 'ABORT_ERR'
  if (signal.reason !== undefined) err.cause = signal.reason
  return err
}

// Rejects this caller alone when its signal aborts; the shared fetch carries on for the others.
function abortable(shared, signal) {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    shared.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      }
    )
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

class TokenProvider {
  constructor(options) {
    states.set(this, newState(options, false))
  }

  getToken(options) {
    const state = states.get(this)
    if (state === undefined) return invalidCall('getToken must be called on a TokenProvider')
    if (options === undefined || options === null) return request(state, false, undefined)
    if (typeof options !== 'object') {
      return invalidCall('getToken options must be an object, got ' + typeof options)
    }
    const { forceRefresh, signal } = options
    if (forceRefresh !== undefined && typeof forceRefresh !== 'boolean') {
      return invalidCall('option forceRefresh must be a boolean, got ' + typeof forceRefresh)
    }
    if (signal !== undefined && !isSignal(signal)) {
      return invalidCall('option signal must be an AbortSignal')
    }
    return request(state, forceRefresh === true, signal)
  }
}

let defaultState = null

// The snippet's `getToken(event)`: the argument is the handler's event and is ignored, unless it
// is nothing but call options ({ forceRefresh, signal }), which no platform event looks like.
function getToken(event) {
  if (defaultState === null) {
    try {
      defaultState = newState(undefined, true)
    } catch (err) {
      return Promise.reject(err)
    }
  }
  if (event === undefined || event === null || !isCallOptions(event)) {
    return request(defaultState, false, undefined)
  }
  return request(defaultState, event.forceRefresh === true, event.signal)
}

function isCallOptions(value) {
  if (typeof value !== 'object') return false
  const keys = Object.keys(value)
  if (keys.length === 0) return false
  for (const key of keys) {
    if (key === 'forceRefresh' ? typeof value[key] !== 'boolean' : key !== 'signal' || !isSignal(value[key])) {
      return false
    }
  }
  return true
}

module.exports = { getToken, TokenProvider, MetadataTokenError, CODES }
