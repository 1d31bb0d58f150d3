'use strict'

// Name lookups, against a resolver the test controls. Inside a private mount and network namespace
// (`unshare -m -n`) /etc/resolv.conf is replaced by one naming 127.0.0.1, where the child runs a
// small DNS server: it swallows queries for one name, answers another after 1.2 s, and says
// NXDOMAIN for a third. No query leaves the namespace (it has only its loopback).
//
// Skips with the reason where namespaces are unavailable.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { inNamespace } = require('./helpers')

const PACKAGE = path.join(__dirname, '..')
const EMULATOR = path.join(__dirname, '..', 'emulator')
// How long the slow name takes to resolve: over the 1-s attempt timeout, well inside the deadline.
const SLOW_MS = 1200

function unavailable() {
  const probe = spawnSync('unshare', ['-m', '-n', 'sh', '-c', 'ip link set lo up && mount --bind /dev/null /etc/resolv.conf'], {
    encoding: 'utf8',
    timeout: 5000,
  })
  if (probe.error) return `cannot run unshare: ${probe.error.code || probe.error.message}`
  if (probe.status !== 0) return `unshare -m -n / mount failed (no privilege for namespaces?): ${probe.stderr.trim()}`
  return null
}
const skipReason = unavailable()

// The child's DNS server: enough of RFC 1035 for getaddrinfo's A and AAAA queries.
const DNS_SERVER = `
const dgram = require('dgram')
function startDns(slowMs) {
  const queries = {}
  const server = dgram.createSocket('udp4')
  server.on('message', (msg, peer) => {
    let at = 12
    const labels = []
    while (msg[at] !== 0) { labels.push(msg.slice(at + 1, at + 1 + msg[at]).toString()); at += msg[at] + 1 }
    const name = labels.join('.').toLowerCase()
    const type = msg.readUInt16BE(at + 1)
    const question = msg.slice(12, at + 5)
    queries[name] = (queries[name] || 0) + 1
    const reply = (rcode, address) => {
      const header = Buffer.alloc(12)
      msg.copy(header, 0, 0, 2)
      header.writeUInt16BE(0x8180 | rcode, 2)
      header.writeUInt16BE(1, 4)
      header.writeUInt16BE(address ? 1 : 0, 6)
      const answer = address
        ? Buffer.concat([Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]), Buffer.from(address.split('.').map(Number))])
        : Buffer.alloc(0)
      server.send(Buffer.concat([header, question, answer]), peer.port, peer.address)
    }
    if (name.startsWith('hang.')) return
    if (name.startsWith('nowhere.')) return reply(3)
    if (name.startsWith('slow.')) return setTimeout(() => reply(0, type === 1 ? '127.0.0.1' : null), slowMs)
    reply(3)
  })
  return new Promise((resolve) => server.bind(53, '127.0.0.1', () => resolve({ queries, server })))
}
`

async function inResolverNamespace(script) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-dns-'))
  const resolv = path.join(dir, 'resolv.conf')
  // One server, one try per query: the swallowed name fails as fast as the resolver allows.
  fs.writeFileSync(resolv, 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n')
  try {
    return await inNamespace(['-m', '-n'], `ip link set lo up && mount --bind ${resolv} /etc/resolv.conf`, DNS_SERVER + script)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

// Each scenario in a child of its own; the child exits at once when done (a swallowed lookup may
// still be running on the resolver's clock).
function scenario(body) {
  return `
    const { startEmulator } = require(${JSON.stringify(EMULATOR)})
    const { TokenProvider } = require(${JSON.stringify(PACKAGE)})
    const since = (t) => Date.now() - t
    ;(async () => {
      const dns = await startDns(${SLOW_MS})
      // slow.example resolves to 127.0.0.1 here: a name of the test's own DNS server, so allowed.
      const emu = await startEmulator({ host: '127.0.0.1', token: 'dns-token', expiresIn: 3600, allowHosts: ['slow.example'] })
      const port = emu.port
      const result = await (async () => { ${body} })()
      result.queries = dns.queries
      process.stdout.write(JSON.stringify(result))
      process.exit(0)
    })().catch((e) => { console.error(e && e.stack || e); process.exit(1) })`
}

test('a hung lookup of one name does not hold up a provider whose name resolves at once', { skip: skipReason || false }, async () => {
  const r = await inResolverNamespace(scenario(`
    const hung = new TokenProvider({ host: 'hang.example:' + port }).getToken().then(() => 'token', (e) => e.code)
    await new Promise((resolve) => setTimeout(resolve, 50))
    const start = Date.now()
    const fast = await new TokenProvider({ host: 'localhost:' + port }).getToken()
    const fastMs = since(start)
    return { fast: fast.token, fastMs, hung: await hung }`))
  assert.equal(r.fast, 'dns-token')
  assert.ok(r.fastMs < 1000, 'localhost took ' + r.fastMs + ' ms behind the hung lookup')
  assert.equal(r.hung, 'ERR_METADATA_TIMEOUT')
})

test('a name that resolves slowly but within the deadline yields a token', { skip: skipReason || false }, async () => {
  const r = await inResolverNamespace(scenario(`
    const start = Date.now()
    const t = await new TokenProvider({ host: 'slow.example:' + port }).getToken()
    return { token: t.token, ms: since(start) }`))
  assert.equal(r.token, 'dns-token')
  assert.ok(r.ms >= SLOW_MS && r.ms < 3000, r.ms + ' ms')
  // The attempts after the first joined its lookup: one A and one AAAA query.
  assert.ok(r.queries['slow.example'] <= 2, JSON.stringify(r.queries))
})

test('a name that does not exist fails at once with "name not found", not retried', { skip: skipReason || false }, async () => {
  const r = await inResolverNamespace(scenario(`
    const start = Date.now()
    const provider = new TokenProvider({ host: 'nowhere.example:' + port })
    const e = await provider.getToken().then(() => null, (e) => e)
    return { code: e && e.code, message: e && e.message, ms: since(start), requests: provider.stats().upstreamRequests }`))
  assert.equal(r.code, 'ERR_METADATA_UNREACHABLE')
  assert.match(r.message, /name not found/)
  assert.doesNotMatch(r.message, /after \d+ attempts/)
  assert.equal(r.requests, 1)
  // One lookup: its A and AAAA queries, not five lookups' ten.
  assert.ok(r.queries['nowhere.example'] <= 2, JSON.stringify(r.queries))
  assert.ok(r.ms < 1000, r.ms + ' ms')
})

if (skipReason) {
  test('namespaces unavailable', (t) => t.skip(skipReason))
}
