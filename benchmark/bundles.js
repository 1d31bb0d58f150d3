#!/usr/bin/env node
'use strict'

// `npm run bench:bundles`: what embedding the wasm module in JavaScript (yc-metadata-token.wasm.js)
// costs. Times `require` and the first `new TokenProvider()` (where the wasm driver compiles its
// module) in fresh processes, subjects taking turns within each round:
//   - installed, wasm driver: the .wasm file read beside wasm-driver.js (as installed), and the same
//     package without the .wasm, so that the embedded module is read instead;
//   - esbuild bundles (--format=cjs): with the native addon beside it, the same built with the
//     embedded module emptied (what the bundle would cost without embedding), and the wasm driver.
// Needs `npm run build`. Prints a Markdown table and the bytes involved.
//
//   node benchmark/bundles.js [--rounds N]

const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { rootManifest } = require('../scripts/pack')

const ROOT = path.join(__dirname, '..')
const PLATFORM = process.platform + '-' + process.arch + (process.platform === 'linux' ? '-gnu' : '')
const ADDON = 'yc-metadata-token.' + PLATFORM + '.node'
const PLATFORM_PACKAGE = 'yc-metadata-token-' + PLATFORM
const EMBEDDED = 'yc-metadata-token.wasm.js'
const roundsArg = process.argv.indexOf('--rounds')
const ROUNDS = roundsArg === -1 ? 31 : Number(process.argv[roundsArg + 1])

// Prints "<require ms> <first provider ms>"; the 'os' require first, as every real program has
// required something before.
const PROBE = `require('os')
const t0 = process.hrtime.bigint()
const m = require(process.argv[1])
const t1 = process.hrtime.bigint()
new m.TokenProvider()
const t2 = process.hrtime.bigint()
console.log(Number(t1 - t0) / 1e6, Number(t2 - t1) / 1e6)`

function install(dir, { addon, wasmFile }) {
  const pkg = path.join(dir, 'node_modules', 'yc-metadata-token')
  const manifest = rootManifest()
  for (const file of manifest.files) {
    fs.mkdirSync(path.dirname(path.join(pkg, file)), { recursive: true })
    fs.cpSync(path.join(ROOT, file), path.join(pkg, file), { recursive: true })
  }
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify(manifest))
  if (!wasmFile) fs.rmSync(path.join(pkg, 'yc-metadata-token.wasm'))
  if (addon) {
    const platform = path.join(dir, 'node_modules', PLATFORM_PACKAGE)
    fs.mkdirSync(platform)
    fs.copyFileSync(path.join(ROOT, 'npm', PLATFORM, 'package.json'), path.join(platform, 'package.json'))
    fs.copyFileSync(path.join(ROOT, ADDON), path.join(platform, ADDON))
  }
  fs.writeFileSync(path.join(dir, 'entry.js'), "module.exports = require('yc-metadata-token')\n")
  return path.join(dir, 'node_modules', 'yc-metadata-token')
}

function esbuild(app, out, extra) {
  const bin = require.resolve('esbuild/bin/esbuild')
  execFileSync(bin, ['entry.js', '--bundle', '--platform=node', '--format=cjs', '--outdir=' + out, '--log-level=warning'].concat(extra), { cwd: app })
  return path.join(out, 'entry.js')
}

// The q-quantile (0.5: the median) of the values, nearest rank.
function quantile(values, q) {
  const sorted = values.slice().sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

function main() {
  for (const file of [ADDON, 'yc-metadata-token.wasm', EMBEDDED]) {
    if (!fs.existsSync(path.join(ROOT, file))) throw new Error(file + ' is missing: run `npm run build` first')
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'yc-bench-bundles-'))
  try {
    const app = path.join(work, 'app')
    install(app, { addon: true, wasmFile: true })
    const addonEntry = path.join('node_modules', PLATFORM_PACKAGE, ADDON)
    const subjects = [
      { name: 'installed, wasm driver, .wasm file', target: install(path.join(work, 'file'), { wasmFile: true }) },
      { name: 'installed, wasm driver, embedded module', target: install(path.join(work, 'embedded'), { wasmFile: false }) },
      { name: 'esbuild bundle, native addon beside it', target: esbuild(app, path.join(work, 'native'), [addonEntry, '--loader:.node=copy', '--entry-names=[name]']) },
      { name: 'esbuild bundle, wasm driver (embedded)', target: esbuild(app, path.join(work, 'wasm'), []) },
    ]
    // The same native bundle as if the wasm module were not embedded.
    const embedded = path.join(app, 'node_modules', 'yc-metadata-token', EMBEDDED)
    fs.writeFileSync(embedded, 'module.exports = ""\n')
    subjects.splice(3, 0, { name: 'esbuild bundle, native addon beside it, nothing embedded', target: esbuild(app, path.join(work, 'native-bare'), [addonEntry, '--loader:.node=copy', '--entry-names=[name]']) })

    for (const s of subjects) s.runs = []
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of subjects) {
        const env = Object.assign({}, process.env)
        delete env.YC_METADATA_TOKEN_DRIVER
        const out = execFileSync(process.execPath, ['-e', PROBE, s.target], { cwd: path.dirname(s.target), env, encoding: 'utf8' })
        s.runs.push(out.trim().split(' ').map(Number))
      }
    }
    const ms = (v) => v.toFixed(2)
    // A shared machine's neighbours make the upper tail; the quartiles show how far to trust a median.
    console.log('| subject | bytes of JavaScript | require, ms | first provider, ms | both, ms (quartiles) |')
    console.log('| --- | --- | --- | --- | --- |')
    for (const s of subjects) {
      const both = s.runs.map((r) => r[0] + r[1])
      const js = s.target.endsWith('entry.js') ? fs.statSync(s.target).size : '—'
      console.log('| ' + s.name + ' | ' + js + ' | ' + ms(quantile(s.runs.map((r) => r[0]), 0.5)) + ' | ' + ms(quantile(s.runs.map((r) => r[1]), 0.5)) +
        ' | ' + ms(quantile(both, 0.5)) + ' (' + ms(quantile(both, 0.25)) + '–' + ms(quantile(both, 0.75)) + ') |')
    }
    console.log('\nMedians of ' + ROUNDS + ' fresh processes each, ' + new Date().toISOString().slice(0, 10) + ', Node ' + process.version + ', ' +
      os.cpus().length + ' × ' + os.cpus()[0].model.trim() + ', load average ' + os.loadavg()[0].toFixed(1) + '.')
    console.log('yc-metadata-token.wasm ' + fs.statSync(path.join(ROOT, 'yc-metadata-token.wasm')).size + ' bytes, ' + EMBEDDED + ' ' +
      fs.statSync(path.join(ROOT, EMBEDDED)).size + ' bytes.')
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

main()
