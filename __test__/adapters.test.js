'use strict'

// What the SDK adapters promise as a package: loading the main package loads no SDK, and each
// adapter ships (files) with its SDK as an optional peer.

const test = require('node:test')
const assert = require('node:assert/strict')
const { runNode, copyPackage } = require('./helpers')
const pkg = require('../package.json')

const ADAPTERS = {
  'ydb-sdk': { files: ['ydb-sdk.js', 'ydb-sdk.d.ts'], peer: 'ydb-sdk' },
  ydbjs: { files: ['ydbjs.mjs', 'ydbjs.d.mts'], peer: '@ydbjs/auth' },
  'nodejs-sdk': { files: ['nodejs-sdk.js', 'nodejs-sdk.d.ts'], peer: '@yandex-cloud/nodejs-sdk' },
}
const SDK_PATH = /node_modules[\\/](ydb-sdk|@ydbjs|@yandex-cloud|@grpc|nice-grpc|protobufjs)[\\/]/

test('require of the main package (and so import, which loads the same file) loads no SDK', async () => {
  const cjs = await runNode(
    "require('./index.js'); console.log(JSON.stringify(Object.keys(require.cache)))", {})
  assert.equal(cjs.code, 0, cjs.stderr)
  const loaded = JSON.parse(cjs.stdout).filter((f) => SDK_PATH.test(f))
  assert.deepEqual(loaded, [])
  // The check can fail: an adapter does load its SDK.
  const adapter = await runNode(
    "require('./ydb-sdk.js'); console.log(JSON.stringify(Object.keys(require.cache)))", {})
  assert.ok(JSON.parse(adapter.stdout).some((f) => SDK_PATH.test(f)))
})

test('each adapter is in "files", its SDK an optional peer and a dev dependency', () => {
  for (const [name, a] of Object.entries(ADAPTERS)) {
    for (const f of a.files) assert.ok(pkg.files.includes(f), name + ': ' + f + ' not in files')
    assert.ok(pkg.peerDependencies[a.peer], name + ': no peer ' + a.peer)
    assert.equal(pkg.peerDependenciesMeta[a.peer].optional, true, name)
    assert.ok(pkg.devDependencies[a.peer], name + ': no dev dependency ' + a.peer)
  }
  assert.equal(pkg.exports, undefined, 'no exports map: it costs every cold require ~1.3 ms')
})

test('an adapter whose SDK is not installed says which package to install', async (t) => {
  const fs = require('node:fs')
  const os = require('node:os')
  const path = require('node:path')
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'ycmt-nosdk-'))
  t.after(() => fs.rmSync(app, { recursive: true, force: true }))
  copyPackage(app)
  const probe = (code) => new Promise((resolve) => {
    const { execFile } = require('node:child_process')
    execFile(process.execPath, ['-e', code], { cwd: app }, (err, stdout, stderr) => resolve(stdout + stderr))
  })
  const cjs = await probe(`for (const name of ['ydb-sdk', 'nodejs-sdk']) {
    try { require('yc-metadata-token/' + name); console.log(name, 'loaded') } catch (e) { console.log(name, e.code, e.message) }
  }
  console.log('main', typeof require('yc-metadata-token').getToken)`)
  assert.match(cjs, /^ydb-sdk MODULE_NOT_FOUND yc-metadata-token\/ydb-sdk needs the package ydb-sdk \(5\.x\)/m)
  assert.match(cjs, /^nodejs-sdk MODULE_NOT_FOUND yc-metadata-token\/nodejs-sdk needs the package @yandex-cloud\/nodejs-sdk/m)
  assert.match(cjs, /^main function$/m)
  const esm = await probe(`import('yc-metadata-token/ydbjs.mjs').then(() => console.log('loaded'), (e) => console.log(e.code, e.message))`)
  assert.match(esm, /ERR_MODULE_NOT_FOUND Cannot find package '@ydbjs\/auth'/)
})
