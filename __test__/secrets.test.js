'use strict'

// Secret hygiene: the token appears in no error message (for every code), no debug line, no panic
// message, no util.inspect or JSON.stringify of a provider. Every response below carries the
// secret somewhere in its body, so a message that quoted the body would show it.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const util = require('node:util')
const { spawn } = require('node:child_process')
const { once } = require('node:events')

const index = require('..')
const { TokenProvider, CODES, getToken } = index
const { Provider: DriverProvider } = require('../binding')
const { startEmulator } = require('../emulator')

const SECRET = 't1.SECRET-do-not-print-' + 'a9f3c2e8b1d7'

/** Every way the secret could be seen through an error. */
function renderings(err) {
  return [
    err.message,
    err.stack,
    String(err),
    util.inspect(err, { showHidden: true, depth: Infinity }),
    JSON.stringify(err),
    JSON.stringify(Object.getOwnPropertyNames(err).map((k) => [k, String(err[k])])),
  ]
}

function assertClean(what, value) {
  for (const text of Array.isArray(value) ? value : [value]) {
    assert.ok(!String(text).includes(SECRET), `${what} shows the token: ${text}`)
    // Not even a long piece of it (a body cut in half, an escaped copy).
    assert.ok(!String(text).includes(SECRET.slice(0, 16)), `${what} shows part of the token: ${text}`)
  }
}

let emu
test.before(async () => {
  emu = await startEmulator({ token: SECRET, expiresIn: 3600 })
})
test.after(() => emu.close())

// One case per error code the service can cause, each with the secret in the response.
const cases = [
  [CODES.UNREACHABLE, 'reset after half the body', { resetMidBody: true }],
  [CODES.UNREACHABLE, 'connection dropped', { dropConnection: true }],
  [CODES.TIMEOUT, 'hang after headers', { hangAfterHeaders: true }],
  [CODES.TIMEOUT, 'dribbling the body', { dribbleMs: 30 }],
  [CODES.NO_SERVICE_ACCOUNT, '404', { status: 404 }],
  [CODES.STATUS, '403', { status: 403 }],
  [CODES.STATUS, '503', { status: 503 }],
  [CODES.BAD_RESPONSE, 'truncated body', { truncate: true }],
  [CODES.BAD_RESPONSE, 'expires_in a string', { body: { access_token: SECRET, expires_in: 'soon' } }],
  [CODES.BAD_RESPONSE, 'expires_in 0', { body: { access_token: SECRET, expires_in: 0 } }],
  [CODES.BAD_RESPONSE, 'expires_in negative', { body: { access_token: SECRET, expires_in: -1 } }],
  [CODES.BAD_RESPONSE, 'token with control characters', { body: { access_token: SECRET + '\n', expires_in: 60 } }],
  [CODES.BAD_RESPONSE, 'token as an object', { body: { access_token: { value: SECRET }, expires_in: 60 } }],
  [CODES.BAD_RESPONSE, 'the token as the whole body', { body: SECRET }],
  [CODES.BAD_RESPONSE, 'the token as a JSON string', { body: JSON.stringify(SECRET) }],
  [CODES.BAD_RESPONSE, 'redirect to a URL holding the token', { redirect: 'http://127.0.0.1:1/' + SECRET }],
]

for (const [code, name, fault] of cases) {
  test(`${code} (${name}): the error never shows the token`, async () => {
    emu.reset()
    emu.fault(fault)
    const provider = new TokenProvider({ host: emu.address, timeoutMs: 200, deadlineMs: 500, maxAttempts: 2 })
    const err = await provider.getToken().then(() => assert.fail('expected an error'), (e) => e)
    assert.equal(err.code, code, err.message)
    assertClean('the error', renderings(err))
  })
}

test('a failed refresh after a success: neither the error nor the provider shows the token', async () => {
  emu.reset()
  const provider = new TokenProvider({ host: emu.address, maxAttempts: 1 })
  assert.equal((await provider.getToken()).token, SECRET)
  emu.fault({ body: { access_token: SECRET, expires_in: 'x' } })
  const err = await provider.getToken({ forceRefresh: true }).then(() => assert.fail('expected an error'), (e) => e)
  assert.equal(err.code, CODES.BAD_RESPONSE)
  assertClean('the error', renderings(err))
  assertClean('the provider', [util.inspect(provider, { showHidden: true, depth: Infinity }), JSON.stringify(provider)])
})

test(`${CODES.INVALID_OPTION}: messages name the option, and a provider made from bad input shows nothing`, () => {
  const err = (() => {
    try {
      new TokenProvider({ timeoutMs: 'soon' })
    } catch (e) {
      return e
    }
  })()
  assert.equal(err.code, CODES.INVALID_OPTION)
  assertClean('the error', renderings(err))
})

