'use strict'

// getMetadata(key, options): the keys the emulator serves (GCE's and Yandex Cloud's, one test
// each), JSON and recursive reads, keys that could leave /computeMetadata/v1/ refused before
// anything is sent, a missing key, one request for concurrent reads, the opt-in cache, and the
// hostile servers the token path is held to. Every server listens on 127.0.0.1.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const { getMetadata, isAvailable, CODES } = require('..')
const { startEmulator } = require('../emulator')
const { closedPort, peerServer } = require('./helpers')

// Every call names its host; should one not, it goes to loopback, never to the default address.
process.env.YC_METADATA_ADDR = '127.0.0.1:9'
delete process.env.GCE_METADATA_HOST

const FOLDER = 'b1gfolder0123456789a'
const CLOUD = 'b1gcloud0123456789ab'
const INSTANCE = 'fhm0instance0000001'
const SECRET = 'metadata-secret-value-9f2c'

let emu
test.before(async () => {
  emu = await startEmulator({
    folderId: FOLDER,
    cloudId: CLOUD,
    metadata: { instance: { id: INSTANCE, attributes: { 'user-data': '#cloud-config\nruncmd: []\n' } } },
  })
})
test.after(() => emu.close())

/** Reads `key` from the emulator; the requests the emulator saw for it. */
async function read(key, options) {
  emu.reset()
  const value = await getMetadata(key, Object.assign({ host: emu.address }, options))
  return { value, requests: emu.log.map((e) => e.path) }
}

// ---- the keys the emulator serves -------------------------------------------------------------

const KEYS = [
  ['instance/id', INSTANCE],
  ['instance/zone', 'projects/' + FOLDER + '/zones/ru-central1-a'],
  ['instance/hostname', 'emulator.ru-central1.internal'],
  ['instance/name', 'emulator'],
  ['instance/service-accounts/default/email', 'emulator@' + FOLDER + '.iam.gserviceaccount.com'],
  ['instance/attributes/user-data', '#cloud-config\nruncmd: []\n'],
  ['project/project-id', FOLDER],
  ['instance/vendor/folder-id', FOLDER],
  ['instance/vendor/cloud-id', CLOUD],
  ['yandex/folder-id', FOLDER],
]
for (const [key, expected] of KEYS) {
  test(`${key}: its text, from one GET of /computeMetadata/v1/${key}`, async () => {
    const r = await read(key)
    assert.equal(r.value, expected)
    assert.deepEqual(r.requests, ['/computeMetadata/v1/' + key])
  })
}

test('instance/vendor/identity/document with json: the identity document as an object', async () => {
  const r = await read('instance/vendor/identity/document', { json: true })
  assert.equal(r.value.instanceId, INSTANCE)
  assert.equal(typeof r.value.createdAt, 'string')
  const text = await getMetadata('instance/vendor/identity/document', { host: emu.address })
  assert.deepEqual(JSON.parse(text), r.value)
})

test('a directory, listed as text; recursive, as an object; recursive with json: false, as its JSON text', async () => {
  const listing = await read('instance/vendor/')
  assert.equal(listing.value, 'cloud-id\nfolder-id\nidentity/\n')
  const tree = await read('instance/', { recursive: true })
  assert.deepEqual(tree.requests, ['/computeMetadata/v1/instance/?recursive=true'])
  assert.equal(tree.value.id, INSTANCE)
  assert.equal(tree.value.vendor.folderId, FOLDER)
  assert.equal(tree.value.serviceAccounts.default.email, 'emulator@' + FOLDER + '.iam.gserviceaccount.com')
  const text = await read('instance/', { recursive: true, json: false })
  assert.equal(typeof text.value, 'string')
  assert.deepEqual(JSON.parse(text.value), tree.value)
  // json: true on a leaf whose text is JSON: what it says.
  assert.equal(await getMetadata('project/numeric-project-id', { host: emu.address, json: true }), 0)
})

test('isAvailable() is true against the emulator', async () => {
  assert.equal(await isAvailable({ host: emu.address }), true)
})

