'use strict'

// isAvailable(): true only when the answer carries Metadata-Flavor: Google; false, and fast, for
// everything that is not a metadata service; one probe for any number of callers; the answer
// remembered. Every server here listens on 127.0.0.1; the default address, a black hole and name
// lookups are checked inside a private network namespace (available-netns.test.js).
//
// Each test has a server of its own, so each probe is a new one: the answer is remembered per
// address for the life of the process. So every server stays open to the end of the file (a port
// freed by one test could be given to the next one's server, whose probe would then find the
// answer remembered), and one whose answer should stay remembered is replaced by a plain one.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { once } = require('node:events')
const { isAvailable, CODES } = require('..')
const { startEmulator } = require('../emulator')
const helpers = require('./helpers')

// Every call names its host; should one not, it goes to loopback, never to the default address.
process.env.YC_METADATA_ADDR = '127.0.0.1:9'
delete process.env.GCE_METADATA_HOST

// What the tests listen with, closed when the file is done.
const open = []
test.after(() => Promise.all(open.map((server) => server.close())))

async function emulator() {
  const emu = await startEmulator({})
  open.push(emu)
  return emu
}

async function peerServer(answer) {
  const peer = await helpers.peerServer(answer)
  open.push(peer)
  return peer
}

// Generous bounds for a shared 2-core machine, far below what a retry or a missing timeout costs:
// the default probe time is 400 ms.
const FAST_MS = 250
const WITHIN_DEFAULT_PROBE_MS = 600

async function timed(promise) {
  const start = process.hrtime.bigint()
  const value = await promise
  return { value, ms: Number(process.hrtime.bigint() - start) / 1e6 }
}

