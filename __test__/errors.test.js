'use strict'

// Every error code provoked for real against the emulator, and the attempt done right: no proxy,
// no redirect, a capped body.

const test = require('node:test')
const assert = require('node:assert/strict')
const { withEmulator, closedPort, trapServer, peerServer, runNode } = require('./helpers')
const { TokenProvider } = require('..')

const SECRET = 'secret-token-must-not-leak'

async function rejection(promise) {
  try {
    await promise
  } catch (err) {
    return err
  }
  assert.fail('expected a rejection')
}

function assertClean(err, code) {
  assert.equal(err.code, code, err.message)
  assert.ok(err instanceof Error)
  assert.doesNotMatch(err.message, new RegExp(SECRET))
  assert.doesNotMatch(String(err.stack), new RegExp(SECRET))
}

test('ERR_METADATA_UNREACHABLE: nothing listening, with the URL and the off-cloud hint', async () => {
  const port = await closedPort()
  const err = await rejection(new TokenProvider({ host: '127.0.0.1:' + port }).getToken())
  assertClean(err, 'ERR_METADATA_UNREACHABLE')
  assert.match(err.message, new RegExp('http://127\\.0\\.0\\.1:' + port + '/computeMetadata/v1/'))
  assert.match(err.message, /connection refused/)
  assert.match(err.message, /YC_METADATA_ADDR/)
})

test('ERR_METADATA_TIMEOUT: a server that never answers', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    emu.fault({ hang: true })
    const started = Date.now()
    const provider = new TokenProvider({ host: emu.address, timeoutMs: 100, deadlineMs: 250 })
    const err = await rejection(provider.getToken())
    assertClean(err, 'ERR_METADATA_TIMEOUT')
    assert.ok(Date.now() - started < 2000)
    assert.ok(emu.requests >= 1 && emu.requests <= 3, String(emu.requests))
  })
})

test('ERR_METADATA_NO_SERVICE_ACCOUNT: a 404, not retried, with the hint', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    emu.fault({ status: 404 })
    const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
    assertClean(err, 'ERR_METADATA_NO_SERVICE_ACCOUNT')
    assert.equal(err.status, 404)
    assert.match(err.message, /service account/)
    assert.equal(emu.requests, 1)
  })
})

test('ERR_METADATA_STATUS: other statuses with err.status; 4xx not retried, 5xx retried', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    emu.fault({ status: 401 })
    const err401 = await rejection(new TokenProvider({ host: emu.address }).getToken())
    assertClean(err401, 'ERR_METADATA_STATUS')
    assert.equal(err401.status, 401)
    assert.equal(emu.requests, 1)

    emu.reset()
    emu.fault({ status: 500 })
    const err500 = await rejection(new TokenProvider({ host: emu.address, maxAttempts: 2 }).getToken())
    assertClean(err500, 'ERR_METADATA_STATUS')
    assert.equal(err500.status, 500)
    assert.equal(emu.requests, 2)
  })
})

// Yandex Cloud VMs answer 400 when their GCE-compatible endpoint or token option is off.
test('ERR_METADATA_STATUS 400: not retried, and the hint names both causes with each product\'s setting', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    emu.fault({ status: 400 })
    const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
    assertClean(err, 'ERR_METADATA_STATUS')
    assert.equal(err.status, 400)
    assert.equal(emu.requests, 1)
    assert.match(err.message, /not a metadata service/)
    for (const setting of ['Cloud Functions', 'Serverless Containers', 'VM', 'gceHttpEndpoint', 'gce-http-token']) {
      assert.ok(err.message.includes(setting), setting + ': ' + err.message)
    }
  })
})

test('ERR_METADATA_STATUS 403 from a request without Metadata-Flavor is explained', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    emu.fault({ status: 403 })
    const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
    assertClean(err, 'ERR_METADATA_STATUS')
    assert.equal(err.status, 403)
    assert.match(err.message, /proxy/)
  })
})

