import type { FastifyInstance, FastifyPluginCallback } from 'fastify'
import { LibraryFailure } from './http.js'
import type { SigningKey } from './keys.js'
import { EntraAuthError } from '../entra/problems.js'

// @fastify/jwt on a private Fastify instance, one namespace per key, never the app's (docs/architecture.md).

export type JwtVerify = (token: string) => unknown

interface Libraries {
  fastify: (options: object) => FastifyInstance
  fastifyJwt: FastifyPluginCallback<Record<string, unknown>>
}

/** Tests only: simulates a @fastify/jwt release that fails to register. */
export const fastifyJwtOverride: { plugin: unknown } = { plugin: undefined }

let libraries: Promise<Libraries> | undefined

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

load().catch(() => {})

const PLUGIN_TIMEOUT = 10_000

// Time claims are left to the Entra rules, so the order of checks stays.
// The payload alone: the header was decoded and judged before (core/jws.ts).
const VERIFY_OPTIONS = Object.freeze({ algorithms: ['RS256'], ignoreExpiration: true, ignoreNotBefore: true })

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

const MALFORMED = new Set([
  'FAST_JWT_MALFORMED', 'FAST_JWT_INVALID_PAYLOAD', 'FAST_JWT_INVALID_TYPE', 'FAST_JWT_INVALID_ALGORITHM',
  'FAST_JWT_MISSING_SIGNATURE', 'FAST_JWT_INVALID_CRIT_HEADER', 'FST_JWT_AUTHORIZATION_TOKEN_INVALID', 'FST_JWT_BAD_REQUEST'
])

/** An unknown code fails closed (`auth_token_signature_untrusted`), never a 5xx. */
export function mapJwtError (err: unknown, untrustedDetail: () => string | undefined): EntraAuthError {
  if (err instanceof EntraAuthError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && MALFORMED.has(code)) {
    // Not fast-jwt's error itself: its originalError (V8's SyntaxError) quotes the unverified payload.
    return new EntraAuthError('auth_token_invalid', 'The token is not a JWT with a JSON object header and payload.', { cause: new Error(code) })
  }
  return new EntraAuthError('auth_token_signature_untrusted', untrustedDetail(), { cause: err })
}

/** The verified payload, with a null prototype: only its own members count as claims. */
export function verifySignature (token: string, key: SigningKey, untrustedDetail: () => string | undefined): Record<string, unknown> {
  let payload: object
  try {
    payload = key.verify(token) as object
  } catch (err) {
    throw mapJwtError(err, untrustedDetail)
  }
  return Object.setPrototypeOf(payload, null) as Record<string, unknown>
}
