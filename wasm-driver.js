'use strict'

// The wasm driver: the same Rust core as the native addon, compiled to plain wasm32
// (yc-metadata-token.wasm, src/wasm/mod.rs), with the I/O done here: a plain socket (node:net) for
// the one request, timers for the waits. The core decides everything (settings, the request's
// bytes, reading the answer's, what an answer or a failure means, retries, the cache); this file
// connects, writes, hands over what it reads, sleeps, and offers index.js the surface the native
// addon offers (NativeProvider in src/native/mod.rs).
//
// Not node:http: loading it and its first request cost ~6 ms of a cold start (its parser, agent
// and outgoing-message machinery), against ~0.3 ms for the core to read the answer itself
// (src/core/http1.rs). No proxy applies and no redirect is followed, as with the native driver.
//
// Differences from the native driver, by design: each worker thread has a cache of its own (a
// wasm instance belongs to one thread); name lookups use Node's resolver (libuv's thread pool).
// Nothing here keeps the process alive unless a caller is waiting.

// Node's own modules come through process.getBuiltinModule where Node has it (an ES module bundle
// has no require: binding.js), each by a literal name that bundlers can read.
// node:net costs ~3 ms to load where nothing has loaded it yet (it brings streams): it is loaded
// by the first request, not by require. The module is compiled at require instead (~1 ms), so
// that a cold start splits its cost between require and the first call.
let net = null
let dns = null

// Step codes and failure kinds: the numbers in src/wasm/mod.rs.
const STEP_SEND = 1
const STEP_SLEEP = 2
const STEP_DONE_TOKEN = 3
const STEP_DONE_ERROR = 4
const FAILED = {
  refused: 0,
  noRoute: 1,
  reset: 2,
  connectTimedOut: 3,
  nameNotFound: 4,
  nameLookupFailed: 5,
  closed: 6,
  other: 8,
  timeout: 100,
}
// Node's error codes for what went wrong below HTTP, in the core's terms.
const NODE_ERRORS = {
  ECONNREFUSED: FAILED.refused,
  EHOSTUNREACH: FAILED.noRoute,
  ENETUNREACH: FAILED.noRoute,
  EHOSTDOWN: FAILED.noRoute,
  ECONNRESET: FAILED.reset,
  ECONNABORTED: FAILED.reset,
  EPIPE: FAILED.reset,
  ETIMEDOUT: FAILED.connectTimedOut,
  ENOTFOUND: FAILED.nameNotFound,
  EAI_AGAIN: FAILED.nameLookupFailed,
  EAI_FAIL: FAILED.nameLookupFailed,
}

// ---- the module --------------------------------------------------------------------------------

let current = null

// One instance per thread, made at the first provider. A trap (a bug in the core) leaves the
// instance's state unknown: it is dropped, and every provider makes itself again in a new one.
function instance() {
  if (current !== null && !current.broken) return current
  const exports = new WebAssembly.Instance(compiled, {}).exports
  current = { exports, broken: false, buffer: null, nums: null, warm: false }
  return current
}

const compiled = new WebAssembly.Module(wasmBytes())

// The module's bytes from yc-metadata-token.wasm beside this file, as installed: the cheapest way
// (~0.45 ms to read). A bundle has no such file beside it, so the same bytes also come as base64
// in yc-metadata-token.wasm.js, which every bundler carries as JavaScript without being told
// (~1.4 ms to load and decode). Both are written by scripts/build-wasm.sh.
function wasmBytes() {
  // An ES module bundle has no __dirname (binding.js).
  if (typeof __dirname === 'string') {
    const fs = process.getBuiltinModule ? process.getBuiltinModule('fs') : require('fs')
    const path = process.getBuiltinModule ? process.getBuiltinModule('path') : require('path')
    try {
      return fs.readFileSync(path.join(__dirname, 'yc-metadata-token.wasm'))
    } catch (err) {
      if (err.code !== 'ENOENT') throw err
    }
  }
  return Buffer.from(require('./yc-metadata-token.wasm.js'), 'base64')
}

