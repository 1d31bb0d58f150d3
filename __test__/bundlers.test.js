'use strict'

// Bundled Cloud Functions (README "Bundlers"): a small handler bundled by esbuild (cjs and esm),
// webpack 5 and @vercel/ncc from an app whose node_modules holds the package as npm installs it
// (the root package's published files and the linux-x64-gnu platform package, hoisted) plus an
// unrelated package. Each output folder is copied alone into an empty temporary folder, with no
// node_modules anywhere above it, and run there against the emulator on 127.0.0.1: the token must
// arrive, and the driver must be the one the bundle carries. Without an option every tool gets the
// wasm driver (ncc the native addon, which it copies by itself); with the README's option, native.

const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFile } = require('node:child_process')

const { startEmulator } = require('../emulator')
const { rootManifest } = require('../scripts/pack')

const ROOT = path.join(__dirname, '..')
const PLATFORM = 'linux-x64-gnu'
const PLATFORM_PACKAGE = 'yc-metadata-token-' + PLATFORM
const ADDON = 'yc-metadata-token.' + PLATFORM + '.node'
// The wasm module's budget (the WebAssembly issue), as in package.test.js.
const MAX_WASM_BYTES = 150000
// A package nobody's handler uses: a bundle that copies node_modules carries it.
const UNRELATED_BYTES = 2 * 1024 * 1024
// One build or one run; webpack's minifier is the slowest step (a few seconds on a busy machine).
const STEP_TIMEOUT_MS = 120 * 1000

const HANDLER_CJS = `const { getToken, defaultProvider } = require('yc-metadata-token')
exports.handler = async (event, context) => {
  const { token } = await getToken(event, context)
  return { token, driver: defaultProvider().stats().driver }
}
`
const HANDLER_ESM = `import { getToken, defaultProvider } from 'yc-metadata-token'
export const handler = async (event, context) => {
  const { token } = await getToken(event, context)
  return { token, driver: defaultProvider().stats().driver }
}
`
// Loads the bundle as a Cloud Functions runtime would, calls the handler once and prints what it
// got; the token itself only as its SHA-256. A file, not node -e: there require is a global, and an
// ES module bundle would find it.
const RUNNER = `
const { pathToFileURL } = require('url')
import(pathToFileURL(process.argv[2]).href)
  .then((m) => (m.handler || m.default.handler)({ httpMethod: 'GET' }, {}))
  .then((r) => {
    const tokenSha256 = require('crypto').createHash('sha256').update(r.token).digest('hex')
    console.log(JSON.stringify({ tokenSha256, driver: r.driver }))
  }, (err) => {
    console.log(JSON.stringify({ code: err.code, message: err.message }))
  })
`
// esbuild's usual banner for ES module output of CommonJS code: a require and a __dirname.
const ESM_BANNER = "import { createRequire } from 'module'; const require = createRequire(import.meta.url), __dirname = import.meta.dirname;"

const supportedHost = process.platform === 'linux' && process.arch === 'x64'
const skip = !supportedHost
  ? 'the fixture installs the ' + PLATFORM + ' platform package: linux-x64 only'
  : process.env.YC_METADATA_TOKEN_DRIVER === 'wasm'
    ? 'driver-independent: each bundle runs with no driver forced, and the native pass checks which driver each one carries'
    : false

function run(command, args, options) {
  return new Promise((resolve) => {
    execFile(command, args, Object.assign({ timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, options), (err, stdout, stderr) => {
      resolve({ code: err ? (err.code === undefined ? 1 : err.code) : 0, stdout, stderr })
    })
  })
}

// The environment of a Cloud Function: none of the test run's driver, debug or proxy variables.
function cleanEnv(extra) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(YC_METADATA_|GCE_METADATA_HOST$|NODE_DEBUG$|DEBUG$|NODE_OPTIONS$|NODE_PATH$)|_proxy$/i.test(k)) env[k] = v
  }
  return Object.assign(env, extra)
}

