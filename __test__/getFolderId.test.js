'use strict'

// getFolderId(context): the Cloud Functions context first, then the metadata service's folder
// keys, then YC_FOLDER_ID; remembered once found; an error naming the three places when none has
// it. Each case runs in a fresh process (the folder is remembered for the process), whose
// YC_METADATA_ADDR always names a loopback address: the emulator, or a closed port for "no
// metadata service".

const test = require('node:test')
const assert = require('node:assert/strict')
const { startEmulator } = require('../emulator')
const { closedPort, runNode } = require('./helpers')

const FROM_CONTEXT = 'b1gcontext0000000001'
const FROM_METADATA = 'b1gmetadata000000002'
const FROM_YANDEX_KEY = 'b1gyandexkey00000003'
const FROM_ENV = 'b1genvironment000004'

/** Runs `calls` (an expression using getFolderId) in a fresh process; resolves with what it printed. */
async function folder(env, calls) {
  const script = `const { getFolderId } = require('./')
    ;(async () => { const found = []; ${calls}; process.stdout.write(JSON.stringify(found)) })()
      .catch((e) => { process.stdout.write(JSON.stringify({ code: e.code, message: e.message })) })`
  // YC_FOLDER_ID empty unless the case sets it: the environment the tests run in may have one.
  const r = await runNode(script, Object.assign({ YC_FOLDER_ID: '' }, env))
  assert.equal(r.code, 0, r.stderr)
  return JSON.parse(r.stdout)
}

let emu
let bare
let yandexOnly
let nowhere
test.before(async () => {
  emu = await startEmulator({ folderId: FROM_METADATA })
  // A metadata service without Yandex Cloud's keys (as GCE), and one with only yandex/folder-id.
  bare = await startEmulator({ metadata: { instance: { vendor: null }, yandex: null } })
  yandexOnly = await startEmulator({ metadata: { instance: { vendor: null }, yandex: { 'folder-id': FROM_YANDEX_KEY } } })
  nowhere = '127.0.0.1:' + (await closedPort())
})
test.after(async () => {
  await emu.close()
  await bare.close()
  await yandexOnly.close()
})

test('1. the context: its functionFolderId, with no request at all, before the metadata service and YC_FOLDER_ID', async () => {
  emu.reset()
  const found = await folder({ YC_METADATA_ADDR: emu.address, YC_FOLDER_ID: FROM_ENV },
    `found.push(await getFolderId({ functionFolderId: '${FROM_CONTEXT}', requestId: 'r' }))`)
  assert.deepEqual(found, [FROM_CONTEXT])
  assert.equal(emu.log.length, 0)
})

test('2. the metadata service: instance/vendor/folder-id, before YC_FOLDER_ID; remembered', async () => {
  emu.reset()
  const found = await folder({ YC_METADATA_ADDR: emu.address, YC_FOLDER_ID: FROM_ENV },
    'found.push(await getFolderId()); found.push(await getFolderId({ requestId: "no folder here" })); found.push(await getFolderId())')
  assert.deepEqual(found, [FROM_METADATA, FROM_METADATA, FROM_METADATA])
  assert.deepEqual(emu.log.map((e) => e.path), ['/computeMetadata/v1/', '/computeMetadata/v1/instance/vendor/folder-id'])
})

test('2. the metadata service: yandex/folder-id when instance/vendor/folder-id is not there', async () => {
  yandexOnly.reset()
  const found = await folder({ YC_METADATA_ADDR: yandexOnly.address }, 'found.push(await getFolderId())')
  assert.deepEqual(found, [FROM_YANDEX_KEY])
  assert.deepEqual(yandexOnly.log.map((e) => e.path).slice(1), ['/computeMetadata/v1/instance/vendor/folder-id', '/computeMetadata/v1/yandex/folder-id'])
})

test('concurrent callers share one search', async () => {
  emu.reset()
  const found = await folder({ YC_METADATA_ADDR: emu.address },
    'found.push(...await Promise.all(Array.from({ length: 100 }, () => getFolderId())))')
  assert.equal(found.length, 100)
  assert.ok(found.every((f) => f === FROM_METADATA))
  assert.equal(emu.log.length, 2)
})

test('3. YC_FOLDER_ID: when no metadata service answers, or the one there has no folder', async () => {
  for (const address of [nowhere, bare.address]) {
    const found = await folder({ YC_METADATA_ADDR: address, YC_FOLDER_ID: ' ' + FROM_ENV + '\n' }, 'found.push(await getFolderId(null))')
    assert.deepEqual(found, [FROM_ENV], address)
  }
})

test('none of the three: ERR_METADATA_NOT_FOUND naming all three places; the next call looks again', async () => {
  for (const address of [nowhere, bare.address]) {
    const err = await folder({ YC_METADATA_ADDR: address }, 'found.push(await getFolderId({}))')
    assert.equal(err.code, 'ERR_METADATA_NOT_FOUND', address)
    assert.match(err.message, /Cloud Functions context .*functionFolderId/)
    assert.match(err.message, /metadata service .*instance\/vendor\/folder-id/)
    assert.match(err.message, /YC_FOLDER_ID/)
  }
  bare.reset()
  const again = await folder({ YC_METADATA_ADDR: bare.address },
    'try { await getFolderId() } catch (e) { found.push(e.code) }; try { await getFolderId() } catch (e) { found.push(e.code) }')
  assert.deepEqual(again, ['ERR_METADATA_NOT_FOUND', 'ERR_METADATA_NOT_FOUND'])
  // The probe's yes is remembered; the keys are asked again.
  assert.equal(bare.log.filter((e) => e.path === '/computeMetadata/v1/instance/vendor/folder-id').length, 2)
})

test('what is not a folder ID is not taken: a context value, a metadata value, YC_FOLDER_ID', async () => {
  const hostile = await startEmulator({ metadata: { instance: { vendor: { 'folder-id': 'b1g\r\nX-Evil: 1' } }, yandex: null } })
  try {
    const fromEnv = await folder({ YC_METADATA_ADDR: hostile.address, YC_FOLDER_ID: FROM_ENV },
      'found.push(await getFolderId({ functionFolderId: "a b" })); found.push(await getFolderId({ functionFolderId: 42 }))')
    assert.deepEqual(fromEnv, [FROM_ENV, FROM_ENV])
    const bad = await folder({ YC_METADATA_ADDR: nowhere, YC_FOLDER_ID: 'not/a folder' }, 'found.push(await getFolderId())')
    assert.equal(bad.code, 'ERR_INVALID_OPTION')
    assert.match(bad.message, /YC_FOLDER_ID must be a folder ID/)
  } finally {
    await hostile.close()
  }
})

test('a context that is no object, or cannot be read, is refused with ERR_INVALID_OPTION', async () => {
  const r = await folder({ YC_METADATA_ADDR: nowhere }, `
    for (const context of ['b1g', 42]) { try { await getFolderId(context) } catch (e) { found.push(e.code) } }
    const hostile = new Proxy({}, { getOwnPropertyDescriptor() { throw new Error('no') } })
    try { await getFolderId(hostile) } catch (e) { found.push(e.code + ' ' + e.cause.message) }
    // Only the context's own property counts.
    try { await getFolderId(Object.create({ functionFolderId: 'b1ginherited' })) } catch (e) { found.push(e.code) }`)
  assert.deepEqual(r, ['ERR_INVALID_OPTION', 'ERR_INVALID_OPTION', 'ERR_INVALID_OPTION no', 'ERR_METADATA_NOT_FOUND'])
})