// The length of NUMS (src/wasm/mod.rs).
const NUMS_LEN = 16

function nums(inst) {
  if (inst.buffer !== inst.exports.memory.buffer) {
    inst.buffer = inst.exports.memory.buffer
    inst.nums = new Float64Array(inst.buffer, inst.exports.nums_ptr(), NUMS_LEN)
  }
  return inst.nums
}

function readIo(inst) {
  const e = inst.exports
  // Buffer's UTF-8 decoding: TextDecoder's first use costs ~0.25 ms of a cold start.
  return Buffer.from(e.memory.buffer, e.io_ptr(), e.io_len()).toString('utf8')
}

function writeIo(inst, bytes) {
  const ptr = inst.exports.io_reserve(bytes.length)
  new Uint8Array(inst.exports.memory.buffer, ptr, bytes.length).set(bytes)
}

// Event loop turns an attempt whose time is up still gets, to read what arrived while this thread
// was busy: timers run before I/O in a turn, so an answer waiting there lost to its own timeout,
// which is retried (a second connection to a peer that had answered). Two: one for a connect that
// completed meanwhile, one for the bytes after it. The native driver reads on its own thread.
const TIMEOUT_GRACE_TURNS = 2

function monotonicMs() {
  const [seconds, nanos] = process.hrtime()
  return seconds * 1e3 + nanos / 1e6
}

// ---- providers ---------------------------------------------------------------------------------


class WasmProvider {
  constructor(options, ycMetadataAddr, gceMetadataHost) {
    this.options = encodeOptions(options)
    this.env = [ycMetadataAddr, gceMetadataHost]
    this.inst = null
    this.handle = -1
    this.attach()
    const target = readIo(this.inst)
    const lines = target.split('\n', 2)
    this.url = lines[0]
    this.host = lines[1]
    this.port = nums(this.inst)[4]
    this.request = Buffer.from(target.slice(lines[0].length + lines[1].length + 2), 'latin1')
    // The callers waiting for the flight under way, and what it has open: the attempt's
    // connection and timeout, the timer of a wait between attempts.
    this.waiters = []
    this.connection = null
    this.attemptTimer = null
    this.grace = null
    this.timer = null
    // Set by observe(): the end of a flight no waiter of this object waits for goes there.
    this.observer = null
  }

  // Makes this provider's core in the current instance; throws an Error with a code for options
  // the core refuses.
  attach() {
    const inst = instance()
    const e = inst.exports
    for (const [kind, name, value] of this.options) {
      const nameBytes = Buffer.from(name)
      const valueBytes = Buffer.from(typeof value === 'number' ? '' : String(value))
      writeIo(inst, Buffer.concat([nameBytes, valueBytes]))
      e.option_add(kind, nameBytes.length, typeof value === 'number' ? value : 0)
    }
    const env = this.env.map((v) => (typeof v === 'string' ? Buffer.from(v) : null))
    writeIo(inst, Buffer.concat(env.filter(Boolean)))
    const handle = e.provider_new(env[0] ? env[0].length : -1, env[1] ? env[1].length : -1, Math.random() * 2 ** 52)
    if (handle < 0) {
      const [code, message] = splitError(readIo(inst))
      const err = new Error(message)
      err.code = code
      throw err
    }
    e.provider_target(handle)
    this.inst = inst
    this.handle = handle
    // No unregister token: the registry would keep a table entry per provider for it. A core made
    // again after a trap leaves the old registration pointing at the broken instance, which the
    // callback skips.
    if (registry !== null) registry.register(this, { inst, handle })
  }

