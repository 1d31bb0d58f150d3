'use strict'

// yc-metadata-token/nodejs-sdk against the real @yandex-cloud/nodejs-sdk Session and a local TLS
// gRPC server (the SDK's ResourceManager CloudService) that checks `authorization` on every call,
// across a token change.

const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const util = require('node:util')

const { startEmulator } = require('../emulator')
const { TokenProvider } = require('..')
const { tokenBook, startAuthServer, selfSignedCert } = require('./fixtures/auth-server')

const cert = selfSignedCert()
const skip = cert === null ? 'no openssl command to make the TLS certificate the SDK channels need' : false
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const newToken = (name) => name + '-' + crypto.randomBytes(12).toString('hex')

async function setup(t) {
  const sdk = require('@yandex-cloud/nodejs-sdk')
  const grpc = require('@grpc/grpc-js')
  const { MetadataTokenSession } = require('../nodejs-sdk')
  const book = tokenBook()
  const first = newToken('first')
  book.issue(first, 2)
  const emu = await startEmulator({ token: first, expiresIn: 2 })
  const api = sdk.cloudApi.resourcemanager.cloud_service
  const server = await startAuthServer({
    grpc,
    services: [[api.CloudServiceService, {
      list: () => api.ListCloudsResponse.fromPartial({ clouds: [{ id: 'cloud-1', name: 'test' }] }),
    }]],
    credential: (md) => {
      const value = md.get('authorization')[0]
      return typeof value === 'string' && value.startsWith('Bearer ') ? value.slice(7) : undefined
    },
    valid: book.valid,
    tls: cert,
  })
  const provider = new TokenProvider({ host: emu.address })
  // The SDK's generated clients want whole messages, as its docs build them.
  const { ListCloudsRequest } = api
  const clientOf = (session) => {
    const c = session.client(sdk.serviceClients.CloudServiceClient, server.address)
    return { list: (partial) => c.list(ListCloudsRequest.fromPartial(partial)) }
  }
  t.after(async () => {
    await server.close()
    await emu.close()
  })
  return { sdk, MetadataTokenSession, book, first, emu, server, provider, clientOf }
}

const ssl = () => ({ rootCerts: Buffer.from(cert.cert) })

test('one Session: every call carries the current token, across a refresh', { skip }, async (t) => {
  const { MetadataTokenSession, book, first, emu, server, provider, clientOf } = await setup(t)
  const session = new MetadataTokenSession({ ssl: ssl(), headers: { 'x-request-source': 'test' }, tokenProvider: provider })
  const client = clientOf(session)
  for (let i = 0; i < 3; i++) {
    const res = await client.list({ pageSize: 10 })
    assert.equal(res.clouds[0].id, 'cloud-1')
  }
  const second = newToken('second')
  book.issue(second, 3600)
  emu.setToken(second, 3600)
  await sleep(2100) // the first token has expired
  // The same client, and a new one from the same Session.
  for (let i = 0; i < 2; i++) await client.list({})
  await clientOf(session).list({})

  assert.equal(server.calls.length, 6)
  assert.ok(server.calls.every((c) => c.ok), JSON.stringify(server.calls.map((c) => c.ok)))
  assert.deepEqual(server.calls.map((c) => c.token), [first, first, first, second, second, second])
  assert.equal(emu.requests, 2)
  assert.doesNotMatch(util.inspect(session, { showHidden: true, depth: 6 }), new RegExp(first + '|' + second))
})

test('the server rejects a token past its expiry (the check above can fail)', { skip }, async (t) => {
  const { sdk, first, server, clientOf } = await setup(t)
  // The SDK's own static-token Session: the token it was given, on every call, even once expired.
  const session = new sdk.Session({ iamToken: first, ssl: ssl() })
  const client = clientOf(session)
  await client.list({})
  await sleep(2100)
  await assert.rejects(client.list({}), /expired token/)
  assert.deepEqual(server.calls.map((c) => c.ok), [true, false])
})

test('a metadata failure fails the call with its code in the message; nothing is sent', { skip }, async (t) => {
  const { MetadataTokenSession, emu, server, clientOf } = await setup(t)
  emu.fault({ status: 404 })
  const session = new MetadataTokenSession({ ssl: ssl(), tokenProvider: new TokenProvider({ host: emu.address }) })
  await assert.rejects(clientOf(session).list({}), /ERR_METADATA_NO_SERVICE_ACCOUNT|has no service account/)
  assert.equal(server.calls.length, 0)
})

test('the default provider: YC_METADATA_ADDR read at the first call', { skip }, async (t) => {
  const { MetadataTokenSession, first, server, emu, clientOf } = await setup(t)
  const before = process.env.YC_METADATA_ADDR
  process.env.YC_METADATA_ADDR = emu.address
  t.after(() => {
    if (before === undefined) delete process.env.YC_METADATA_ADDR
    else process.env.YC_METADATA_ADDR = before
  })
  await clientOf(new MetadataTokenSession({ ssl: ssl() })).list({})
  assert.deepEqual(server.calls.map((c) => [c.token, c.ok]), [[first, true]])
})

test('bad input: a typed error; no token of the SDK own kinds', { skip }, () => {
  const { MetadataTokenSession } = require('../nodejs-sdk')
  assert.throws(() => new MetadataTokenSession({ iamToken: 'x' }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => new MetadataTokenSession({ oauthToken: 'x' }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => new MetadataTokenSession({ tokenProvider: 'x' }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => new MetadataTokenSession('x'), { code: 'ERR_INVALID_OPTION' })
})
