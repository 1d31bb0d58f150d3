'use strict'

// A smoke test of the benchmark harness (benchmark/child.js): every kind of measurement runs and
// reports numbers, and the "token" each subject returns is the emulator's. Nothing here judges
// speed; `npm run bench` prints the figures.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { promisify } = require('node:util')
const { startEmulator } = require('../emulator')

const CHILD = path.join(__dirname, '..', 'benchmark', 'child.js')
// The subject of this pass's driver (scripts/test-drivers.js).
const OURS = process.env.YC_METADATA_TOKEN_DRIVER === 'wasm' ? 'ours-wasm' : 'ours'
const TOKEN = 't1.smoke-test-token'

async function measure(emu, mode, subject) {
  const env = Object.assign({}, process.env, { YC_METADATA_ADDR: emu.address, GCE_METADATA_HOST: emu.address, BENCH_TOKEN: TOKEN })
  const { stdout } = await promisify(execFile)(process.execPath, [CHILD, mode, subject], { env, timeout: 30000 })
  return JSON.parse(stdout)
}

test('the benchmark harness measures ours and the floors', async (t) => {
  const emu = await startEmulator({ token: TOKEN, expiresIn: 3600 })
  t.after(() => emu.close())

  const cold = await measure(emu, 'cold', OURS)
  for (const field of ['requireMs', 'firstMs', 'coldMs', 'rssMb', 'threadsAdded']) {
    assert.equal(typeof cold[field], 'number', field)
  }
  assert.equal(emu.requests, 1)

  for (const subject of [OURS, 'raw-socket', 'bare']) {
    for (const mode of ['cached', 'forced']) {
      const loop = await measure(emu, mode, subject)
      assert.ok(loop.n >= 10 && loop.p50 > 0 && loop.p99 > 0, subject + ' ' + mode + ': ' + JSON.stringify(loop))
    }
  }

  emu.reset()
  const concurrent = await measure(emu, 'concurrent', OURS)
  assert.ok(concurrent.ms > 0)
  assert.equal(emu.requests, 1, '1000 concurrent cold calls share one request')
})

test('a subject that returns the wrong token fails the measurement', async (t) => {
  const emu = await startEmulator({ token: 'some-other-token', expiresIn: 3600 })
  t.after(() => emu.close())
  await assert.rejects(measure(emu, 'cold', 'raw-socket'), /other than the emulator token/)
})

test('the chart draws every bar on a log scale, the floor marked, text escaped', () => {
  const { chart } = require('../benchmark/chart')
  const svg = chart(
    [{ title: 'Cold <start>', floor: { label: 'raw & socket', ms: 4 }, bars: [
      { label: 'a', ms: 1, ours: true },
      { label: 'b', ms: 10 },
      { label: 'c', ms: 100 },
      { label: 'n/a', ms: NaN },
    ] }],
    'caption',
    (ms) => ms + ' ms',
  )
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  assert.ok(svg.includes('Cold &lt;start&gt;') && svg.includes('raw &amp; socket'))
  assert.ok(!svg.includes('n/a'), 'a subject without a figure is left out')
  const widths = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[1]))
  assert.equal(widths.length, 3)
  // Log scale: each tenfold step adds the same width.
  assert.ok(Math.abs(widths[2] - widths[1] - (widths[1] - widths[0])) < 0.5, widths.join(' '))
  assert.match(svg, /stroke-dasharray/)
})

test('the isAvailable measurement times a "no" off-cloud, and fails on a "yes"', async (t) => {
  const emu = await startEmulator({ token: TOKEN, expiresIn: 3600 })
  t.after(() => emu.close())
  const { closedPort } = require('./helpers')
  const nothing = { address: '127.0.0.1:' + (await closedPort()) }
  for (const subject of [OURS, 'gcp-metadata']) {
    const r = await measure(nothing, 'available', subject)
    assert.ok(r.ms > 0, subject + ': ' + JSON.stringify(r))
  }
  await assert.rejects(measure(emu, 'available', OURS), /isAvailable\(\) said true off-cloud/)
})
