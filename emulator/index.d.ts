// Types of yc-metadata-token/emulator: a fake instance metadata service for tests and development.

/** How the emulator misbehaves; `times: N` limits it to the next N token requests. */
export interface FaultSpec {
  /** Answer with this HTTP status. */
  status?: number
  /** Answer with a redirect to this absolute URL (visible ASCII only: it becomes the Location header). */
  redirect?: string
  /** Wait this long before answering, at most 2**31 - 1 ms (combines with any other kind). */
  delayMs?: number
  /** Never answer. */
  hang?: boolean
  /** Send headers, then nothing. */
  hangAfterHeaders?: boolean
  /** Reset the connection in the middle of the body. */
  resetMidBody?: boolean
  /** Send a truncated body. */
  truncate?: boolean
  /** Send a body that is not JSON. */
  garbage?: boolean
  /** Send this value as the JSON body (a string as it is); serialized when the fault is set. */
  body?: unknown
  /** Send a body of this many bytes (with Content-Length). */
  hugeBytes?: number
  /** Send a chunked body of this many bytes. */
  hugeChunked?: number
  /** Send the body a byte at a time, this many milliseconds apart. */
  dribbleMs?: number
  /** Close the connection without answering. */
  dropConnection?: boolean
  /**
   * Answer 429 beyond this many requests a second, on every metadata path together (stays until
   * cleared; takes no `times`). The preset `'rate-limit'` is the real service's 60.
   */
  rateLimit?: number
  times?: number
}

/** Named faults: `'rate-limit'` is `{ rateLimit: 60 }`. */
export type FaultPreset = 'rate-limit'

/** A service-account authorized key, the JSON `yc iam key create` writes. */
export interface ServiceAccountKey {
  id: string
  service_account_id: string
  /** PEM, possibly after the line `PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <id>`. */
  private_key: string
  [field: string]: unknown
}

/** Values of the metadata tree, shaped like the paths: `{ instance: { id, attributes: {...} }, project: { 'project-id' } }`. */
export interface MetadataTree {
  [name: string]: string | number | boolean | unknown[] | MetadataTree | null
}

export interface EmulatorOptions {
  /** Address to bind. @default '127.0.0.1' */
  host?: string
  /** Port; 0 picks a free one. @default 0 */
  port?: number
  /**
   * More values of the Host header to answer, `'name'` (with the bound port, or none) or
   * `'name:port'`. By default only `127.0.0.1`, `localhost`, `[::1]` and the bound address (with
   * this machine's addresses when bound to `0.0.0.0` or `::`) are answered, so that a web page
   * cannot reach the emulator by DNS rebinding: add only names no one else's DNS can point here.
   */
  allowHosts?: string[]
  /** The token to serve. @default a random fake token */
  token?: string
  /**
   * Real tokens: a service-account key (or the path of its JSON file) exchanged with IAM for a token,
   * again well before each expires. The first exchange happens before `startEmulator` resolves.
   */
  saKey?: ServiceAccountKey | string
  /** Where to exchange `saKey`. @default 'https://iam.api.cloud.yandex.net/iam/v1/tokens' */
  iamEndpoint?: string
  /** Real tokens: a shell command (e.g. `'yc iam create-token'`) whose output is the token; run again before `expiresIn` runs out. */
  tokenCommand?: string
  /** The `expires_in` to report, in seconds; with `tokenCommand`, the lifetime of its tokens. @default 3600 (43200 with `tokenCommand`) */
  expiresIn?: number
  /** Count `expires_in` down from when the token was set, like a caching server. @default false */
  countdown?: boolean
  /** No log lines on stderr. @default true */
  quiet?: boolean
  /** Values over the defaults of `instance/` and `project/`; `null` removes a key. */
  metadata?: MetadataTree
  /**
   * The folder the tree names: `instance/vendor/folder-id`, `yandex/folder-id`,
   * `project/project-id` and the zone's path. @default 'emulator-folder'
   */
  folderId?: string
  /** The cloud: `instance/vendor/cloud-id`. @default 'emulator-cloud' */
  cloudId?: string
}

export interface Emulator {
  /** `'127.0.0.1:PORT'`: the value for `YC_METADATA_ADDR` or the `host` option. */
  readonly address: string
  readonly port: number
  /** The full token URL. */
  readonly url: string
  /** Requests that reached the token path (403 and 405 answers included) since start or `reset()`. */
  readonly requests: number
  /**
   * Requests refused before anything else, on any path, since start or `reset()`: a Host that is not
   * loopback, the bound address or in `allowHosts`; an `Origin`; `Sec-Fetch-Site` other than `none`.
   */
  readonly refused: number
  readonly log: ReadonlyArray<Record<string, unknown>>
  readonly bytesStreamed: number
  /** First 8 hex digits of the current token's SHA-256. */
  readonly tokenFingerprint: string
  /** Serve this token from now on (in place of any key or command). */
  setToken(token: string, expiresIn?: number): void
  /** Install a fault (`null` clears it); throws a TypeError saying what is wrong with a bad one. */
  fault(spec: FaultSpec | FaultPreset | null): void
  /** Clears the fault, the request counts and the log. */
  reset(): void
  /** What `GET /_emulator/stats` answers (with `Metadata-Flavor: Google`). */
  stats(): { requests: number; refused: number; token_fingerprint: string; fault: FaultSpec | null; streamed_bytes: number }
  close(): Promise<void>
}

export function startEmulator(options?: EmulatorOptions): Promise<Emulator>
export function normalizeFault(spec: FaultSpec | FaultPreset | null | undefined): unknown
export function fingerprint(token: string): string
export const TOKEN_PATH: string
export const FAULT_PRESETS: Readonly<Record<FaultPreset, FaultSpec>>
export const IAM_ENDPOINT: string
