'use strict'

// README "Tracing and metrics": every upstream fetch is one trace on
// tracing:yc-metadata-token:fetch:{start,end,asyncStart,asyncEnd,error}, the events a dashboard
// counts go to plain channels, and no published object holds the token. Each test subscribes by
// channel name (what works on every Node with diagnostics_channel) and, where Node has it, with
// tracingChannel() too.

const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const dc = require('node:diagnostics_channel')
const { setTimeout: sleep } = require('node:timers/promises')
const { withEmulator, runNode } = require('./helpers')
const { TokenProvider } = require('..')

const DRIVER = process.env.YC_METADATA_TOKEN_DRIVER === 'wasm' ? 'wasm' : require('../binding').driver
const TRACING = ['start', 'end', 'asyncStart', 'asyncEnd', 'error']
const EVENTS = ['background-refresh-succeeded', 'background-refresh-failed', 'served-stale', 'expired-while-failing']
// How long a test waits for an event that comes from a fetch in the background (a loopback fetch
// takes milliseconds; this is slack for a busy 2-core machine).
const EVENT_WAIT_MS = 5000

function secretToken() {
  return 'ya29.secret-' + crypto.randomBytes(12).toString('hex')
}

function fingerprint(token) {
  return 'sha256:' + crypto.createHash('sha256').update(token).digest('hex').slice(0, 8)
}

/** Subscribes to every documented channel; `events` lists { name, message, fields } in order. */
function record(t) {
  const events = []
  const subscriptions = []
  const on = (name, short) => {
    const channel = dc.channel(name)
    // A copy of the fields as they were when published: a fetch's context is filled in at its end.
    const fn = (message) => events.push({ name: short, message, fields: Object.assign({}, message) })
    channel.subscribe(fn)
    subscriptions.push(() => channel.unsubscribe(fn))
  }
  for (const event of TRACING) on('tracing:yc-metadata-token:fetch:' + event, event)
  for (const event of EVENTS) on('yc-metadata-token:' + event, event)
  t.after(() => subscriptions.forEach((off) => off()))
  const named = (name) => events.filter((e) => e.name === name)
  return {
    events,
    named,
    names: () => events.map((e) => e.name),
    async next(name, count = 1) {
      const until = Date.now() + EVENT_WAIT_MS
      while (named(name).length < count && Date.now() < until) await sleep(10)
      assert.ok(named(name).length >= count, 'no ' + name + ' event came; got ' + events.map((e) => e.name))
      return named(name)[count - 1]
    },
  }
}

/** Every string reachable from `value`: own properties of any kind, getters, errors' messages and stacks. */
function strings(value, seen = new Set(), out = []) {
  if (typeof value === 'string') {
    out.push(value)
    return out
  }
  if (value === null || (typeof value !== 'object' && typeof value !== 'function') || seen.has(value)) return out
  seen.add(value)
  if (value instanceof Error) strings(String(value.stack) + value.message, seen, out)
  if (value instanceof Map || value instanceof Set) for (const entry of value) strings(entry, seen, out)
  for (let o = value; o !== null && o !== Object.prototype && o !== Error.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Reflect.ownKeys(o)) {
      if (key === 'constructor') continue
      let v
      try {
        v = Reflect.get(o, key, value)
      } catch (_) {
        continue
      }
      if (typeof v !== 'function') strings(v, seen, out)
    }
  }
  return out
}

function assertNoToken(events, token) {
  for (const e of events) {
    for (const s of strings(e.message)) assert.ok(!s.includes(token), e.name + ' published the token')
  }
}

function provider(emu, options) {
  return new TokenProvider(Object.assign({ host: emu.address }, options))
}

