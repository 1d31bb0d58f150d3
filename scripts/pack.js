'use strict'

// Packs what users install: the root package and every platform package under npm/ that holds its
// built .node. Used by the packaging test and by .github/workflows/release.yml, so the test checks
// the very tarballs a release publishes.
//
// The root package.json in git has no optionalDependencies on purpose: npm ci cannot lock packages
// that are not published yet, and a name we have not published is one anybody could take. The
// packed manifest gets them here, one per napi target at the root's version (napi-rs's own
// `napi pre-publish` does the same at publish time).
//
//   node scripts/pack.js [destination]   (default .cache/pack) → prints the tarball paths as JSON

const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')

const ROOT = path.join(__dirname, '..')
const NPM_DIR = path.join(ROOT, 'npm')
const STAGE_FILES = ['README.md', 'LICENSE']

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}

// { dir, platform, name, version, binary, os, cpu, libc } for each npm/<platform>/ directory.
function platformPackages() {
  return fs
    .readdirSync(NPM_DIR)
    .sort()
    .map((entry) => {
      const dir = path.join(NPM_DIR, entry)
      const manifest = readJson(path.join(dir, 'package.json'))
      return {
        dir,
        platform: entry,
        name: manifest.name,
        version: manifest.version,
        binary: path.join(dir, manifest.main),
        os: manifest.os[0],
        cpu: manifest.cpu[0],
        libc: manifest.libc ? manifest.libc[0] : undefined,
      }
    })
}

function rootManifest() {
  const manifest = readJson(path.join(ROOT, 'package.json'))
  const optional = {}
  for (const platform of platformPackages()) {
    if (platform.version !== manifest.version) {
      throw new Error(platform.dir + ' is at ' + platform.version + ', the root at ' + manifest.version + ': run `napi version`')
    }
    optional[platform.name] = manifest.version
  }
  const packed = Object.assign({}, manifest, { optionalDependencies: optional })
  // Development only: nothing for an installing user to run or fetch.
  delete packed.scripts
  delete packed.devDependencies
  return packed
}

function npmPack(dir, destination) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', destination], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const [info] = JSON.parse(out)
  return { tarball: path.join(destination, info.filename), files: info.files.map((f) => f.path) }
}

// Copies the root's `files` (and README/LICENSE) next to the publish manifest and packs that copy.
function packRoot(destination) {
  const manifest = rootManifest()
  const stage = path.join(destination, 'stage-root')
  fs.rmSync(stage, { recursive: true, force: true })
  for (const file of manifest.files.concat(STAGE_FILES)) {
    const from = path.join(ROOT, file)
    if (!fs.existsSync(from)) {
      // The wasm module is a build product: a tarball without it would fail wherever no addon loads.
      if (STAGE_FILES.indexOf(file) === -1) throw new Error(file + ' is missing: run `npm run build` first')
      continue
    }
    fs.mkdirSync(path.dirname(path.join(stage, file)), { recursive: true })
    // `files` may name folders (bin/); cpSync copies either.
    fs.cpSync(from, path.join(stage, file), { recursive: true })
  }
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n')
  const packed = npmPack(stage, destination)
  fs.rmSync(stage, { recursive: true, force: true })
  return Object.assign({ name: manifest.name, version: manifest.version, manifest }, packed)
}

// Packs the root and each platform package whose binary has been built.
function packAll(destination) {
  fs.mkdirSync(destination, { recursive: true })
  const platforms = platformPackages()
    .filter((p) => fs.existsSync(p.binary))
    .map((p) => Object.assign({ platform: p.platform, name: p.name, binary: p.binary, os: p.os, cpu: p.cpu, libc: p.libc }, npmPack(p.dir, destination)))
  return { root: packRoot(destination), platforms }
}

module.exports = { packAll, platformPackages, rootManifest }

if (require.main === module) {
  const destination = path.resolve(process.argv[2] || path.join(ROOT, '.cache', 'pack'))
  const result = packAll(destination)
  console.log(
    JSON.stringify({ root: result.root.tarball, platforms: result.platforms.map((p) => p.tarball) }, null, 2)
  )
}