  // Runs `call(exports, handle)` on the core, making the core again after a trap elsewhere; a trap
  // here is reported and rethrown (index.js turns it into ERR_METADATA_INTERNAL).
  core(call) {
    if (this.inst.broken) this.attach()
    try {
      return call(this.inst.exports, this.handle)
    } catch (err) {
      this.inst.broken = true
      process.stderr.write('yc-metadata-token: the wasm core failed (a bug; please report it): ' +
        (err && err.stack ? err.stack : err) + '\n')
      throw err
    }
  }

  // As the native peek: onStart(flight, reason) is told of a background refresh this starts.
  // Here it is told once the refresh is under way: its end cannot come before this turn is over.
  peek(onStart) {
    const wall = Date.now()
    const code = this.core((e, h) => e.peek(h, monotonicMs(), wall))
    if ((code & 1) === 0) return null
    const token = this.token()
    token.failures = nums(this.inst)[10]
    const started = this.started()
    // A background refresh started: its first step was written after the token.
    this.follow(code >> 1)
    if (started !== null && onStart) onStart(started.flight, started.reason)
    return token
  }

  fetch(force, onStart) {
    let started = null
    const outcome = new Promise((resolve) => {
      const wall = Date.now()
      const code = this.core((e, h) => e.get(h, monotonicMs(), wall, force ? 1 : 0))
      if (code & 1) resolve(this.token(0))
      // A flight started: for callers, or (answered from memory) a refresh in the background.
      started = this.started()
      if (code & 1) {
        this.follow(code >> 1)
        return
      }
      this.waiters.push(resolve)
      this.follow(code >> 1)
      this.holdProcess()
    })
    if (started !== null && onStart) onStart(started.flight, started.reason)
    return outcome
  }

  // The flight the last peek or get started, or null: read before anything else asks the core.
  started() {
    const n = nums(this.inst)
    return n[8] < 0 ? null : { flight: n[8], reason: this.reasonName(n[9]) }
  }

  reasonName(code) {
    this.core((e) => e.reason_name(code))
    return readIo(this.inst)
  }

  // Once: the end of each flight this object starts that none of its waiters waits for.
  observe(callback) {
    if (this.observer === null) this.observer = callback
  }

  // Answers this object's waiting callers as released: they gave up. The flight goes on.
  release() {
    const waiters = this.waiters
    this.waiters = []
    this.core((e, h) => e.release(h))
    this.holdProcess()
    for (const resolve of waiters) resolve({ released: true })
  }

  stats() {
    const wall = Date.now()
    this.core((e, h) => e.stats(h, monotonicMs(), wall))
    const n = nums(this.inst)
    const last = readIo(this.inst)
    return {
      requests: n[0],
      retries: n[1],
      fetches: n[2],
      backgroundRefreshes: n[3],
      failures: n[4],
      expiresInMs: n[5] < 0 ? null : n[5],
      lastErrorCode: last === '' ? null : last,
    }
  }

  // Does what the core's step says: send, sleep, or settle the waiters.
  follow(step) {
    if (step === STEP_SEND) return this.send(nums(this.inst)[4])
    if (step === STEP_SLEEP) {
      const delay = Math.max(0, nums(this.inst)[4] - monotonicMs())
      this.timer = setTimeout(() => {
        this.timer = null
        this.step((e, h, mono, wall) => e.wake(h, mono, wall))
      }, delay)
      this.holdProcess()
      return
    }
    if (step === STEP_DONE_TOKEN || step === STEP_DONE_ERROR) this.settle(step)
  }

  // Reports an event to the core (with the time now) and follows the step it answers.
  step(report) {
    const step = this.ask(report)
    if (step !== null) this.follow(step)
  }

  // Reports an event of the flight to the core and returns its answer; null when the core failed
  // (a trap, reported by core()), the waiters then settled with an internal error. Called from I/O
  // callbacks, where a throw would crash the process.
  ask(report) {
    try {
      return this.core((e, h) => report(e, h, monotonicMs(), Date.now()))
    } catch (err) {
      this.settleAll({ code: 'ERR_METADATA_INTERNAL', message: 'Internal error in yc-metadata-token while fetching from ' + this.url + '; please report it.', attempts: 0 })
      return null
    }
  }

