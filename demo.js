'use strict'

// The main job in miniature: start the bundled metadata emulator, point the package at it the way
// a user would (YC_METADATA_ADDR), and fetch a token through the driver of the core that loads: the
// native addon here, or the WebAssembly module (YC_METADATA_TOKEN_DRIVER=wasm npm run demo).

const { startEmulator, fingerprint } = require('./emulator')

async function main() {
  const emulator = await startEmulator({ expiresIn: 3600 })
  process.env.YC_METADATA_ADDR = emulator.address
  const { getToken, defaultProvider } = require('.')
  try {
    const started = process.hrtime.bigint()
    const first = await getToken()
    const firstMs = Number(process.hrtime.bigint() - started) / 1e6
    const again = process.hrtime.bigint()
    const second = await getToken()
    const cachedUs = Number(process.hrtime.bigint() - again) / 1e3
    console.log('emulator at ' + emulator.address + ' (YC_METADATA_ADDR); driver: ' + defaultProvider().stats().driver)
    // The token is a secret even from the emulator: show its fingerprint, never the value.
    console.log('token sha256:' + fingerprint(first.token) + ' expiresInSeconds ' + first.expiresInSeconds + ' (first call ' + firstMs.toFixed(2) + ' ms)')
    console.log('again ' + (second.token === first.token ? 'same token' : 'NEW token') + ' from the cache in ' + cachedUs.toFixed(1) + ' µs; upstream requests: ' + emulator.requests)
  } finally {
    await emulator.close()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