test('the emulator takes the folder and cloud as options (--folder-id, --cloud-id), and only IDs', async () => {
  const { parseArgs } = require('../emulator/cli')
  const args = parseArgs(['--folder-id', FOLDER, '--cloud-id=' + CLOUD])
  assert.equal(args['folder-id'], FOLDER)
  assert.equal(args['cloud-id'], CLOUD)
  for (const options of [{ folderId: 'a/b' }, { cloudId: '' }, { folderId: 42 }]) {
    assert.throws(() => startEmulator(options), { code: 'ERR_INVALID_OPTION' }, JSON.stringify(options))
  }
  const defaults = await startEmulator({})
  try {
    assert.equal(await getMetadata('instance/vendor/folder-id', { host: defaults.address }), 'emulator-folder')
    assert.equal(await getMetadata('instance/vendor/cloud-id', { host: defaults.address }), 'emulator-cloud')
  } finally {
    await defaults.close()
  }
})

// ---- keys refused ------------------------------------------------------------------------------

test('keys that could leave /computeMetadata/v1/ are refused with ERR_INVALID_OPTION, nothing on the wire', async () => {
  const trap = await peerServer((socket) => socket.destroy())
  try {
    for (const key of [
      '../token', 'instance/../../etc', '..', 'instance/./id', '%2e%2e/x', 'instance/%2E%2E/id', 'instance/id?alt=json',
      'instance/id#frag', 'instance/id\r\nX-Evil: 1', 'instance/id\n', 'instance\\..\\id', 'http://127.0.0.1:1/x',
      '//127.0.0.1/x', '/instance/id', 'instance//id', 'instance/id x', 'instance/service-accounts/default/token', '',
      'a/'.repeat(600),
    ]) {
      await assert.rejects(getMetadata(key, { host: trap.address }), (err) => {
        assert.equal(err.code, CODES.INVALID_OPTION, JSON.stringify(key))
        assert.equal(err.name, 'MetadataTokenError')
        return true
      })
    }
    for (const key of [undefined, null, 42, {}, ['instance/id']]) {
      await assert.rejects(getMetadata(key, { host: trap.address }), { code: CODES.INVALID_OPTION, message: /key must be a string/ })
    }
    assert.equal(trap.connections, 0, 'a refused key sent nothing')
  } finally {
    await trap.close()
  }
})

test('options: typed, named, and refused before anything is sent', async () => {
  for (const [options, why] of [
    [{ recursive: 'yes' }, /option recursive must be a boolean, got string/],
    [{ json: 1 }, /option json must be a boolean, got number/],
    [{ cache: null, refreshMarginSeconds: 10 }, /unknown option "refreshMarginSeconds" of getMetadata/],
    [{ host: 'http://127.0.0.1:1' }, /option host/],
    [{ timeoutMs: -1 }, /timeoutMs/],
    [{ maxAttempts: 0.5 }, /maxAttempts/],
    [7, /options must be an object, got number/],
  ]) {
    await assert.rejects(getMetadata('instance/id', options), (err) => {
      assert.equal(err.code, CODES.INVALID_OPTION)
      assert.match(err.message, why)
      return true
    })
  }
})

// ---- what an answer means ----------------------------------------------------------------------

test('a missing key: ERR_METADATA_NOT_FOUND with status 404, at once, one request', async () => {
  emu.reset()
  const start = Date.now()
  await assert.rejects(getMetadata('instance/attributes/missing', { host: emu.address }), (err) => {
    assert.equal(err.code, CODES.NOT_FOUND)
    assert.equal(err.status, 404)
    assert.match(err.message, /instance\/attributes\/missing/)
    return true
  })
  assert.ok(Date.now() - start < 500)
  assert.equal(emu.log.length, 1)
})

test('concurrent reads of one key share one request; another key is another', async () => {
  emu.reset()
  const reads = []
  for (let i = 0; i < 200; i++) reads.push(getMetadata('instance/id', { host: emu.address }))
  reads.push(getMetadata('instance/zone', { host: emu.address }))
  const values = await Promise.all(reads)
  assert.ok(values.slice(0, 200).every((v) => v === INSTANCE))
  assert.equal(emu.log.length, 2)
})

test('cache: true remembers a value and takes it; a read without it always asks', async () => {
  emu.reset()
  assert.equal(await getMetadata('instance/name', { host: emu.address, cache: true }), 'emulator')
  assert.equal(await getMetadata('instance/name', { host: emu.address, cache: true }), 'emulator')
  // Remembered for the address, whatever the timeouts of the call.
  assert.equal(await getMetadata('instance/name', { host: emu.address, cache: true, deadlineMs: 1234 }), 'emulator')
  assert.equal(emu.log.length, 1)
  assert.equal(await getMetadata('instance/name', { host: emu.address }), 'emulator')
  assert.equal(await getMetadata('instance/hostname', { host: emu.address }), 'emulator.ru-central1.internal')
  assert.equal(await getMetadata('instance/hostname', { host: emu.address }), 'emulator.ru-central1.internal')
  assert.equal(emu.log.length, 4)
})

