// The SDK adapters as a CommonJS TypeScript user writes them, against the SDKs' own types.
// adapters.tsconfig.json skips checking declaration files (the SDKs' take ~35 s): the lines
// marked as expected errors below prove the adapters' types are not silently `any`.
import { Driver, type IAuthService } from 'ydb-sdk'
import { Session, serviceClients } from '@yandex-cloud/nodejs-sdk'
import { TokenProvider } from 'yc-metadata-token'
import { MetadataTokenAuthService } from 'yc-metadata-token/ydb-sdk'
import { MetadataTokenSession, type MetadataTokenSessionConfig } from 'yc-metadata-token/nodejs-sdk'

const driver = new Driver({ connectionString: 'grpcs://ydb.serverless.yandexcloud.net:2135/ru-central1/b1g/etn', authService: new MetadataTokenAuthService() })
const custom: IAuthService = new MetadataTokenAuthService(new TokenProvider({ deadlineMs: 5000 }))

const session: Session = new MetadataTokenSession()
const clouds = session.client(serviceClients.CloudServiceClient)
const config: MetadataTokenSessionConfig = { headers: { 'x-source': 'types' }, tokenProvider: new TokenProvider() }
new MetadataTokenSession(config)

// @ts-expect-error: the token comes from the metadata service, not the config
new MetadataTokenSession({ iamToken: 't' })
// @ts-expect-error: a TokenProvider, not its options
new MetadataTokenAuthService({ host: '127.0.0.1:8080' })

// Three that hold only while the adapters' declarations resolve the SDKs' types:
// @ts-expect-error: resolves to the SDK's grpc Metadata
const notMetadata: Promise<string> = new MetadataTokenAuthService().getAuthMetadata()
// @ts-expect-error: inherited from the SDK's Session: a number
const notInterval: string = new MetadataTokenSession().pollInterval

void driver, custom, clouds, notMetadata, notInterval

// yc-metadata-token/opentelemetry against @opentelemetry/api's and the SDK's types.
import { MetadataTokenInstrumentation } from 'yc-metadata-token/opentelemetry'
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base'
import { MeterProvider } from '@opentelemetry/sdk-metrics'

const instrumentation = new MetadataTokenInstrumentation({ enabled: false, providers: [new TokenProvider()] })
instrumentation.setTracerProvider(new BasicTracerProvider())
instrumentation.setMeterProvider(new MeterProvider())
instrumentation.enable()
const label: string = new TokenProvider().label
// @ts-expect-error: providers, not their options
new MetadataTokenInstrumentation({ providers: [{ host: '127.0.0.1:8080' }] })
void label
