'use strict'

// Chooses the driver of the Rust core, once per thread: the native addon where one loads, else the
// WebAssembly module that ships inside this package. YC_METADATA_TOKEN_DRIVER=native or =wasm
// forces one. Exports { Provider, usableForMs, isB64Token, isAvailable, readMetadata, driver,
// reason, quote }: the provider class (NativeProvider from the addon, or WasmProvider from
// wasm-driver.js: the same surface), the core's rules for a token it does not hold (its time
// left, its characters), the core's probe and metadata reads (the same functions in both), the
// driver's name, why it was chosen, and how a message quotes a user's value.
//
// This runs on every cold start, so finding the addon stats a few files: no process.report, no
// child process, and the platform package is first looked for where npm, yarn and pnpm put it (a
// stat costs ~0.05 ms, resolving a package name by require ~0.5 ms).
//
// It also runs inside bundles (README "Bundlers"), so every path and require here is written for
// what esbuild, webpack and @vercel/ncc make of it: none of them may fail the build, copy
// node_modules or turn a require into an empty context, and the addon is found where each of them
// can be told to put it.

// Files are looked for only where there is a __dirname: an ES module bundle (esbuild
// --format=esm) has none unless its banner makes one (README "Bundlers"). It has no require either
// (esbuild's stand-in throws "Dynamic require of … is not supported"), so Node's own modules come
// through process.getBuiltinModule where Node has it (20.16, 22.3 and newer).
const FILES = typeof __dirname === 'string'
const existsSync = FILES ? (process.getBuiltinModule ? process.getBuiltinModule('fs') : require('fs')).existsSync : null
const join = FILES ? (process.getBuiltinModule ? process.getBuiltinModule('path') : require('path')).join : null

const PACKAGE = 'yc-metadata-token'
const DRIVER_VARIABLE = 'YC_METADATA_TOKEN_DRIVER'
// What scripts/build-all builds and the release publishes.
const SUPPORTED = [
  'linux-x64-gnu',
  'linux-x64-musl',
  'linux-arm64-gnu',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  // The windows-gnu build (scripts/build-all.sh): the MSVC toolchain cannot run on the build machine.
  'win32-x64-gnu',
]
const MUSL_LOADER_ARCH = { x64: 'x86_64', arm64: 'aarch64' }

// Platform names to try, the likely one first. On Linux the C library decides: musl's dynamic
// loader has a fixed path, and one stat is far cheaper than process.report. It is only a hint (a
// glibc system can have musl installed too, and node_modules can hold both packages), so a failed
// load of one is followed by the other.
function candidates() {
  const { platform, arch } = process
  if (platform === 'win32') return [platform + '-' + arch + '-gnu']
  if (platform !== 'linux') return [platform + '-' + arch]
  const gnu = 'linux-' + arch + '-gnu'
  const musl = 'linux-' + arch + '-musl'
  const loader = MUSL_LOADER_ARCH[arch]
  return loader && FILES && existsSync('/lib/ld-musl-' + loader + '.so.1') ? [musl, gnu] : [gnu, musl]
}

// process.dlopen is what require() does for a .node file, without its module resolution
// (~0.25 ms of a cold start).
function dlopen(file) {
  const addon = { exports: {} }
  process.dlopen(addon, file)
  return addon.exports
}

function isMissing(err, request) {
  return err.code === 'MODULE_NOT_FOUND' && String(err.message).indexOf("'" + request + "'") !== -1
}

// Where a platform package's addon is when the package manager hoisted it beside this package,
// one literal path per platform: @vercel/ncc copies the one file that such a __dirname expression
// names into its output (a path computed from the platform's name made it copy the whole
// node_modules folder). join only normalizes it, for Windows and for the reason shown.
function hoisted(name) {
  switch (name) {
    case 'linux-x64-gnu': return join(__dirname + '/../yc-metadata-token-linux-x64-gnu/yc-metadata-token.linux-x64-gnu.node')
    case 'linux-x64-musl': return join(__dirname + '/../yc-metadata-token-linux-x64-musl/yc-metadata-token.linux-x64-musl.node')
    case 'linux-arm64-gnu': return join(__dirname + '/../yc-metadata-token-linux-arm64-gnu/yc-metadata-token.linux-arm64-gnu.node')
    case 'linux-arm64-musl': return join(__dirname + '/../yc-metadata-token-linux-arm64-musl/yc-metadata-token.linux-arm64-musl.node')
    case 'darwin-x64': return join(__dirname + '/../yc-metadata-token-darwin-x64/yc-metadata-token.darwin-x64.node')
    case 'darwin-arm64': return join(__dirname + '/../yc-metadata-token-darwin-arm64/yc-metadata-token.darwin-arm64.node')
    case 'win32-x64-gnu': return join(__dirname + '/../yc-metadata-token-win32-x64-gnu/yc-metadata-token.win32-x64-gnu.node')
  }
  return null
}