// node_modules as npm lays it out for `npm install yc-metadata-token` on linux-x64-gnu: the root
// package's published files, the platform package beside it, and something unrelated.
function installFixture(app) {
  const manifest = rootManifest()
  const pkg = path.join(app, 'node_modules', 'yc-metadata-token')
  for (const file of manifest.files) {
    fs.mkdirSync(path.dirname(path.join(pkg, file)), { recursive: true })
    fs.cpSync(path.join(ROOT, file), path.join(pkg, file), { recursive: true })
  }
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify(manifest, null, 2))
  const platform = path.join(app, 'node_modules', PLATFORM_PACKAGE)
  fs.mkdirSync(platform)
  fs.copyFileSync(path.join(ROOT, 'npm', PLATFORM, 'package.json'), path.join(platform, 'package.json'))
  fs.copyFileSync(path.join(ROOT, ADDON), path.join(platform, ADDON))
  const unrelated = path.join(app, 'node_modules', 'unrelated')
  fs.mkdirSync(unrelated)
  fs.writeFileSync(path.join(unrelated, 'package.json'), '{"name":"unrelated","version":"1.0.0","main":"index.js"}')
  fs.writeFileSync(path.join(unrelated, 'index.js'), 'module.exports = 1')
  fs.writeFileSync(path.join(unrelated, 'blob.bin'), crypto.randomBytes(UNRELATED_BYTES))
  fs.writeFileSync(path.join(app, 'handler.js'), HANDLER_CJS)
  fs.writeFileSync(path.join(app, 'handler.mjs'), HANDLER_ESM)
}

function files(dir) {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath || e.path, e.name)))
    .sort()
}

function folderBytes(dir) {
  return files(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0)
}

// esbuild's bin is its native executable once installed (a Node script where its install step did
// not run): either runs as it is.
function esbuild(app, args) {
  return run(require.resolve('esbuild/bin/esbuild'), args.concat(['--log-level=warning']), { cwd: app })
}

function webpack(config) {
  const compiler = require('webpack')(config)
  return new Promise((resolve, reject) => {
    compiler.run((err, stats) => {
      compiler.close(() => {})
      if (err) return reject(err)
      const info = stats.toJson({ all: false, errors: true, warnings: true })
      resolve({ errors: info.errors.map((e) => e.message), warnings: info.warnings.map((e) => e.message) })
    })
  })
}

function webpackConfig(app, out, plugins) {
  return {
    mode: 'production',
    target: 'node',
    context: app,
    entry: './handler.js',
    output: { path: out, filename: 'handler.js', library: { type: 'commonjs2' } },
    plugins,
  }
}

