'use strict'

// Finds the native addon: a local build next to this file (npm run build), else the prebuilt
// platform package. No child process and no process.report: this runs on every cold start.

const { existsSync } = require('fs')
const { join } = require('path')

const SUPPORTED = ['linux-x64-gnu']

function platformName() {
  const { platform, arch } = process
  if (platform !== 'linux') return platform + '-' + arch
  // musl's loader has a fixed path; a stat is far cheaper than reading process.report.
  const musl = existsSync('/lib/ld-musl-' + (arch === 'x64' ? 'x86_64' : arch === 'arm64' ? 'aarch64' : arch) + '.so.1')
  return 'linux-' + arch + (musl ? '-musl' : '-gnu')
}

function load() {
  const name = platformName()
  const local = join(__dirname, 'yc-metadata-token.' + name + '.node')
  if (existsSync(local)) return require(local)
  try {
    return require('yc-metadata-token-' + name)
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes('yc-metadata-token-' + name)) {
      throw err
    }
    const supported = SUPPORTED.indexOf(name) !== -1
    const error = new Error(
      'yc-metadata-token has no native addon for ' + name + ' (Node ' + process.version + '). ' +
        (supported
          ? 'Its package yc-metadata-token-' + name + ' is missing: reinstall without --no-optional / --omit=optional.'
          : 'Prebuilt platforms: ' + SUPPORTED.join(', ') + '.')
    )
    error.code = 'ERR_METADATA_UNSUPPORTED_PLATFORM'
    throw error
  }
}

module.exports = load()
