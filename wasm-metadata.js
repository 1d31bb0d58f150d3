'use strict'

// isAvailable() and getMetadata() over the wasm core, loaded by wasm-driver.js at their first call
// and sharing its instance. The core decides (src/wasm/metadata.rs over probe.rs and metadata.rs);
// here each attempt gets a connection of its own (`exchange`), closed when the core says its answer
// is over, and the waits between attempts are timers. Callers waiting for an answer keep the
// process alive, as for a token.

module.exports = function wasmMetadata({ instance, nums, readIo, writeIo, encodeOptions, splitError, monotonicMs, connect, failureKind, FAILED }) {
  // The answers of the probe and read exports: the numbers in src/wasm/metadata.rs.
  const PROBE_WAIT = 0
  const PROBE_SEND = 1
  const PROBE_YES = 3
  const READ_WAIT = 0
  const READ_SEND = 1
  const READ_SLEEP = 2
  const READ_VALUE = 3
  const READ_ERROR = 4
  // The events of an attempt, as probe_event and read_event take them: a failure is EVENT_FAILED
  // plus its FAILED kind.
  const EVENT_DATA = 0
  const EVENT_EOF = 1
  const EVENT_FAILED = 2

  // A promise of whether a metadata service answers at the address the options and environment
  // name; throws an Error with a code for options the core refuses.
  function isAvailable(options, ycMetadataAddr, gceMetadataHost) {
    const inst = instance()
    const code = open(inst, options, [ycMetadataAddr, gceMetadataHost], Buffer.alloc(0), (e, yc, gce) =>
      e.probe_ask(yc, gce, monotonicMs(), Date.now()))
    const handle = nums(inst)[1]
    const probes = pending(inst).probes
    const probe = probes.get(handle) || { handle, waiters: [], exchange: null }
    probes.set(handle, probe)
    return new Promise((resolve, reject) => {
      probe.waiters.push({ resolve, reject })
      followProbe(inst, probe, code)
    })
  }

  // A promise of the outcome of reading `key` ({ value, json } or { code, message, status,
  // attempts }, as the native addon's readMetadata); throws an Error with a code for a key or
  // options the core refuses, before anything is sent.
  function readMetadata(key, options, ycMetadataAddr, gceMetadataHost) {
    const inst = instance()
    const text = typeof key === 'string'
    const keyBytes = Buffer.from(text ? key : key === null ? 'null' : typeof key)
    const code = open(inst, options, [ycMetadataAddr, gceMetadataHost], keyBytes, (e, yc, gce) =>
      e.read_start(text ? 2 : 3, keyBytes.length, yc, gce, monotonicMs(), Math.random() * 2 ** 52))
    if (code === READ_VALUE) return Promise.resolve(valueOf(inst))
    if (code === READ_ERROR) return Promise.resolve(errorOf(inst))
    const n = nums(inst)
    const id = n[1] + ' ' + n[2]
    const reads = pending(inst).reads
    const read = reads.get(id) || { reader: n[1], flight: n[2], waiters: [], exchange: null, timer: null }
    reads.set(id, read)
    const timeoutMs = n[4]
    return new Promise((resolve) => {
      read.waiters.push(resolve)
      if (code === READ_SEND) readAttempt(inst, read, timeoutMs)
    })
  }

  // What an instance has under way for isAvailable and getMetadata.
  function pending(inst) {
    if (inst.beyond === undefined) inst.beyond = { probes: new Map(), reads: new Map() }
    return inst.beyond
  }

  // Adds the options and calls `start(exports, ycLength, gceLength)` with `lead` (a key, or
  // nothing) and the environment variables in IO; a negative answer is the core's refusal.
  function open(inst, options, env, lead, start) {
    let answer
    try {
      const e = inst.exports
      for (const [kind, name, value] of encodeOptions(options)) {
        const nameBytes = Buffer.from(name)
        writeIo(inst, Buffer.concat([nameBytes, Buffer.from(typeof value === 'number' ? '' : String(value))]))
        e.option_add(kind, nameBytes.length, typeof value === 'number' ? value : 0)
      }
      const envBytes = env.map((v) => (typeof v === 'string' ? Buffer.from(v) : null))
      writeIo(inst, Buffer.concat([lead].concat(envBytes.filter(Boolean))))
      answer = start(e, envBytes[0] ? envBytes[0].length : -1, envBytes[1] ? envBytes[1].length : -1)
    } catch (err) {
      trapped(inst, err)
      throw err
    }
    if (answer < 0) {
      const [code, message] = splitError(readIo(inst))
      const err = new Error(message)
      err.code = code
      throw err
    }
    return answer
  }

  // Calls into the core with the time now; null when the core trapped (everything the instance had
  // under way is then settled with an internal error).
  function ask(inst, call) {
    if (inst.broken) {
      trapped(inst, null)
      return null
    }
    try {
      return call(inst.exports, monotonicMs(), Date.now())
    } catch (err) {
      trapped(inst, err)
      return null
    }
  }

  // The instance failed (here, or in a provider's call: `err` null): it is dropped, and what it had
  // under way ends with an internal error rather than waiting for ever.
  function trapped(inst, err) {
    if (err !== null) {
      inst.broken = true
      process.stderr.write('yc-metadata-token: the wasm core failed (a bug; please report it): ' +
        (err && err.stack ? err.stack : err) + '\n')
    }
    const { probes, reads } = pending(inst)
    for (const probe of probes.values()) {
      if (probe.exchange !== null) probe.exchange.close()
      const waiters = probe.waiters
      probe.waiters = []
      for (const { reject } of waiters) reject(new Error('the wasm core failed'))
    }
    probes.clear()
    const lost = { code: 'ERR_METADATA_INTERNAL', message: 'Internal error in yc-metadata-token while reading metadata; please report it.', attempts: 0 }
    for (const read of Array.from(reads.values())) settleRead(inst, read, lost)
  }

  // Where an attempt goes: the core wrote host "\n" request into IO, the port into NUMS[4].
  function target(inst) {
    const e = inst.exports
    const io = Buffer.from(new Uint8Array(e.memory.buffer, e.io_ptr(), e.io_len()))
    const newline = io.indexOf(10)
    return { host: io.toString('latin1', 0, newline), port: nums(inst)[4], request: io.subarray(newline + 1) }
  }

  // One request on a connection of its own, given up after `timeoutMs`: `report(event, payload)`
  // hands the core each event (EVENT_DATA with the bytes, EVENT_EOF, EVENT_FAILED with a FAILED
  // kind) and says whether the attempt is over; the connection is closed then.
  function exchange(to, timeoutMs, report) {
    let over = false
    const socket = connect(to.host, to.port)
    const close = () => {
      over = true
      clearTimeout(timer)
      socket.destroy()
    }
    const event = (name, payload) => {
      if (!over && report(name, payload)) close()
    }
    const timer = setTimeout(() => event(EVENT_FAILED, FAILED.timeout), timeoutMs)
    socket.setNoDelay(true)
    socket.on('data', (chunk) => event(EVENT_DATA, chunk))
    socket.on('end', () => event(EVENT_EOF))
    socket.on('error', (err) => event(EVENT_FAILED, failureKind(err)))
    socket.on('close', () => event(EVENT_FAILED, FAILED.closed))
    socket.write(to.request)
    return { close }
  }

  function followProbe(inst, probe, code) {
    if (code === null || code === PROBE_WAIT) return
    if (code === PROBE_SEND) return probeAttempt(inst, probe, nums(inst)[4])
    const waiters = probe.waiters
    probe.waiters = []
    for (const { resolve } of waiters) resolve(code === PROBE_YES)
  }

  function probeAttempt(inst, probe, timeoutMs) {
    const h = probe.handle
    if (ask(inst, (e) => e.probe_send(h)) === null) return
    probe.exchange = exchange(target(inst), timeoutMs, (event, payload) => {
      const code = ask(inst, (e, mono, wall) => {
        if (event === EVENT_DATA) writeIo(inst, payload)
        return e.probe_event(h, mono, wall, event === EVENT_FAILED ? event + payload : event, event === EVENT_DATA ? payload.length : 0)
      })
      if (code === PROBE_WAIT) return false
      probe.exchange = null
      followProbe(inst, probe, code)
      return true
    })
  }

  function followRead(inst, read, code) {
    if (code === null || code === READ_WAIT) return
    const n = nums(inst)
    if (code === READ_SEND) return readAttempt(inst, read, n[4])
    if (code === READ_SLEEP) {
      read.timer = setTimeout(() => {
        read.timer = null
        followRead(inst, read, ask(inst, (e, mono) => e.read_wake(read.reader, read.flight, mono)))
      }, Math.max(0, n[4] - monotonicMs()))
      return
    }
    if (code === READ_VALUE) return settleRead(inst, read, valueOf(inst))
    if (code === READ_ERROR) settleRead(inst, read, errorOf(inst))
  }

  function readAttempt(inst, read, timeoutMs) {
    const { reader, flight } = read
    if (ask(inst, (e) => e.read_send(reader, flight)) === null) return
    read.exchange = exchange(target(inst), timeoutMs, (event, payload) => {
      const code = ask(inst, (e, mono) => {
        if (event === EVENT_DATA) writeIo(inst, payload)
        return e.read_event(reader, flight, mono, event === EVENT_FAILED ? event + payload : event, event === EVENT_DATA ? payload.length : 0)
      })
      if (code === READ_WAIT) return false
      read.exchange = null
      followRead(inst, read, code)
      return true
    })
  }

  // The value the core answered: in IO, NUMS[0] 1 when it is JSON.
  function valueOf(inst) {
    return { value: readIo(inst), json: nums(inst)[0] === 1 }
  }

  // The error the core answered: "code\nmessage" in IO, attempts in NUMS[2], status (or -1) in NUMS[3].
  function errorOf(inst) {
    const n = nums(inst)
    const [code, message] = splitError(readIo(inst))
    return { code, message, status: n[3] < 0 ? undefined : n[3], attempts: n[2] }
  }

  function settleRead(inst, read, outcome) {
    pending(inst).reads.delete(read.reader + ' ' + read.flight)
    if (read.exchange !== null) read.exchange.close()
    clearTimeout(read.timer)
    const waiters = read.waiters
    read.waiters = []
    for (const resolve of waiters) resolve(outcome)
  }

  return { isAvailable, readMetadata }
}
