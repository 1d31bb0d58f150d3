// isAvailable, getMetadata and getFolderId as a TypeScript user writes them (CommonJS, like
// example.ts). Type-checked by __test__/types.test.js; the @ts-expect-error lines must stay errors.
import { isAvailable, getMetadata, getFolderId, CODES, MetadataTokenError } from 'yc-metadata-token'
import type { CloudFunctionContext, GetMetadataOptions } from 'yc-metadata-token'

interface Identity {
  instanceId: string
}

export async function describe(context: CloudFunctionContext) {
  const onCloud: boolean = await isAvailable({ timeoutMs: 300 })
  const zone: string = await getMetadata('instance/zone', { cache: true })
  const tree: unknown = await getMetadata('instance/', { recursive: true })
  const flat: string = await getMetadata('instance/', { recursive: true, json: false })
  const identity = await getMetadata<Identity>('instance/vendor/identity/document', { json: true })
  const instanceId: string = identity.instanceId
  const options: GetMetadataOptions = { host: '127.0.0.1:8080', deadlineMs: 2000, maxAttempts: 2 }
  const id: string = await getMetadata('instance/id', options)
  const folder: string = await getFolderId(context)
  const folderAnywhere: string = await getFolderId()
  const fromContext: string | undefined = context.functionFolderId
  try {
    await getMetadata('instance/attributes/missing')
  } catch (err) {
    if (err instanceof MetadataTokenError && err.code === CODES.NOT_FOUND) return null
  }
  // @ts-expect-error: a key is a string
  await getMetadata(42)
  // @ts-expect-error: recursive is a boolean
  await getMetadata('instance/', { recursive: 'yes' })
  // @ts-expect-error: isAvailable takes the host and the probe's time only
  await isAvailable({ maxAttempts: 3 })
  // @ts-expect-error: a plain read is text
  const wrong: number = await getMetadata('instance/id')
  return [onCloud, zone, tree, flat, instanceId, id, folder, folderAnywhere, fromContext, wrong]
}
