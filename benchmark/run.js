#!/usr/bin/env node
'use strict'

// `npm run bench`: yc-metadata-token against the snippet and its peers, every figure from fresh
// child processes (child.js) talking to the metadata emulator, which runs in a process of its own.
// Subjects take turns within each round, so a noisy neighbour slows them all alike.
//
//   node benchmark/run.js [--rounds N] [--only ours,ydbjs] [--node /path/to/node] [--json FILE]
//                         [--chart FILE, or - for none; benchmark/chart.svg by default]

const { spawn, spawnSync, execFileSync } = require('child_process')
const crypto = require('crypto')
const fs = require('fs')
const http = require('http')
const os = require('os')
const path = require('path')
const readline = require('readline')
const { SUBJECTS, OURS, PEERS } = require('./subjects')
const { chart } = require('./chart')
const { closedPort } = require('../scripts/node-matrix')

const ROOT = path.join(__dirname, '..')
const CHILD = path.join(__dirname, 'child.js')
// Rounds per kind of figure: cold figures are noisy and cheap, loops long and steady.
const ROUNDS = { cold: 15, cached: 7, forced: 7, concurrent: 7, available: 7 }
// A child that takes longer than this is stuck (a peer retrying forever, say).
const CHILD_TIMEOUT_MS = 60000
// Where the peers' dependencies live; a peer that cannot load from here is shown as n/a.
const PEER_PACKAGES = {
  'snippet-node-fetch': 'node-fetch',
  'gcp-metadata': 'gcp-metadata',
  'google-auth-library': 'google-auth-library',
  'yandex-sdk': '@yandex-cloud/nodejs-sdk',
  ydbjs: '@ydbjs/auth',
}

function parseArgs(argv) {
  const args = { scale: 1, only: null, node: process.execPath, json: null, chart: path.join(__dirname, 'chart.svg') }
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1]
    if (argv[i] === '--rounds') args.scale = Number(value) / ROUNDS.cold
    else if (argv[i] === '--only') args.only = value.split(',')
    else if (argv[i] === '--node') args.node = value
    else if (argv[i] === '--json') args.json = value
    else if (argv[i] === '--chart') args.chart = value === '-' ? null : value
    else throw new Error('unknown argument ' + argv[i])
    i++
  }
  return args
}

function startEmulator(token) {
  const child = spawn(process.execPath, [path.join(ROOT, 'emulator/cli.js'), '--port', '0', '--token-env', 'BENCH_TOKEN', '--expires-in', '3600'], {
    env: Object.assign({}, process.env, { BENCH_TOKEN: token }),
    // Its per-request log lines on stderr are of no use here.
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  process.on('exit', () => child.kill())
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (code) => reject(new Error('the emulator exited with ' + code)))
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^export YC_METADATA_ADDR=(\S+)$/.exec(line)
      if (m) resolve({ child, addr: m[1] })
    })
  })
}

function control(addr, method, name) {
  const [host, port] = addr.split(':')
  return new Promise((resolve, reject) => {
    const headers = { 'Metadata-Flavor': 'Google', 'Content-Type': 'application/json' }
    const req = http.request({ host, port, method, path: '/_emulator/' + name, headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body ? JSON.parse(body) : null))
    })
    req.on('error', reject)
    req.end()
  })
}

// `inside`: a command that runs the child for it (a network namespace), or none.
function runChild(node, env, mode, name, inside = []) {
  return new Promise((resolve) => {
    const command = inside.concat([node, CHILD, mode, name])
    const child = spawn(command[0], command.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) return resolve(JSON.parse(out))
      const reason = signal ? 'killed after ' + CHILD_TIMEOUT_MS / 1000 + ' s' : firstErrorLine(err)
      resolve({ error: reason })
    })
  })
}

function firstErrorLine(text) {
  const line = text.split('\n').find((l) => /error/i.test(l)) || text.split('\n')[0] || 'failed'
  return line.trim().slice(0, 100)
}

function childEnv(addr, token) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!/proxy$|^NODE_OPTIONS$|^YC_|^GCE_/i.test(k)) env[k] = v
  }
  return Object.assign(env, { YC_METADATA_ADDR: addr, GCE_METADATA_HOST: addr, BENCH_TOKEN: token })
}

