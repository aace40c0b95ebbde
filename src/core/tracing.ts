/**
 * Diagnostics channels (node:diagnostics_channel), the way Fastify core and undici publish theirs:
 * any subscriber (OpenTelemetry, a metrics exporter, a test) can observe validations and the key
 * store with no code in the app. Nothing is built or published while nobody listens: every
 * publisher checks `hasSubscribers` first. No message carries a token, and nothing read from a
 * token whose signature did not verify is published uncut (core/untrusted.ts).
 */
import diagnostics, { type Channel } from 'node:diagnostics_channel'
import type { ProblemType, ValidationStep } from '../entra/problems.js'
import type { ExplainedStep } from '../entra/steps.js'

/** The context of one validation on the `fastify-entra-auth:verify` tracing channel. */
export interface VerifyTraceContext {
  /** `verify` (also behind `introspect` and the route hooks) or `explain`. */
  operation: 'verify' | 'explain'
  /**
   * Steps as they run; on a cache hit only `nbf` and `exp` run again; a validation that shared the
   * work of another in flight for the same token records none (or only its failed step).
   */
  steps: ExplainedStep[]
  /** Whether the token came from the verified-token cache. */
  cached: boolean
  /** Set when the validation has settled (asyncEnd, error). */
  verdict?: 'valid' | 'invalid'
  /** The problem type of a refused token. */
  problem?: ProblemType
  /** The step and claim a refused token failed at. */
  step?: ValidationStep
  claim?: string
  /**
   * `version`, `tenantId`, `clientId`: from a token whose signature verified (also when it was
   * refused later), never from one anybody could have written. `kid`: the key's; for a token that
   * did not verify, cut to 128 characters with control characters escaped.
   */
  kid?: string
  version?: string
  tenantId?: string
  clientId?: string
  /** The `EntraAuthError` a refused token was rejected with (on `error`, then `asyncEnd`). */
  error?: unknown
}

/** What `fastify-entra-auth:keys:fetch` publishes: one message per document fetched. */
export type KeyFetchMessage =
  | { event: 'start', document: 'discovery' | 'jwks', url: string }
  | { event: 'end', document: 'discovery' | 'jwks', url: string, durationMs: number }
  | { event: 'failure', document: 'discovery' | 'jwks', url: string, durationMs: number, reason: string }

/** What `fastify-entra-auth:keys:refresh` publishes: one message at each end of a refresh. */
export type KeyRefreshMessage =
  | { event: 'start', discoveryUrl: string }
  | { event: 'end', discoveryUrl: string, kids: string[] }
  /** `servingStale`: the last good key set keeps serving (within `ttl + maxStale`). */
  | { event: 'failure', discoveryUrl: string, reason: string, problem: ProblemType, servingStale: boolean }

/** What `fastify-entra-auth:token-cache` publishes for each lookup by `verify`. */
export interface TokenCacheMessage {
  event: 'hit' | 'miss'
  /** The key that signed a cached token. */
  kid?: string
}

/** The channel names, for subscribers. */
export const CHANNELS = Object.freeze({
  verify: 'fastify-entra-auth:verify',
  keysFetch: 'fastify-entra-auth:keys:fetch',
  keysRefresh: 'fastify-entra-auth:keys:refresh',
  tokenCache: 'fastify-entra-auth:token-cache'
} as const)

interface Tracing<C extends object> {
  readonly hasSubscribers: boolean
  readonly start: Channel
  readonly end: Channel
  readonly asyncStart: Channel
  readonly asyncEnd: Channel
  readonly error: Channel
  /** Typing only: the context each sub-channel publishes. */
  readonly context?: C
}

export const verifyTracing = diagnostics.tracingChannel(CHANNELS.verify) as unknown as Tracing<VerifyTraceContext>
export const keysFetchChannel = diagnostics.channel(CHANNELS.keysFetch)
export const keysRefreshChannel = diagnostics.channel(CHANNELS.keysRefresh)
export const tokenCacheChannel = diagnostics.channel(CHANNELS.tokenCache)