test('util.inspect, JSON.stringify and enumeration of providers holding a token show no token', async () => {
  emu.reset()
  const provider = new TokenProvider({ host: emu.address })
  assert.equal((await provider.getToken()).token, SECRET)
  const previous = process.env.YC_METADATA_ADDR
  process.env.YC_METADATA_ADDR = emu.address
  try {
    // The default provider, made on first use, reads the address from the environment.
    assert.equal((await getToken()).token, SECRET)
  } finally {
    if (previous === undefined) delete process.env.YC_METADATA_ADDR
    else process.env.YC_METADATA_ADDR = previous
  }
  const native = new DriverProvider({ host: emu.address }, undefined, undefined, false)
  assert.equal((await native.fetch(false)).token, SECRET)
  for (const [name, value] of [['provider', provider], ['module', index], ['native provider', native]]) {
    assertClean(name, [
      util.inspect(value, { showHidden: true, depth: Infinity, getters: true }),
      JSON.stringify(value),
      JSON.stringify(Object.keys(value)),
      Object.getOwnPropertyNames(value).map((k) => String(value[k])).join(),
      Object.getOwnPropertySymbols(value).map((k) => String(value[k])).join(),
    ])
  }
})

test('a panic in the core (a thrown native error) becomes a rejection with ERR_METADATA_INTERNAL, its message withheld', async () => {
  // napi-rs turns a caught panic into a thrown Error (code GenericFailure, the panic message);
  // simulate that here: the shipped core has no way to trigger a panic, on purpose.
  const panicked = () => {
    const e = new Error('panicked: ' + SECRET)
    e.code = 'GenericFailure'
    throw e
  }
  emu.reset()
  for (const method of ['peek', 'fetch']) {
    const original = DriverProvider.prototype[method]
    DriverProvider.prototype[method] = panicked
    try {
      const provider = new TokenProvider({ host: emu.address })
      let result
      assert.doesNotThrow(() => (result = provider.getToken()))
      const err = await result.then(() => assert.fail('expected an error'), (e) => e)
      assert.equal(err.code, CODES.INTERNAL)
      assert.match(err.message, /Internal error in yc-metadata-token/)
      assertClean('the internal error', renderings(err))
    } finally {
      DriverProvider.prototype[method] = original
    }
  }
  // Afterwards everything works again.
  assert.equal((await new TokenProvider({ host: emu.address }).getToken()).token, SECRET)
})

test('panic messages in the shipped core are fixed strings: none can carry a token', () => {
  // Every construct that can panic in non-test Rust code; only `.expect("a literal")` is allowed,
  // and its receivers are builder and thread-start errors (no response data).
  const src = path.join(__dirname, '..', 'src')
  const files = fs.readdirSync(src).filter((f) => f.endsWith('.rs'))
  // Files compiled only into tests (`#[cfg(test)] #[path = "…"] mod …;`) may panic freely.
  const testOnly = new Set()
  for (const file of files) {
    for (const m of fs.readFileSync(path.join(src, file), 'utf8').matchAll(/#\[cfg\(test\)\]\s*#\[path = "([^"]+)"\]/g)) {
      testOnly.add(m[1])
    }
  }
  const found = []
  for (const file of files.filter((f) => !testOnly.has(f))) {
    const text = fs.readFileSync(path.join(src, file), 'utf8').split('#[cfg(test)]')[0]
    text.split('\n').forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '')
      if (/\.unwrap\(\)|panic!|unreachable!|todo!|unimplemented!|(?<!debug_)assert(_eq|_ne)?!/.test(code)) {
        found.push(`${file}:${i + 1}: ${line.trim()}`)
      }
      const expect = code.match(/\.expect\(([^)]*)\)?/)
      if (expect && !/^"[^"{}]*"$/.test(expect[1].trim())) found.push(`${file}:${i + 1}: ${line.trim()}`)
    })
  }
  assert.deepEqual(found, [])
})

test('debug output (NODE_DEBUG / DEBUG) never shows the token, on success, refresh and failure', async () => {
  emu.reset()
  const script = `
    const { TokenProvider } = require(${JSON.stringify(path.join(__dirname, '..'))})
    ;(async () => {
      const p = new TokenProvider({ host: process.argv[1], maxAttempts: 2, timeoutMs: 300 })
      const a = await p.getToken()
      const b = await p.getToken()
      const c = await p.getToken({ forceRefresh: true })
      await fetch('http://' + process.argv[1] + '/_emulator/fault', { method: 'POST', headers: { 'Metadata-Flavor': 'Google', 'Content-Type': 'application/json' }, body: JSON.stringify({ body: { access_token: a.token, expires_in: 'x' } }) })
      const err = await p.getToken({ forceRefresh: true }).catch((e) => e)
      process.stdout.write(JSON.stringify({ same: a.token === b.token && b.token === c.token, code: err.code }))
    })().catch((e) => { console.error('failed', e.code); process.exit(1) })`
  const env = Object.assign({}, process.env, { NODE_DEBUG: 'yc-metadata-token', DEBUG: 'yc-metadata-token' })
  const child = spawn(process.execPath, ['-e', script, emu.address], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const [code] = await once(child, 'exit')
  assert.equal(code, 0, err)
  assert.deepEqual(JSON.parse(out), { same: true, code: CODES.BAD_RESPONSE })
  assertClean('debug output', err)
  // Where debug output exists it must have said something about those calls.
  if (/yc-metadata-token/i.test(err)) assert.ok(err.split('\n').length > 3, err)
  console.log(`  debug output: ${err.split('\n').filter(Boolean).length} lines, no token`)
})
