'use strict'

// `npm test`'s JavaScript half: the one suite in __test__/, run once per driver of the core
// (YC_METADATA_TOKEN_DRIVER=native, then =wasm). Children the tests start inherit the variable.
// A test that a driver cannot pass by design says so and skips (see stats().driver).

const { spawnSync } = require('child_process')
const path = require('path')

const DRIVERS = ['native', 'wasm']
let failed = false
for (const driver of DRIVERS) {
  console.log('# driver: ' + driver)
  const run = spawnSync(process.execPath, ['--test', path.join(__dirname, '..', '__test__')], {
    stdio: 'inherit',
    env: Object.assign({}, process.env, { YC_METADATA_TOKEN_DRIVER: driver }),
  })
  if (run.status !== 0) {
    console.log('# driver ' + driver + ': the suite failed (exit ' + run.status + ', signal ' + run.signal + ')')
    failed = true
  }
}
process.exit(failed ? 1 : 0)