// ---- hostile servers, as the token path (faults.test.js) -----------------------------------------

/** A server on loopback answering each request with `respond(socket, n)` (n counts requests from 1). */
async function rawServer(respond) {
  let requests = 0
  const server = await peerServer((socket) => {
    let head = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => {
      head += chunk
      if (head.includes('\r\n\r\n')) {
        head = ''
        respond(socket, ++requests)
      }
    })
  })
  return Object.assign(server, { requests: () => requests })
}

function answer(status, headers, body) {
  return 'HTTP/1.1 ' + status + '\r\n' + headers.map((h) => h + '\r\n').join('') + 'Content-Length: ' + Buffer.byteLength(body) + '\r\n\r\n' + body
}

async function failure(server, key, options) {
  const start = Date.now()
  const err = await getMetadata(key || 'instance/id', Object.assign({ host: server.address }, options)).then(
    (value) => assert.fail('expected an error, got ' + JSON.stringify(value)),
    (e) => e
  )
  assert.ok(!err.message.includes(SECRET) && !String(err.stack).includes(SECRET), 'the body leaked into the error')
  return Object.assign(err, { ms: Date.now() - start })
}

test('a 200 without Metadata-Flavor: Google is not a metadata service (ERR_METADATA_BAD_RESPONSE), not retried', async () => {
  const server = await rawServer((s) => s.end(answer('200 OK', [], SECRET)))
  try {
    const err = await failure(server)
    assert.equal(err.code, CODES.BAD_RESPONSE)
    assert.match(err.message, /Metadata-Flavor/)
    assert.equal(server.requests(), 1)
  } finally {
    await server.close()
  }
})

test('a 404 page from a plain web server is a bad response, not a missing key', async () => {
  const server = await rawServer((s) => s.end(answer('404 Not Found', [], '<h1>' + SECRET + '</h1>')))
  try {
    const err = await failure(server)
    assert.equal(err.code, CODES.BAD_RESPONSE)
    assert.match(err.message, /not a metadata service/)
  } finally {
    await server.close()
  }
})

test('a redirect is never followed: ERR_METADATA_BAD_RESPONSE, the target sees nothing', async () => {
  const target = await peerServer((socket) => socket.destroy())
  const server = await rawServer((s) =>
    s.end(answer('301 Moved Permanently', ['Metadata-Flavor: Google', 'Location: http://' + target.address + '/x/'], '')))
  try {
    const err = await failure(server, 'instance')
    assert.equal(err.code, CODES.BAD_RESPONSE)
    assert.match(err.message, /redirect \(HTTP 301\).*ends in '\/'/)
    assert.equal(target.connections, 0)
    assert.equal(server.requests(), 1)
  } finally {
    await server.close()
    await target.close()
  }
})

test('a body over 1 MiB is cut off: ERR_METADATA_BAD_RESPONSE', async () => {
  const big = 'x'.repeat(1024 * 1024 + 1)
  const declared = await rawServer((s) => s.end(answer('200 OK', ['Metadata-Flavor: Google'], big)))
  const unframed = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n' + big))
  try {
    for (const server of [declared, unframed]) {
      const err = await failure(server, 'instance/attributes/user-data')
      assert.equal(err.code, CODES.BAD_RESPONSE)
      assert.match(err.message, /larger than 1048576 bytes/)
    }
    // Exactly at the cap is a value.
    const fits = await rawServer((s) => s.end(answer('200 OK', ['Metadata-Flavor: Google'], big.slice(1))))
    try {
      assert.equal((await getMetadata('instance/attributes/user-data', { host: fits.address })).length, 1024 * 1024)
    } finally {
      await fits.close()
    }
  } finally {
    await declared.close()
    await unframed.close()
  }
})

test('a peer that is not HTTP: ERR_METADATA_BAD_RESPONSE, not retried', async () => {
  const server = await rawServer((s) => s.end('SSH-2.0-OpenSSH_9.6 ' + SECRET + '\r\n'))
  try {
    const err = await failure(server)
    assert.equal(err.code, CODES.BAD_RESPONSE)
    assert.match(err.message, /not HTTP/)
    assert.equal(server.connections, 1)
  } finally {
    await server.close()
  }
})

