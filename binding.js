'use strict'

// Finds the native addon: a local build next to this file (npm run build), else the prebuilt
// platform package that npm installed as an optional dependency (npm/<platform>/ in the repository).
// This runs on every cold start, so it stats a few files: no process.report, no child process, and
// the platform package is first looked for where npm, yarn and pnpm put it (a stat costs ~0.05 ms,
// resolving a package name by require ~0.5 ms).

const { existsSync } = require('fs')
const { join } = require('path')

const PACKAGE = 'yc-metadata-token'
// What .github/workflows/release.yml builds; linux-x64-gnu is also built and tested by `npm test`.
const SUPPORTED = [
  'linux-x64-gnu',
  'linux-x64-musl',
  'linux-arm64-gnu',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64-msvc',
]
const MUSL_LOADER_ARCH = { x64: 'x86_64', arm64: 'aarch64' }

// Platform names to try, the likely one first. On Linux the C library decides: musl's dynamic
// loader has a fixed path, and one stat is far cheaper than process.report. It is only a hint (a
// glibc system can have musl installed too), so the other libc is tried next.
function candidates() {
  const { platform, arch } = process
  if (platform === 'win32') return [platform + '-' + arch + '-msvc']
  if (platform !== 'linux') return [platform + '-' + arch]
  const gnu = 'linux-' + arch + '-gnu'
  const musl = 'linux-' + arch + '-musl'
  const loader = MUSL_LOADER_ARCH[arch]
  return loader && existsSync('/lib/ld-musl-' + loader + '.so.1') ? [musl, gnu] : [gnu, musl]
}

// process.dlopen is what require() does for a .node file, without its module resolution
// (~0.25 ms of a cold start).
function loadAddon(file) {
  const addon = { exports: {} }
  process.dlopen(addon, file)
  return addon.exports
}

function isMissing(err, request) {
  return err.code === 'MODULE_NOT_FOUND' && String(err.message).indexOf("'" + request + "'") !== -1
}

function load() {
  const names = candidates()
  for (const name of names) {
    const file = PACKAGE + '.' + name + '.node'
    const platformPackage = PACKAGE + '-' + name
    const places = [
      join(__dirname, file),
      join(__dirname, 'node_modules', platformPackage, file),
      join(__dirname, '..', platformPackage, file),
    ]
    for (const place of places) {
      if (existsSync(place)) return loadAddon(place)
    }
    try {
      return require(platformPackage)
    } catch (err) {
      // Anything but "not installed" is real (a libc too old, a damaged file): say it as it is.
      if (!isMissing(err, platformPackage)) throw err
    }
  }
  const name = names[0]
  const error = new Error(
    PACKAGE + ' has no native addon for ' + name + ' (Node ' + process.version + '). ' +
      (SUPPORTED.indexOf(name) !== -1
        ? 'Its package ' + PACKAGE + '-' + name + ' is not installed: install again without ' +
          '--no-optional / --omit=optional, on the platform that runs the code (node_modules copied ' +
          'from another OS or libc lacks it).'
        : 'Prebuilt platforms: ' + SUPPORTED.join(', ') + '.')
  )
  error.code = 'ERR_METADATA_UNSUPPORTED_PLATFORM'
  throw error
}

module.exports = load()