// The addon, or { failures } naming each candidate tried and what happened to it.
function loadNative() {
  const failures = []
  for (const name of candidates()) {
    const file = PACKAGE + '.' + name + '.node'
    const platformPackage = PACKAGE + '-' + name
    // Beside this file: a local build, or the addon put beside a bundle. In node_modules here: a
    // nested install, or a bundle whose output keeps the platform package's folder.
    const places = FILES ? [join(__dirname, file), join(__dirname, 'node_modules', platformPackage, file), hoisted(name)] : []
    let found = false
    for (const place of places) {
      if (place === null || !existsSync(place)) continue
      found = true
      try {
        return { addon: dlopen(place), from: place }
      } catch (err) {
        failures.push(place + ': ' + firstLine(err))
      }
    }
    if (found) continue
    // Node's own resolution finds the package wherever else it is installed. webpack (and ncc,
    // built on it) would make a computed require an empty context and warn about it in every
    // build; they know typeof __webpack_require__ at build time, keep only the branch that holds
    // for them and turn __non_webpack_require__ into Node's require (a node_modules deployed beside
    // the bundle then serves).
    try {
      const addon = typeof __webpack_require__ === 'function' ? __non_webpack_require__(platformPackage) : require(platformPackage)
      return { addon, from: platformPackage }
    } catch (err) {
      failures.push(isMissing(err, platformPackage) ? platformPackage + ': not installed' : platformPackage + ': ' + firstLine(err))
    }
  }
  return { failures }
}

function firstLine(err) {
  return String((err && err.message) || err).split('\n')[0]
}

function unsupported(failures, wasmError) {
  const name = candidates()[0]
  const error = new Error(
    PACKAGE + ' could not load its native addon for ' + name + ' (Node ' + process.version + '): ' +
      failures.join('; ') + '. ' +
      (SUPPORTED.indexOf(name) !== -1
        ? 'Install again without --no-optional / --omit=optional, on the platform that runs the code ' +
          '(node_modules copied from another OS or libc lacks it); in a bundle, see "Bundlers" in the README'
        : 'Prebuilt platforms: ' + SUPPORTED.join(', ')) +
      (wasmError ? '; the WebAssembly driver did not load either: ' + firstLine(wasmError) : '; or unset ' + DRIVER_VARIABLE + ' to use the WebAssembly driver') +
      '.'
  )
  error.code = 'ERR_METADATA_UNSUPPORTED_PLATFORM'
  return error
}

// process.env falls back to Object.prototype for a variable that is not set: a polluted prototype
// must not choose the driver (index.js reads its variables the same way).
function ownEnv(name) {
  return Object.prototype.hasOwnProperty.call(process.env, name) ? process.env[name] : undefined
}

// The most characters of a user's value a message quotes, as the core's MAX_QUOTED_CHARS
// (src/core/config.rs): enough to recognize it, while a 50-MB value still makes a short message.
const MAX_QUOTED_CHARS = 200

// A user's value quoted for an error message, by the core's rule (`quoted` in config.rs) for the
// messages made in JavaScript: whole up to MAX_QUOTED_CHARS, else its beginning, an ellipsis and
// its full length.
function quote(value) {
  const text = String(value)
  if (text.length <= MAX_QUOTED_CHARS) return JSON.stringify(text)
  return JSON.stringify(text.slice(0, MAX_QUOTED_CHARS)) + '… (' + text.length + ' characters in all)'
}

function choose() {
  const forced = ownEnv(DRIVER_VARIABLE)
  if (forced !== undefined && forced !== '' && forced !== 'native' && forced !== 'wasm') {
    const error = new Error(DRIVER_VARIABLE + ' must be "native" or "wasm" (or unset), got ' + quote(forced))
    error.code = 'ERR_INVALID_OPTION'
    throw error
  }
  if (forced === 'wasm') return wasmDriver(require('./wasm-driver'), DRIVER_VARIABLE + '=wasm')
  const native = loadNative()
  if (native.addon) {
    const reason = (forced === 'native' ? DRIVER_VARIABLE + '=native; ' : '') + 'loaded ' + native.from
    const { NativeProvider, usableForMs, isB64Token, isAvailable, readMetadata } = native.addon
    return { Provider: NativeProvider, usableForMs, isB64Token, isAvailable, readMetadata, driver: 'native', reason }
  }
  if (forced === 'native') throw unsupported(native.failures)
  let wasm
  try {
    wasm = require('./wasm-driver')
  } catch (err) {
    throw unsupported(native.failures, err)
  }
  return wasmDriver(wasm, 'no native addon loaded (' + native.failures.join('; ') + ')')
}

function wasmDriver(wasm, reason) {
  const { isAvailable, readMetadata } = wasm
  return { Provider: wasm.WasmProvider, usableForMs: wasm.usableForMs, isB64Token: wasm.isB64Token, isAvailable, readMetadata, driver: 'wasm', reason }
}

module.exports = Object.assign(choose(), { ownEnv, quote })
