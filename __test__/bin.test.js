'use strict'

// The package's command line: `yc-metadata-token emulator` runs the metadata emulator for
// development off-cloud and prints the line to paste.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const pkg = require('../package.json')

const BIN = path.join(__dirname, '..', pkg.bin['yc-metadata-token'])

test('package.json names the bin and ships it', () => {
  assert.equal(pkg.bin['yc-metadata-token'], 'bin/yc-metadata-token.js')
  assert.ok(pkg.files.includes('bin/'))
})

test('emulator subcommand serves the given token; the package finds it through the printed line', async () => {
  const child = spawn(process.execPath, [BIN, 'emulator', '--port', '0', '--token', 'user-token-from-yc'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const exported = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d
      const m = /^export YC_METADATA_ADDR=(127\.0\.0\.1:\d+)$/m.exec(stdout)
      if (m) resolve(m[1])
    })
    child.on('exit', (code) => reject(new Error('emulator exited with ' + code + ': ' + stderr)))
  })
  try {
    const { TokenProvider } = require('..')
    const t = await new TokenProvider({ host: exported }).getToken()
    assert.equal(t.token, 'user-token-from-yc')
    assert.equal(t.expiresInSeconds, 3600)
  } finally {
    const exit = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
    child.kill('SIGTERM')
    assert.equal(await exit, 0)
  }
  assert.ok(!stdout.includes('user-token-from-yc') && !stderr.includes('user-token-from-yc'), 'the token was printed')
})

test('usage errors and help', () => {
  const run = (...args) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 10000 })
  const none = run()
  assert.equal(none.status, 2)
  assert.match(none.stdout, /emulator/)
  // Issue 17: the example keeps a real token out of argv, where every local user can read it.
  assert.match(none.stdout, /--token-command 'yc iam create-token'/)
  assert.doesNotMatch(none.stdout, /--token[ =]+["']?\$\(/)
  assert.equal(run('--help').status, 0)
  const unknown = run('serve')
  assert.equal(unknown.status, 2)
  assert.match(unknown.stderr, /unknown command "serve"/)
  const badOption = run('emulator', '--port', 'x')
  assert.equal(badOption.status, 2)
  assert.match(badOption.stderr, /--port/)
  const help = run('emulator', '--help')
  assert.equal(help.status, 0)
  assert.match(help.stdout, /--token/)
  assert.equal(run('--version').stdout.trim(), pkg.version)
})