const badBodies = [
  ['not JSON', { garbage: true }, /not valid JSON/],
  ['a JSON array', { body: [SECRET] }, /not a JSON object/],
  ['access_token missing', { body: { expires_in: 3600 } }, /access_token is missing/],
  ['access_token a number', { body: { access_token: 42, expires_in: 3600 } }, /access_token must be a string/],
  ['access_token empty', { body: { access_token: '', expires_in: 3600 } }, /access_token is an empty string/],
  ['expires_in missing', { body: { access_token: SECRET } }, /expires_in is missing/],
  ['expires_in a string', { body: { access_token: SECRET, expires_in: '3600' } }, /expires_in must be a number, got string/],
  ['expires_in zero', { body: { access_token: SECRET, expires_in: 0 } }, /expires_in must be positive/],
  ['expires_in negative', { body: { access_token: SECRET, expires_in: -10 } }, /expires_in must be positive/],
  ['expires_in under a second', { body: { access_token: SECRET, expires_in: 0.5 } }, /at least one second/],
  ['a truncated body', { truncate: true }, /not valid JSON/],
  // getAuthorizationHeader() must never make 'Bearer abc, Basic YWRtaW46YWRtaW4='.
  ['access_token with a second credential', { body: { access_token: SECRET + ', Basic YWRtaW46YWRtaW4=', expires_in: 3600 } }, /access_token is not an RFC 6750 b64token/],
  // A latin1 header writer turns U+010D U+010A into CR LF.
  ['access_token with U+010D U+010A', { body: { access_token: SECRET + '\u010D\u010AX-Evil: 1', expires_in: 3600 } }, /RFC 6750 b64token/],
  ['access_token with a space', { body: { access_token: SECRET + ' x', expires_in: 3600 } }, /RFC 6750 b64token/],
  ['access_token with = inside', { body: { access_token: SECRET + '=x', expires_in: 3600 } }, /RFC 6750 b64token/],
]

for (const [name, fault, message] of badBodies) {
  test('ERR_METADATA_BAD_RESPONSE: ' + name + ', named without the token', async () => {
    await withEmulator({ token: SECRET }, async (emu) => {
      emu.fault(fault)
      const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
      assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
      assert.match(err.message, message)
      assert.equal(emu.requests, 1, 'a bad body is not retried')
    })
  })
}

test('a body any JSON parser reads is a token: 3600.0, 3.6e3, a byte-order mark; a fraction rounded down', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    const cases = [
      ['{"access_token":"t1","expires_in":3600.0}', 3600],
      ['{"access_token":"t2","expires_in":3.6e3}', 3600],
      ['\uFEFF{"access_token":"t3","expires_in":3600}', 3600],
      ['\uFEFF{"access_token":"t4","expires_in":3599.9}', 3599],
    ]
    for (const [body, seconds] of cases) {
      emu.fault({ body, times: 1 })
      const t = await new TokenProvider({ host: emu.address }).getToken()
      assert.deepEqual(t, { token: JSON.parse(body.replace(/^\uFEFF/, '')).access_token, expiresInSeconds: seconds }, body)
    }
  })
})

test('a redirect is an error and its target sees no request', async () => {
  await withEmulator({ token: 'redirect-target-token' }, async (target) => {
    await withEmulator({ token: SECRET }, async (emu) => {
      emu.fault({ status: 302, redirect: target.url })
      const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
      assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
      assert.match(err.message, /redirect/)
      assert.equal(target.log.length, 0)
      assert.equal(emu.requests, 1)
    })
  })
})

test('the body is capped: 64 MiB fails fast without the process growing', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    for (const fault of [{ hugeBytes: 64 * 1024 * 1024 }, { hugeChunked: 64 * 1024 * 1024 }]) {
      emu.reset()
      emu.fault(fault)
      const rssBefore = process.memoryUsage().rss
      const started = Date.now()
      const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
      assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
      assert.match(err.message, /larger than 16384 bytes/)
      assert.ok(Date.now() - started < 2000)
      const grewMiB = (process.memoryUsage().rss - rssBefore) / 1024 / 1024
      assert.ok(grewMiB < 8, `RSS grew by ${grewMiB.toFixed(1)} MiB`)
      assert.equal(emu.requests, 1)
    }
  })
})

test('proxy variables are ignored: the trap sees nothing, the token arrives', async () => {
  const trap = await trapServer()
  try {
    await withEmulator({ token: 'direct-token' }, async (emu) => {
      const proxy = 'http://' + trap.address
      const r = await runNode(`require('.').getToken().then(t => console.log(t.token), e => console.log(e.code))`, {
        YC_METADATA_ADDR: emu.address,
        HTTP_PROXY: proxy,
        http_proxy: proxy,
        HTTPS_PROXY: proxy,
        https_proxy: proxy,
        ALL_PROXY: proxy,
        all_proxy: proxy,
        NO_PROXY: '',
      })
      assert.equal(r.stdout.trim(), 'direct-token', r.stderr)
      assert.equal(trap.connections, 0)
      assert.equal(emu.requests, 1)
    })
  } finally {
    await trap.close()
  }
})