  // The token the core answered (in IO, its deadlines in NUMS), with `attempts` when given.
  token(attempts) {
    const n = nums(this.inst)
    const token = { token: readIo(this.inst), expiresAtMs: n[0], freshUntilMs: n[1] }
    if (attempts !== undefined) token.attempts = attempts
    return token
  }

  settle(step) {
    const n = nums(this.inst)
    let outcome
    if (step === STEP_DONE_TOKEN) {
      outcome = this.token(n[2])
    } else {
      const [code, message] = splitError(readIo(this.inst))
      outcome = { code, message, status: n[3] < 0 ? undefined : n[3], attempts: n[2] }
    }
    outcome.report = this.report()
    // As the native driver: the report goes with this object's answer if a caller waits for it,
    // else to the observer.
    if (this.waiters.length === 0) {
      if (this.observer !== null && outcome.report !== null) this.observer(outcome)
      return
    }
    this.settleAll(outcome)
  }

  // How the flight that just ended went (the core's Report), or null. Called from I/O callbacks:
  // a trap (reported by core()) leaves the flight unreported rather than throw out of an event.
  report() {
    const inst = this.inst
    try {
      this.core((e, h) => e.report(h))
    } catch (_) {
      return null
    }
    const n = nums(inst)
    if (n[0] < 0) return null
    const [held, expired, lastErrorCode] = readIo(inst).split('\n')
    const report = {
      flight: n[0],
      reason: n[1],
      background: n[2] === 1,
      status: n[3] < 0 ? undefined : n[3],
      failures: n[4],
      held: n[5] < 0 ? undefined : { token: held, expiresAtMs: n[5], freshUntilMs: n[6], failures: n[7] },
      expired: n[8] < 0 ? undefined : { token: expired, failures: n[8], lastErrorCode },
    }
    try {
      report.reason = this.reasonName(report.reason)
    } catch (_) {
      return null
    }
    return report
  }

  settleAll(outcome) {
    const waiters = this.waiters
    this.waiters = []
    for (const resolve of waiters) resolve(outcome)
  }

  // One attempt, begun on the next tick: until then this thread runs the caller's code, and time
  // the request could not use is not the network's (the core's deadline still bounds the whole
  // call).
  send(timeoutMs) {
    process.nextTick(() => this.attempt(timeoutMs))
  }

  // The core's request on the connection kept from the last answer from this address, or on a
  // new one.
  attempt(timeoutMs) {
    // An attempt still under way here was lost by a core made again after a trap: it ends unheard.
    if (this.connection !== null) this.connection.close()
    clearTimeout(this.attemptTimer)
    clearImmediate(this.grace)
    const key = this.port + ' ' + this.host
    let connection = idle.get(key)
    if (connection === undefined) connection = new Connection(this.host, this.port, key)
    else idle.delete(key)
    if (this.ask((e, h, mono, wall) => e.attempt_sent(h, mono, wall)) === null) return connection.close()
    this.attemptTimer = setTimeout(() => this.expire(TIMEOUT_GRACE_TURNS), timeoutMs)
    this.attemptTimer.unref()
    connection.start(this)
  }

  // The attempt's time is up: after `turns` more turns of the event loop that did not end it, it
  // timed out (see TIMEOUT_GRACE_TURNS).
  expire(turns) {
    this.grace = null
    if (this.connection === null) return
    if (turns === 0) return this.connection.fail(FAILED.timeout)
    this.grace = setImmediate(() => this.expire(turns - 1))
  }

  // The attempt is over (the core answered `step`; null: it failed): its connection is closed or
  // kept, then the step followed.
  attemptOver(step) {
    clearTimeout(this.attemptTimer)
    clearImmediate(this.grace)
    this.attemptTimer = null
    this.grace = null
    this.connection = null
    if (step !== null) this.follow(step)
  }

