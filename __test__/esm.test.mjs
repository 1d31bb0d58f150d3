// ES module use: named imports, the default export, and one module instance shared with require().
// The package is CommonJS without an `exports` map (resolving one costs ~1.3 ms of every cold
// require): Node's ESM loader reads the named exports from index.js itself.

import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { startEmulator } from '../emulator/index.js'
import ycMetadataToken, {
  getToken,
  getAuthorizationHeader,
  TokenProvider,
  defaultProvider,
  MetadataTokenError,
  CODES,
  isAvailable,
  getMetadata,
  getFolderId,
} from '../index.js'

const require = createRequire(import.meta.url)

test('named and default exports are the CommonJS module\'s', () => {
  const cjs = require('../index.js')
  assert.equal(getToken, cjs.getToken)
  assert.equal(TokenProvider, cjs.TokenProvider)
  assert.equal(MetadataTokenError, cjs.MetadataTokenError)
  assert.equal(CODES, cjs.CODES)
  assert.equal(isAvailable, cjs.isAvailable)
  assert.equal(getMetadata, cjs.getMetadata)
  assert.equal(getFolderId, cjs.getFolderId)
  assert.equal(ycMetadataToken, cjs)
  assert.deepEqual(Object.keys(cjs).sort(), ['CODES', 'MetadataTokenError', 'TokenProvider', 'defaultProvider', 'getAuthorizationHeader',
    'getFolderId', 'getMetadata', 'getToken', 'isAvailable'])
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
