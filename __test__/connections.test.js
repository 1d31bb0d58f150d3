'use strict'

// The connection under the requests: kept for the next request when the answer allows it, given
// up when it does not, and replaced when the server closed it just as a request went out.

const test = require('node:test')
const assert = require('node:assert/strict')
const { peerServer, runNode } = require('./helpers')
const { TokenProvider } = require('..')

const BODY = JSON.stringify({ access_token: 'kept.token', expires_in: 3600, token_type: 'Bearer' })

// A metadata server written by hand: `answer(socket, n)` is called for the n-th request (counted
// across connections, from 1) and writes the reply, or not.
async function server(answer) {
  let requests = 0
  const peer = await peerServer((socket) => {
    let pending = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => {
      pending += chunk
      let end
      while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
        pending = pending.slice(end + 4)
        answer(socket, ++requests)
      }
    })
  })
  return Object.assign(peer, { requests: () => requests })
}

function reply(socket, headers = '') {
  socket.write(
    'HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\n' + headers +
      'Content-Length: ' + BODY.length + '\r\n\r\n' + BODY
  )
}

async function forcedCalls(provider, n) {
  for (let i = 0; i < n; i++) {
    const { token } = await provider.getToken({ forceRefresh: true })
    assert.equal(token, 'kept.token')
  }
}

test('a kept-alive answer keeps its connection for the next request', async () => {
  const peer = await server((socket) => reply(socket))
  try {
    await forcedCalls(new TokenProvider({ host: peer.address }), 3)
    assert.equal(peer.requests(), 3)
    assert.equal(peer.connections, 1)
  } finally {
    await peer.close()
  }
})

test('Connection: close, or a body framed by the end of the connection, is not reused', async () => {
  const closing = await server((socket) => reply(socket, 'Connection: close\r\n'))
  const unframed = await server((socket) => {
    socket.end('HTTP/1.0 200 OK\r\nMetadata-Flavor: Google\r\n\r\n' + BODY)
  })
  try {
    for (const peer of [closing, unframed]) {
      await forcedCalls(new TokenProvider({ host: peer.address }), 2)
      assert.equal(peer.requests(), 2)
      assert.equal(peer.connections, 2)
    }
  } finally {
    await closing.close()
    await unframed.close()
  }
})

test('a kept connection the server closes as the next request arrives: the token still comes, on a new connection', async () => {
  // The race every keep-alive client meets: the server times the idle connection out just as the
  // request goes out. Here it is made certain: the second request's connection is closed unanswered.
  const peer = await server((socket, n) => (n === 2 ? socket.destroy() : reply(socket)))
  try {
    const provider = new TokenProvider({ host: peer.address })
    await forcedCalls(provider, 3)
    assert.equal(peer.connections, 2)
    assert.equal(peer.requests(), 4)
    // Both drivers send the request again at once, within the attempt (the core's
    // fetch::resend_on_new_connection): no retry is spent on it.
    assert.equal(provider.stats().retries, 0)
  } finally {
    await peer.close()
  }
})

test('a connection that fails fresh is an attempt of its own: no silent resend', async () => {
  // Closed unanswered on a new connection: the attempt failed, and the retry policy decides.
  const peer = await server((socket, n) => (n === 1 ? socket.destroy() : reply(socket)))
  try {
    const provider = new TokenProvider({ host: peer.address })
    await forcedCalls(provider, 1)
    assert.equal(peer.requests(), 2)
    assert.equal(provider.stats().retries, 1)
  } finally {
    await peer.close()
  }
})

test('an error status is reported as that status whatever length its body declares', async () => {
  // A proxy's or load balancer's HTML error page can exceed the 16 KiB body cap: the status still
  // decides (503 retried, 404 from the metadata service: no service account), as with hyper.
  const big = 'Content-Length: 20000\r\n\r\n' + 'x'.repeat(100)
  const unavailable = await server((socket) => socket.write('HTTP/1.1 503 Service Unavailable\r\n' + big))
  const missing = await server((socket) => socket.write('HTTP/1.1 404 Not Found\r\nMetadata-Flavor: Google\r\n' + big))
  try {
    const options = { maxAttempts: 2, timeoutMs: 500, deadlineMs: 2000 }
    const a = new TokenProvider({ host: unavailable.address, ...options })
    await assert.rejects(a.getToken(), { code: 'ERR_METADATA_STATUS', status: 503 })
    assert.equal(unavailable.requests(), 2, 'a 503 is retried')
    const b = new TokenProvider({ host: missing.address, ...options })
    await assert.rejects(b.getToken(), { code: 'ERR_METADATA_NO_SERVICE_ACCOUNT', status: 404 })
  } finally {
    await unavailable.close()
    await missing.close()
  }
})