test('bundles by esbuild, webpack and ncc run from their output folder alone', { skip, timeout: 10 * 60 * 1000 }, async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-bundlers-'))
  const token = 'bundled-' + crypto.randomBytes(12).toString('hex')
  const tokenSha256 = crypto.createHash('sha256').update(token).digest('hex')
  const emulator = await startEmulator({ token, expiresIn: 3600 })
  assert.match(emulator.address, /^127\.0\.0\.1:\d+$/)
  const app = path.join(work, 'app')
  fs.mkdirSync(app)
  installFixture(app)
  const sizes = []

  // Copies the output folder into an empty folder of its own, runs the bundle there with the
  // emulator's address, and returns what the handler got and the driver's load line (debug output
  // names where the addon came from; it never shows the token).
  // options.env: variables to add; options.above: folders of the app to copy into the folder
  // above the bundle's, as a deployment with node_modules has them.
  async function runAlone(out, entry, options) {
    const { env, above } = options || {}
    const alone = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-bundle-alone-'))
    for (let dir = alone; dir !== path.dirname(dir); dir = path.dirname(dir)) {
      assert.ok(!fs.existsSync(path.join(path.dirname(dir), 'node_modules')), 'a node_modules above ' + alone)
    }
    const bundleDir = above ? path.join(alone, 'dist') : alone
    fs.cpSync(out, bundleDir, { recursive: true })
    for (const dir of above || []) fs.cpSync(path.join(app, dir), path.join(alone, dir), { recursive: true })
    const runner = path.join(alone, 'runtime.cjs')
    fs.writeFileSync(runner, RUNNER)
    const before = emulator.requests
    const r = await run(process.execPath, [runner, path.join(bundleDir, entry)], {
      cwd: alone,
      env: cleanEnv(Object.assign({ YC_METADATA_ADDR: emulator.address, NODE_DEBUG: 'yc-metadata-token' }, env)),
    })
    fs.rmSync(alone, { recursive: true, force: true })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(!r.stdout.includes(token) && !r.stderr.includes(token), 'the token was printed')
    const got = JSON.parse(r.stdout)
    const load = (r.stderr.split('\n').find((l) => l.includes('[load]')) || '').replace(alone, '<alone>')
    return Object.assign(got, { load, requests: emulator.requests - before })
  }

  function record(name, out, driver) {
    const list = files(out)
    sizes.push(name + ': ' + list.length + ' files, ' + (folderBytes(out) / 1024).toFixed(0) + ' KiB, ' + driver)
    return list
  }

  try {
    await t.test('the embedded wasm module is the shipped one, within budget', () => {
      const wasm = fs.readFileSync(path.join(ROOT, 'yc-metadata-token.wasm'))
      assert.ok(wasm.length <= MAX_WASM_BYTES, wasm.length + ' bytes, budget ' + MAX_WASM_BYTES)
      const embedded = Buffer.from(require('../yc-metadata-token.wasm.js'), 'base64')
      assert.ok(embedded.equals(wasm), 'yc-metadata-token.wasm.js is stale: run `npm run build:wasm`')
    })

    await t.test('esbuild --format=cjs, no option: the wasm driver; native when node_modules is deployed too', async () => {
      const out = path.join(work, 'esbuild-cjs')
      const b = await esbuild(app, ['handler.js', '--bundle', '--platform=node', '--format=cjs', '--outdir=' + out])
      assert.equal(b.code, 0, b.stderr)
      assert.equal(b.stderr, '', 'esbuild warned')
      assert.deepEqual(record('esbuild cjs', out, 'wasm'), ['handler.js'])
      const got = await runAlone(out, 'handler.js')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'wasm', 1], JSON.stringify(got))
      assert.match(got.load, /no native addon loaded \(.*yc-metadata-token-linux-x64-gnu: not installed/)
      // Native forced where the bundle carries none: one error naming every package tried.
      const forced = await runAlone(out, 'handler.js', { env: { YC_METADATA_TOKEN_DRIVER: 'native' } })
      assert.equal(forced.code, 'ERR_METADATA_UNSUPPORTED_PLATFORM', JSON.stringify(forced))
      assert.match(forced.message, /yc-metadata-token-linux-x64-gnu: not installed/)
      assert.match(forced.message, /yc-metadata-token-linux-x64-musl: not installed/)
      assert.match(forced.message, /in a bundle, see "Bundlers" in the README/)
      assert.equal(forced.requests, 0)
      // Deployed with node_modules, the same bundle finds the platform package by Node's resolution.
      const withModules = await runAlone(out, 'handler.js', { above: [path.join('node_modules', PLATFORM_PACKAGE)] })
      assert.deepEqual([withModules.tokenSha256, withModules.driver], [tokenSha256, 'native'], JSON.stringify(withModules))
      assert.match(withModules.load, /driver native: loaded yc-metadata-token-linux-x64-gnu$/)
    })

    await t.test('esbuild --format=cjs with the addon as an entry point, copied beside the bundle: native', async () => {
      const out = path.join(work, 'esbuild-cjs-native')
      const b = await esbuild(app, ['handler.js', path.join('node_modules', PLATFORM_PACKAGE, ADDON), '--loader:.node=copy', '--entry-names=[name]',
        '--bundle', '--platform=node', '--format=cjs', '--outdir=' + out])
      assert.equal(b.code, 0, b.stderr)
      assert.deepEqual(record('esbuild cjs + addon', out, 'native'), ['handler.js', ADDON])
      const got = await runAlone(out, 'handler.js')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'native', 1], JSON.stringify(got))
      assert.ok(got.load.includes('loaded <alone>/' + ADDON), got.load)
    })

    await t.test('esbuild --format=esm, no option: the wasm driver', {
      skip: typeof process.getBuiltinModule !== 'function' && 'Node ' + process.version + ' has no process.getBuiltinModule: an ES module bundle needs the banner (README)',
    }, async () => {
      const out = path.join(work, 'esbuild-esm')
      const b = await esbuild(app, ['handler.mjs', '--bundle', '--platform=node', '--format=esm', '--outdir=' + out, '--out-extension:.js=.mjs'])
      assert.equal(b.code, 0, b.stderr)
      assert.equal(b.stderr, '', 'esbuild warned')
      assert.deepEqual(record('esbuild esm', out, 'wasm'), ['handler.mjs'])
      const got = await runAlone(out, 'handler.mjs')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'wasm', 1], JSON.stringify(got))
      // Every platform package tried is named, with why it did not load.
      assert.match(got.load, /no native addon loaded \(.*yc-metadata-token-linux-x64-gnu: Dynamic require of /)
      assert.match(got.load, /no native addon loaded \(.*yc-metadata-token-linux-x64-musl: Dynamic require of /)
    })

    await t.test('esbuild --format=esm with the banner and the addon as an entry point, copied beside the bundle: native', async () => {
      const out = path.join(work, 'esbuild-esm-native')
      const b = await esbuild(app, ['handler.mjs', path.join('node_modules', PLATFORM_PACKAGE, ADDON), '--loader:.node=copy', '--entry-names=[name]',
        '--bundle', '--platform=node', '--format=esm', '--outdir=' + out, '--out-extension:.js=.mjs', '--banner:js=' + ESM_BANNER])
      assert.equal(b.code, 0, b.stderr)
      assert.deepEqual(record('esbuild esm + banner + addon', out, 'native'), ['handler.mjs', ADDON])
      const got = await runAlone(out, 'handler.mjs')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'native', 1], JSON.stringify(got))
      assert.ok(got.load.includes('loaded <alone>/' + ADDON), got.load)
    })

    await t.test('webpack 5 target node, no option: the wasm driver, no warning; native when node_modules is deployed too', async () => {
      const out = path.join(work, 'webpack')
      const b = await webpack(webpackConfig(app, out, []))
      assert.deepEqual(b.errors, [])
      assert.deepEqual(b.warnings, [])
      assert.deepEqual(record('webpack', out, 'wasm'), ['handler.js'])
      const got = await runAlone(out, 'handler.js')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'wasm', 1], JSON.stringify(got))
      // Both libcs' packages named (the order is this host's guess).
      assert.match(got.load, /yc-metadata-token-linux-x64-gnu: not installed/)
      assert.match(got.load, /yc-metadata-token-linux-x64-musl: not installed/)
      // Deployed with node_modules, the same bundle finds the platform package by Node's resolution.
      const withModules = await runAlone(out, 'handler.js', { above: [path.join('node_modules', PLATFORM_PACKAGE)] })
      assert.deepEqual([withModules.tokenSha256, withModules.driver], [tokenSha256, 'native'], JSON.stringify(withModules))
      assert.match(withModules.load, /driver native: loaded yc-metadata-token-linux-x64-gnu$/)
    })

    await t.test('webpack 5 with the addon copied beside the bundle (copy-webpack-plugin): native', async () => {
      const out = path.join(work, 'webpack-native')
      const CopyPlugin = require('copy-webpack-plugin')
      const addon = require.resolve(PLATFORM_PACKAGE, { paths: [app] })
      const b = await webpack(webpackConfig(app, out, [new CopyPlugin({ patterns: [addon] })]))
      assert.deepEqual(b.errors, [])
      assert.deepEqual(b.warnings, [])
      assert.deepEqual(record('webpack + CopyPlugin', out, 'native'), ['handler.js', ADDON])
      const got = await runAlone(out, 'handler.js')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'native', 1], JSON.stringify(got))
      assert.ok(got.load.includes('loaded <alone>/' + ADDON), got.load)
    })

    await t.test('@vercel/ncc, no option: native, and nothing else from node_modules', async () => {
      const out = path.join(work, 'ncc')
      const b = await run(process.execPath, [require.resolve('@vercel/ncc/dist/ncc/cli.js'), 'build', 'handler.js', '-o', out, '--quiet'], { cwd: app })
      assert.equal(b.code, 0, b.stderr)
      const list = record('ncc', out, 'native')
      assert.deepEqual(list.filter((f) => f.endsWith('.node')).map((f) => path.basename(f)), [ADDON])
      assert.ok(!list.some((f) => f.includes('node_modules') || f.endsWith('blob.bin')), 'ncc copied node_modules: ' + list.join(', '))
      const got = await runAlone(out, 'index.js')
      assert.deepEqual([got.tokenSha256, got.driver, got.requests], [tokenSha256, 'native', 1], JSON.stringify(got))
      assert.match(got.load, /loaded <alone>\/.*yc-metadata-token\.linux-x64-gnu\.node/)
    })
  } finally {
    for (const line of sizes) t.diagnostic(line)
    await emulator.close()
    fs.rmSync(work, { recursive: true, force: true })
  }
})

