'use strict'

// The token lifecycle rules of DESIGN.md, each against the emulator with short-lived tokens.

const test = require('node:test')
const assert = require('node:assert/strict')
const { setTimeout: sleep } = require('node:timers/promises')
const { withEmulator, closedPort, runNode } = require('./helpers')
const { TokenProvider } = require('..')

test('10 000 concurrent calls on a cold provider make one request and get one token', async () => {
  await withEmulator({ token: 'cold-token' }, async (emu) => {
    emu.fault({ delayMs: 50 })
    const provider = new TokenProvider({ host: emu.address })
    const all = await Promise.all(Array.from({ length: 10000 }, () => provider.getToken()))
    assert.equal(emu.requests, 1)
    assert.ok(all.every((t) => t.token === 'cold-token' && t.expiresInSeconds > 0))
  })
})

// The wasm driver's instance belongs to one thread: each worker has its own cache (README).
const WASM = process.env.YC_METADATA_TOKEN_DRIVER === 'wasm'

test('8 worker threads calling the default getToken make one request', {
  skip: WASM && 'the wasm driver has one cache per thread (README, "Two drivers"); the native driver shares one',
}, async () => {
  await withEmulator({ token: 'worker-token' }, async (emu) => {
    emu.fault({ delayMs: 100 })
    const r = await runNode(
      `const { Worker } = require('worker_threads');
       const code = "require('./').getToken().then(t => require('worker_threads').parentPort.postMessage(t.token))";
       const got = Array.from({ length: 8 }, () => new Promise((resolve, reject) => {
         const w = new Worker(code, { eval: true });
         w.once('message', resolve); w.once('error', reject);
       }));
       Promise.all(got).then(tokens => console.log(tokens.join(',')));`,
      { YC_METADATA_ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), Array(8).fill('worker-token').join(','))
    assert.equal(emu.requests, 1)
  })
})

test('two 503s then 200: success after 3 requests; a 404: one request', async () => {
  await withEmulator({ token: 'after-503' }, async (emu) => {
    emu.fault({ status: 503, times: 2 })
    const got = await new TokenProvider({ host: emu.address }).getToken()
    assert.equal(got.token, 'after-503')
    assert.equal(emu.requests, 3)
    emu.reset()
    emu.fault({ status: 404 })
    await assert.rejects(new TokenProvider({ host: emu.address }).getToken(), { code: 'ERR_METADATA_NO_SERVICE_ACCOUNT' })
    assert.equal(emu.requests, 1)
  })
})

test('nothing listening: the default settings reject in under 2 s', async () => {
  const port = await closedPort()
  const started = Date.now()
  await assert.rejects(new TokenProvider({ host: '127.0.0.1:' + port }).getToken(), { code: 'ERR_METADATA_UNREACHABLE' })
  assert.ok(Date.now() - started < 2000, `${Date.now() - started} ms`)
})

test('a server that never answers: ERR_METADATA_TIMEOUT within the deadline', async () => {
  await withEmulator({}, async (emu) => {
    emu.fault({ hang: true })
    const started = Date.now()
    const provider = new TokenProvider({ host: emu.address, timeoutMs: 200, deadlineMs: 600 })
    await assert.rejects(provider.getToken(), { code: 'ERR_METADATA_TIMEOUT' })
    const took = Date.now() - started
    assert.ok(took >= 200 && took < 1500, `${took} ms`) // at least one attempt; never past the deadline by much
  })
})

test('a fresh token is answered from memory; forceRefresh fetches, sharing one request', async () => {
  await withEmulator({ token: 'a' }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    const first = await provider.getToken()
    for (let i = 0; i < 100; i++) assert.equal((await provider.getToken()).token, 'a')
    assert.equal(emu.requests, 1)
    emu.setToken('b', 3600)
    emu.fault({ delayMs: 30 })
    const forced = await Promise.all([provider.getToken({ forceRefresh: true }), provider.getToken({ forceRefresh: true })])
    assert.deepEqual(forced.map((t) => t.token), ['b', 'b'])
    assert.equal(emu.requests, 2)
    assert.equal(first.expiresInSeconds, 3600)
  })
})

test('inside the margin: the cached token at once, a refresh in the background', async () => {
  // A 4-s token: its margin is half its life (2 s), whatever refreshMarginSeconds says.
  await withEmulator({ token: 'old', expiresIn: 4 }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    await provider.getToken()
    await sleep(2100)
    emu.setToken('new', 4)
    emu.fault({ delayMs: 500 })
    const started = Date.now()
    const during = await provider.getToken()
    assert.ok(Date.now() - started < 100, 'the caller did not wait for the refresh')
    assert.equal(during.token, 'old')
    assert.ok(during.expiresInSeconds >= 1 && during.expiresInSeconds <= 2, String(during.expiresInSeconds))
    assert.equal((await provider.getToken()).token, 'old')
    await sleep(700)
    assert.equal((await provider.getToken()).token, 'new')
    assert.equal(emu.requests, 2)
  })
})

