import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { parseDiscovery, type Discovery } from './discovery.js'
import { createAgent, failureReason, fetchJson, FetchFailure, guardDispatcher } from './http.js'
import { JwksSource } from './jwks.js'
import type { KeyTimings } from '../options.js'
import { EntraAuthError } from '../entra/problems.js'
import { keysFetchChannel, keysRefreshChannel } from './tracing.js'

/** A JWKS that parses but holds no key we can use: a failed fetch that never replaces a good set. */
export class NoUsableKeys extends FetchFailure {
  override name = 'NoUsableKeys'
}

/** A verification key from the provider's JWKS, converted once. */
export interface SigningKey {
  readonly kid: string
  /** Entra's non-standard JWK `issuer` member: the issuer (template) this key may sign for. */
  readonly issuer: string | undefined
  readonly publicKey: KeyObject
  /** SPKI PEM of `publicKey`, the form @fastify/jwt (fast-jwt) takes; made once per key. */
  readonly pem: string
  /** `kid`, modulus, exponent and issuer: equal fingerprints are the same key across refreshes. */
  readonly fingerprint: string
}

/** Minimal logger: Fastify's, pino, or console-like. */
export interface KeyStoreLogger {
  warn: (obj: object, msg: string) => void
}

/** What health checks can read about the key store. */
export interface KeyStoreState {
  /** Whether discovery and keys are loaded and usable. */
  ready: boolean
  issuer: string | undefined
  jwksUri: string | undefined
  kids: string[]
  /** Milliseconds since the key set was fetched, or null before the first success. */
  keysAge: number | null
  discoveryFetches: number
  jwksFetches: number
  failures: number
  lastError: string | undefined
}

interface KeySet {
  readonly keys: ReadonlyMap<string, SigningKey>
  readonly fetchedAt: number
}

interface Stamped<T> { readonly value: T, readonly fetchedAt: number }

/** RSA keys shorter than this are refused; Entra's are 2048 bits. */
const MIN_MODULUS_BITS = 2048

/**
 * After a failed fetch, wait this long (or `cooldown`, if shorter) before the next one, so an
 * outage doesn't turn every request into a fetch; short, so recovery is noticed quickly.
 */
const FAILURE_BACKOFF = 5000

/** Whether a JWK may verify RS256 signatures (RFC 7517 §4.2 `use`, §4.3 `key_ops`; RFC 7518 §3.3). */
function isSigningJwk (jwk: Record<string, unknown>): boolean {
  const { kty, use, alg, key_ops: ops } = jwk
  if (kty !== 'RSA') return false
  if (use !== undefined && use !== 'sig') return false
  if (alg !== undefined && alg !== 'RS256') return false
  return ops === undefined || (Array.isArray(ops) && ops.includes('verify'))
}

/**
 * A usable RSA public key, or undefined. Degenerate keys are refused: a short modulus, and a
 * public exponent that is even or below 3 (with e = 1 the "signature" is the padded hash itself,
 * which anyone can compute; RFC 8017 §3.1 requires 3 <= e <= n - 1).
 */
function rsaKeyOf (jwk: Record<string, unknown>): KeyObject | undefined {
  let key: KeyObject
  try {
    key = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e } as JsonWebKey, format: 'jwk' })
  } catch {
    return undefined
  }
  const details = key.asymmetricKeyDetails
  const exponent = details?.publicExponent
  if ((details?.modulusLength ?? 0) < MIN_MODULUS_BITS) return undefined
  if (typeof exponent !== 'bigint' || exponent < 3n || exponent % 2n === 0n) return undefined
  return key
}

/**
 * Turns a JWKS document into usable RS256 verification keys. Anything that is not an RSA signing
 * key is left out, so it can never verify a token. A key whose `issuer` member is not a string is
 * skipped (it must not mean "unrestricted"); a blank one counts as absent. Keys equal to one of
 * `previous` keep its object, so cached tokens stay valid across refreshes. A set with no usable
 * key is a failed fetch: the last good set keeps serving.
 */
