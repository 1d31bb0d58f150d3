'use strict'

// The fault matrix: one test per way the metadata service can be slow, broken, hostile or absent.
// Each asserts the outcome (a token or err.code), an upper bound on the time the call took, and how
// many requests the service saw. Timeouts are set small where a timeout is the point, so the whole
// matrix runs in a few seconds; the bounds are generous for a shared 2-core machine but still far
// below what a missing timeout or an extra retry would cost.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { once } = require('node:events')

const { TokenProvider, CODES } = require('..')
const { startEmulator } = require('../emulator')
const { closedPort } = require('./helpers')

const TOKEN = 'matrix-secret-token-7f3a9c'
/// Every row of the matrix lands here; printed at the end for the closing note.
const rows = []

let emu
test.before(async () => {
  emu = await startEmulator({ token: TOKEN, expiresIn: 3600 })
})
test.after(async () => {
  await emu.close()
  const width = Math.max(...rows.map((r) => r.name.length))
  console.log('\nfault matrix (case | outcome | ms | requests):')
  for (const r of rows) {
    console.log(`  ${r.name.padEnd(width)} | ${r.outcome.padEnd(32)} | ${String(r.ms).padStart(5)} | ${r.requests}`)
  }
})

/**
 * Runs one case: applies `fault` to a fresh emulator state, calls getToken on a fresh provider
 * and records the outcome. `options` go to the provider.
 */