test('a wall clock stepped back does not stretch the answer from memory', async () => {
  await withEmulator({ token: 'old', expiresIn: 4 }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    await provider.getToken()
    const realNow = Date.now
    Date.now = () => realNow() - 3600 * 1000 // an NTP step an hour back
    try {
      await sleep(2100) // past the 2-s fresh window on the monotonic clock
      emu.setToken('new', 4)
      const got = await provider.getToken()
      // (Only JavaScript's Date.now is stepped here, not the core's clock, so got.expiresInSeconds
      // mixes the two and is not checked.)
      assert.equal(got.token, 'old', 'still valid, so still served')
      await sleep(300)
      assert.equal(emu.requests, 2, 'the refresh started although the wall clock says no time passed')
    } finally {
      Date.now = realNow
    }
  })
})

test('a thread busy when the fetch ends does not stretch the token: late means less time, or a new fetch', async () => {
  await withEmulator({ token: 'busy', expiresIn: 3 }, async (emu) => {
    const busy = (ms) => `const until = Date.now() + ${ms}; while (Date.now() < until) {}`
    const late = await runNode(
      `const p = require('.').getToken(); ${busy(2200)}; p.then(t => console.log(t.expiresInSeconds))`,
      { YC_METADATA_ADDR: emu.address }
    )
    if (WASM) {
      // The wasm driver's request goes out when the thread is free again: its token is fresh,
      // and the busy time did not count against the attempt's timeout.
      assert.equal(late.stdout.trim(), '3', 'a request sent late gets a token counted from then')
    } else {
      assert.equal(late.stdout.trim(), '1', 'the 2.2 s the thread was busy count against the 3-s token')
    }
    assert.equal(emu.requests, 1)
    emu.reset()
    const expired = await runNode(
      `const p = require('.').getToken(); ${busy(3300)}; p.then(t => console.log(t.expiresInSeconds))`,
      { YC_METADATA_ADDR: emu.address }
    )
    assert.equal(expired.stdout.trim(), '3', 'a token that ran out before delivery is fetched again')
    assert.equal(emu.requests, WASM ? 1 : 2)
  })
})

test('an expired token is never returned: callers wait for a new one', async () => {
  await withEmulator({ token: 'short', expiresIn: 1 }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    await provider.getToken()
    await sleep(1000)
    emu.setToken('renewed', 60)
    const got = await provider.getToken()
    assert.equal(got.token, 'renewed')
    assert.equal(emu.requests, 2)
  })
})

test('static stability: a failing refresh never reaches callers while the token is valid', async () => {
  await withEmulator({ token: 'stable', expiresIn: 6 }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address, maxAttempts: 1 })
    await provider.getToken()
    await sleep(3100) // inside the 3-s margin
    emu.fault({ status: 503 })
    for (let i = 0; i < 20; i++) {
      assert.equal((await provider.getToken()).token, 'stable')
      await sleep(50)
    }
    const failedRequests = emu.requests - 1
    assert.ok(failedRequests >= 1 && failedRequests <= 2, `${failedRequests} background requests in 1 s`)
    emu.fault(null)
    emu.setToken('recovered', 60)
    const until = Date.now() + 2500
    let token
    while (Date.now() < until && (token = (await provider.getToken()).token) !== 'recovered') await sleep(100)
    assert.equal(token, 'recovered')
  })
})

test('a short-lived token: expiresInSeconds is always > 0 and the token never expired', async () => {
  await withEmulator({ token: 't0', expiresIn: 2 }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    const issued = new Map([['t0', Date.now()]])
    let n = 0
    const until = Date.now() + 3000
    while (Date.now() < until) {
      const got = await provider.getToken()
      assert.ok(Number.isInteger(got.expiresInSeconds) && got.expiresInSeconds > 0)
      assert.ok(Date.now() < issued.get(got.token) + 2000, 'expired token returned')
      if (++n % 50 === 0) {
        const next = 't' + n
        issued.set(next, Date.now())
        emu.setToken(next, 2)
      }
      await sleep(2)
    }
    // Refreshes at half of each 2-s life, at most one a second in the background.
    assert.ok(emu.requests >= 2 && emu.requests <= 8, String(emu.requests))
  })
})

