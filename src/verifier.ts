import { createAdmission, type AdmissionLogger } from './admission.js'
import { kFromCache, keyStoreClockOf } from './internal.js'
import { checkClaims, checkTime, graphTokenDetail, isGraphToken, type ClaimRules } from './entra/claims.js'
import { checkJoseHeader, precheckJws, type JoseHeader } from './jws.js'
import { KeyStore, type KeyStoreLogger, type KeyStoreState } from './keys.js'
import { resolveOptions, type EntraVerifierOptions, type ResolvedOptions } from './options.js'
import { EntraAuthError } from './problems.js'
import { createSignatureVerifier } from './signature.js'
import type { EntraToken, Rfc7662Introspection } from './token.js'
import { TokenCache } from './token-cache.js'
import type { Discovery } from './discovery.js'

/** Health-check view of a verifier. */
export interface EntraVerifierState {
  keys: KeyStoreState
  /** Verified tokens held (`bytes`: estimated size of the main segment). */
  tokenCache: { size: number, max: number, bytes: number }
}

/** Validates Entra access tokens outside of (or shared with) a Fastify route. */
export interface EntraVerifier {
  /** Resolves with the validated token; rejects with `EntraAuthError`. */
  verify: (token: string) => Promise<EntraToken>
  /**
   * RFC 7662 introspection: `{ active: false }` for any bad token; rejects only with
   * `auth_oidc_error` when keys can't be had.
   */
  introspect: (token: string) => Promise<Rfc7662Introspection>
  /** Loads discovery and keys now, waiting at most one `jwks.timeout`; never rejects. */
  warm: () => Promise<boolean>
  /** The discovery document, once loaded (authorization/token endpoints, issuer). */
  discovery: () => Discovery | undefined
  state: () => EntraVerifierState
  /** Releases the connection pool. */
  close: () => Promise<void>
  /** The resolved, frozen options. */
  readonly options: ResolvedOptions
}

/** What the plugin sees of its verifier: the public one plus the synchronous cache lookup. */
export interface InternalVerifier extends EntraVerifier {
  readonly [kFromCache]: (raw: string) => EntraToken | undefined
}

export interface VerifierInternals {
  logger?: KeyStoreLogger & AdmissionLogger
  /** Monotonic milliseconds for the key store (tests move it instead of sleeping). */
  clock?: () => number
}

/** Builds a verifier from already resolved options (the plugin resolves them first). */
export function buildVerifier (options: ResolvedOptions, internals: VerifierInternals = {}): InternalVerifier {
  const keys = new KeyStore({ discoveryUrl: options.discoveryUrl, timings: options.jwks, dispatcher: options.dispatcher, logger: internals.logger, clock: internals.clock })
  const cache = new TokenCache({ max: options.tokenCacheMax, maxBytes: options.tokenCacheMaxBytes })
  const rules: ClaimRules = options
  const admission = createAdmission(options, internals.logger)
  const { now, clockTolerance } = options
  const verifySignature = createSignatureVerifier(
    header => keys.keyFor(checkJoseHeader(header).kid),
    (header, payload) => isGraphToken(header, payload) ? graphTokenDetail() : undefined
  )

  /**
   * The cached token of exactly `raw`, judged again for time and key-set usability, synchronously
   * (the plugin's hook answers cache hits without awaiting anything); undefined on a miss.
   */
  function fromCache (raw: string): EntraToken | undefined {
    const hit = cache.get(raw)
    if (hit === undefined) return undefined
    // Admitted only while its key is in the current key set and that set is usable.
    if (!keys.isCurrent(hit.key)) {
      // Its key left the key set (or the set is past ttl + maxStale): judge the token afresh.
      cache.delete(raw)
      return undefined
    }
    // Cached tokens must not keep an outdated key set alive: refresh it in the background.
    keys.revalidate()
    try {
      checkTime(hit.token.claims.nbf, hit.token.claims.exp, rules)
    } catch (err) {
      cache.delete(raw)
      throw err
    }
    return hit.token
  }

  async function verify (raw: string): Promise<EntraToken> {
    if (typeof raw !== 'string' || raw === '') throw new EntraAuthError('auth_token_invalid')
    const cached = fromCache(raw)
    if (cached !== undefined) return cached

    precheckJws(raw)
    const { header, payload, key } = await verifySignature(raw)
    const discovery = keys.peekDiscovery() ?? await keys.discovery()
    const claims = checkClaims(payload, rules, discovery.issuer, key.issuer)
    const token = await admission.admit(raw, header as JoseHeader, claims, discovery.issuer)
    cache.set(raw, token, key, claims.exp * 1000 - now() + clockTolerance)
    return token
  }

  async function introspect (raw: string): Promise<Rfc7662Introspection> {
    try {
      return (await verify(raw)).introspect()
    } catch (err) {
      if (err instanceof EntraAuthError && err.type !== 'auth_oidc_error') return { active: false }
      throw err
    }
  }

  async function warm (): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<boolean>(resolve => { timer = setTimeout(resolve, options.jwks.timeout, false) })
    try {
      const ready = await Promise.race([keys.refresh().then(() => true, () => false), deadline])
      const discovery = keys.peekDiscovery()
      if (discovery !== undefined) admission.discovered(discovery.issuer)
      return ready
    } finally {
      clearTimeout(timer)
    }
  }

  return Object.freeze({
    [kFromCache]: fromCache,
    verify,
    introspect,
    warm,
    discovery: () => keys.peekDiscovery(),
    state: () => ({ keys: keys.state(), tokenCache: { size: cache.size, max: cache.max, bytes: cache.bytes } }),
    close: () => keys.close(),
    options
  })
}

/**
 * Creates a standalone verifier with the plugin's options except the plugin-only ones
 * (`decorator`, `tokenSources`, `onAuthSuccess`, `onAuthFailure`, `rejectionLogLevel`, `openapi`),
 * which it refuses with an `EntraAuthOptionsError` naming them.
 *
 * @example
 * ```ts
 * import { createEntraVerifier } from 'fastify-entra-auth'
 *
 * const verifier = createEntraVerifier({ clientId, tenant: 'contoso.onmicrosoft.com' })
 * const token = await verifier.verify(accessToken)   // rejects with EntraAuthError
 * const info = await verifier.introspect(accessToken) // { active: false } for bad tokens
 * // Both reject with `auth_oidc_error` (503) while the signing keys can't be had.
 * await verifier.close()
 * ```
 */
export function createEntraVerifier (options: EntraVerifierOptions): EntraVerifier {
  return buildVerifier(resolveOptions(options, 'verifier'), { clock: keyStoreClockOf(options) })
}
