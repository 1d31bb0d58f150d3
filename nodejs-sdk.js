'use strict'

// yc-metadata-token/nodejs-sdk: a Session of @yandex-cloud/nodejs-sdk 2.x/3.x whose every call
// carries this package's current token, so one Session serves the whole process.
//
// The SDK's Session takes a static `iamToken` or builds its own MetadataTokenService, which
// refreshes once, 30 s after the first fetch, and never again: calls fail once the 12-h token
// dies. Session exposes no hook for a token source, so this subclass replaces the call
// credentials that Session#client() hands to every channel. They are built with the SDK's own
// @grpc/grpc-js: grpc-js checks `instanceof ChannelCredentials`, and credentials from another copy
// fail with "Channel credentials must be a ChannelCredentials object".

const path = require('path')
const { defaultProvider, MetadataTokenError, CODES } = require('./index.js')

const SDK = '@yandex-cloud/nodejs-sdk'

let sdkMain
try {
  sdkMain = require.resolve(SDK)
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND') {
    err.message = 'yc-metadata-token/nodejs-sdk needs the package ' + SDK + ' (2.x or 3.x), an optional peer: npm install ' + SDK
  }
  throw err
}
const { Session } = require(sdkMain)
// The copy of grpc-js the SDK itself loads: resolved from the SDK's own folder.
const grpc = require(require.resolve('@grpc/grpc-js', { paths: [path.dirname(sdkMain)] }))

// Session picks its token source from whichever of these keys its config has.
const TOKEN_KEYS = ['iamToken', 'oauthToken', 'serviceAccountJson']

class MetadataTokenSession extends Session {
  /**
   * @param {object} [config] the SDK's SessionConfig without a token: `ssl`, `headers`,
   *   `pollInterval`, (3.x) `tracing`; plus `tokenProvider`, a TokenProvider (default: the
   *   process-wide provider behind getToken()).
   */
  constructor(config) {
    const own = checkConfig(config)
    const sdkConfig = Object.assign({}, own)
    delete sdkConfig.tokenProvider
    // A static token makes Session build no MetadataTokenService of its own (whose 30-s timer
    // would also hold the process open). It is never sent: the credentials are replaced below.
    sdkConfig.iamToken = 'unused: replaced by yc-metadata-token'
    super(sdkConfig)
    if (!(this.channelCredentials instanceof grpc.ChannelCredentials)) {
      // The one SDK internal this relies on is gone: fail loudly, not with the placeholder.
      throw new MetadataTokenError(
        'yc-metadata-token/nodejs-sdk: this version of ' + SDK + ' keeps no channelCredentials in its Session; ' +
          '2.x and 3.x are supported',
        CODES.INVALID_OPTION
      )
    }
    this.channelCredentials = channelCredentials(own.tokenProvider, own.ssl, own.headers)
  }
}

function checkConfig(config) {
  if (config === undefined || config === null) return {}
  if (typeof config !== 'object') {
    throw new MetadataTokenError('MetadataTokenSession config must be an object, got ' + typeof config, CODES.INVALID_OPTION)
  }
  for (const key of TOKEN_KEYS) {
    if (key in config) {
      throw new MetadataTokenError(
        'MetadataTokenSession takes its token from the metadata service: remove "' + key + '" from the config',
        CODES.INVALID_OPTION
      )
    }
  }
  const p = config.tokenProvider
  if (p !== undefined && (p === null || typeof p !== 'object' || typeof p.getToken !== 'function')) {
    throw new MetadataTokenError('option tokenProvider must be a TokenProvider', CODES.INVALID_OPTION)
  }
  return config
}

// TLS as the SDK sets it up, plus a metadata generator that asks the provider on every call:
// from memory while the token is fresh.
function channelCredentials(tokenProvider, ssl, headers) {
  const extra = []
  if (headers) {
    for (const key of Object.keys(headers)) {
      const lower = key.toLowerCase()
      if (lower !== 'authorization') extra.push([lower, headers[key]])
    }
  }
  const callCredentials = grpc.credentials.createFromMetadataGenerator((params, callback) => {
    let provider = tokenProvider
    try {
      if (provider === undefined) provider = defaultProvider()
    } catch (err) {
      callback(err)
      return
    }
    provider.getToken().then(
      (t) => {
        const md = new grpc.Metadata()
        md.set('authorization', 'Bearer ' + t.token)
        for (const [key, value] of extra) md.set(key, value)
        callback(null, md)
      },
      // Our errors carry a code and a hint, never the token; grpc-js fails the call with them.
      (err) => callback(err)
    )
  })
  const tls = ssl ? grpc.credentials.createSsl(ssl.rootCerts, ssl.privateKey, ssl.certChain) : grpc.credentials.createSsl()
  return grpc.credentials.combineChannelCredentials(tls, callCredentials)
}

module.exports = { MetadataTokenSession }