// ncc copies only what a literal path names: every platform the release publishes needs its
// hoisted path written out in binding.js, or ncc bundles for it would silently lose the addon.
test('the loader names the hoisted addon of every published platform by a literal path', {
  skip: process.env.YC_METADATA_TOKEN_DRIVER === 'wasm' && 'driver-independent: checked in the native pass',
}, () => {
  const { platformPackages } = require('../scripts/pack')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-hoisted-'))
  try {
    const pkg = path.join(dir, 'node_modules', 'yc-metadata-token')
    fs.mkdirSync(pkg, { recursive: true })
    fs.copyFileSync(path.join(ROOT, 'binding.js'), path.join(pkg, 'binding.js'))
    const platforms = platformPackages()
    assert.ok(platforms.length >= 7, platforms.map((p) => p.name).join(', '))
    for (const { name } of platforms) {
      const platform = name.slice('yc-metadata-token-'.length)
      const [platformName, arch] = platform.split('-')
      // A file that is there but no addon: the loader must reach it by its stat, and say so.
      const addon = path.join(dir, 'node_modules', name, 'yc-metadata-token.' + platform + '.node')
      fs.mkdirSync(path.dirname(addon))
      fs.writeFileSync(addon, 'not an addon')
      const script =
        "Object.defineProperty(process, 'platform', { value: " + JSON.stringify(platformName) + ' });' +
        "Object.defineProperty(process, 'arch', { value: " + JSON.stringify(arch) + ' });' +
        "try { require('yc-metadata-token/binding.js') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }"
      const out = require('node:child_process').execFileSync(process.execPath, ['-e', script], {
        cwd: dir,
        encoding: 'utf8',
        env: cleanEnv({ YC_METADATA_TOKEN_DRIVER: 'native' }),
      })
      const err = JSON.parse(out)
      assert.equal(err.code, 'ERR_METADATA_UNSUPPORTED_PLATFORM', platform)
      assert.ok(err.message.includes(addon + ': '), platform + ': ' + err.message)
      fs.rmSync(path.dirname(addon), { recursive: true })
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
