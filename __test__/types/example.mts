// An ES module TypeScript user: named imports and the default export.
import { getToken, TokenProvider, CODES, type Token } from 'yc-metadata-token'
import ycMetadataToken from 'yc-metadata-token'

const provider = new TokenProvider()
const first: Token = await getToken()
const second: Token = await provider.getToken({ forceRefresh: true })
const header: string = await ycMetadataToken.getAuthorizationHeader()
const code: 'ERR_METADATA_TIMEOUT' = CODES.TIMEOUT

export { first, second, header, code }
