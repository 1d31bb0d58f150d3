// Handlers typed with the official Cloud Functions types (@yandex-cloud/function-types): their
// `Context` is an interface, which must be assignable to what getToken and friends accept.
import type { Handler } from '@yandex-cloud/function-types'
import { getToken, getAuthorizationHeader, TokenProvider } from 'yc-metadata-token'

const provider = new TokenProvider()

export const handler: Handler.Http = async (event, context) => {
  const { token } = await getToken(event, context)
  const authorization: string = await getAuthorizationHeader(event, context)
  const fromProvider = await provider.getToken({ context })
  const header: string = await provider.getAuthorizationHeader({ context, forceRefresh: false })
  return { statusCode: 200, body: String(token.length + authorization.length + fromProvider.expiresInSeconds + header.length) }
}

// A timer trigger's handler: same context type, any event.
export const timer: Handler.Timer = async (event, context) => {
  await getToken(event, context)
}

// A context built by hand in a unit test, as an object literal with the runtime's fields.
export const fakeContext = {
  functionName: 'f',
  requestId: 'r',
  token: { access_token: 't', expires_in: 60, token_type: 'Bearer' },
}
void getToken({}, fakeContext)
