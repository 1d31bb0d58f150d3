// Types of yc-metadata-token/opentelemetry: spans and metrics of the token fetches.
import type { MeterProvider, TracerProvider } from '@opentelemetry/api'
import type { TokenProvider } from './index'

export interface MetadataTokenInstrumentationConfig {
  /** Subscribe at once (default true); otherwise on `enable()`. */
  enabled?: boolean
  /**
   * Providers whose token's time left `yc_metadata_token.token.expires_in` reports, besides the
   * default provider (reported once it has fetched in this thread).
   */
  providers?: TokenProvider[]
}

/**
 * A span `yc-metadata-token.fetch` (kind CLIENT) per upstream fetch, and the metrics of README
 * "Tracing and metrics". Has the surface of an OpenTelemetry `Instrumentation`, so
 * `registerInstrumentations({ instrumentations: [new MetadataTokenInstrumentation()] })` takes it.
 */
export declare class MetadataTokenInstrumentation {
  constructor(config?: MetadataTokenInstrumentationConfig)
  readonly instrumentationName: 'yc-metadata-token'
  readonly instrumentationVersion: string
  enable(): void
  disable(): void
  setTracerProvider(tracerProvider: TracerProvider): void
  setMeterProvider(meterProvider: MeterProvider): void
  getConfig(): MetadataTokenInstrumentationConfig
  setConfig(config: MetadataTokenInstrumentationConfig): void
}
