// Types of the ES module entry (index.mjs): the same named exports, and the CommonJS module as default.
import cjs = require('./index.js')

export {
  getToken,
  getAuthorizationHeader,
  TokenProvider,
  defaultProvider,
  MetadataTokenError,
  CODES,
} from './index.js'
export type {
  Token,
  TokenProviderOptions,
  TokenProviderStats,
  GetTokenOptions,
  DefaultGetTokenOptions,
  CloudFunctionContext,
  MetadataTokenErrorCode,
} from './index.js'
export default cjs
