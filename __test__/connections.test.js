'use strict'

// The connection under the requests: kept for the next request when the answer allows it, given
// up when it does not, and replaced when the server closed it just as a request went out.

const test = require('node:test')
const assert = require('node:assert/strict')
const { peerServer } = require('./helpers')
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
    // The wasm driver sends the request again at once, within the attempt; the native one
    // (hyper's pool) reports the attempt as failed and our retry policy makes another.
    const { retries } = provider.stats()
    if (provider.stats().driver === 'wasm') assert.equal(retries, 0)
    else assert.equal(retries, 1)
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