async function run(name, fault, options) {
  emu.reset()
  if (fault) emu.fault(fault)
  const provider = new TokenProvider(Object.assign({ host: emu.address }, options))
  const start = process.hrtime.bigint()
  let outcome
  try {
    outcome = await provider.getToken()
  } catch (err) {
    outcome = err
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  const requests = emu.requests
  rows.push({
    name,
    outcome: outcome instanceof Error ? outcome.code + (outcome.status ? ` (${outcome.status})` : '') : 'token',
    ms: Math.round(ms),
    requests,
  })
  // Whatever happened, the secret is nowhere in what the caller sees.
  if (outcome instanceof Error) {
    assert.ok(!outcome.message.includes(TOKEN), 'the token leaked into the message')
    assert.ok(!outcome.stack.includes(TOKEN), 'the token leaked into the stack')
  }
  return { outcome, ms, requests }
}

function assertToken(r) {
  assert.ok(!(r.outcome instanceof Error), `expected a token, got ${r.outcome && r.outcome.code}: ${r.outcome && r.outcome.message}`)
  assert.equal(r.outcome.token, TOKEN)
  assert.ok(r.outcome.expiresInSeconds > 0 && r.outcome.expiresInSeconds <= 3600)
}

function assertError(r, code) {
  assert.ok(r.outcome instanceof Error, `expected ${code}, got a token`)
  assert.equal(r.outcome.code, code, r.outcome.message)
  assert.equal(r.outcome.name, 'MetadataTokenError')
}

/** A plain HTTP server that counts every request it gets: the place nothing should reach. */
async function startTrap() {
  let hits = 0
  const server = http.createServer((req, res) => {
    hits++
    res.writeHead(200, { 'Content-Type': 'application/json' })
    res.end(JSON.stringify({ access_token: 'trap-token', expires_in: 3600 }))
  })
  // A proxy is sent CONNECT for tunnels; count those too.
  server.on('connect', (req, socket) => {
    hits++
    socket.destroy()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    get hits() {
      return hits
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}

// --- Transport faults ----------------------------------------------------------------------

test('connection refused: retried up to maxAttempts, then ERR_METADATA_UNREACHABLE', async () => {
  const port = await closedPort()
  const provider = new TokenProvider({ host: `127.0.0.1:${port}`, maxAttempts: 5 })
  const start = Date.now()
  const err = await provider.getToken().then(() => null, (e) => e)
  const ms = Date.now() - start
  assert.equal(err.code, CODES.UNREACHABLE, err.message)
  assert.match(err.message, /connection refused/)
  // Nothing listens, so the emulator cannot count: the message carries the attempts made.
  assert.match(err.message, /after 5 attempts/)
  // Backoff waits add up to at most 1.5 s (retry.rs); refused connections take no time.
  assert.ok(ms < 2500, `${ms} ms`)
  rows.push({ name: 'connection refused', outcome: err.code, ms, requests: '5 (attempts; nothing listens)' })
})

test('black hole (no answer at all): each attempt times out, the deadline ends the call', async () => {
  const r = await run('black hole (hang)', { hang: true }, { timeoutMs: 200, deadlineMs: 700, maxAttempts: 10 })
  assertError(r, CODES.TIMEOUT)
  assert.ok(r.ms >= 190 && r.ms < 1500, `${r.ms} ms`)
  // At most deadline / timeout + 1 attempts fit; at least the first one was made.
  assert.ok(r.requests >= 1 && r.requests <= 4, `${r.requests} requests`)
})

test('hang after headers: the timeout covers the body too', async () => {
  const r = await run('hang after headers', { hangAfterHeaders: true }, { timeoutMs: 200, maxAttempts: 2, deadlineMs: 2000 })
  assertError(r, CODES.TIMEOUT)
  assert.ok(r.ms >= 390 && r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 2)
})

test('reset mid-body, every time: retried, then ERR_METADATA_UNREACHABLE', async () => {
  const r = await run('reset mid-body (always)', { resetMidBody: true }, { maxAttempts: 3 })
  assertError(r, CODES.UNREACHABLE)
  assert.match(r.outcome.message, /after 3 attempts/)
  assert.ok(r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 3)
})

test('reset mid-body once: the retry gets the token', async () => {
  const r = await run('reset mid-body (once)', { resetMidBody: true, times: 1 })
  assertToken(r)
  assert.ok(r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 2)
})

test('connection dropped before any answer, twice: the third attempt gets the token', async () => {
  const r = await run('connection dropped (twice)', { dropConnection: true, times: 2 })
  assertToken(r)
  assert.ok(r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 3)
})

test('slow server dribbling bytes past the timeout: ERR_METADATA_TIMEOUT, not a hang', async () => {
  // ~300 bytes at 20 ms each would take 6 s; the 300-ms attempt timeout cuts it off.
  const r = await run('dribble 20 ms/byte (too slow)', { dribbleMs: 20 }, { timeoutMs: 300, maxAttempts: 2, deadlineMs: 2000 })
  assertError(r, CODES.TIMEOUT)
  assert.ok(r.ms >= 590 && r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 2)
})

test('slow server dribbling bytes within the timeout: the token arrives', async () => {
  const r = await run('dribble 1 ms/byte (slow, in time)', { dribbleMs: 1 }, { timeoutMs: 5000, deadlineMs: 6000 })
  assertToken(r)
  assert.ok(r.ms < 5000, `${r.ms} ms`)
  assert.equal(r.requests, 1)
})

test('slow answer (delay under the timeout): one request, the token', async () => {
  const r = await run('delay 300 ms', { delayMs: 300 }, { timeoutMs: 2000 })
  assertToken(r)
  assert.ok(r.ms >= 290 && r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 1)
})

// --- Status codes ----------------------------------------------------------------------------

for (const status of [500, 502, 503]) {
  test(`${status} twice, then success: retried with backoff, the token`, async () => {
    const r = await run(`${status} x2 then 200`, { status, times: 2 })
    assertToken(r)
    // Two backoff waits of at most 100 + 200 ms.
    assert.ok(r.ms < 1500, `${r.ms} ms`)
    assert.equal(r.requests, 3)
  })
}

test('503 forever: ERR_METADATA_STATUS with status 503 after maxAttempts', async () => {
  const r = await run('503 always', { status: 503 }, { maxAttempts: 4 })
  assertError(r, CODES.STATUS)
  assert.equal(r.outcome.status, 503)
  assert.match(r.outcome.message, /after 4 attempts/)
  assert.ok(r.ms < 2000, `${r.ms} ms`)
  assert.equal(r.requests, 4)
})

test('429 then success: retried, the token', async () => {
  const r = await run('429 x1 then 200', { status: 429, times: 1 })
  assertToken(r)
  assert.ok(r.ms < 1500, `${r.ms} ms`)
  assert.equal(r.requests, 2)
})

test('404: ERR_METADATA_NO_SERVICE_ACCOUNT at once, never retried', async () => {
  const r = await run('404', { status: 404 })
  assertError(r, CODES.NO_SERVICE_ACCOUNT)
  assert.equal(r.outcome.status, 404)
  assert.ok(r.ms < 500, `${r.ms} ms`)
  assert.equal(r.requests, 1)
})

test('403: ERR_METADATA_STATUS 403 at once, never retried', async () => {
  const r = await run('403', { status: 403 })
  assertError(r, CODES.STATUS)
  assert.equal(r.outcome.status, 403)
  assert.ok(r.ms < 500, `${r.ms} ms`)
  assert.equal(r.requests, 1)
})

// --- Bodies ----------------------------------------------------------------------------------

const badBodies = [
  ['garbage JSON', { garbage: true }, /not valid JSON/],
  ['truncated body', { truncate: true }, /not valid JSON/],
  ['JSON array', { body: [TOKEN, 3600] }, /not a JSON object/],
  ['access_token a number', { body: { access_token: 12345, expires_in: 3600 } }, /access_token must be a string, got number/],
  ['expires_in a string', { body: { access_token: TOKEN, expires_in: '3600' } }, /expires_in must be a number, got string/],
  ['expires_in null', { body: { access_token: TOKEN, expires_in: null } }, /expires_in must be a number, got null/],
  ['expires_in missing', { body: { access_token: TOKEN } }, /expires_in is missing/],
  ['access_token missing', { body: { expires_in: 3600 } }, /access_token is missing/],
  ['empty token', { body: { access_token: '', expires_in: 3600 } }, /empty/],
  ['token with a newline', { body: { access_token: TOKEN + '\r\nX-Evil: 1', expires_in: 3600 } }, /access_token is not an RFC 6750 b64token/],
  ['expires_in 0', { body: { access_token: TOKEN, expires_in: 0 } }, /positive, got 0/],
  ['expires_in negative', { body: { access_token: TOKEN, expires_in: -60 } }, /negative/],
  ['expires_in under a second', { body: { access_token: TOKEN, expires_in: 0.5 } }, /at least one second/],
  ['expires_in huge', { body: { access_token: TOKEN, expires_in: 1e15 } }, /implausibly large/],
]
for (const [name, fault, why] of badBodies) {
  test(`${name}: ERR_METADATA_BAD_RESPONSE naming the field, one request, not retried`, async () => {
    const r = await run(name, fault)
    assertError(r, CODES.BAD_RESPONSE)
    assert.match(r.outcome.message, why)
    assert.ok(r.ms < 500, `${r.ms} ms`)
    assert.equal(r.requests, 1)
  })
}

test('huge body with Content-Length: rejected from the header, almost nothing read', async () => {
  const r = await run('huge body (Content-Length 100 MB)', { hugeBytes: 100 * 1024 * 1024 })
  assertError(r, CODES.BAD_RESPONSE)
  assert.match(r.outcome.message, /larger than 16384 bytes/)
  assert.ok(r.ms < 1000, `${r.ms} ms`)
  assert.equal(r.requests, 1)
  // The server stops streaming once the client hangs up; far from 100 MB went out.
  assert.ok(emu.bytesStreamed < 16 * 1024 * 1024, `${emu.bytesStreamed} bytes streamed`)
})

test('huge chunked body (no length): cut off at the cap while reading', async () => {
  const r = await run('huge body (chunked 100 MB)', { hugeChunked: 100 * 1024 * 1024 })
  assertError(r, CODES.BAD_RESPONSE)
  assert.match(r.outcome.message, /larger than 16384 bytes/)
  assert.ok(r.ms < 1000, `${r.ms} ms`)
  assert.equal(r.requests, 1)
  assert.ok(emu.bytesStreamed < 16 * 1024 * 1024, `${emu.bytesStreamed} bytes streamed`)
})

// --- Hostile routing -------------------------------------------------------------------------

test('redirect to another server: never followed, ERR_METADATA_BAD_RESPONSE, the target sees nothing', async () => {
  const trap = await startTrap()
  try {
    for (const status of [301, 302, 307, 308]) {
      const r = await run(`redirect ${status}`, { redirect: trap.url + '/steal', status })
      assertError(r, CODES.BAD_RESPONSE)
      assert.match(r.outcome.message, /redirect/)
      assert.ok(r.ms < 500, `${r.ms} ms`)
      assert.equal(r.requests, 1)
    }
    assert.equal(trap.hits, 0, 'the redirect target got a request')
  } finally {
    await trap.close()
  }
})

test('proxy environment variables pointing at a trap: ignored, the token comes straight from the service', async () => {
  // The proxy settings must be in place before the addon makes its HTTP client, so the call runs
  // in a child process started with them.
  const trap = await startTrap()
  try {
    emu.reset()
    const env = Object.assign({}, process.env)
    for (const name of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy']) {
      env[name] = trap.url
    }
    delete env.NO_PROXY
    delete env.no_proxy
    const script = `
      const { TokenProvider } = require(${JSON.stringify(path.join(__dirname, '..'))})
      new TokenProvider({ host: ${JSON.stringify(emu.address)} }).getToken().then(
        (t) => process.stdout.write(JSON.stringify({ ok: t.token === ${JSON.stringify(TOKEN)} })),
        (e) => process.stdout.write(JSON.stringify({ code: e.code })))`
    const start = Date.now()
    const child = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const [code] = await once(child, 'exit')
    const ms = Date.now() - start
    assert.equal(code, 0)
    assert.deepEqual(JSON.parse(out), { ok: true })
    assert.equal(trap.hits, 0, 'a request went through the proxy')
    assert.equal(emu.requests, 1)
    assert.ok(!emu.log[0].headers['x-forwarded-for'] && !emu.log[0].headers.via)
    rows.push({ name: 'proxy env -> trap', outcome: 'token (trap: 0 hits)', ms, requests: emu.requests })
  } finally {
    await trap.close()
  }
})

// --- Recovery --------------------------------------------------------------------------------

test('after a failure the same provider tries again on the next call and gets the token', async () => {
  emu.reset()
  emu.fault({ status: 404, times: 1 })
  const provider = new TokenProvider({ host: emu.address })
  const start = Date.now()
  await assert.rejects(provider.getToken(), { code: CODES.NO_SERVICE_ACCOUNT })
  const t = await provider.getToken()
  const ms = Date.now() - start
  assert.equal(t.token, TOKEN)
  assert.equal(emu.requests, 2)
  assert.ok(ms < 500, `${ms} ms`)
  rows.push({ name: '404 once, then a second call', outcome: 'error, then token', ms, requests: emu.requests })
})

test('the deadline bounds the whole call even with many slow attempts', async () => {
  const r = await run('deadline over slow 503s', { status: 503, delayMs: 150 }, { timeoutMs: 1000, deadlineMs: 600, maxAttempts: 100 })
  assert.ok(r.outcome instanceof Error)
  assert.ok([CODES.STATUS, CODES.TIMEOUT].includes(r.outcome.code), r.outcome.code)
  assert.ok(r.ms < 1200, `${r.ms} ms`)
  assert.ok(r.requests >= 1 && r.requests <= 4, `${r.requests} requests`)
})