test('json: true on a value that is not JSON, or text that is not UTF-8: ERR_METADATA_BAD_RESPONSE naming neither', async () => {
  const notJson = await rawServer((s) => s.end(answer('200 OK', ['Metadata-Flavor: Google'], '{' + SECRET)))
  const notText = await rawServer((s) =>
    s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 3\r\n\r\n'), Buffer.from([0xff, 0xfe, 0x41])])))
  try {
    const err = await failure(notJson, 'instance/vendor/identity/document', { json: true })
    assert.equal(err.code, CODES.BAD_RESPONSE)
    assert.match(err.message, /not valid JSON/)
    assert.equal(notJson.requests(), 1)
    const bytes = await failure(notText)
    assert.equal(bytes.code, CODES.BAD_RESPONSE)
    assert.match(bytes.message, /not UTF-8/)
  } finally {
    await notJson.close()
    await notText.close()
  }
})

test('503 twice, then the value: retried with backoff', async () => {
  const server = await rawServer((s, n) =>
    s.write(n <= 2 ? answer('503 Busy', ['Metadata-Flavor: Google'], '') : answer('200 OK', ['Metadata-Flavor: Google'], 'fhm-after')))
  try {
    assert.equal(await getMetadata('instance/id', { host: server.address }), 'fhm-after')
    assert.equal(server.requests(), 3)
  } finally {
    await server.close()
  }
})

test('503 forever: ERR_METADATA_STATUS after maxAttempts', async () => {
  const server = await rawServer((s) => s.write(answer('503 Busy', ['Metadata-Flavor: Google'], '')))
  try {
    const err = await failure(server, 'instance/id', { maxAttempts: 3 })
    assert.equal(err.code, CODES.STATUS)
    assert.equal(err.status, 503)
    assert.match(err.message, /after 3 attempts/)
    assert.equal(server.requests(), 3)
  } finally {
    await server.close()
  }
})

test('connections reset, then the value: retried; refused every time: ERR_METADATA_UNREACHABLE', async () => {
  const server = await rawServer((s, n) => (n === 1 ? s.resetAndDestroy ? s.resetAndDestroy() : s.destroy() : s.end(answer('200 OK', ['Metadata-Flavor: Google'], 'z'))))
  try {
    assert.equal(await getMetadata('instance/zone', { host: server.address }), 'z')
    assert.equal(server.requests(), 2)
  } finally {
    await server.close()
  }
  const port = await closedPort()
  const err = await getMetadata('instance/id', { host: '127.0.0.1:' + port, maxAttempts: 2 }).catch((e) => e)
  assert.equal(err.code, CODES.UNREACHABLE)
  assert.match(err.message, /connection refused.*after 2 attempts/)
})

test('no answer at all: each attempt times out, the deadline ends the call', async () => {
  const silent = await peerServer(() => {})
  try {
    const err = await failure(silent, 'instance/id', { timeoutMs: 150, deadlineMs: 500, maxAttempts: 10 })
    assert.equal(err.code, CODES.TIMEOUT)
    assert.ok(err.ms >= 140 && err.ms < 1500, `${err.ms} ms`)
    assert.ok(silent.connections >= 1 && silent.connections <= 4, `${silent.connections} connections`)
  } finally {
    await silent.close()
  }
})

test('headers, then nothing: the attempt timeout covers the body', async () => {
  const stalled = await rawServer((s) => s.write('HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 10\r\n\r\nabc'))
  try {
    const err = await failure(stalled, 'instance/id', { timeoutMs: 150, maxAttempts: 2 })
    assert.equal(err.code, CODES.TIMEOUT)
    assert.equal(stalled.requests(), 2)
  } finally {
    await stalled.close()
  }
})

test('proxy environment variables pointing at a trap are ignored', async () => {
  const trap = await peerServer((socket) => socket.destroy())
  try {
    const env = Object.assign({}, process.env, { YC_METADATA_ADDR: emu.address })
    for (const name of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy']) env[name] = 'http://' + trap.address
    delete env.NO_PROXY
    delete env.no_proxy
    const script = `require(${JSON.stringify(path.join(__dirname, '..'))}).getMetadata('instance/id').then(
      (v) => process.stdout.write(v), (e) => { console.error(e.code); process.exit(1) })`
    const child = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const [code] = await once(child, 'exit')
    assert.equal(code, 0)
    assert.equal(out, INSTANCE)
    assert.equal(trap.connections, 0, 'a request went through the proxy')
  } finally {
    await trap.close()
  }
})