test('wasm: a trap in one provider leaves another provider mid-attempt with an answer, not a hang', async (t) => {
  if (new TokenProvider({ host: '127.0.0.1:1' }).stats().driver !== 'wasm') return t.skip('wasm driver only')
  // A trap (a bug in the core) drops the wasm instance; every provider makes its core again in a
  // new one, which knows nothing of the attempt under way. Provider b's answer arriving there,
  // then its connection closing, must still settle b's callers. The trap is simulated by wrapping
  // the instance's exports: attempt_data throws once, as a trap would.
  const code = `
    const RealInstance = WebAssembly.Instance
    let armed = false
    WebAssembly.Instance = function (module, imports) {
      const real = new RealInstance(module, imports).exports
      const exports = Object.assign({}, real)
      exports.attempt_data = function () {
        if (armed) { armed = false; throw new WebAssembly.RuntimeError('unreachable') }
        return real.attempt_data.apply(null, arguments)
      }
      return { exports }
    }
    const net = require('net')
    const body = JSON.stringify({ access_token: 'b.token', expires_in: 3600 })
    const answer = 'HTTP/1.1 200 OK\\r\\nMetadata-Flavor: Google\\r\\nConnection: close\\r\\nContent-Length: ' + body.length + '\\r\\n\\r\\n' + body
    let releaseB, requestB
    const gotB = new Promise((resolve) => (requestB = resolve))
    const serverA = net.createServer((s) => s.once('data', () => s.end(answer)))
    const serverB = net.createServer((s) => s.once('data', () => { requestB(); releaseB = () => s.end(answer) }))
    const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve('127.0.0.1:' + server.address().port)))
    ;(async () => {
      const { TokenProvider } = require('.')
      const options = { maxAttempts: 1, timeoutMs: 1500, deadlineMs: 2000 }
      const a = new TokenProvider({ host: await listen(serverA), ...options })
      const b = new TokenProvider({ host: await listen(serverB), ...options })
      const pending = b.getToken().then((t) => t.token, (e) => e.code)
      await gotB
      armed = true
      console.log('a ' + await a.getToken().then((t) => t.token, (e) => e.code))
      releaseB()
      const hung = new Promise((resolve) => setTimeout(resolve, 4000, 'hung'))
      console.log('b ' + await Promise.race([pending, hung]))
      process.exit(0)
    })()`
  const r = await runNode(code, { YC_METADATA_TOKEN_DRIVER: 'wasm' })
  const lines = r.stdout.trim().split('\n')
  assert.equal(lines[0], 'a ERR_METADATA_INTERNAL', r.stderr)
  assert.notEqual(lines[1], 'b hung', 'provider b never settled after the trap elsewhere')
  assert.match(lines[1], /^b (b\.token|ERR_METADATA_INTERNAL)$/)
})

test('a status line hyper refuses (a code under 100, a version other than 1.0 or 1.1) is not HTTP in both drivers', async () => {
  for (const line of ['HTTP/1.1 000 Zero', 'HTTP/1.1 099 Low', 'HTTP/1.2 200 OK']) {
    const peer = await server((socket) => {
      socket.write(line + '\r\nMetadata-Flavor: Google\r\nContent-Length: ' + BODY.length + '\r\n\r\n' + BODY)
    })
    try {
      const provider = new TokenProvider({ host: peer.address, maxAttempts: 1 })
      await assert.rejects(provider.getToken(), (err) => {
        assert.equal(err.code, 'ERR_METADATA_BAD_RESPONSE', line + ': ' + err.message)
        assert.match(err.message, /not HTTP/)
        return true
      })
    } finally {
      await peer.close()
    }
  }
})

test('a chunked body with broken framing, or cut by the close: the same error from both drivers', async () => {
  const hex = BODY.length.toString(16)
  const chunked = 'HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nTransfer-Encoding: chunked\r\n\r\n'
  const cases = [
    // Not a chunk size: the peer broke its framing, which another attempt will not mend.
    ['overflowing size', chunked + 'ffffffffffffffffffffffff\r\n', 'ERR_METADATA_BAD_RESPONSE', /not HTTP/, 1],
    ['0x size', chunked + '0x' + hex + '\r\n' + BODY + '\r\n0\r\n\r\n', 'ERR_METADATA_BAD_RESPONSE', /not HTTP/, 1],
    // The last chunk never ends: the connection closed before the whole response arrived.
    ['cut by the close', chunked + hex + '\r\n' + BODY + '\r\n0\r\n', 'ERR_METADATA_UNREACHABLE', /connection closed before the whole response arrived/, 2],
  ]
  for (const [name, answer, code, message, requests] of cases) {
    const peer = await server((socket) => socket.end(answer))
    try {
      const provider = new TokenProvider({ host: peer.address, maxAttempts: 2, timeoutMs: 500, deadlineMs: 2000 })
      await assert.rejects(provider.getToken(), (err) => {
        assert.equal(err.code, code, name + ': ' + err.message)
        assert.match(err.message, message, name)
        return true
      })
      assert.equal(peer.requests(), requests, name)
    } finally {
      await peer.close()
    }
  }
})