/** A plain HTTP server on loopback (on `port`, or any) answering every request with `status` and `headers`. */
async function webServer(status, headers, body = '', port = 0) {
  let requests = 0
  const server = http.createServer((req, res) => {
    requests++
    res.writeHead(status, headers)
    res.end(body)
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  const web = {
    address: '127.0.0.1:' + server.address().port,
    get requests() {
      return requests
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  }
  open.push(web)
  return web
}

test('the emulator is a metadata service: true, from one GET /computeMetadata/v1/ with Metadata-Flavor', async () => {
  const emu = await emulator()
  const { value } = await timed(isAvailable({ host: emu.address }))
  assert.equal(value, true)
  assert.equal(emu.log.length, 1)
  assert.equal(emu.log[0].path, '/computeMetadata/v1/')
  assert.equal(emu.log[0].headers['metadata-flavor'], 'Google')
  assert.equal(emu.requests, 0, 'the token is not asked for')
})

test('YC_METADATA_ADDR names the address when no host option is given', async () => {
  const emu = await emulator()
  const saved = process.env.YC_METADATA_ADDR
  process.env.YC_METADATA_ADDR = emu.address
  try {
    assert.equal(await isAvailable(), true)
    assert.equal(emu.log.length, 1)
  } finally {
    process.env.YC_METADATA_ADDR = saved
  }
})

test('a static web server serving a metadata tree with the header (as nginx with add_header): true', async () => {
  const tree = await webServer(200, { 'Content-Type': 'text/plain', 'Metadata-Flavor': 'Google' }, 'instance/\nproject/\n')
  assert.equal(await isAvailable({ host: tree.address }), true)
})

test('the header is what counts, whatever the status: a 404 or 403 from a metadata service is still one', async () => {
  for (const status of [404, 403]) {
    const server = await webServer(status, { 'Metadata-Flavor': 'Google' })
    assert.equal(await isAvailable({ host: server.address }), true, String(status))
  }
})

test('a web server without the header, or with another value: false at once', async () => {
  for (const headers of [{}, { 'Metadata-Flavor': 'Microsoft' }, { Server: 'nginx' }]) {
    const server = await webServer(200, headers, 'instance/\n')
    const { value, ms } = await timed(isAvailable({ host: server.address }))
    assert.equal(value, false, JSON.stringify(headers))
    assert.ok(ms < FAST_MS, `${ms} ms`)
    assert.equal(server.requests, 1, 'no second try for an answer')
  }
})

test('connection refused: false at once, not an error', async () => {
  // On 127.0.0.2, where no server of this file listens: a port freed here and given to a later
  // server on 127.0.0.1 is another address, whose probe finds no remembered no.
  const port = await helpers.closedPort()
  const { value, ms } = await timed(isAvailable({ host: '127.0.0.2:' + port }))
  assert.equal(value, false)
  assert.ok(ms < FAST_MS, `${ms} ms`)
})

test('a peer that is not HTTP: false at once', async () => {
  const ssh = await peerServer((socket) => socket.write('SSH-2.0-OpenSSH_9.6\r\n'))
  const { value, ms } = await timed(isAvailable({ host: ssh.address }))
  assert.equal(value, false)
  assert.ok(ms < FAST_MS, `${ms} ms`)
  assert.equal(ssh.connections, 1)
})

test('a peer that takes the connection and never answers: false when the probe time is up (the default 400 ms)', async () => {
  const silent = await peerServer(() => {})
  const { value, ms } = await timed(isAvailable({ host: silent.address }))
  assert.equal(value, false)
  assert.ok(ms >= 390 && ms < WITHIN_DEFAULT_PROBE_MS, `${ms} ms`)
  assert.equal(silent.connections, 1, 'the time is spent: no second try')
})

test('timeoutMs sets the probe time', async () => {
  const silent = await peerServer(() => {})
  const { value, ms } = await timed(isAvailable({ host: silent.address, timeoutMs: 100 }))
  assert.equal(value, false)
  assert.ok(ms >= 95 && ms < 350, `${ms} ms`)
})

test('a connection closed before any answer gets one quick second try, and only one', async () => {
  let connections = 0
  const flaky = await peerServer((socket) => {
    if (++connections === 1) return socket.destroy()
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 0\r\n\r\n'))
  })
  const closing = await peerServer((socket) => socket.destroy())
  const { value, ms } = await timed(isAvailable({ host: flaky.address }))
  assert.equal(value, true)
  assert.ok(ms < FAST_MS, `${ms} ms`)
  assert.equal(flaky.connections, 2)
  assert.equal(await isAvailable({ host: closing.address }), false)
  assert.equal(closing.connections, 2)
})

test('1000 concurrent callers share one probe, whatever probe time each gives', async () => {
  const emu = await emulator()
  const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => isAvailable({ host: emu.address, timeoutMs: 300 + i })))
  assert.ok(answers.every((a) => a === true))
  assert.equal(emu.log.length, 1)
})

test('the answer is remembered: a yes for the process (even once the service is gone), a no for a while', async () => {
  const emu = await emulator()
  const host = emu.address
  assert.equal(await isAvailable({ host }), true)
  await emu.close()
  // A plain web server at the address now: the yes stands, and it is not asked.
  const squatter = await webServer(200, {}, '', emu.port)
  assert.equal(await isAvailable({ host }), true)
  assert.equal(squatter.requests, 0)
  const plain = await webServer(200, {})
  assert.equal(await isAvailable({ host: plain.address }), false)
  assert.equal(await isAvailable({ host: plain.address }), false)
  assert.equal(plain.requests, 1, 'the no is remembered (for 5 s: src/core/probe.rs tests the time)')
})

test('bad options reject with ERR_INVALID_OPTION; nothing is sent', async () => {
  for (const [options, why] of [
    [{ host: 'http://127.0.0.1:1' }, /option host/],
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ timeoutMs: 'fast' }, /timeoutMs must be a number/],
    [{ deadlineMs: 100 }, /unknown option "deadlineMs" of isAvailable/],
    ['127.0.0.1:1', /options must be an object/],
  ]) {
    await assert.rejects(isAvailable(options), (err) => {
      assert.equal(err.code, CODES.INVALID_OPTION)
      assert.equal(err.name, 'MetadataTokenError')
      assert.match(err.message, why)
      return true
    })
  }
})
