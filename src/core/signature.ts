import { createRequire } from 'node:module'
import type { SigningKey } from './keys.js'
import { EntraAuthError } from '../entra/problems.js'

/**
 * The @fastify/jwt layer: RS256 signatures are verified by @fastify/jwt's request-level verify
 * (`request.jwtVerify`), whose engine is fast-jwt.
 *
 * How it is used, and why (each fact has a tripwire test):
 * - @fastify/jwt's plugin function (its public `fastifyJwt` export) is applied to a private
 *   decoration target, never to a Fastify instance. Registered on an app it decorates
 *   `fastify.jwt`, `request.user` and `request.jwtVerify`, and an app that registers its own
 *   @fastify/jwt then crashes at boot in most arrangements; here nothing of ours reaches the app,
 *   and the standalone verifier (no Fastify at all) runs the very same code.
 * - Of @fastify/jwt's entry points, only the request-level verify keeps one fast-jwt verifier per
 *   key (its `validatorCache`, keyed by the PEM the secret callback returns): `fastify.jwt.verify`
 *   with per-call options builds a new verifier (and converts the PEM, ~0.1 ms) on every call, and
 *   a key function makes fast-jwt convert the key on every call too.
 * - On the hot path @fastify/jwt decodes the token once (to give the secret callback its header),
 *   and fast-jwt decodes it once more and checks the signature: two JSON decodes, no more. Our own
 *   pre-check (`precheckJws`) reads bytes only; the header rules (`alg`, `crit`, `kid`) run in the
 *   secret callback, on @fastify/jwt's decoded header, before the key store is asked (so no network
 *   for a malformed token).
 * - Time claims are left to the Entra rules (`ignoreExpiration`, `ignoreNotBefore`), so the order
 *   of checks stays: signature → required claims → nbf → exp → …
 * - @fastify/jwt's and fast-jwt's errors carry codes, not statuses: each is mapped below.
 */

/** What fast-jwt hands back with `complete: true`. */
export interface VerifiedJws {
  readonly header: Record<string, unknown>
  readonly payload: Record<string, unknown>
  readonly key: SigningKey
}

/** Finds the key for a decoded header; throws `EntraAuthError` (header rules, unknown kid, outage). */
export type KeyResolver = (header: Record<string, unknown>) => SigningKey | Promise<SigningKey>

/** Detail for a signature that doesn't verify, given what the token claims to be (e.g. a Graph token). */
export type UntrustedDetail = (header: Record<string, unknown>, payload: Record<string, unknown>) => string | undefined

type Callback = (err: Error | null, value?: unknown) => void
interface Decoded { header: Record<string, unknown>, payload: Record<string, unknown> }

/** One verification: what @fastify/jwt sees as `request`. */
interface Attempt {
  readonly token: string
  decoded: Decoded | undefined
  key: SigningKey | undefined
}

type RequestVerify = (this: Attempt, options: undefined, next: Callback) => void
type FastifyJwtPlugin = (instance: object, options: object, done: (err?: Error) => void) => void

const require = createRequire(import.meta.url)
const fastifyJwt = (require('@fastify/jwt') as { fastifyJwt: FastifyJwtPlugin }).fastifyJwt

/** Where @fastify/jwt would put `request.user`: a symbol, so it can't clash with anything. */
const kResult = Symbol('fastify-entra-auth.jws')

/**
 * @fastify/jwt's and fast-jwt's error codes → what the client is told. Codes raised before the key
 * was resolved mean a malformed token; after it, a signature that does not verify.
 */
const AFTER_KEY: Readonly<Record<string, 'auth_token_signature_untrusted' | 'auth_token_invalid'>> = {
  FST_JWT_AUTHORIZATION_TOKEN_INVALID: 'auth_token_signature_untrusted',
  FAST_JWT_INVALID_SIGNATURE: 'auth_token_signature_untrusted',
  FAST_JWT_INVALID_KEY: 'auth_token_signature_untrusted',
  FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED: 'auth_token_signature_untrusted',
  FAST_JWT_MISSING_SIGNATURE: 'auth_token_invalid',
  FAST_JWT_INVALID_ALGORITHM: 'auth_token_invalid',
  FAST_JWT_INVALID_CRIT_HEADER: 'auth_token_invalid'
}
const BEFORE_KEY = new Set([
  'FST_JWT_AUTHORIZATION_TOKEN_INVALID', 'FST_JWT_BAD_REQUEST', 'FAST_JWT_MALFORMED', 'FAST_JWT_INVALID_PAYLOAD',
  'FAST_JWT_INVALID_TYPE'
])

