'use strict'

// What the SDK adapters promise as a package: loading the main package loads no SDK, and each
// adapter ships (files) with its SDK as an optional peer.

const test = require('node:test')
const assert = require('node:assert/strict')
const { runNode } = require('./helpers')
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
