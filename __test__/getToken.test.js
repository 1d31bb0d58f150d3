'use strict'

// The drop-in contract: the snippet's result shape, its request, the host precedence, and the
// event argument ignored.

const test = require('node:test')
const assert = require('node:assert/strict')
const { withEmulator, runNode } = require('./helpers')
const { TokenProvider, getToken, MetadataTokenError, CODES } = require('..')

const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token'

test('getToken() resolves { token, expiresInSeconds } as the snippet did', async () => {
  await withEmulator({ token: 't1.snippet-shape', expiresIn: 43200 }, async (emu) => {
    const r = await runNode(
      `require('.').getToken({ httpMethod: 'GET', body: '' }).then(t => console.log(JSON.stringify(t)))`,
      { YC_METADATA_ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    const got = JSON.parse(r.stdout)
    assert.deepEqual(Object.keys(got).sort(), ['expiresInSeconds', 'token'])
    assert.equal(got.token, 't1.snippet-shape')
    assert.equal(got.expiresInSeconds, 43200)
    assert.equal(emu.requests, 1)
    const sent = emu.log.find((e) => e.path === TOKEN_PATH)
    assert.equal(sent.method, 'GET')
    assert.equal(sent.headers['metadata-flavor'], 'Google')
  })
})

test('the event argument is ignored, whatever it holds', async () => {
  await withEmulator({ token: 'event-token' }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    const got = await provider.getToken()
    assert.equal(got.token, 'event-token')
    assert.equal(Number.isInteger(got.expiresInSeconds) && got.expiresInSeconds > 0, true)
    const r = await runNode(
      `const { getToken } = require('.');
       Promise.all([getToken(), getToken({}), getToken('x'), getToken({ forceRefresh: 'yes' }), getToken(null, {})])
         .then(all => console.log(all.map(t => t.token).join(',')))`,
      { YC_METADATA_ADDR: emu.address }
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), Array(5).fill('event-token').join(','))
  })
})

test('host: option, then YC_METADATA_ADDR, then GCE_METADATA_HOST', async () => {
  await withEmulator({ token: 'from-yc' }, async (yc) => {
    await withEmulator({ token: 'from-gce' }, async (gce) => {
      await withEmulator({ token: 'from-option' }, async (option) => {
        const print = `require('.').getToken().then(t => console.log(t.token), e => console.log(e.code))`
        const both = { YC_METADATA_ADDR: yc.address, GCE_METADATA_HOST: gce.address }
        assert.equal((await runNode(print, both)).stdout.trim(), 'from-yc')
        assert.equal((await runNode(print, { GCE_METADATA_HOST: gce.address })).stdout.trim(), 'from-gce')
        assert.equal(
          (await runNode(print, { YC_METADATA_ADDR: '', GCE_METADATA_HOST: gce.address })).stdout.trim(),
          'from-gce'
        )
        const withOption = `new (require('.').TokenProvider)({ host: '${option.address}' }).getToken().then(t => console.log(t.token))`
        assert.equal((await runNode(withOption, both)).stdout.trim(), 'from-option')
        assert.equal(yc.requests, 1)
        assert.equal(gce.requests, 2)
        assert.equal(option.requests, 1)
      })
    })
  })
})

test('a host with a trailing dot: the name is fully qualified, and localhost. and 127.0.0.1. reach loopback', async () => {
  await withEmulator({ token: 'dotted' }, async (emu) => {
    // Loopback names only: a dotted name not in /etc/hosts would be looked up on the DNS server.
    for (const [host, url] of [
      ['localhost.:' + emu.port, 'http://localhost:' + emu.port + TOKEN_PATH],
      ['127.0.0.1.:' + emu.port, 'http://127.0.0.1:' + emu.port + TOKEN_PATH],
    ]) {
      const provider = new TokenProvider({ host })
      assert.equal((await provider.getToken()).token, 'dotted', host)
      assert.equal(provider.toJSON().url, url)
    }
    assert.equal(emu.requests, 2)
    const print = `require('.').getToken().then(t => console.log(t.token), e => console.log(e.code + ' ' + e.message))`
    const r = await runNode(print, { GCE_METADATA_HOST: 'localhost.:' + emu.port })
    assert.equal(r.stdout.trim(), 'dotted', r.stderr)
    // gcp-metadata's own form; not dialed here, only accepted and kept as written.
    const fqdn = new TokenProvider({ host: 'metadata.google.internal.' })
    assert.equal(fqdn.toJSON().url, 'http://metadata.google.internal.' + TOKEN_PATH)
  })
})

test('a bad environment value rejects with ERR_INVALID_OPTION naming the variable', async () => {
  const r = await runNode(
    `require('.').getToken().then(() => console.log('resolved'), e => console.log(e.code + ' ' + e.message))`,
    { YC_METADATA_ADDR: 'http://169.254.169.254/' }
  )
  assert.match(r.stdout, /^ERR_INVALID_OPTION .*YC_METADATA_ADDR/)
})

test('TokenProvider objects show no token and expose the error class and codes', async () => {
  await withEmulator({ token: 'secret-in-inspect' }, async (emu) => {
    const provider = new TokenProvider({ host: emu.address })
    await provider.getToken()
    const util = require('node:util')
    assert.doesNotMatch(util.inspect(provider, { showHidden: true, depth: Infinity }), /secret-in-inspect/)
    assert.doesNotMatch(JSON.stringify(provider), /secret-in-inspect/)
    assert.equal(typeof getToken, 'function')
    assert.equal(CODES.TIMEOUT, 'ERR_METADATA_TIMEOUT')
    assert.ok(new MetadataTokenError('m', CODES.STATUS, 500) instanceof Error)
  })
})