  // Nothing of the core's state (the token included) shows in logs.
  [Symbol.for('nodejs.util.inspect.custom')]() {
    return 'WasmProvider { url: ' + JSON.stringify(this.url) + ' }'
  }

  toJSON() {
    return { url: this.url }
  }

  // A flight keeps the process alive only while a caller waits for it.
  holdProcess() {
    const hold = this.waiters.length > 0
    const method = hold ? 'ref' : 'unref'
    if (this.timer !== null) this.timer[method]()
    if (this.connection !== null) this.connection.socket[method]()
  }
}

// One connection and the attempt it carries (none while it waits, kept, for the next one).
class Connection {
  constructor(host, port, key) {
    if (net === null) net = process.getBuiltinModule ? process.getBuiltinModule('net') : require('net')
    this.key = key
    this.provider = null
    this.reused = false
    this.socket = net.connect({ host, port, lookup: sharedLookup })
    this.socket.setNoDelay(true)
    this.socket.on('data', (chunk) => this.data(chunk))
    this.socket.on('end', () => this.end())
    this.socket.on('error', (err) => this.error(err))
    this.socket.on('close', () => this.closed())
  }

  start(provider) {
    this.provider = provider
    provider.connection = this
    provider.holdProcess()
    // Written before the socket connects, it goes out as soon as it does.
    this.socket.write(provider.request)
    // The instance's first request: while it is out, the core's answer path is compiled (see
    // `warm` in src/wasm/mod.rs). This listener runs after the one that writes the request.
    if (!provider.inst.warm) {
      provider.inst.warm = true
      this.socket.once('connect', () => provider.ask((e) => e.warm()))
    }
  }

  data(chunk) {
    const p = this.provider
    // Bytes nobody asked for: this connection cannot be trusted with the next request.
    if (p === null) return this.close()
    const step = p.ask((e, h, mono, wall) => {
      writeIo(p.inst, chunk)
      return e.attempt_data(h, mono, wall, chunk.length)
    })
    if (step !== 0) this.over(step, step !== null && nums(p.inst)[5] === 1)
  }

  end() {
    const p = this.provider
    if (p === null) return this.close()
    if (this.staleReuse()) return
    this.over(p.ask((e, h, mono, wall) => e.attempt_eof(h, mono, wall)), false)
  }

  error(err) {
    if (this.provider === null || this.staleReuse()) return
    this.fail(failureKind(err))
  }

  closed() {
    if (idle.get(this.key) === this) idle.delete(this.key)
    if (this.provider !== null && !this.staleReuse()) this.fail(FAILED.closed)
  }

  fail(kind) {
    const p = this.provider
    if (p === null) return
    this.over(p.ask((e, h, mono, wall) => e.attempt_failed(h, mono, wall, kind)), false)
  }

  // A kept connection that ended before a byte of the answer came: the core says whether the
  // attempt goes again on a new one (fetch::resend_on_new_connection).
  staleReuse() {
    const p = this.provider
    if (!this.reused || p.ask((e, h) => e.resend_on_new_connection(h)) !== 1) return false
    this.provider = null
    this.socket.destroy()
    new Connection(p.host, p.port, this.key).start(p)
    return true
  }

  // The attempt is over: the connection waits for the next one (unref'd: it keeps no process
  // alive) or closes.
  over(step, reusable) {
    const p = this.provider
    this.provider = null
    if (reusable && !idle.has(this.key)) {
      this.reused = true
      this.socket.unref()
      idle.set(this.key, this)
    } else {
      this.close()
    }
    p.attemptOver(step)
  }

  close() {
    this.provider = null
    this.socket.destroy()
  }
}

// The connections kept for the next request, one per address ("port host"): the metadata
// service is one address, and a second kept connection would never be used.
const idle = new Map()

