'use strict'

// isAvailable(), getMetadata() and getFolderId(): what index.js exports beyond the token, loaded
// at their first call. The core decides (src/core/probe.rs and metadata.rs, through the driver's
// isAvailable and readMetadata: validating, the request, what an answer means, retries, one
// request per key, the cache). Kept here: the Error objects, turning the JSON the core has checked
// into values, and getFolderId's order of places, two of which (the context, the environment)
// only JavaScript sees.

module.exports = function metadataApi({ binding, MetadataTokenError, CODES, readOptions, callerError, internalError, invalidCall }) {
  // Whether a GCE-compatible metadata service answers; rejects only for options it cannot use.
  function isAvailable(options) {
    let answer
    try {
      answer = binding.isAvailable(readOptions(options), process.env.YC_METADATA_ADDR, process.env.GCE_METADATA_HOST)
    } catch (err) {
      return Promise.reject(refusal(err))
    }
    return answer.then(undefined, (err) => {
      throw internalError(err)
    })
  }

  // The value at /computeMetadata/v1/<key>: its text, or what its JSON says when it is JSON.
  function getMetadata(key, options) {
    let answer
    try {
      answer = binding.readMetadata(key, readOptions(options), process.env.YC_METADATA_ADDR, process.env.GCE_METADATA_HOST)
    } catch (err) {
      return Promise.reject(refusal(err))
    }
    return answer.then(metadataValue, (err) => {
      throw internalError(err)
    })
  }

  // The core refused a key or an option (ERR_INVALID_OPTION); anything else it threw is a bug.
  function refusal(err) {
    if (err instanceof MetadataTokenError) return err
    if (err !== null && typeof err === 'object' && err.code === CODES.INVALID_OPTION) {
      return new MetadataTokenError(err.message, err.code)
    }
    return internalError(err)
  }

  function metadataValue(outcome) {
    if (outcome.code !== undefined && outcome.code !== null) {
      throw new MetadataTokenError(outcome.message, outcome.code, outcome.status)
    }
    if (!outcome.json) return outcome.value
    try {
      return JSON.parse(outcome.value)
    } catch (err) {
      // The core checked that it is JSON: a parse that fails is a bug, and its message (which
      // quotes the value) stays out of the report.
      throw internalError(err)
    }
  }

  // Where the metadata service keeps the folder ID, in the order asked: the VM's folder (Yandex's
  // GCE-format tree), then the Yandex-specific key.
  const FOLDER_KEYS = ['instance/vendor/folder-id', 'yandex/folder-id']
  // The last place looked, for Serverless Containers and off-cloud.
  const FOLDER_VARIABLE = 'YC_FOLDER_ID'
  // A folder ID goes into URIs (gpt://<folder-id>/…) and headers (x-folder-id): Yandex's are 20
  // lowercase letters and digits, and anything beyond letters, digits, '-' and '_' is not one.
  const FOLDER_ID = /^[A-Za-z0-9_-]{1,64}$/

  // Found in the metadata service or the environment: it does not change while the process lives.
  let folderFound = null
  // The search under way, shared by every caller.
  let folderSearch = null

  // The folder ID: from the Cloud Functions context, else the metadata service, else YC_FOLDER_ID.
  function getFolderId(context) {
    if (context !== undefined && context !== null) {
      if (typeof context !== 'object') {
        return invalidCall('getFolderId takes the Cloud Functions context object, got ' + typeof context)
      }
      let fromContext
      try {
        fromContext = Object.prototype.hasOwnProperty.call(context, 'functionFolderId') ? context.functionFolderId : undefined
      } catch (err) {
        return Promise.reject(callerError('the Cloud Functions context could not be read', err))
      }
      if (typeof fromContext === 'string' && FOLDER_ID.test(fromContext)) return Promise.resolve(fromContext)
    }
    if (folderFound !== null) return Promise.resolve(folderFound)
    if (folderSearch === null) {
      folderSearch = searchFolder().then(
        (id) => {
          folderFound = id
          folderSearch = null
          return id
        },
        (err) => {
          folderSearch = null
          throw err
        }
      )
    }
    return folderSearch
  }

  function searchFolder() {
    return isAvailable()
      .then((available) => (available ? folderFromKeys(0) : { why: 'no metadata service answers (isAvailable() is false)' }))
      .then((found) => (found.id !== undefined ? found.id : folderFromEnvironment(found.why)))
  }

  // { id } from the first of FOLDER_KEYS that holds a folder ID, else { why } none did.
  function folderFromKeys(index) {
    if (index === FOLDER_KEYS.length) return { why: 'neither key is there' }
    const key = FOLDER_KEYS[index]
    return getMetadata(key, { cache: true }).then(
      (value) => (FOLDER_ID.test(value.trim()) ? { id: value.trim() } : { why: key + ' holds no folder ID' }),
      (err) => (err.code === CODES.NOT_FOUND ? folderFromKeys(index + 1) : { why: err.message })
    )
  }

  function folderFromEnvironment(why) {
    const raw = process.env[FOLDER_VARIABLE]
    const value = typeof raw === 'string' ? raw.trim() : ''
    if (FOLDER_ID.test(value)) return value
    if (value !== '') {
      throw new MetadataTokenError(FOLDER_VARIABLE + ' must be a folder ID (letters, digits, - and _), got ' +
        JSON.stringify(raw), CODES.INVALID_OPTION)
    }
    throw new MetadataTokenError(
      'No folder ID: none in the Cloud Functions context (getFolderId(context) reads context.functionFolderId), ' +
        'none from the metadata service (' + FOLDER_KEYS.join(', ') + ': ' + why + '), and ' + FOLDER_VARIABLE +
        ' is not set (set it in Serverless Containers and off-cloud).',
      CODES.NOT_FOUND
    )
  }

  return { isAvailable, getMetadata, getFolderId }
}