export function parseKeySet (document: unknown, previous: ReadonlyMap<string, SigningKey> | undefined): Map<string, SigningKey> {
  const keys = (document as { keys?: unknown } | null)?.keys
  if (document === null || typeof document !== 'object' || !Array.isArray(keys)) {
    throw new FetchFailure("JWKS has no 'keys' array")
  }
  const result = new Map<string, SigningKey>()
  for (const jwk of keys as unknown[]) {
    if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) continue
    const { kid, n, e, issuer: rawIssuer } = jwk as Record<string, unknown>
    if (typeof kid !== 'string' || kid === '' || result.has(kid) || !isSigningJwk(jwk as Record<string, unknown>)) continue
    if (rawIssuer !== undefined && typeof rawIssuer !== 'string') continue
    const issuer = typeof rawIssuer === 'string' && rawIssuer.trim() !== '' ? rawIssuer : undefined
    const fingerprint = JSON.stringify([kid, n, e, issuer ?? null])
    const known = previous?.get(kid)
    if (known !== undefined && known.fingerprint === fingerprint) {
      result.set(kid, known)
      continue
    }
    const publicKey = rsaKeyOf(jwk as Record<string, unknown>)
    if (publicKey === undefined) continue
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string
    result.set(kid, Object.freeze({ kid, issuer, publicKey, pem, fingerprint }))
  }
  if (result.size === 0) throw new NoUsableKeys('JWKS has no usable RS256 signing key')
  return result
}

export interface KeyStoreOptions {
  discoveryUrl: URL
  timings: KeyTimings
  dispatcher?: Dispatcher | undefined
  logger?: KeyStoreLogger | undefined
  /** Monotonic milliseconds; tests pass a fake one to move time without sleeping. */
  clock?: (() => number) | undefined
}

/**
 * Discovery document and signing keys of one identity provider, with Microsoft's rollover
 * guidance built in (https://learn.microsoft.com/entra/identity-platform/signing-key-rollover):
 * - the whole key set is fetched and replaced at once, so a removed key stops verifying;
 * - fresh for `ttl`, then refreshed in the background while the last good set keeps serving,
 *   for at most `maxStale` more while the provider fails;
 * - an unknown `kid` refreshes at once, but never sooner than `cooldown` after the last fetch,
 *   so a flood of made-up kids costs at most one fetch per cooldown;
 * - one fetch in flight at a time, shared by every waiting request;
 * - each fetch is bounded by `timeout` and `maxBytes`, goes to the discovery URL's origin only and
 *   never follows a redirect, whatever dispatcher the app passes (see `guardDispatcher`);
 * - the key set is fetched by get-jwks (see `JwksSource`), and a set with no usable key is an outage.
 */
export class KeyStore {
  readonly #discoveryUrl: URL
  readonly #timings: KeyTimings
  readonly #dispatcher: Dispatcher
  readonly #inner: Dispatcher
  readonly #ownsDispatcher: boolean
  readonly #logger: KeyStoreLogger | undefined
  readonly #clock: () => number
  #jwks: JwksSource | null = null
  #discovery: Stamped<Discovery> | null = null
  #keySet: KeySet | null = null
  #inFlight: Promise<KeySet> | null = null
  #discoveryFetches = 0
  #jwksFetches = 0
  #failures = 0
  #lastError: string | undefined
  #lastFailure: EntraAuthError | null = null
  /** No new fetch before this time after a failure (see FAILURE_BACKOFF). */
  #retryAt = -Infinity

  constructor (options: KeyStoreOptions) {
    this.#discoveryUrl = options.discoveryUrl
    this.#timings = options.timings
    this.#ownsDispatcher = options.dispatcher === undefined
    this.#inner = options.dispatcher ?? createAgent(options.timings.timeout)
    this.#dispatcher = guardDispatcher(this.#inner, {
      origin: options.discoveryUrl.origin,
      maxBytes: options.timings.maxBytes,
      onResponse: (url, statusCode, body) => { this.#jwks?.received(url, statusCode, body) },
      onRefused: (url, failure) => { this.#jwks?.refused(url, failure) }
    })
    this.#logger = options.logger
    this.#clock = options.clock ?? (() => performance.now())
  }