// isAvailable() off-cloud, two ways. Refused: a closed port on loopback, named by both variables.
// A black hole: the default address routed into a TUN device that no process reads, inside a
// private network namespace whose resolv.conf names 127.0.0.1, where nothing answers: no packet
// and no name lookup leaves it (gcp-metadata also looks up metadata.google.internal).
const AVAILABLE_MODES = ['available-refused', 'available-black-hole']
const BLACK_HOLE_SETUP = 'ip link set lo up && ip tuntap add dev hole mode tun && ip link set hole up && ' +
  'ip route add 169.254.169.254/32 dev hole && mount --bind "$RESOLV_CONF" /etc/resolv.conf'

// How to run a child inside the black hole: { inside, env, close } or { reason } where it cannot be.
function blackHole() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-bench-'))
  const resolv = path.join(dir, 'resolv.conf')
  fs.writeFileSync(resolv, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n')
  const close = () => fs.rmSync(dir, { recursive: true, force: true })
  const env = { RESOLV_CONF: resolv }
  for (const [k, v] of Object.entries(process.env)) {
    if (!/proxy$|^NODE_OPTIONS$|^YC_|^GCE_|^METADATA_SERVER_DETECTION$/i.test(k)) env[k] = v
  }
  const inside = ['unshare', '-m', '-n', 'sh', '-c', BLACK_HOLE_SETUP + ' && exec "$@"', 'sh']
  const probe = spawnSync(inside[0], inside.slice(1).concat(['true']), { env, encoding: 'utf8', timeout: 5000 })
  if (probe.error || probe.status !== 0) {
    close()
    return { reason: 'no private network namespace here (' + (probe.error ? probe.error.message : probe.stderr.trim()) + ')' }
  }
  return { inside, env, close }
}

function unavailable(name) {
  const pkg = PEER_PACKAGES[name]
  if (!pkg) return null
  // Not require.resolve: some peers' `exports` hide their package.json.
  return fs.existsSync(path.join(ROOT, 'node_modules', pkg, 'package.json')) ? null : pkg + ' is not installed (npm install)'
}

const median = (xs) => quantile(xs, 0.5)
function quantile(xs, q) {
  const s = xs.slice().sort((a, b) => a - b)
  const i = (s.length - 1) * q
  const lo = Math.floor(i)
  return s[lo] + (s[Math.ceil(i)] - s[lo]) * (i - lo)
}

function fmtTime(ms) {
  if (ms < 0.001) return (ms * 1e6).toFixed(0) + ' ns'
  if (ms < 1) return String(Number((ms * 1000).toPrecision(3))) + ' µs'
  if (ms < 100) return ms.toPrecision(3) + ' ms'
  return ms.toFixed(0) + ' ms'
}