// An attempt that times out abandons its name lookup, but the next attempt for the same name joins
// it rather than asking again: a resolver that answers in 1.2 s then still yields a token within
// the deadline, though every attempt's timeout is 1 s (as the native driver does).
const lookups = new Map()

function sharedLookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options
    options = {}
  }
  const key = [hostname, options.family || 0, options.hints || 0, options.all ? 1 : 0, options.verbatim].join('|')
  const waiting = lookups.get(key)
  if (waiting !== undefined) return waiting.push(callback)
  const callbacks = [callback]
  lookups.set(key, callbacks)
  if (dns === null) dns = process.getBuiltinModule ? process.getBuiltinModule('dns') : require('dns')
  dns.lookup(hostname, options, function () {
    lookups.delete(key)
    for (const cb of callbacks) cb.apply(null, arguments)
  })
}

function failureKind(err) {
  const kind = NODE_ERRORS[err && err.code]
  return kind === undefined ? FAILED.other : kind
}

function splitError(io) {
  const newline = io.indexOf('\n')
  return [io.slice(0, newline), io.slice(newline + 1)]
}

// The options as the native addon reads them (src/native/mod.rs option_pairs): own enumerable
// keys; undefined and null count as absent.
function encodeOptions(options) {
  if (options === undefined || options === null) return []
  if (typeof options !== 'object') return [[4, '', typeof options]]
  return Object.keys(options).map((name) => {
    const value = options[name]
    if (value === undefined || value === null) return [0, name, '']
    if (typeof value === 'number') return [1, name, value]
    if (typeof value === 'string') return [2, name, value]
    if (typeof value === 'boolean') return [5, name, value ? 1 : 0]
    return [3, name, typeof value]
  })
}

// A provider that is garbage-collected frees its core. (FinalizationRegistry: Node 14.6 and newer;
// before that a dropped provider's few hundred bytes stay in the module.)
const registry =
  typeof FinalizationRegistry === 'function'
    ? new FinalizationRegistry(({ inst, handle }) => {
      if (!inst.broken) inst.exports.provider_free(handle)
    })
    : null

// The core's rule for a token it does not hold (a Cloud Functions context's): milliseconds left to
// use it, or null.
function usableForMs(lifetimeMs, elapsedMs) {
  const left = instance().exports.usable_for_ms(lifetimeMs, elapsedMs)
  return left < 0 ? null : left
}

// The core's rule for a token it did not fetch (a Cloud Functions context's): RFC 6750's b64token.
function isB64Token(token) {
  const inst = instance()
  const bytes = Buffer.from(token)
  writeIo(inst, bytes)
  return inst.exports.is_b64token(bytes.length) === 1
}

// ---- beyond the token: isAvailable() and getMetadata() -----------------------------------------
// Over the same instance, in wasm-metadata.js, loaded at their first call: a program that only takes
// tokens does not pay for reading it at require.
let metadataDriver = null

function metadata() {
  if (metadataDriver === null) {
    metadataDriver = require('./wasm-metadata')({ instance, nums, readIo, writeIo, encodeOptions, splitError, monotonicMs, connect, failureKind, FAILED })
  }
  return metadataDriver
}

function isAvailable(options, ycMetadataAddr, gceMetadataHost) {
  return metadata().isAvailable(options, ycMetadataAddr, gceMetadataHost)
}

function readMetadata(key, options, ycMetadataAddr, gceMetadataHost) {
  return metadata().readMetadata(key, options, ycMetadataAddr, gceMetadataHost)
}

// A socket to host:port with the shared name lookup, for wasm-metadata.js.
function connect(host, port) {
  if (net === null) net = process.getBuiltinModule ? process.getBuiltinModule('net') : require('net')
  return net.connect({ host, port, lookup: sharedLookup })
}

module.exports = { WasmProvider, usableForMs, isB64Token, isAvailable, readMetadata }