test('ERR_INVALID_OPTION: wrong options throw from the constructor, naming the option', () => {
  const cases = [
    [{ host: 'http://x/' }, /option host/],
    [{ host: '' }, /option host/],
    [{ host: 42 }, /option host must be a string, got number/],
    [{ timeoutMs: -1 }, /option timeoutMs/],
    [{ timeoutMs: '100' }, /option timeoutMs must be a number, got string/],
    [{ deadlineMs: Infinity }, /option deadlineMs/],
    [{ maxAttempts: 0 }, /option maxAttempts/],
    [{ maxAttempts: 1.5 }, /option maxAttempts/],
    [{ refreshMarginSeconds: -1 }, /option refreshMarginSeconds/],
    [{ refreshMarginSeconds: true }, /option refreshMarginSeconds must be a number, got boolean/],
    [{ timeoutMS: 10 }, /unknown option "timeoutMS"/],
    ['127.0.0.1:80', /options must be an object/],
  ]
  for (const [options, message] of cases) {
    assert.throws(
      () => new TokenProvider(options),
      (err) => err.code === 'ERR_INVALID_OPTION' && message.test(err.message),
      JSON.stringify(options)
    )
  }
  for (const ok of [undefined, null, {}, { host: undefined }, { host: '[::1]:8080', maxAttempts: 1 }]) {
    assert.doesNotThrow(() => new TokenProvider(ok))
  }
})

