import type { FastifyInstance, FastifyPluginCallback } from 'fastify'
import { LibraryFailure } from './http.js'
import type { SigningKey } from './keys.js'
import { EntraAuthError } from '../entra/problems.js'

/**
 * The @fastify/jwt layer: RS256 signatures are verified by @fastify/jwt's `jwt.verify(token)`
 * (its engine is fast-jwt).
 *
 * How it is used, and why:
 * - @fastify/jwt is registered as a plugin (`register`) on a private Fastify instance, built when
 *   a key set is installed (during a refresh, never during a request): one `namespace` per new key.
 *   The app's own instance is never touched, so an app that registers its own @fastify/jwt keeps
 *   its decorators, and the standalone verifier runs the very same code.
 * - `jwt.verify(token)` without per-call options reuses the one fast-jwt verifier built at
 *   registration for its static key (with per-call options, @fastify/jwt and fast-jwt build a
 *   verifier and convert the PEM on every call): each key gets its own namespace, and the key keeps
 *   its `verify` for as long as it stays in the key set.
 * - If @fastify/jwt fails to load or register, the refresh fails (`LibraryFailure`): the key store
 *   logs it at error level, the last good set keeps serving, and without one requests get 503.
 * - Time claims are left to the Entra rules (`ignoreExpiration`, `ignoreNotBefore`), so the order
 *   of checks stays: signature → required claims → nbf → exp → …
 * - fast-jwt's errors carry codes, not statuses: each is mapped below.
 */

/** What fast-jwt hands back with `complete: true`. */
export interface VerifiedJws {
  readonly header: Record<string, unknown>
  readonly payload: Record<string, unknown>
}

/** One key's `jwt.verify`, as @fastify/jwt decorated it. */
export type JwtVerify = (token: string) => unknown

interface Libraries {
  fastify: (options: object) => FastifyInstance
  fastifyJwt: FastifyPluginCallback<Record<string, unknown>>
}

/**
 * Tests only: replaces @fastify/jwt's plugin function, so a test can simulate a release that fails
 * to register. Never set by the package.
 */
export const fastifyJwtOverride: { plugin: unknown } = { plugin: undefined }

let libraries: Promise<Libraries> | undefined

/** Fastify and @fastify/jwt, loaded once (a failed load is tried again at the next key set). */
async function load (): Promise<Libraries> {
  libraries ??= Promise.all([import('fastify'), import('@fastify/jwt')]).then(([fastify, jwt]) => ({
    fastify: fastify.default as unknown as Libraries['fastify'],
    fastifyJwt: jwt.default as unknown as Libraries['fastifyJwt']
  }))
  try {
    return await libraries
  } catch (err) {
    libraries = undefined
    throw err
  }
}

// Loading starts with the package, so the first key set doesn't wait for it; a failure surfaces there.
load().catch(() => {})

/** Registering @fastify/jwt is local work: bounded by Fastify's own default plugin timeout, not the fetch deadline. */
const PLUGIN_TIMEOUT = 10_000

/** Verify-only: the public key, no private key (so @fastify/jwt builds no signer). */
const VERIFY_OPTIONS = Object.freeze({ algorithms: ['RS256'], complete: true, ignoreExpiration: true, ignoreNotBefore: true })

/**
 * Registers @fastify/jwt once per PEM, each under its own `namespace`, on a new private Fastify
 * instance, and resolves with each one's `jwt.verify` (in order). Rejects with a `LibraryFailure`
 * (its cause is @fastify/jwt's or Fastify's error) when that fails or takes longer than 10 s.
 */
export async function buildJwtVerifiers (pems: readonly string[]): Promise<JwtVerify[]> {
  if (pems.length === 0) return []
  try {
    const { fastify, fastifyJwt } = await load()
    const plugin = (fastifyJwtOverride.plugin ?? fastifyJwt) as Libraries['fastifyJwt']
    const app = fastify({ logger: false, pluginTimeout: PLUGIN_TIMEOUT })
    pems.forEach((pem, i) => app.register(plugin, { namespace: `k${i}`, secret: { public: pem }, verify: VERIFY_OPTIONS }))
    await app.ready()
    const jwt = (app as unknown as { jwt?: Record<string, { verify?: unknown } | undefined> }).jwt
    return pems.map((_, i) => {
      const verify = jwt?.[`k${i}`]?.verify
      if (typeof verify !== 'function') throw new Error(`@fastify/jwt did not decorate jwt.k${i}.verify`)
      return verify as JwtVerify
    })
  } catch (err) {
    throw new LibraryFailure(`@fastify/jwt could not be registered: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** fast-jwt's and @fastify/jwt's codes for a malformed token; any other failure is the signature's. */
const MALFORMED = new Set([
  'FAST_JWT_MALFORMED', 'FAST_JWT_INVALID_PAYLOAD', 'FAST_JWT_INVALID_TYPE', 'FAST_JWT_INVALID_ALGORITHM',
  'FAST_JWT_MISSING_SIGNATURE', 'FAST_JWT_INVALID_CRIT_HEADER', 'FST_JWT_AUTHORIZATION_TOKEN_INVALID', 'FST_JWT_BAD_REQUEST'
])

/**
 * Maps an error of fast-jwt or @fastify/jwt by its `code`: a malformed token is
 * `auth_token_invalid`; everything else — a signature that does not verify, or a code we don't
 * know — is `auth_token_signature_untrusted`: refused closed, never a 5xx.
 */
export function mapJwtError (err: unknown, untrustedDetail: () => string | undefined): EntraAuthError {
  if (err instanceof EntraAuthError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && MALFORMED.has(code)) {
    // Not fast-jwt's error itself: its originalError (V8's SyntaxError) quotes the unverified payload.
    return new EntraAuthError('auth_token_invalid', 'The token is not a JWT with a JSON object header and payload.', { cause: new Error(code) })
  }
  return new EntraAuthError('auth_token_signature_untrusted', untrustedDetail(), { cause: err })
}

/**
 * Verifies `token`'s RS256 signature with `key` through @fastify/jwt, and hands back the header
 * and payload fast-jwt decoded (with null prototypes: only own members count as claims).
 * Synchronous. Throws `EntraAuthError`.
 */
export function verifySignature (token: string, key: SigningKey, untrustedDetail: () => string | undefined): VerifiedJws {
  let result: VerifiedJws
  try {
    result = key.verify(token) as VerifiedJws
  } catch (err) {
    throw mapJwtError(err, untrustedDetail)
  }
  return { header: Object.setPrototypeOf(result.header, null), payload: Object.setPrototypeOf(result.payload, null) }
}
