'use strict'

// isAvailable() at the default address, off-cloud, and its name lookups. Each case runs in a
// private network namespace made for it (`unshare -n`, or `unshare -m -n` with its own
// /etc/resolv.conf), whose only ways out are its loopback and, for the black hole, a TUN device
// that no process reads: packets routed there vanish, as on a network that drops them. Nothing
// reaches 169.254.169.254 or a resolver outside the namespace.
//
// Skips with the reason where namespaces are unavailable (no unshare/ip, no privilege, no TUN).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { inNamespace } = require('./helpers')

const PACKAGE = path.join(__dirname, '..')
const EMULATOR = path.join(__dirname, '..', 'emulator')
const METADATA_IP = '169.254.169.254'
// The bar: a "no" within 0.6 s with the defaults (a 400-ms probe), measured inside the child.
const MAX_BLACK_HOLE_MS = 600
const FAST_MS = 250

const LOOPBACK = 'ip link set lo up'
const ON_LOOPBACK = `${LOOPBACK} && ip addr add ${METADATA_IP}/32 dev lo`
const BLACK_HOLE = `${LOOPBACK} && ip tuntap add dev hole mode tun && ip link set hole up && ip route add ${METADATA_IP}/32 dev hole`

function unavailable() {
  const probe = spawnSync('unshare', ['-m', '-n', 'sh', '-c', `${BLACK_HOLE} && mount --bind /dev/null /etc/resolv.conf`], {
    encoding: 'utf8',
    timeout: 5000,
  })
  if (probe.error) return `cannot run unshare: ${probe.error.code || probe.error.message}`
  if (probe.status !== 0) return `unshare -m -n / ip tuntap / mount failed (no privilege for namespaces?): ${probe.stderr.trim()}`
  return null
}
const skipReason = unavailable()
const skip = skipReason || false

/** The script's result printed as JSON, `what` timed in milliseconds as `ms`. */
function timing(what) {
  return `
    const package_ = require(${JSON.stringify(PACKAGE)})
    const start = Date.now()
    ;(${what})(package_).then(
      (value) => process.stdout.write(JSON.stringify({ value, ms: Date.now() - start })),
      (e) => process.stdout.write(JSON.stringify({ code: e.code, message: e.message, ms: Date.now() - start })))`
}

test('a black hole at the default address: false within 0.6 s with the defaults', { skip }, async () => {
  const r = await inNamespace(['-n'], BLACK_HOLE, timing('(p) => p.isAvailable()'))
  assert.equal(r.value, false, JSON.stringify(r))
  assert.ok(r.ms >= 390 && r.ms < MAX_BLACK_HOLE_MS, `${r.ms} ms`)
})

test('a black hole: getFolderId() goes on to YC_FOLDER_ID within the same 0.6 s', { skip }, async () => {
  const r = await inNamespace(['-n'], BLACK_HOLE + ' && export YC_FOLDER_ID=b1genvfolder00000001', timing('(p) => p.getFolderId()'))
  assert.equal(r.value, 'b1genvfolder00000001', JSON.stringify(r))
  assert.ok(r.ms < MAX_BLACK_HOLE_MS, `${r.ms} ms`)
})

test('no route to the default address (a laptop offline): false at once', { skip }, async () => {
  const r = await inNamespace(['-n'], LOOPBACK, timing('(p) => p.isAvailable()'))
  assert.equal(r.value, false, JSON.stringify(r))
  assert.ok(r.ms < FAST_MS, `${r.ms} ms`)
})

test('the default address with nothing listening: false at once', { skip }, async () => {
  const r = await inNamespace(['-n'], ON_LOOPBACK, timing('(p) => p.isAvailable()'))
  assert.equal(r.value, false, JSON.stringify(r))
  assert.ok(r.ms < FAST_MS, `${r.ms} ms`)
})

test('the emulator at the default address (169.254.169.254:80): true, and getMetadata reads from it', { skip }, async () => {
  const script = `
    const { startEmulator } = require(${JSON.stringify(EMULATOR)})
    const { isAvailable, getMetadata, getFolderId } = require(${JSON.stringify(PACKAGE)})
    ;(async () => {
      const emu = await startEmulator({ host: '${METADATA_IP}', port: 80, folderId: 'b1gnetnsfolder000001' })
      const available = await isAvailable()
      const zone = await getMetadata('instance/zone')
      const folder = await getFolderId()
      process.stdout.write(JSON.stringify({ available, zone, folder, paths: emu.log.map((e) => e.path), host: emu.log[0].headers.host }))
      await emu.close()
    })().catch((e) => { console.error(e.code, e.message); process.exit(1) })`
  const r = await inNamespace(['-n'], ON_LOOPBACK, script)
  assert.equal(r.available, true)
  assert.equal(r.zone, 'projects/b1gnetnsfolder000001/zones/ru-central1-a')
  assert.equal(r.folder, 'b1gnetnsfolder000001')
  assert.deepEqual(r.paths, ['/computeMetadata/v1/', '/computeMetadata/v1/instance/zone', '/computeMetadata/v1/instance/vendor/folder-id'])
  assert.equal(r.host, METADATA_IP)
})

// A DNS server in the namespace that counts every query and answers each with NXDOMAIN.
const COUNTING_DNS = `
const dgram = require('dgram')
function countingDns() {
  const server = dgram.createSocket('udp4')
  const counter = { queries: 0, server }
  server.on('message', (msg, peer) => {
    counter.queries++
    let at = 12
    while (msg[at] !== 0) at += msg[at] + 1
    const header = Buffer.alloc(12)
    msg.copy(header, 0, 0, 2)
    header.writeUInt16BE(0x8183, 2)
    header.writeUInt16BE(1, 4)
    server.send(Buffer.concat([header, msg.slice(12, at + 5)]), peer.port, peer.address)
  })
  return new Promise((resolve) => server.bind(53, '127.0.0.1', () => resolve(counter)))
}
`

test('no name lookup for an IP address: the default, or an IPv4 host; a name is looked up (and not found: false)', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-available-dns-'))
  const resolv = path.join(dir, 'resolv.conf')
  fs.writeFileSync(resolv, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n')
  const script = COUNTING_DNS + `
    const { isAvailable } = require(${JSON.stringify(PACKAGE)})
    ;(async () => {
      const dns = await countingDns()
      const byDefault = await isAvailable()
      const byIp = await isAvailable({ host: '127.0.0.1:9' })
      const ipQueries = dns.queries
      const byName = await isAvailable({ host: 'metadata.nowhere.example:80' })
      process.stdout.write(JSON.stringify({ byDefault, byIp, ipQueries, byName, nameQueries: dns.queries - ipQueries }))
      dns.server.close()
    })().catch((e) => { console.error(e.code, e.message); process.exit(1) })`
  try {
    const r = await inNamespace(['-m', '-n'], `${BLACK_HOLE} && mount --bind ${resolv} /etc/resolv.conf`, script)
    assert.equal(r.byDefault, false)
    assert.equal(r.byIp, false)
    assert.equal(r.ipQueries, 0, 'an IP host was looked up')
    assert.equal(r.byName, false)
    assert.ok(r.nameQueries > 0, 'the name was not looked up: the counter cannot be trusted')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

if (skipReason) {
  test('network namespaces unavailable', (t) => t.skip(skipReason))
}