test('one trace per shared fetch, with what an operator needs, and nothing for a cache hit', async (t) => {
  const token = secretToken()
  await withEmulator({ token, expiresIn: 3600 }, async (emu) => {
    const seen = record(t)
    const p = provider(emu)
    emu.fault({ delayMs: 50 })
    const got = await Promise.all(Array.from({ length: 100 }, () => p.getToken()))
    assert.ok(got.every((g) => g.token === token))
    assert.deepEqual(seen.names(), ['start', 'end', 'asyncStart', 'asyncEnd'])
    const context = seen.events[0].message
    assert.ok(seen.events.every((e) => e.message === context), 'one context object for the whole fetch')
    const [host, port] = emu.address.split(':')
    assert.deepEqual(seen.events[0].fields, {
      provider: p.label,
      driver: DRIVER,
      url: 'http://' + emu.address + '/computeMetadata/v1/instance/service-accounts/default/token',
      serverAddress: host,
      serverPort: Number(port),
      reason: 'first',
      attempts: null,
      status: null,
      errorCode: null,
      expiresInSeconds: null,
      background: null,
      fingerprint: null,
    })
    const end = seen.events[3].fields
    assert.deepEqual(
      [end.attempts, end.status, end.errorCode, end.background, end.fingerprint],
      [1, 200, null, false, fingerprint(token)]
    )
    assert.ok(end.expiresInSeconds > 3590 && end.expiresInSeconds <= 3600, String(end.expiresInSeconds))
    assert.deepEqual(end.result, { fingerprint: fingerprint(token), expiresInSeconds: end.expiresInSeconds })

    await p.getToken()
    assert.equal(seen.events.length, 4, 'a cache hit publishes nothing')

    emu.reset()
    emu.fault({ status: 503, times: 1 })
    await p.getToken({ forceRefresh: true })
    const forced = seen.events.slice(4)
    assert.deepEqual(forced.map((e) => e.name), ['start', 'end', 'asyncStart', 'asyncEnd'])
    assert.equal(forced[0].fields.reason, 'forced')
    assert.deepEqual([forced[3].fields.attempts, forced[3].fields.status], [2, 200])
    assertNoToken(seen.events, token)
  })
})

test('tracingChannel() subscribers see the same fetch (Node 18.19, 20 and newer)', { skip: typeof dc.tracingChannel !== 'function' && 'no tracingChannel on ' + process.version }, async (t) => {
  const token = secretToken()
  await withEmulator({ token }, async (emu) => {
    const calls = []
    const handlers = {}
    for (const event of TRACING) handlers[event] = (context) => calls.push([event, context.reason, context.fingerprint])
    const channel = dc.tracingChannel('yc-metadata-token:fetch')
    channel.subscribe(handlers)
    t.after(() => channel.unsubscribe(handlers))
    await provider(emu).getToken()
    assert.deepEqual(calls, [
      ['start', 'first', null],
      ['end', 'first', null],
      ['asyncStart', 'first', fingerprint(token)],
      ['asyncEnd', 'first', fingerprint(token)],
    ])
  })
})

