// ES module entry: the CommonJS module's exports by name, so `import { getToken } from
// 'yc-metadata-token'` and `require('yc-metadata-token')` share one module and one cache.
import cjs from './index.js'

export const getToken = cjs.getToken
export const getAuthorizationHeader = cjs.getAuthorizationHeader
export const TokenProvider = cjs.TokenProvider
export const defaultProvider = cjs.defaultProvider
export const MetadataTokenError = cjs.MetadataTokenError
export const CODES = cjs.CODES
export default cjs
