// An ES module TypeScript user: named imports and the default export.
import { getToken, TokenProvider, CODES, type Token } from 'yc-metadata-token'
import ycMetadataToken from 'yc-metadata-token'

const provider = new TokenProvider()
const first: Token = await getToken()
const second: Token = await provider.getToken({ forceRefresh: true })
const header: string = await ycMetadataToken.getAuthorizationHeader()
const code: 'ERR_METADATA_TIMEOUT' = CODES.TIMEOUT

export { first, second, header, code }

// The emulator, as a user's own tests would start it.
import { startEmulator, type Emulator } from 'yc-metadata-token/emulator/index.js'

const emu: Emulator = await startEmulator({ token: 'test-token', expiresIn: 60 })
process.env.YC_METADATA_ADDR = emu.address
emu.fault({ status: 503, times: 1 })
// @ts-expect-error: an unknown fault kind
emu.fault({ explode: true })
await emu.close()
