'use strict'

// Debug output (NODE_DEBUG / DEBUG): the decisions with timings on stderr, and never the token.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const crypto = require('node:crypto')
const { spawnSync } = require('node:child_process')
const { runNode } = require('./helpers')

const SCENARIO = path.join(__dirname, 'fixtures', 'debug-scenario.js')

function runScenario(env) {
  const secret = 'secret-' + crypto.randomBytes(12).toString('hex')
  const clean = Object.assign({}, process.env)
  delete clean.NODE_DEBUG
  delete clean.DEBUG
  delete clean.YC_METADATA_ADDR
  const r = spawnSync(process.execPath, [SCENARIO, secret], {
    env: Object.assign(clean, env),
    encoding: 'utf8',
    timeout: 30000,
  })
  assert.equal(r.status, 0, r.stderr)
  return { secret, stderr: r.stderr, stdout: r.stdout }
}

function fingerprint(token) {
  return crypto.createHash('sha256').update(token).digest('hex').slice(0, 8)
}

test('NODE_DEBUG=yc-metadata-token: fetch, retry, cache and failure lines with timings, no token', () => {
  const { secret, stderr, stdout } = runScenario({ NODE_DEBUG: 'some-module,YC-METADATA-TOKEN' })
  const expected = [
    /\[default\] provider for http:\/\/127\.0\.0\.1:\d+\/computeMetadata\/v1\/instance\/service-accounts\/default\/token/,
    /\[default\] no usable token: fetch started/,
    /\[default\] joined the fetch under way/,
    /\[default\] fetch done in [\d.]+ ms, 2 request\(s\), 1 retried: sha256:[0-9a-f]{8}/,
    /\[default\] new token sha256:[0-9a-f]{8}, expires in [\d.]+ ms/,
    /\[default\] memo hit: sha256:[0-9a-f]{8}/,
    /\[default\] token from the Cloud Functions context: sha256:[0-9a-f]{8}/,
    /\[default\] forced refresh: fetch started/,
    /\[default\] a caller aborted; the shared fetch carries on/,
    /\[default\] signal already aborted: rejected without a request/,
    /\[default\] cache hit inside the refresh margin: .*; background refresh started/,
    /\[provider 1\] fetch failed in [\d.]+ ms after 1 attempt\(s\): ERR_METADATA_NO_SERVICE_ACCOUNT/,
  ]
  for (const line of expected) assert.match(stderr, line)
  for (const line of stderr.trim().split('\n')) {
    assert.match(line, new RegExp('^yc-metadata-token ' + '\\d+: '), 'stray stderr line: ' + line)
  }
  assert.ok(stderr.includes('sha256:' + fingerprint(secret)), 'the fingerprint names the token')
  assert.ok(!stderr.includes(secret) && !stdout.includes(secret), 'the token leaked into the output')
  // Not even a longer piece of it.
  assert.ok(!stderr.includes(secret.slice(7, 19)))
})

test('DEBUG patterns follow the debug package: names, wildcards, exclusions', () => {
  assert.match(runScenario({ DEBUG: 'yc-metadata-token' }).stderr, /memo hit/)
  assert.match(runScenario({ DEBUG: 'express:*, yc-*' }).stderr, /memo hit/)
  assert.match(runScenario({ DEBUG: '*' }).stderr, /memo hit/)
  assert.equal(runScenario({ DEBUG: '*,-yc-metadata-token' }).stderr, '')
  assert.equal(runScenario({ DEBUG: 'yc-metadata' }).stderr, '')
  // Node's own debug output for http (from the emulator in the child, and from the wasm driver's
  // request, which names our User-Agent) is not ours: none of our lines.
  assert.doesNotMatch(runScenario({ NODE_DEBUG: 'http,net' }).stderr, /yc-metadata-token \d+: \[/)
})

// DEBUG is read at require: a pattern turned into a regular expression of '.*'s backtracked for
// seconds ('*' x 12, then one character that does not match), for ever with more stars. The
// child's time limit only tells a hang from an answer.
test('DEBUG patterns of 10 000 stars: require answers, matching or not', async () => {
  const stars = '*'.repeat(10000)
  const cases = [
    [stars + 'x', false],
    [stars + 'token', true],
    ['yc' + stars + '-' + stars + 'n', true],
    ['-' + stars + 'x,' + stars + 'yc' + stars, true],
    [stars + 'yc' + stars + ',-' + stars + 'token', false],
  ]
  for (const [pattern, on] of cases) {
    const r = await runNode(`require('.')`, { DEBUG: pattern }, 10000)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(/\[load\] driver/.test(r.stderr), on, pattern.replace(/\*+/g, '*') + ': ' + r.stderr)
  }
})

test('debug off: nothing on stderr', () => {
  assert.equal(runScenario({}).stderr, '')
})
