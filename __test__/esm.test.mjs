// ES module use: named imports, the default export, and one module instance shared with require().

import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { startEmulator } from 'yc-metadata-token/emulator'
import ycMetadataToken, {
  getToken,
  getAuthorizationHeader,
  TokenProvider,
  defaultProvider,
  MetadataTokenError,
  CODES,
} from 'yc-metadata-token'

const require = createRequire(import.meta.url)

test('named and default exports are the CommonJS module\'s', () => {
  const cjs = require('yc-metadata-token')
  assert.equal(getToken, cjs.getToken)
  assert.equal(TokenProvider, cjs.TokenProvider)
  assert.equal(MetadataTokenError, cjs.MetadataTokenError)
  assert.equal(CODES, cjs.CODES)
  assert.equal(ycMetadataToken, cjs)
  assert.deepEqual(Object.keys(cjs).sort(), ['CODES', 'MetadataTokenError', 'TokenProvider', 'defaultProvider', 'getAuthorizationHeader', 'getToken'])
})

test('import works end to end against the emulator', async () => {
  const emu = await startEmulator({ token: 'esm-token', expiresIn: 600 })
  try {
    process.env.YC_METADATA_ADDR = emu.address
    assert.deepEqual(await getToken(), { token: 'esm-token', expiresInSeconds: 600 })
    assert.equal(await getAuthorizationHeader(), 'Bearer esm-token')
    assert.equal(defaultProvider().stats().upstreamRequests, 1)
    const provider = new TokenProvider({ host: emu.address })
    assert.equal((await provider.getToken()).token, 'esm-token')
  } finally {
    await emu.close()
  }
})

test('package.json is still reachable through exports', () => {
  assert.equal(require('yc-metadata-token/package.json').name, 'yc-metadata-token')
})