// "median (min–max)" of the per-run figures.
function spread(xs, fmt) {
  if (xs.length === 1) return fmt(xs[0])
  return fmt(median(xs)) + ' (' + fmt(Math.min(...xs)) + '–' + fmt(Math.max(...xs)) + ')'
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const rounds = {}
  for (const k of Object.keys(ROUNDS)) rounds[k] = Math.max(1, Math.round(ROUNDS[k] * args.scale))
  const names = OURS.concat(PEERS).filter((n) => !args.only || args.only.includes(n))
  const token = 't1.bench-' + crypto.randomBytes(24).toString('base64url')
  const emulator = await startEmulator(token)
  const env = childEnv(emulator.addr, token)
  const node = args.node
  const nodeVersion = execFileSync(node, ['--version']).toString().trim()
  const started = Date.now()

  const results = {} // results[subject][mode] = [per-run result]
  const failures = {} // failures[subject] = reason
  for (const name of names) {
    const reason = unavailable(name)
    if (reason) failures[name] = reason
  }
  const record = (name, mode, r) => {
    if (r.error) failures[name] = failures[name] || r.error
    else ((results[name] = results[name] || {})[mode] = results[name][mode] || []).push(r)
  }
  const live = () => names.filter((n) => !failures[n])
  const all = (floors) => live().concat(floors)

  for (const mode of ['cold', 'cached', 'forced', 'concurrent']) {
    const floors = mode === 'concurrent' ? [] : ['bare', 'raw-socket']
    for (let round = 0; round < rounds[mode]; round++) {
      process.stderr.write('\r' + mode + ' round ' + (round + 1) + '/' + rounds[mode] + '   ')
      for (const name of all(floors)) {
        if (mode === 'concurrent') await control(emulator.addr, 'POST', 'reset')
        const r = await runChild(node, env, mode, name)
        if (mode === 'concurrent' && !r.error) r.requests = (await control(emulator.addr, 'GET', 'stats')).requests
        record(name, mode, r)
      }
    }
  }
  const refused = Object.assign({}, env, { YC_METADATA_ADDR: '127.0.0.1:' + (await closedPort()) })
  refused.GCE_METADATA_HOST = refused.YC_METADATA_ADDR
  const hole = blackHole()
  if (hole.reason) failures['isAvailable() in a black hole'] = hole.reason
  for (const mode of AVAILABLE_MODES) {
    if (mode === 'available-black-hole' && hole.reason) continue
    for (let round = 0; round < rounds.available; round++) {
      process.stderr.write('\r' + mode + ' round ' + (round + 1) + '/' + rounds.available + '   ')
      for (const name of live().filter((n) => SUBJECTS[n].available)) {
        const r = mode === 'available-refused'
          ? await runChild(node, refused, 'available', name)
          : await runChild(node, hole.env, 'available', name, hole.inside)
        record(name, mode, r)
      }
    }
  }
  if (hole.close) hole.close()
  process.stderr.write('\r' + ' '.repeat(40) + '\r')
  emulator.child.removeAllListeners('exit')
  emulator.child.kill()

  const columns = names.concat(['floor'])
  const get = (name, mode, field) => {
    const runs = (results[name] || {})[mode]
    return runs && !failures[name] ? runs.map((r) => r[field]) : null
  }
  const bareRss = median(get('bare', 'cold', 'rssMb'))
  const rows = [
    // [label, mode, field, format, floor subject, target ratio]
    ['require / import', 'cold', 'requireMs', fmtTime, 'bare', null],
    ['first call after load', 'cold', 'firstMs', fmtTime, 'raw-socket', null],
    ['cold start (require + first call)', 'cold', 'coldMs', fmtTime, 'raw-socket', 0.2],
    ['cached call p50', 'cached', 'p50', fmtTime, 'bare', 1],
    ['cached call p99', 'cached', 'p99', fmtTime, 'bare', null],
    ['forced refresh p50', 'forced', 'p50', fmtTime, 'raw-socket', null, 'raw'],
    ['1000 concurrent cold calls: time', 'concurrent', 'ms', fmtTime, null, null],
    ['1000 concurrent cold calls: upstream requests', 'concurrent', 'requests', String, null, null],
    ['RSS after the first call, over bare node', 'cold', 'rssMb', (mb) => '+' + (mb - bareRss).toFixed(1) + ' MB', 'bare', null],
    ['threads added', 'cold', 'threadsAdded', (n) => '+' + n, 'bare', null],
    ['isAvailable() off-cloud, refused: first call', 'available-refused', 'ms', fmtTime, null, null],
    ['isAvailable() off-cloud, black hole: first call', 'available-black-hole', 'ms', fmtTime, null, null],
  ]
  const lines = []
  lines.push('| figure | ' + columns.map((c) => (SUBJECTS[c] ? SUBJECTS[c].label : c)).join(' | ') + ' | native / best peer | wasm / native |')
  lines.push('|' + ' --- |'.repeat(columns.length + 3))
  const json = { date: new Date(started).toISOString(), node: nodeVersion, rows: {} }
  for (const [label, mode, field, fmt, floor] of rows) {
    const cells = names.map((name) => {
      if (failures[name]) return 'n/a'
      const xs = get(name, mode, field)
      return xs ? spread(xs, fmt) : 'n/a'
    })
    const floorXs = floor && get(floor, mode, field)
    let floorCell = floorXs ? fmt(median(floorXs)) + ' (' + floor + ')' : '—'
    if (field === 'rssMb') floorCell = bareRss.toFixed(1) + ' MB (bare)'
    const ours = get('ours', mode, field)
    const peerMedians = PEERS.filter((n) => names.includes(n) && !failures[n] && get(n, mode, field))
      .map((n) => median(get(n, mode, field)))
    let ratio = '—'
    if (ours && peerMedians.length) {
      const best = Math.min(...peerMedians)
      const o = median(ours)
      if (field === 'rssMb') ratio = ((o - bareRss) / (best - bareRss)).toFixed(2) + '×'
      else if (field === 'threadsAdded' || field === 'requests') ratio = o + ' vs ' + best
      else ratio = (o / best).toFixed(2) + '×'
    }
    if (field === 'p50' && mode === 'forced' && ours) {
      // Paired: each run's p50 over the raw socket's p50 measured in turns in the same process.
      const paired = results.ours.forced.map((r) => r.p50 / r.floorP50)
      ratio += '; ' + median(paired).toFixed(2) + '× raw socket (paired, ' + Math.min(...paired).toFixed(2) + '–' + Math.max(...paired).toFixed(2) + ')'
    }
    const wasm = get('ours-wasm', mode, field)
    let wasmRatio = '—'
    if (wasm && ours) {
      const w = median(wasm)
      const o = median(ours)
      if (field === 'rssMb') wasmRatio = ((w - bareRss) / (o - bareRss)).toFixed(2) + '×'
      else if (field === 'threadsAdded' || field === 'requests') wasmRatio = w + ' vs ' + o
      else wasmRatio = (w / o).toFixed(2) + '×'
    }
    json.rows[label] = {}
    for (const name of columns.slice(0, -1)) json.rows[label][name] = get(name, mode, field)
    if (floor) json.rows[label].floor = floorXs
    lines.push('| ' + label + ' | ' + cells.join(' | ') + ' | ' + floorCell + ' | ' + ratio + ' | ' + wasmRatio + ' |')
  }
  // The targets, each a ratio to a floor or a peer measured in this same run (issue 21), so any
  // machine can judge them.
  const med = (name, mode, field) => {
    const xs = get(name, mode, field)
    return xs ? median(xs) : NaN
  }
  const ratio = (v) => v.toFixed(2) + '×'
  const pairedForced = results.ours && results.ours.forced ? median(results.ours.forced.map((r) => r.p50 / r.floorP50)) : NaN
  const targets = [
    ['native cold start ≤ 1.0 × the raw-socket cold start', med('ours', 'cold', 'coldMs') / med('raw-socket', 'cold', 'coldMs'), (v) => v <= 1.0, ratio],
    ['wasm first call after load ≤ 1.6 × the raw socket\'s first GET', med('ours-wasm', 'cold', 'firstMs') / med('raw-socket', 'cold', 'firstMs'), (v) => v <= 1.6, ratio],
    ['wasm cold start ≤ 2.0 × the raw-socket cold start', med('ours-wasm', 'cold', 'coldMs') / med('raw-socket', 'cold', 'coldMs'), (v) => v <= 2.0, ratio],
    ['native forced refresh ≤ 1.5 × the raw socket, paired', pairedForced, (v) => v <= 1.5, ratio],
    ['wasm cached p50 ≤ 1.2 × native', med('ours-wasm', 'cached', 'p50') / med('ours', 'cached', 'p50'), (v) => v <= 1.2, ratio],
    ['native: 1000 concurrent cold calls → 1 request', med('ours', 'concurrent', 'requests'), (v) => v === 1, String],
    ['wasm: 1000 concurrent cold calls → 1 request', med('ours-wasm', 'concurrent', 'requests'), (v) => v === 1, String],
  ]
  lines.push('')
  for (const [what, value, ok, fmt] of targets) {
    lines.push('- ' + what + ': ' + (Number.isNaN(value) ? 'not measured' : fmt(value) + (ok(value) ? ' (met)' : ' (missed)')))
  }
  const cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8')) || [])[1] || os.cpus()[0].model
  console.log(lines.join('\n'))
  console.log('')
  console.log(
    'Median of ' + rounds.cold + ' fresh processes (cold rows), ' + rounds.cached + ' (cached), ' + rounds.forced +
      ' (forced), ' + rounds.concurrent + ' (concurrent), ' + rounds.available + ' (isAvailable); (min–max) across them. ' +
      new Date(started).toISOString().slice(0, 10) + ', ' + os.cpus().length + ' × ' + cpu + ', Node ' + nodeVersion +
      ', ' + ((Date.now() - started) / 1000).toFixed(0) + ' s.'
  )
  for (const [name, reason] of Object.entries(failures)) console.log('n/a ' + name + ': ' + reason)
  if (args.chart) {
    const bars = (mode, field) =>
      names.filter((n) => !failures[n]).map((n) => ({ label: SUBJECTS[n].label, ms: med(n, mode, field), ours: OURS.includes(n) }))
    const caption = new Date(started).toISOString().slice(0, 10) + ', ' + os.cpus().length + ' × ' + cpu + ', Node ' + nodeVersion + ' (npm run bench).'
    const svg = chart(
      [
        { title: 'Cold start: require + first getToken(), fresh process', floor: { label: 'raw socket', ms: med('raw-socket', 'cold', 'coldMs') }, bars: bars('cold', 'coldMs') },
        { title: 'Cached getToken() p50', floor: { label: 'await Promise.resolve()', ms: med('bare', 'cached', 'p50') }, bars: bars('cached', 'p50') },
      ],
      caption,
      fmtTime,
    )
    fs.writeFileSync(args.chart, svg + '\n')
  }
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(Object.assign(json, { failures }), null, 1))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
