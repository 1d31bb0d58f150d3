// The @ydbjs adapter as an ES module TypeScript user writes it.
import { Driver } from '@ydbjs/core'
import { CredentialsProvider } from '@ydbjs/auth'
import { TokenProvider } from 'yc-metadata-token'
import { MetadataTokenCredentialsProvider } from 'yc-metadata-token/ydbjs.mjs'

const credentialsProvider: CredentialsProvider = new MetadataTokenCredentialsProvider()
const driver = new Driver('grpcs://ydb.serverless.yandexcloud.net:2135/ru-central1/b1g/etn', { credentialsProvider })
const custom = new MetadataTokenCredentialsProvider(new TokenProvider({ deadlineMs: 5000 }))
const token: string = await custom.getToken(true, AbortSignal.timeout(1000))

// @ts-expect-error: getToken resolves to the token string
const wrong: number = await custom.getToken()
// @ts-expect-error: inherited from @ydbjs/auth's CredentialsProvider: a function
const notMiddleware: number = custom.middleware
// @ts-expect-error: a TokenProvider, not its options
new MetadataTokenCredentialsProvider({ host: '127.0.0.1:8080' })

export { driver, token, wrong, notMiddleware }