  /** The discovery document, loading it if needed. Rejects with `auth_oidc_error`. */
  async discovery (): Promise<Discovery> {
    if (this.#discovery === null) await this.refresh()
    return (this.#discovery as unknown as Stamped<Discovery>).value
  }

  /** The discovery document if it is loaded, without fetching. */
  peekDiscovery (): Discovery | undefined {
    return this.#discovery?.value
  }

  /**
   * The key for `kid`. Rejects with `auth_token_key_error` when the provider has no usable key of
   * that ID, and with `auth_oidc_error` when keys can't be had.
   */
  async getKey (kid: string): Promise<SigningKey> {
    let set = this.#keySet
    if (set === null || !this.#usable(set.fetchedAt)) {
      set = await this.refresh()
    } else {
      this.revalidate()
    }
    const key = set.keys.get(kid)
    if (key !== undefined) return key

    // Unknown kid: either a key rolled over (refresh now) or a forgery (don't let it cost fetches).
    if (this.#inFlight !== null) {
      set = await this.#inFlight.catch(() => set as KeySet)
    } else if (this.#clock() - set.fetchedAt >= this.#timings.cooldown) {
      set = await this.refresh()
    }
    const refreshed = set.keys.get(kid)
    if (refreshed !== undefined) return refreshed
    throw new EntraAuthError('auth_token_key_error')
  }

  /**
   * The key for `kid` while the current set is usable and has it (the hot path: synchronous, no
   * network possible), starting a background refresh when the set is past `ttl`; else undefined,
   * and the caller goes through {@link getKey}.
   */
  currentKey (kid: string): SigningKey | undefined {
    const set = this.#keySet
    const key = set?.keys.get(kid)
    if (key === undefined || !this.#usable((set as KeySet).fetchedAt)) return undefined
    this.revalidate()
    return key
  }

  /**
   * Stale-while-revalidate: once the set is older than `ttl`, start a background refresh; the hot
   * path never waits on the provider. Cheap enough to call on every request.
   */
  revalidate (): void {
    const set = this.#keySet
    if (set !== null && this.#clock() - set.fetchedAt >= this.#timings.ttl && this.#inFlight === null && this.#clock() >= this.#retryAt) {
      this.refresh().catch(() => {})
    }
  }

  /**
   * True while `key` is part of the current key set and that set is still usable (within
   * `ttl + maxStale`): a cached token must not outlive either (used on every cache hit).
   */
  isCurrent (key: SigningKey): boolean {
    const set = this.#keySet
    return set !== null && set.keys.get(key.kid) === key && this.#usable(set.fetchedAt)
  }

  /**
   * Fetches discovery (when stale) and the key set, sharing one flight among all callers.
   * On failure it resolves with the last good set while that is within `ttl + maxStale`,
   * and rejects with `auth_oidc_error` otherwise.
   */
  refresh (): Promise<KeySet> {
    if (this.#inFlight !== null) return this.#inFlight
    if (this.#clock() < this.#retryAt && this.#lastFailure !== null) {
      // The provider failed moments ago: don't let every request turn into another fetch.
      const last = this.#keySet
      return last !== null && this.#usable(last.fetchedAt) ? Promise.resolve(last) : Promise.reject(this.#lastFailure)
    }
    if (keysRefreshChannel.hasSubscribers) keysRefreshChannel.publish({ event: 'start', discoveryUrl: this.#discoveryUrl.href })
    this.#inFlight = this.#load().finally(() => { this.#inFlight = null })
    return this.#inFlight
  }

  /** Runs one document fetch, telling `fastify-entra-auth:keys:fetch` subscribers about it. */
  async #traced<T> (document: 'discovery' | 'jwks', url: URL, fetch: () => Promise<T>): Promise<T> {
    if (!keysFetchChannel.hasSubscribers) return await fetch()
    const started = this.#clock()
    keysFetchChannel.publish({ event: 'start', document, url: url.href })
    try {
      const value = await fetch()
      keysFetchChannel.publish({ event: 'end', document, url: url.href, durationMs: this.#clock() - started })
      return value
    } catch (err) {
      keysFetchChannel.publish({ event: 'failure', document, url: url.href, durationMs: this.#clock() - started, reason: failureReason(err, this.#timings.timeout) })
      throw err
    }
  }

  async #load (): Promise<KeySet> {
    const { timeout } = this.#timings
    let discoveryFailed = false
    let step: 'discovery' | 'keys' = 'discovery'
    try {
      let discovery = this.#discovery
      if (discovery === null || this.#clock() - discovery.fetchedAt >= this.#timings.ttl) {
        this.#discoveryFetches++
        try {
          discovery = { value: parseDiscovery(await this.#traced('discovery', this.#discoveryUrl, () => fetchJson(this.#discoveryUrl, this.#dispatcher, timeout, 'discovery document')), this.#discoveryUrl), fetchedAt: this.#clock() }
          this.#discovery = discovery
        } catch (err) {
          if (discovery === null || !this.#usable(discovery.fetchedAt)) throw err
          // Serving the last good document; health checks must still see the outage.
          discoveryFailed = true
          this.#failures++
          this.#lastError = failureReason(err, timeout)
          this.#warn(err, 'discovery')
        }
      }
      step = 'keys'
      this.#jwksFetches++
      const jwksUri = discovery.value.jwksUri
      if (this.#jwks?.jwksUri.href !== jwksUri.href) this.#jwks = new JwksSource({ jwksUri, dispatcher: this.#dispatcher, timeout })
      const source = this.#jwks
      const keys = parseKeySet(await this.#traced('jwks', jwksUri, () => source.fetch()), this.#keySet?.keys)
      this.#keySet = { keys, fetchedAt: this.#clock() }
      if (!discoveryFailed) this.#lastError = undefined
      this.#lastFailure = null
      if (keysRefreshChannel.hasSubscribers) keysRefreshChannel.publish({ event: 'end', discoveryUrl: this.#discoveryUrl.href, kids: [...keys.keys()] })
      return this.#keySet
    } catch (err) {
      this.#failures++
      this.#lastError = failureReason(err, timeout)
      // With no good set to fall back on, a key set without a usable key leaves every kid unknown
      // (401 key error, as for `{"keys":[]}`); anything else means the provider is failing (503).
      this.#lastFailure = err instanceof NoUsableKeys
        ? new EntraAuthError('auth_token_key_error', "The identity provider publishes no key this API can use (RS256, at least 2048 bits), so the token's signing key is unknown.", { cause: err })
        : new EntraAuthError('auth_oidc_error', undefined, { cause: err, step })
      this.#retryAt = this.#clock() + Math.min(this.#timings.cooldown, FAILURE_BACKOFF)
      this.#warn(err, 'keys')
      const last = this.#keySet
      const servingStale = last !== null && this.#usable(last.fetchedAt)
      if (keysRefreshChannel.hasSubscribers) {
        keysRefreshChannel.publish({ event: 'failure', discoveryUrl: this.#discoveryUrl.href, reason: this.#lastError, problem: this.#lastFailure.type, servingStale })
      }
      if (servingStale) return last
      throw this.#lastFailure
    }
  }

  #usable (fetchedAt: number): boolean {
    return this.#clock() - fetchedAt < this.#timings.ttl + this.#timings.maxStale
  }

  #warn (err: unknown, what: string): void {
    const reason = failureReason(err, this.#timings.timeout)
    this.#logger?.warn({ discoveryUrl: this.#discoveryUrl.href, reason }, `fastify-entra-auth: could not refresh ${what} from the identity provider`)
  }

  state (): KeyStoreState {
    const set = this.#keySet
    return {
      ready: set !== null && this.#usable(set.fetchedAt),
      issuer: this.#discovery?.value.issuer,
      jwksUri: this.#discovery?.value.jwksUri.href,
      kids: set === null ? [] : [...set.keys.keys()],
      keysAge: set === null ? null : Math.round(this.#clock() - set.fetchedAt),
      discoveryFetches: this.#discoveryFetches,
      jwksFetches: this.#jwksFetches,
      failures: this.#failures,
      lastError: this.#lastError
    }
  }

  async close (): Promise<void> {
    if (this.#ownsDispatcher) await this.#inner.close()
  }
}
