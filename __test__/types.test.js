'use strict'

// index.d.ts and index.d.mts: the examples type-check with tsc --noEmit, and wrong usage does not.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const TSC = path.join(__dirname, '..', 'node_modules', '.bin', 'tsc')
const DIR = path.join(__dirname, 'types')

function tsc(project) {
  const r = spawnSync(TSC, ['--noEmit', '-p', project], { encoding: 'utf8', timeout: 120000 })
  return { status: r.status, output: r.stdout + r.stderr }
}

test('the TypeScript examples (CommonJS and ES module) type-check', () => {
  const r = tsc(path.join(DIR, 'tsconfig.json'))
  assert.equal(r.status, 0, r.output)
})

test('the SDK adapters type-check against the SDKs\' own types', () => {
  const r = tsc(path.join(DIR, 'adapters.tsconfig.json'))
  assert.equal(r.status, 0, r.output)
})

test('wrong usage fails to type-check, on each marked line', () => {
  const r = tsc(path.join(DIR, 'wrong', 'tsconfig.json'))
  assert.notEqual(r.status, 0, 'tsc accepted wrong.ts')
  const source = require('node:fs').readFileSync(path.join(DIR, 'wrong', 'wrong.ts'), 'utf8').split('\n')
  const marked = source.map((line, i) => (/\/\/ WRONG-\d/.test(line) ? i + 1 : 0)).filter(Boolean)
  assert.equal(marked.length, 5)
  for (const line of marked) {
    assert.match(r.output, new RegExp('wrong\\.ts\\(' + line + ','), 'no error on line ' + line + ':\n' + r.output)
  }
  const errors = r.output.split('\n').filter((l) => l.includes('error TS'))
  assert.equal(errors.length, marked.length, r.output)
})
