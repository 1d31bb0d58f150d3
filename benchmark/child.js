'use strict'

// One measurement in a fresh process: `node child.js <mode> <subject>`. Prints one JSON line.
// The emulator's address and token come from the environment the runner sets (for `available`,
// the address of nothing, or none at all inside a network namespace with a black hole).

const fs = require('fs')
const net = require('net')
const { SUBJECTS, TOKEN_PATH } = require('./subjects')

const ADDR = process.env.YC_METADATA_ADDR
const TOKEN = process.env.BENCH_TOKEN
const URL = 'http://' + ADDR + TOKEN_PATH

// Cached calls cost nanoseconds to microseconds, uncached ones a round trip: each loop runs until
// it has enough samples or has used its time, whichever comes first.
const CACHED = { warmup: 2000, samples: 20000, budgetMs: 1000 }
const CACHED_BATCH = 100
const CACHED_BATCHES = 1000
const FORCED = { warmup: 50, samples: 1000, budgetMs: 1500 }
const CONCURRENT_CALLS = 1000

// The floors: what no library can beat. `bare` loads nothing and answers with a resolved promise;
// `raw-socket` is a hand-written HTTP/1.1 GET on one kept-alive connection.
const FLOORS = {
  bare: {
    load: () => ({ token: TOKEN, expiresInSeconds: 3600 }),
    call: (value) => Promise.resolve(value),
    forcer: (value) => () => Promise.resolve(value),
  },
  'raw-socket': {
    load: () => rawClient(ADDR),
    call: (client) => client.get(),
    forcer: (client) => () => client.get(),
  },
}

function rawClient(addr) {
  const colon = addr.lastIndexOf(':')
  const host = addr.slice(0, colon)
  const port = Number(addr.slice(colon + 1))
  const request = 'GET ' + TOKEN_PATH + ' HTTP/1.1\r\nHost: ' + addr + '\r\nMetadata-Flavor: Google\r\n\r\n'
  let socket = null
  let pending = null
  let buffer = ''
  function onData(chunk) {
    buffer += chunk
    const end = buffer.indexOf('\r\n\r\n')
    if (end === -1) return
    const length = Number(/content-length: *(\d+)/i.exec(buffer.slice(0, end))[1])
    if (buffer.length < end + 4 + length) return
    const body = JSON.parse(buffer.slice(end + 4, end + 4 + length))
    buffer = buffer.slice(end + 4 + length)
    const done = pending
    pending = null
    done.resolve({ token: body.access_token, expiresInSeconds: body.expires_in })
  }
  return {
    // One request at a time, as the forced-refresh loop makes them.
    get() {
      return new Promise((resolve, reject) => {
        if (socket === null) {
          socket = net.connect({ host, port, noDelay: true })
          socket.setEncoding('latin1')
          socket.on('data', onData)
          socket.on('error', (err) => pending && pending.reject(err))
        }
        pending = { resolve, reject }
        socket.write(request)
      })
    },
  }
}

function threads() {
  return fs.readdirSync('/proc/self/task').length
}

function tokenOf(result) {
  if (typeof result === 'string') return result
  return result && (result.token !== undefined ? result.token : result.access_token)
}

function check(result) {
  if (tokenOf(result) !== TOKEN) throw new Error('got something other than the emulator token')
  return result
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

async function timedLoop(fn, { warmup, samples, budgetMs }) {
  for (let i = 0; i < warmup; i++) await fn()
  const times = new Float64Array(samples)
  const stop = performance.now() + budgetMs
  let n = 0
  while (n < samples && (n < 10 || performance.now() < stop)) {
    const start = performance.now()
    await fn()
    times[n++] = performance.now() - start
  }
  const sorted = Array.from(times.subarray(0, n)).sort((a, b) => a - b)
  return { n, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
}

// `fn` and `floor` alternately; the p50 and p99 of `fn`, and the p50 of `floor` as `floorP50`.
async function pairedLoop(fn, floor, { warmup, samples, budgetMs }) {
  for (let i = 0; i < warmup; i++) {
    await fn()
    await floor()
  }
  const times = [[], []]
  const stop = performance.now() + budgetMs
  while (times[0].length < samples && (times[0].length < 10 || performance.now() < stop)) {
    for (const [i, f] of [fn, floor].entries()) {
      const start = performance.now()
      await f()
      times[i].push(performance.now() - start)
    }
  }
  const [mine, floors] = times.map((t) => t.sort((a, b) => a - b))
  return { n: mine.length, p50: percentile(mine, 0.5), p99: percentile(mine, 0.99), floorP50: percentile(floors, 0.5) }
}

// A cached call costs about as much as the two timer reads around it (~0.1 µs), so its p50 comes
// from batches of calls timed together; its p99 from single calls, where a slow one shows.
async function cachedLoop(fn) {
  const single = await timedLoop(fn, CACHED)
  const means = []
  const stop = performance.now() + CACHED.budgetMs
  while (means.length < CACHED_BATCHES && (means.length < 10 || performance.now() < stop)) {
    const start = performance.now()
    for (let i = 0; i < CACHED_BATCH; i++) await fn()
    means.push((performance.now() - start) / CACHED_BATCH)
  }
  means.sort((a, b) => a - b)
  return { n: single.n, p50: percentile(means, 0.5), p99: single.p99 }
}

async function main() {
  const [mode, name] = process.argv.slice(2)
  const subject = SUBJECTS[name] || FLOORS[name]
  if (!subject) throw new Error('unknown subject ' + name)
  const context = { url: URL, host: ADDR }

  const threadsBefore = threads()
  const t0 = performance.now()
  const api = await subject.load(context)
  const t1 = performance.now()

  if (mode === 'available') {
    // Off-cloud (a closed port, or a black hole): the answer must be no.
    const available = await subject.available(api)
    if (available !== false) throw new Error('isAvailable() said ' + available + ' off-cloud')
    return { ms: performance.now() - t1 }
  }

  if (mode === 'concurrent') {
    const calls = []
    for (let i = 0; i < CONCURRENT_CALLS; i++) calls.push(subject.call(api))
    const results = await Promise.all(calls)
    const t2 = performance.now()
    results.forEach(check)
    return { ms: t2 - t1 }
  }

  check(await subject.call(api))
  const t2 = performance.now()
  if (mode === 'cold') {
    return {
      requireMs: t1 - t0,
      firstMs: t2 - t1,
      coldMs: t2 - t0,
      rssMb: process.memoryUsage().rss / 1048576,
      threadsAdded: threads() - threadsBefore,
    }
  }
  if (mode === 'cached') return cachedLoop(() => subject.call(api))
  if (mode === 'forced') {
    const force = subject.forcer(api)
    check(await force())
    if (name !== 'ours' && name !== 'ours-wasm') return timedLoop(force, FORCED)
    // Ours takes turns with the raw socket, call by call, so the load of a shared machine falls
    // on both alike and their ratio holds even when the figures themselves drift.
    const raw = rawClient(ADDR)
    check(await raw.get())
    return pairedLoop(force, () => raw.get(), FORCED)
  }
  throw new Error('unknown mode ' + mode)
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + '\n')
    // Some peers hold the process open with timers (the Yandex SDK's 30-s refresh).
    process.exit(0)
  },
  (err) => {
    process.stderr.write(String((err && err.stack) || err) + '\n')
    process.exit(1)
  }
)