/** Maps an error of @fastify/jwt or fast-jwt by its `code`; unknown codes are refused closed (401). */
export function mapJwtError (err: unknown, keyResolved: boolean, untrustedDetail: string | undefined): EntraAuthError {
  if (err instanceof EntraAuthError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') {
    if (keyResolved) {
      const type = AFTER_KEY[code]
      if (type === 'auth_token_signature_untrusted') return new EntraAuthError(type, untrustedDetail, { cause: err })
      if (type !== undefined) return new EntraAuthError(type, undefined, { cause: err })
    } else if (BEFORE_KEY.has(code)) {
      return new EntraAuthError('auth_token_invalid', 'The token is not a JWT with a JSON object header and payload.', { cause: err })
    }
  }
  // Fail closed: an error we can't classify never admits, and never becomes a 5xx.
  return new EntraAuthError(keyResolved ? 'auth_token_signature_untrusted' : 'auth_token_invalid', undefined, { cause: err })
}

/** The functions @fastify/jwt's plugin decorates with, captured from a private target. */
export function loadFastifyJwt (options: object): { requestVerify: RequestVerify, decorations: string[] } {
  const decorations: string[] = []
  let requestVerify: RequestVerify | undefined
  const target = {
    decorate (name: string, value: unknown) { decorations.push(`instance.${name}`); (this as Record<string, unknown>)[name] = value },
    decorateRequest (name: string | symbol, value: unknown) {
      decorations.push(`request.${String(name)}`)
      if (name === 'jwtVerify') requestVerify = value as RequestVerify
    },
    decorateReply (name: string) { decorations.push(`reply.${name}`) }
  }
  let failure: Error | undefined
  fastifyJwt(target, options, err => { failure = err })
  if (failure !== undefined) throw failure
  if (requestVerify === undefined) throw new Error('fastify-entra-auth: @fastify/jwt did not provide request.jwtVerify; this @fastify/jwt version is not supported')
  return { requestVerify, decorations }
}

/**
 * Builds the signature check: `verify(token)` resolves with the verified header, payload and key.
 * `token` must have passed `precheckJws`.
 */
export function createSignatureVerifier (resolveKey: KeyResolver, untrustedDetail: UntrustedDetail): (token: string) => Promise<VerifiedJws> {
  function secret (attempt: Attempt, decoded: Decoded, done: Callback): void {
    attempt.decoded = decoded
    let key: SigningKey | Promise<SigningKey>
    try {
      key = resolveKey(decoded.header)
    } catch (err) {
      done(err as Error)
      return
    }
    if (key instanceof Promise) {
      key.then(found => { attempt.key = found; done(null, found.pem) }, done)
    } else {
      attempt.key = key
      done(null, key.pem)
    }
  }

  const { requestVerify } = loadFastifyJwt({
    secret,
    decoratorName: kResult,
    decode: { complete: true },
    verify: {
      algorithms: ['RS256'],
      complete: true,
      ignoreExpiration: true,
      ignoreNotBefore: true,
      extractToken: (attempt: Attempt) => attempt.token
    }
  })

  return function verifySignature (token: string): Promise<VerifiedJws> {
    return new Promise((resolve, reject) => {
      const attempt: Attempt = { token, decoded: undefined, key: undefined }
      requestVerify.call(attempt, undefined, (err, result) => {
        const { key, decoded } = attempt
        if (err != null || key === undefined) {
          const detail = key !== undefined && decoded !== undefined ? untrustedDetail(decoded.header, decoded.payload) : undefined
          reject(mapJwtError(err, key !== undefined, detail))
          return
        }
        const { header, payload } = result as Decoded
        // Null prototypes: only own members count as claims (a polluted Object.prototype can't add one).
        resolve({ header: Object.setPrototypeOf(header, null), payload: Object.setPrototypeOf(payload, null), key })
      })
    })
  }
}