// Only constructed, never asked: the old rules took these, and `127.1.` or `2130706433.` then went
// to DNS (the wasm driver), which nothing here may ask.
test('ERR_INVALID_OPTION: a numeric host must be a dotted-quad IPv4 address, and the message says which', () => {
  const cases = [
    ['2130706433', '127.0.0.1'],
    ['2130706433.', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.1.:8080', '127.0.0.1:8080'],
    ['0x7f.0.0.1', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0177.0.0.1.', '127.0.0.1'],
  ]
  for (const [host, form] of cases) {
    assert.throws(() => new TokenProvider({ host }), (err) => {
      assert.equal(err.code, 'ERR_INVALID_OPTION', host)
      assert.ok(err.message.includes('(write ' + form + ')'), err.message)
      return true
    })
  }
  for (const host of ['1.2.3.4.5', '256.1.1.1', 'metadata.1']) {
    assert.throws(() => new TokenProvider({ host }), (err) => err.code === 'ERR_INVALID_OPTION' && /is no IPv4 address/.test(err.message), host)
  }
  for (const host of ['127.0.0.1:000080', '127.0.0.1:' + '0'.repeat(5000) + '80', 'localhost:080']) {
    assert.throws(() => new TokenProvider({ host }), (err) => {
      assert.equal(err.code, 'ERR_INVALID_OPTION', host)
      assert.match(err.message, /without leading zeros \(write (127\.0\.0\.1|localhost):80\)/)
      assert.ok(err.message.length < 700, err.message.length + ' characters')
      return true
    })
  }
  // Names, IPv4 and IPv6 addresses as before.
  for (const host of ['127.0.0.1:8080', '127.0.0.1.', 'metadata.google.internal.', 'a1.b2', '[::1]:8080']) {
    assert.doesNotThrow(() => new TokenProvider({ host }), host)
  }
})

test('ERR_INVALID_OPTION: a numeric host from the environment, refused the same way', async () => {
  const r = await runNode(
    `try { require('.').defaultProvider(); console.log('taken') } catch (e) { console.log(e.code + ' ' + e.message) }`,
    { YC_METADATA_ADDR: '127.1.:8080' }
  )
  assert.match(r.stdout, /^ERR_INVALID_OPTION environment variable YC_METADATA_ADDR .*\(write 127\.0\.0\.1:8080\)/, r.stdout + r.stderr)
})

test('an error message quotes at most ~200 characters of a value, with its length', async () => {
  const huge = 'h'.repeat(50 * 1024 * 1024)
  const mine = new Error('thrown by the caller')
  const cases = [
    [{ host: huge }, /^option host must be .*: "h{200}"… \(52428800 characters in all\)$/],
    [{ ['k'.repeat(1e6)]: 1 }, /^unknown option "k{200}"… \(1000000 characters in all\); the options are/],
    [Object.defineProperty({}, 'g'.repeat(1e6), { enumerable: true, get() { throw mine } }), /^option "g{200}"… \(1000000 characters in all\) could not be read/],
  ]
  for (const [options, message] of cases) {
    assert.throws(() => new TokenProvider(options), (err) => {
      assert.equal(err.code, 'ERR_INVALID_OPTION')
      assert.ok(err.message.length < 700, err.message.length + ' characters')
      assert.match(err.message, message)
      return true
    })
  }
  // The driver variable is read before there is a core: the same rule in JavaScript.
  const r = await runNode(`try { require('.') } catch (e) { console.log(e.code + ' ' + e.message) }`, {
    YC_METADATA_TOKEN_DRIVER: 'd'.repeat(100000),
  })
  assert.match(r.stdout, /^ERR_INVALID_OPTION YC_METADATA_TOKEN_DRIVER must be .*got "d{200}"… \(100000 characters in all\)\n$/, r.stdout.slice(0, 500))
})

test("the caller's own exception reaches them as the cause of ERR_INVALID_OPTION, from the constructor", () => {
  const mine = new Error('thrown by the caller')
  const unreadable = [
    ['a getter', { get host() { throw mine } }],
    ['a Proxy whose ownKeys throws', new Proxy({}, { ownKeys() { throw mine } })],
    ['a Proxy whose get throws', new Proxy({ host: '127.0.0.1:9' }, { get() { throw mine } })],
    ['a Proxy whose getOwnPropertyDescriptor throws', new Proxy({ host: 'x' }, { getOwnPropertyDescriptor() { throw mine } })],
  ]
  for (const [what, options] of unreadable) {
    assert.throws(
      () => new TokenProvider(options),
      (err) => err.code === 'ERR_INVALID_OPTION' && err.cause === mine && /could not be read/.test(err.message),
      what
    )
  }
  // Read once, as they were when passed: a getter that answers is fine.
  let reads = 0
  const counted = { get host() { reads++; return '127.0.0.1:9' } }
  assert.equal(new TokenProvider(counted).toJSON().url, 'http://127.0.0.1:9/computeMetadata/v1/instance/service-accounts/default/token')
  assert.equal(reads, 1)
  assert.doesNotThrow(() => new TokenProvider(Object.assign(Object.create(null), { maxAttempts: 2 })))
})

test("the caller's own exception reaches them from getToken's call options, as a rejection", async () => {
  const mine = new Error('thrown by the caller')
  const provider = new TokenProvider({ host: '127.0.0.1:9' })
  // Read by their own properties only: a Proxy traps their lookup and their reading.
  for (const options of [
    { get forceRefresh() { throw mine } },
    new Proxy({ forceRefresh: true }, { get() { throw mine } }),
    new Proxy({}, { getOwnPropertyDescriptor() { throw mine } }),
    { signal: { get aborted() { throw mine } } },
  ]) {
    let result
    assert.doesNotThrow(() => (result = provider.getToken(options)))
    const err = await rejection(result)
    assert.equal(err.code, 'ERR_INVALID_OPTION')
    assert.equal(err.cause, mine)
  }
})

test('ERR_METADATA_INTERNAL is for real bugs, and then stderr says where, never the message', async () => {
  await withEmulator({ token: SECRET }, async (emu) => {
    // A native error such as napi-rs makes of a caught panic, its message holding response data.
    const r = await runNode(
      `const { Provider } = require('./binding')
       Provider.prototype.peek = function peekBroken() {
         const e = new Error('panicked: ${SECRET}'); e.code = 'GenericFailure'; throw e
       }
       const { TokenProvider } = require('.')
       new TokenProvider({ host: '${emu.address}' }).getToken().then(() => console.log('resolved'), (e) => console.log(e.code))`,
      {}
    )
    assert.equal(r.stdout.trim(), 'ERR_METADATA_INTERNAL', r.stderr)
    assert.match(r.stderr, /ERR_METADATA_INTERNAL/)
    assert.match(r.stderr, /Error \(code GenericFailure\)/)
    assert.match(r.stderr, /at (NativeProvider\.|WasmProvider\.)?peekBroken/)
    assert.match(r.stderr, /index\.js:\d+/)
    assert.match(r.stderr, /yc-metadata-token \d+\.\d+\.\d+, Node v\d+/)
    assert.doesNotMatch(r.stderr, new RegExp(SECRET))
  })
})

test('ERR_INVALID_OPTION: wrong call options reject', async () => {
  const provider = new TokenProvider({ host: '127.0.0.1:9' })
  for (const options of ['force', { forceRefresh: 1 }, { signal: {} }]) {
    const err = await rejection(provider.getToken(options))
    assert.equal(err.code, 'ERR_INVALID_OPTION')
  }
})

test('ERR_METADATA_BAD_RESPONSE, not retried: a peer that does not speak HTTP', async () => {
  const banners = {
    ssh: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n',
    redis: "-ERR unknown command 'GET', with args beginning with: '/computeMetadata/v1/...'\r\n",
    garbage: Buffer.from([0, 1, 2, 0xff, 0xfe, 13, 10, 13, 10]),
  }
  for (const [name, banner] of Object.entries(banners)) {
    // As real servers do: the banner, then the connection stays open (a peer that closed at once
    // could have its reset reach the client before the banner is read).
    const server = await peerServer((socket) => socket.write(banner))
    try {
      const err = await rejection(new TokenProvider({ host: server.address }).getToken())
      assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
      assert.match(err.message, /not HTTP/, name)
      assert.doesNotMatch(err.message, /start the emulator|npx yc-metadata-token emulator/, name)
      // Not retried: one connection.
      assert.equal(server.connections, 1, name)
    } finally {
      await server.close()
    }
  }
})

// What made the wasm driver open a second connection now and then under load: the answer was
// waiting when the thread came back from other work, but the attempt's timer ran first (timers come
// before I/O in an event loop turn) and called it a timeout, which is retried. The native driver
// reads on a thread of its own. Here the thread is kept busy for twice the attempt's timeout:
// after the peer's banner is sent, and (the peer in a process of its own) from the call on, so
// that the connect completes while the thread is busy too.
test('an answer that came while the thread was busy is read, not timed out: one connection', async () => {
  const TIMEOUT_MS = 400
  const busy = () => {
    const until = Date.now() + 2 * TIMEOUT_MS
    while (Date.now() < until);
  }
  const server = await peerServer((socket) => {
    socket.write('SSH-2.0-OpenSSH_9.2p1\r\n')
    busy()
  })
  try {
    const err = await rejection(new TokenProvider({ host: server.address, timeoutMs: TIMEOUT_MS }).getToken())
    assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
    assert.match(err.message, /not HTTP/)
    assert.equal(server.connections, 1)
  } finally {
    await server.close()
  }
  const { spawn } = require('child_process')
  const peer = spawn(process.execPath, ['-e', `
    let connections = 0
    const server = require('net').createServer((socket) => {
      connections++
      socket.on('error', () => {})
      socket.write('SSH-2.0-OpenSSH_9.2p1\\r\\n')
    })
    server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'))
    process.stdin.on('data', () => process.stdout.write(connections + '\\n'))
    process.stdin.on('end', () => process.exit(0))`], { stdio: ['pipe', 'pipe', 'inherit'] })
  const line = () => new Promise((resolve) => peer.stdout.once('data', (d) => resolve(String(d).trim())))
  try {
    const port = await line()
    const call = rejection(new TokenProvider({ host: '127.0.0.1:' + port, timeoutMs: TIMEOUT_MS }).getToken())
    setImmediate(busy)
    const err = await call
    assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
    peer.stdin.write('connections?\n')
    assert.equal(await line(), '1')
  } finally {
    peer.stdin.end()
  }
})

test('a connection closed before any byte, or mid-body, stays ERR_METADATA_UNREACHABLE and is retried', async () => {
  const silent = await peerServer((socket) => socket.end())
  const cut = await peerServer((socket) =>
    socket.end('HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 100\r\n\r\n{"access_token"'))
  try {
    for (const server of [silent, cut]) {
      const err = await rejection(new TokenProvider({ host: server.address, maxAttempts: 2 }).getToken())
      assertClean(err, 'ERR_METADATA_UNREACHABLE')
      assert.equal(server.connections, 2, 'retried')
    }
  } finally {
    await silent.close()
    await cut.close()
  }
})

test("a plain web server's 404 (no Metadata-Flavor) is ERR_METADATA_BAD_RESPONSE, not a missing service account", async () => {
  const http = require('http')
  const server = http.createServer((req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>404 Not Found</h1>'))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const err = await rejection(new TokenProvider({ host: '127.0.0.1:' + server.address().port }).getToken())
    assertClean(err, 'ERR_METADATA_BAD_RESPONSE')
    assert.match(err.message, /not a metadata service/)
    // A Cloud Function whose GCE-compatible endpoint is off answers 404 too.
    for (const setting of ['Cloud Functions', 'Serverless Containers', 'VM', 'gceHttpEndpoint', 'gce-http-token']) {
      assert.ok(err.message.includes(setting), setting + ': ' + err.message)
    }
  } finally {
    // The client keeps its connection alive: close it from this side.
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  // From a metadata service, the hint names both causes Yandex Cloud has.
  await withEmulator({}, async (emu) => {
    emu.fault({ status: 404 })
    const err = await rejection(new TokenProvider({ host: emu.address }).getToken())
    assertClean(err, 'ERR_METADATA_NO_SERVICE_ACCOUNT')
    assert.match(err.message, /service account/)
    assert.match(err.message, /gceHttpEndpoint/)
  })
})
