// Deliberately wrong usage: __test__/types.test.js asserts tsc rejects each marked line.
import { getToken, TokenProvider, MetadataTokenError } from 'yc-metadata-token'

async function main() {
  const t = await getToken()
  const n: number = t.token // WRONG-1: token is a string
  new TokenProvider({ refreshMargin: 10 }) // WRONG-2: no such option
  await new TokenProvider().getToken({ forceRefresh: 'yes' }) // WRONG-3: forceRefresh is a boolean
  const e = new MetadataTokenError('m', 'ERR_NOPE') // WRONG-4: not a code
  return [n, e]
}
void main

async function withContext() {
  return getToken({}, { token: { access_token: 't', expires_in: '60' } }) // WRONG-5
}
void withContext
