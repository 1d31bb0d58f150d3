'use strict'

// The default address end to end. Inside a private network namespace made for the test
// (`unshare -n`), 169.254.169.254 is put on the namespace's own loopback and the emulator listens
// there on port 80; the package, given no host option and no environment variable, must fetch
// its token from it. Nothing is ever sent to 169.254.169.254 outside that namespace: every call
// to the default address happens in a child started by `unshare -n`.
//
// Skips with the reason where namespaces are unavailable (no unshare/ip, no privilege).

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { inNamespace } = require('./helpers')

const PACKAGE = path.join(__dirname, '..')
const EMULATOR = path.join(__dirname, '..', 'emulator')
const METADATA_IP = '169.254.169.254'

/** Why namespaces cannot be used here, or null when they can. */
function unavailable() {
  const probe = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && ip addr add 192.0.2.1/32 dev lo'], {
    encoding: 'utf8',
    timeout: 5000,
  })
  if (probe.error) return `cannot run unshare: ${probe.error.code || probe.error.message}`
  if (probe.status !== 0) return `unshare -n / ip failed (no privilege for network namespaces?): ${probe.stderr.trim()}`
  return null
}
const skipReason = unavailable()

/** Runs `script` with node inside a fresh network namespace; `withAddress` puts the IP on lo. */
function inNetNamespace(script, withAddress) {
  const setup = 'ip link set lo up' + (withAddress ? ` && ip addr add ${METADATA_IP}/32 dev lo` : '')
  return inNamespace(['-n'], setup, script)
}

test('default address: no host, no environment, a token from 169.254.169.254:80 in a private namespace', { skip: skipReason || false }, async () => {
  const script = `
    if (process.env.YC_METADATA_ADDR !== undefined || process.env.GCE_METADATA_HOST !== undefined) throw new Error('env set')
    const { startEmulator } = require(${JSON.stringify(EMULATOR)})
    const { getToken } = require(${JSON.stringify(PACKAGE)})
    ;(async () => {
      const emu = await startEmulator({ host: '${METADATA_IP}', port: 80, token: 'netns-token', expiresIn: 3600 })
      const start = Date.now()
      const t = await getToken()
      const ms = Date.now() - start
      const again = await getToken({ httpMethod: 'GET' }) // a handler's event: ignored
      const seen = emu.log[0]
      process.stdout.write(JSON.stringify({
        token: t.token, expiresInSeconds: t.expiresInSeconds, again: again.token, ms,
        requests: emu.requests, path: seen.path, flavor: seen.headers['metadata-flavor'], host: seen.headers.host,
      }))
      await emu.close()
    })().catch((e) => { console.error(e.code, e.message); process.exit(1) })`
  const r = await inNetNamespace(script, true)
  assert.equal(r.token, 'netns-token')
  assert.equal(r.again, 'netns-token')
  assert.ok(r.expiresInSeconds > 3590 && r.expiresInSeconds <= 3600)
  assert.equal(r.requests, 1)
  assert.equal(r.path, '/computeMetadata/v1/instance/service-accounts/default/token')
  assert.equal(r.flavor, 'Google')
  assert.equal(r.host, METADATA_IP)
  assert.ok(r.ms < 2000, `${r.ms} ms`)
})

test('default address, nothing there (off-cloud): a clear ERR_METADATA_UNREACHABLE within the deadline', { skip: skipReason || false }, async () => {
  // The namespace has only loopback: 169.254.169.254 has no route, as on a laptop offline.
  const script = `
    const { getToken } = require(${JSON.stringify(PACKAGE)})
    const start = Date.now()
    getToken().then(
      () => { console.error('got a token from nowhere'); process.exit(1) },
      (e) => process.stdout.write(JSON.stringify({ code: e.code, message: e.message, ms: Date.now() - start })))`
  const r = await inNetNamespace(script, false)
  assert.equal(r.code, 'ERR_METADATA_UNREACHABLE')
  assert.match(r.message, /169\.254\.169\.254/)
  assert.match(r.message, /YC_METADATA_ADDR/)
  // The default deadline is 3 s; unreachable fails after the attempts' backoff (≤ 1.5 s).
  assert.ok(r.ms < 3500, `${r.ms} ms`)
})

test('default address, the address there but nothing listening: refused, ERR_METADATA_UNREACHABLE', { skip: skipReason || false }, async () => {
  const script = `
    const { getToken } = require(${JSON.stringify(PACKAGE)})
    const start = Date.now()
    getToken().then(
      () => { console.error('got a token from nowhere'); process.exit(1) },
      (e) => process.stdout.write(JSON.stringify({ code: e.code, message: e.message, ms: Date.now() - start })))`
  const r = await inNetNamespace(script, true)
  assert.equal(r.code, 'ERR_METADATA_UNREACHABLE')
  assert.match(r.message, /connection refused/)
  assert.ok(r.ms < 3500, `${r.ms} ms`)
})

if (skipReason) {
  test('network namespaces unavailable', (t) => t.skip(skipReason))
}
