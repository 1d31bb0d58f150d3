'use strict'

// The same bytes on the wire from both drivers (issue 17, item 9): each writes the request head
// the core builds (fetch::request_head), so a server, a firewall rule or a capture cannot tell
// them apart. Captured on a raw listener, header order and case included.

const test = require('node:test')
const assert = require('assert/strict')
const net = require('net')
const { runNode } = require('./helpers')
const { version } = require('../package.json')

const BODY = '{"access_token":"t1.wire","expires_in":3600}'

/** A raw listener that records the first request's bytes and answers a token. */
async function recorder() {
  const requests = []
  const server = net.createServer((socket) => {
    let bytes = Buffer.alloc(0)
    socket.on('data', (chunk) => {
      bytes = Buffer.concat([bytes, chunk])
      if (bytes.includes('\r\n\r\n')) {
        requests.push(bytes.toString('latin1'))
        socket.end('HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: ' + BODY.length + '\r\n\r\n' + BODY)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: server.address().port, requests, close: () => new Promise((resolve) => server.close(resolve)) }
}

async function requestOf(driver, host) {
  const r = await runNode(
    "require('./').getToken().then((t) => console.log(t.token), (e) => { console.error(e.code); process.exit(1) })",
    { YC_METADATA_TOKEN_DRIVER: driver, YC_METADATA_ADDR: host },
  )
  assert.equal(r.code, 0, driver + ': ' + r.stderr)
  assert.equal(r.stdout.trim(), 't1.wire')
}

// The test drives both drivers itself: it runs in the native pass of the suite only.
const skip = process.env.YC_METADATA_TOKEN_DRIVER === 'wasm' && 'runs both drivers itself, in the native pass'

test('both drivers send the same request bytes: Host, Metadata-Flavor, User-Agent, nothing else', { skip }, async () => {
  const server = await recorder()
  try {
    for (const host of ['127.0.0.1:' + server.port, 'localhost:' + server.port]) {
      server.requests.length = 0
      await requestOf('native', host)
      await requestOf('wasm', host)
      assert.equal(server.requests.length, 2)
      const [native, wasm] = server.requests
      assert.equal(native, wasm)
      assert.equal(
        native,
        'GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1\r\n' +
          'Host: ' + host + '\r\n' +
          'Metadata-Flavor: Google\r\n' +
          'User-Agent: yc-metadata-token/' + version + '\r\n\r\n',
      )
    }
  } finally {
    await server.close()
  }
})
