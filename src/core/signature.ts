import { createRequire } from 'node:module'
import type { SigningKey } from './keys.js'
import { EntraAuthError } from '../entra/problems.js'

/**
 * The @fastify/jwt layer: RS256 signatures are verified by @fastify/jwt's `jwt.verify(token)`
 * (its engine is fast-jwt), one @fastify/jwt instance per signing key.
 *
 * How it is used, and why (each fact has a tripwire test):
 * - @fastify/jwt's plugin function (its public `fastifyJwt` export) is applied to a private
 *   decoration target, never to a Fastify instance. Registered on an app it decorates
 *   `fastify.jwt`, `request.user` and `request.jwtVerify`, and an app that registers its own
 *   @fastify/jwt then crashes at boot in most arrangements; here nothing of ours reaches the app,
 *   and the standalone verifier (no Fastify at all) runs the very same code.
 * - `jwt.verify(token)` without per-call options reuses the one fast-jwt verifier built at
 *   registration for its static key; with per-call options, or with a key function, @fastify/jwt
 *   and fast-jwt build a verifier and convert the PEM (~0.1 ms) on every call. So each key of the
 *   set gets its own @fastify/jwt instance, made on first use and dropped with the key.
 * - On the hot path fast-jwt decodes the token once and checks the signature; our own pre-check
 *   reads the (small) header and the payload's bytes only. Its request-level `jwtVerify` would
 *   decode the token a second time before asking for the key.
 * - Time claims are left to the Entra rules (`ignoreExpiration`, `ignoreNotBefore`), so the order
 *   of checks stays: signature → required claims → nbf → exp → …
 * - fast-jwt's errors carry codes, not statuses: each is mapped below.
 */

/** What fast-jwt hands back with `complete: true`. */
export interface VerifiedJws {
  readonly header: Record<string, unknown>
  readonly payload: Record<string, unknown>
}

type JwtVerify = (token: string) => unknown
type FastifyJwtPlugin = (instance: object, options: object, done: (err?: Error) => void) => void

const require = createRequire(import.meta.url)
const fastifyJwt = (require('@fastify/jwt') as { fastifyJwt: FastifyJwtPlugin }).fastifyJwt

/** Where @fastify/jwt would put `request.user`: a symbol, so it can't clash with anything. */
const kUser = Symbol('fastify-entra-auth.jws')

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

/** What @fastify/jwt's plugin decorates, captured from a private target instead of an app. */
export function loadFastifyJwt (options: object): { jwt: { verify: JwtVerify }, decorations: string[] } {
  const decorations: string[] = []
  const decorated: Record<string, unknown> = {}
  const target = {
    decorate (name: string, value: unknown) { decorations.push(`instance.${name}`); decorated[name] = value },
    decorateRequest (name: string | symbol) { decorations.push(`request.${String(name)}`) },
    decorateReply (name: string) { decorations.push(`reply.${name}`) }
  }
  let failure: Error | undefined
  fastifyJwt(target, options, err => { failure = err })
  if (failure !== undefined) throw failure
  const jwt = decorated.jwt as { verify?: unknown } | undefined
  if (typeof jwt?.verify !== 'function') throw new Error('fastify-entra-auth: @fastify/jwt did not provide jwt.verify; this @fastify/jwt version is not supported')
  return { jwt: jwt as { verify: JwtVerify }, decorations }
}

/** One @fastify/jwt instance per key, made on first use; gone with the key (WeakMap). */
const instances = new WeakMap<SigningKey, JwtVerify>()

function jwtVerifyOf (key: SigningKey): JwtVerify {
  let verify = instances.get(key)
  if (verify === undefined) {
    const { jwt } = loadFastifyJwt({
      // Verify-only: the public key, no private key (so @fastify/jwt builds no signer).
      secret: { public: key.pem },
      decoratorName: kUser,
      verify: { algorithms: ['RS256'], complete: true, ignoreExpiration: true, ignoreNotBefore: true }
    })
    verify = jwt.verify
    instances.set(key, verify)
  }
  return verify
}

/**
 * Verifies `token`'s RS256 signature with `key` through @fastify/jwt, and hands back the header
 * and payload fast-jwt decoded (with null prototypes: only own members count as claims).
 * Synchronous. Throws `EntraAuthError`.
 */
export function verifySignature (token: string, key: SigningKey, untrustedDetail: () => string | undefined): VerifiedJws {
  let result: VerifiedJws
  try {
    result = jwtVerifyOf(key)(token) as VerifiedJws
  } catch (err) {
    throw mapJwtError(err, untrustedDetail)
  }
  return { header: Object.setPrototypeOf(result.header, null), payload: Object.setPrototypeOf(result.payload, null) }
}