test('a failed fetch: error, asyncStart, asyncEnd with the callers\' error; then a retry after it', async (t) => {
  const token = secretToken()
  await withEmulator({ token }, async (emu) => {
    const seen = record(t)
    const p = provider(emu)
    emu.fault({ status: 404, times: 1 })
    const rejected = await p.getToken().then(() => null, (err) => err)
    assert.equal(rejected.code, 'ERR_METADATA_NO_SERVICE_ACCOUNT')
    assert.deepEqual(seen.names(), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    const failed = seen.events[2].fields
    assert.equal(failed.error, rejected, 'the error its callers got')
    assert.deepEqual(
      [failed.attempts, failed.status, failed.errorCode, failed.expiresInSeconds, failed.fingerprint, failed.background],
      [1, 404, 'ERR_METADATA_NO_SERVICE_ACCOUNT', null, null, false]
    )
    assert.equal('result' in failed, false)

    await p.getToken()
    assert.equal(seen.events[5].fields.reason, 'retry-after-failure')
    assertNoToken(seen.events, token)
  })
})

test('a fetch whose callers all gave up still ends its trace, as a background one', async (t) => {
  const token = secretToken()
  await withEmulator({ token }, async (emu) => {
    const seen = record(t)
    const p = provider(emu)
    emu.fault({ delayMs: 300 })
    const controller = new AbortController()
    const call = p.getToken({ signal: controller.signal })
    setTimeout(() => controller.abort(), 30)
    await assert.rejects(call, { name: 'AbortError' })
    const end = await seen.next('asyncEnd')
    assert.deepEqual([end.fields.reason, end.fields.background, end.fields.fingerprint], ['first', true, fingerprint(token)])
    assertNoToken(seen.events, token)
  })
})

test('background refresh, static stability, its end, and recovery', async (t) => {
  const token = secretToken()
  // 6-s tokens: no refresh needed for 3 s (the margin is at most half the lifetime), usable for
  // 5.4 s (a tenth of the lifetime is kept as skew). One attempt per fetch keeps failures quick.
  await withEmulator({ token, expiresIn: 6 }, async (emu) => {
    const seen = record(t)
    const p = provider(emu, { maxAttempts: 1 })
    const fetched = Date.now()
    await p.getToken()
    assert.equal(seen.events[0].fields.reason, 'first')

    // A refresh ahead of expiry that fails: callers are answered from memory all along.
    emu.fault({ status: 503, times: 1000 })
    await sleep(3200 - (Date.now() - fetched))
    assert.equal((await p.getToken()).token, token)
    const failed = (await seen.next('background-refresh-failed')).fields
    const trace = seen.named('asyncEnd')[1].fields
    assert.deepEqual(
      [trace.reason, trace.background, trace.errorCode, trace.status, trace.attempts],
      ['refresh-ahead', true, 'ERR_METADATA_STATUS', 503, 1]
    )
    assert.deepEqual(
      [failed.provider, failed.errorCode, failed.status, failed.attempts, failed.consecutiveFailures, failed.fingerprint],
      [p.label, 'ERR_METADATA_STATUS', 503, 1, 1, fingerprint(token)]
    )
    assert.equal(failed.error.code, 'ERR_METADATA_STATUS')
    assert.ok(failed.expiresInSeconds > 0 && failed.expiresInSeconds <= 3, String(failed.expiresInSeconds))
    const order = seen.names()
    assert.ok(order.indexOf('background-refresh-failed') > order.lastIndexOf('asyncEnd'), order.join())

    // Served past its refresh point because the refresh failed (the next refresh waits a second).
    assert.equal((await p.getToken()).token, token)
    const stale = seen.named('served-stale')[0].fields
    assert.deepEqual([stale.provider, stale.fingerprint, stale.consecutiveFailures], [p.label, fingerprint(token), 1])
    assert.ok(stale.expiresInSeconds > 0 && stale.expiresInSeconds <= 3)

    // It runs out while the service still fails: the next caller waits, for an error.
    await sleep(5600 - (Date.now() - fetched))
    await assert.rejects(p.getToken(), { code: 'ERR_METADATA_STATUS' })
    const expired = (await seen.next('expired-while-failing')).fields
    assert.deepEqual(
      [expired.provider, expired.fingerprint, expired.consecutiveFailures, expired.lastErrorCode],
      [p.label, fingerprint(token), 1, 'ERR_METADATA_STATUS']
    )
    assert.equal(seen.named('start')[2].fields.reason, 'expired')

    // The service recovers.
    emu.reset()
    const next = secretToken()
    emu.setToken(next, 6)
    assert.equal((await p.getToken()).token, next)
    const recovered = seen.named('asyncEnd').pop().fields
    assert.deepEqual([recovered.reason, recovered.fingerprint], ['retry-after-failure', fingerprint(next)])
    assert.equal(seen.named('expired-while-failing').length, 1, 'once per token')
    assertNoToken(seen.events, token)
    assertNoToken(seen.events, next)
  })
})

test('a background refresh that succeeds', async (t) => {
  const token = secretToken()
  await withEmulator({ token, expiresIn: 4 }, async (emu) => {
    const seen = record(t)
    const p = provider(emu)
    const fetched = Date.now()
    await p.getToken()
    const next = secretToken()
    emu.setToken(next, 4)
    await sleep(2100 - (Date.now() - fetched))
    assert.equal((await p.getToken()).token, token)
    const refreshed = (await seen.next('background-refresh-succeeded')).fields
    assert.deepEqual([refreshed.provider, refreshed.attempts, refreshed.status, refreshed.fingerprint], [p.label, 1, 200, fingerprint(next)])
    assert.ok(refreshed.expiresInSeconds > 0 && refreshed.expiresInSeconds <= 4)
    const trace = seen.named('asyncEnd')[1].fields
    assert.deepEqual([trace.reason, trace.background, trace.fingerprint], ['refresh-ahead', true, fingerprint(next)])
    assert.equal((await p.getToken()).token, next)
    assertNoToken(seen.events, token)
    assertNoToken(seen.events, next)
  })
})

test('a subscriber that throws breaks neither getToken nor the cache', async () => {
  await withEmulator({ token: 'thrown-past' }, async (emu) => {
    const r = await runNode(
      `const dc = require('diagnostics_channel');
       const names = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'].map((e) => 'tracing:yc-metadata-token:fetch:' + e);
       const channels = names.map((n) => dc.channel(n));
       for (const c of channels) c.subscribe(() => { throw new Error('subscriber bug') });
       let uncaught = 0;
       process.on('uncaughtException', (err) => { if (err.message === 'subscriber bug') uncaught++; else throw err });
       const { TokenProvider } = require('./');
       const p = new TokenProvider({ host: process.env.ADDR });
       (async () => {
         const first = await p.getToken();
         const cached = await p.getToken();
         const forced = await p.getToken({ forceRefresh: true });
         await new Promise((resolve) => setTimeout(resolve, 50));
         console.log(JSON.stringify({ tokens: [first.token, cached.token, forced.token], uncaught, stats: p.stats() }));
       })();`,
      { ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.deepEqual(out.tokens, ['thrown-past', 'thrown-past', 'thrown-past'])
    assert.equal(out.stats.cacheHits, 1)
    assert.equal(out.stats.fetches, 2)
    // Node reports a subscriber's exception as an uncaught exception, after the call is done.
    assert.equal(out.uncaught, 8)
    assert.equal(emu.requests, 2)
  })
})

test('require loads no diagnostics_channel; nobody listening, a fetch publishes nothing', async () => {
  await withEmulator({ token: 'quiet' }, async (emu) => {
    const r = await runNode(
      `const before = process.moduleLoadList.some((m) => /diagnostics_channel/.test(m));
       require('./');
       const atRequire = process.moduleLoadList.some((m) => /diagnostics_channel/.test(m));
       const { TokenProvider } = require('./');
       new TokenProvider({ host: process.env.ADDR }).getToken().then((t) => {
         const dc = require('diagnostics_channel');
         console.log(JSON.stringify({ before, atRequire, token: t.token }));
       });`,
      { ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.equal(out.token, 'quiet')
    if (!out.before) assert.equal(out.atRequire, false, 'diagnostics_channel is loaded by the first fetch, not by require')
  })
})

test('worker threads: a shared fetch is published in the thread that started it', async () => {
  await withEmulator({ token: 'shared-by-threads' }, async (emu) => {
    emu.fault({ delayMs: 400 })
    const r = await runNode(
      `const { Worker } = require('worker_threads');
       const dc = require('diagnostics_channel');
       const main = [];
       dc.channel('tracing:yc-metadata-token:fetch:start').subscribe((c) => main.push('start ' + c.reason));
       dc.channel('tracing:yc-metadata-token:fetch:asyncEnd').subscribe((c) => main.push('asyncEnd ' + c.reason));
       const w = new Worker(\`
         const dc = require('diagnostics_channel');
         const { parentPort } = require('worker_threads');
         const seen = [];
         dc.channel('tracing:yc-metadata-token:fetch:start').subscribe((c) => { seen.push('start ' + c.reason); parentPort.postMessage('started') });
         dc.channel('tracing:yc-metadata-token:fetch:asyncEnd').subscribe((c) => seen.push('asyncEnd ' + c.reason));
         require('./').getToken().then(() => parentPort.postMessage(seen));
       \`, { eval: true });
       w.once('message', () => {
         // Listening for the worker's report before the main thread's own call: with one cache per
         // thread (wasm) the worker's fetch can end first, and a message nobody listens for is lost.
         const report = new Promise((resolve) => w.once('message', resolve));
         Promise.all([require('./').getToken(), report]).then(([, worker]) => console.log(JSON.stringify({ main, worker })));
       });`,
      { YC_METADATA_ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.deepEqual(out.worker, ['start first', 'asyncEnd first'])
    if (DRIVER === 'native') {
      // One cache for the process: the main thread joined the worker's fetch and saw nothing.
      assert.deepEqual(out.main, [])
      assert.equal(emu.requests, 1)
    } else {
      // One cache per thread (README, "Two drivers"): each thread fetched and saw its own.
      assert.deepEqual(out.main, ['start first', 'asyncEnd first'])
      assert.equal(emu.requests, 2)
    }
  })
})

test('a subscriber and a background refresh under way keep no process alive', async () => {
  await withEmulator({ token: 'exits', expiresIn: 2 }, async (emu) => {
    const r = await runNode(
      `const dc = require('diagnostics_channel');
       for (const e of ['start', 'asyncEnd']) dc.channel('tracing:yc-metadata-token:fetch:' + e).subscribe(() => {});
       dc.channel('yc-metadata-token:background-refresh-failed').subscribe(() => {});
       const { getToken } = require('./');
       getToken().then(() => new Promise((resolve) => setTimeout(resolve, 1100))).then(async () => {
         await fetch('http://' + process.env.YC_METADATA_ADDR + '/_emulator/fault', {
           method: 'POST', headers: { 'Metadata-Flavor': 'Google', 'content-type': 'application/json' },
           body: JSON.stringify({ delayMs: 30000 }),
         });
         const t = await getToken();
         console.log(t.token);
       });`,
      { YC_METADATA_ADDR: emu.address },
      // The refresh under way waits 30 s for its answer: a process that waited for it would be killed.
      10000
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'exits')
    assert.equal(emu.requests, 2, 'the background refresh was under way')
  })
})