test('the same near-expiry token handed back does not cause a request storm', async () => {
  await withEmulator({ token: 'same', expiresIn: 6, countdown: true }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    const until = Date.now() + 4500
    while (Date.now() < until) {
      await provider.getToken()
      await sleep(1)
    }
    // 6 s token: refresh at 3 s left, then ~1.5 s, then ~0.75 s — each at least a second apart.
    assert.ok(emu.requests <= 5, String(emu.requests))
  })
})

test('the process exits as soon as it has printed, even with a refresh pending', async () => {
  await withEmulator({ token: 'exit-token', expiresIn: 2 }, async (emu) => {
    const child = runNode(
      `const { getToken } = require('.');
       getToken().then(async () => {
         await new Promise(r => setTimeout(r, 1100)); // inside the 1-s margin of a 2-s token
         const t = await getToken();                   // starts a background refresh that hangs
         console.log('printed ' + t.expiresInSeconds);
       });`,
      { YC_METADATA_ADDR: emu.address }
    )
    while (emu.requests === 0) await sleep(5)
    emu.fault({ hang: true })
    const r = await child
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^printed 1\n$/)
    assert.ok(r.ms < 5000, `${r.ms} ms`)
    assert.equal(emu.requests, 2, 'the background refresh was under way')
  })
})

test('providers used once and dropped leave no timer once collected (3000 dropped: 0 pending timers)', async () => {
  // Every Node timer is a Timeout object; counting them in a heap snapshot sees unref'd ones too,
  // which process.getActiveResourcesInfo() does not list. The 100 providers kept alive show that
  // the count does see the memo timers.
  const N = 3000
  await withEmulator({ token: 'dropped', expiresIn: 43200 }, async (emu) => {
    const r = await runNode(
      `require('v8').setFlagsFromString('--expose-gc')
       const gc = require('vm').runInNewContext('gc')
       const fs = require('fs'), os = require('os'), path = require('path'), v8 = require('v8')
       const { TokenProvider } = require('.')
       function timeouts() {
         const file = path.join(os.tmpdir(), 'yc-metadata-token-' + process.pid + '.heapsnapshot')
         v8.writeHeapSnapshot(file)
         const snapshot = JSON.parse(fs.readFileSync(file, 'utf8'))
         fs.unlinkSync(file)
         const fields = snapshot.snapshot.meta.node_fields
         const types = snapshot.snapshot.meta.node_types[0]
         const type = fields.indexOf('type'), name = fields.indexOf('name')
         let n = 0
         for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
           if (types[snapshot.nodes[i + type]] === 'object' && snapshot.strings[snapshot.nodes[i + name]] === 'Timeout') n++
         }
         return n
       }
       async function collect() {
         for (let i = 0; i < 4; i++) { gc(); await new Promise((resolve) => setTimeout(resolve, 5)) }
       }
       ;(async () => {
         const batch = () => Array.from({ length: 100 }, () => new TokenProvider())
         const kept = batch()
         await Promise.all(kept.map((p) => p.getToken()))
         // A first round of the same shape: what it leaves is one-time (compiled code, grown
         // pools and wasm memory), not per provider.
         for (let i = 0; i < ${N}; i += 100) await Promise.all(batch().map((p) => p.getToken()))
         await collect()
         const heapBefore = process.memoryUsage().heapUsed
         const timersBefore = timeouts()
         for (let i = 0; i < ${N}; i += 100) await Promise.all(batch().map((p) => p.getToken()))
         await collect()
         const heapAfter = process.memoryUsage().heapUsed
         console.log(JSON.stringify({
           kept: timersBefore, dropped: timeouts() - timersBefore, heapPerDropped: (heapAfter - heapBefore) / ${N}, alive: kept.length,
         }))
       })()`,
      { YC_METADATA_ADDR: emu.address },
      60000
    )
    assert.equal(r.code, 0, r.stderr)
    const got = JSON.parse(r.stdout)
    console.log(`  ${N} providers dropped: ${got.dropped} pending timers, ${got.heapPerDropped.toFixed(0)} B of heap each; ${got.kept} timers for the 100 kept`)
    assert.equal(emu.requests, 2 * N + 100)
    assert.ok(got.kept >= 100, 'the count sees the timers of live providers: ' + got.kept)
    assert.ok(got.dropped <= 10, got.dropped + ' timers left by ' + N + ' dropped providers')
    assert.ok(got.heapPerDropped < 150, got.heapPerDropped + ' B of heap left per dropped provider')
  })
})
