/** Diagnostics channels, as Fastify core and undici publish theirs (docs/diagnostics.md). */
import diagnostics, { type Channel } from 'node:diagnostics_channel'
import type { ProblemType, ValidationStep } from '../entra/problems.js'
import type { ExplainedStep } from '../entra/steps.js'

/** The context of one validation on the `fastify-entra-auth:verify` tracing channel. */
export interface VerifyTraceContext {
  /** `verify` (also behind `introspect` and the route hooks) or `explain`. */
  operation: 'verify' | 'explain'
  /** Steps as they run; on a cache hit only `nbf` and `exp` run again. */
  steps: ExplainedStep[]
  /** Whether the token came from the verified-token cache. */
  cached: boolean
  /** Set when the validation has settled. */
  verdict?: 'valid' | 'invalid'
  /** The problem type of a refused token. */
  problem?: ProblemType
  /** The step and claim a refused token failed at. */
  step?: ValidationStep
  claim?: string
  /** The key's; for a token that did not verify, cut and escaped (core/untrusted.ts). */
  kid?: string
  version?: string
  tenantId?: string
  clientId?: string
  /** The `EntraAuthError` a refused token was rejected with. */
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
  readonly context?: C
}

export const verifyTracing = diagnostics.tracingChannel(CHANNELS.verify) as unknown as Tracing<VerifyTraceContext>
export const keysFetchChannel = diagnostics.channel(CHANNELS.keysFetch)
export const keysRefreshChannel = diagnostics.channel(CHANNELS.keysRefresh)
export const tokenCacheChannel = diagnostics.channel(CHANNELS.tokenCache)
