import { createPublicKey, type KeyObject } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { parseDiscovery, type Discovery } from './discovery.js'
import { createAgent, fetchJson, FetchFailure } from './http.js'
import type { KeyTimings } from './options.js'
import { EntraAuthError } from './problems.js'

/** A verification key from the provider's JWKS, converted once. */
export interface SigningKey {
  readonly kid: string
  /** Entra's non-standard JWK `issuer` member: the issuer (template) this key may sign for. */
  readonly issuer: string | undefined
  readonly publicKey: KeyObject
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

const clock = (): number => performance.now()

/**
 * Turns a JWKS document into usable RS256 verification keys. Anything that is not an RSA
 * signing key (RFC 7517 §4.2 `use: enc`, other `kty`, another `alg`) is left out, so it can never
 * verify a token.
 */
function parseKeySet (document: unknown): Map<string, SigningKey> {
  const keys = (document as { keys?: unknown } | null)?.keys
  if (document === null || typeof document !== 'object' || !Array.isArray(keys)) {
    throw new FetchFailure("JWKS has no 'keys' array")
  }
  const result = new Map<string, SigningKey>()
  for (const jwk of keys as Array<Record<string, unknown>>) {
    if (jwk === null || typeof jwk !== 'object') continue
    const { kid, kty, use, alg, issuer } = jwk
    if (typeof kid !== 'string' || kty !== 'RSA' || result.has(kid)) continue
    if (use !== undefined && use !== 'sig') continue
    if (alg !== undefined && alg !== 'RS256') continue
    let publicKey: KeyObject
    try {
      publicKey = createPublicKey({ key: { kty, n: jwk.n, e: jwk.e } as import('node:crypto').JsonWebKey, format: 'jwk' })
    } catch {
      continue
    }
    if ((publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_MODULUS_BITS) continue
    result.set(kid, Object.freeze({ kid, issuer: typeof issuer === 'string' ? issuer : undefined, publicKey }))
  }
  return result
}

export interface KeyStoreOptions {
  discoveryUrl: URL
  timings: KeyTimings
  dispatcher?: Dispatcher | undefined
  logger?: KeyStoreLogger | undefined
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
 * - each fetch is bounded by `timeout` and `maxBytes`.
 */
export class KeyStore {
  readonly #discoveryUrl: URL
  readonly #timings: KeyTimings
  readonly #dispatcher: Dispatcher
  readonly #ownsDispatcher: boolean
  readonly #logger: KeyStoreLogger | undefined
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
    this.#dispatcher = options.dispatcher ?? createAgent(options.timings.timeout)
    this.#logger = options.logger
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
    } else if (clock() - set.fetchedAt >= this.#timings.cooldown) {
      set = await this.refresh()
    }
    const refreshed = set.keys.get(kid)
    if (refreshed !== undefined) return refreshed
    throw new EntraAuthError('auth_token_key_error')
  }

  /**
   * Stale-while-revalidate: once the set is older than `ttl`, start a background refresh; the hot
   * path never waits on the provider. Cheap enough to call on every request.
   */
  revalidate (): void {
    const set = this.#keySet
    if (set !== null && clock() - set.fetchedAt >= this.#timings.ttl && this.#inFlight === null && clock() >= this.#retryAt) {
      this.refresh().catch(() => {})
    }
  }

  /** True while `key` is still part of the current key set (used to drop cached tokens). */
  isCurrent (key: SigningKey): boolean {
    return this.#keySet?.keys.get(key.kid) === key
  }

  /**
   * Fetches discovery (when stale) and the key set, sharing one flight among all callers.
   * On failure it resolves with the last good set while that is within `ttl + maxStale`,
   * and rejects with `auth_oidc_error` otherwise.
   */
  refresh (): Promise<KeySet> {
    if (this.#inFlight !== null) return this.#inFlight
    if (clock() < this.#retryAt && this.#lastFailure !== null) {
      // The provider failed moments ago: don't let every request turn into another fetch.
      const last = this.#keySet
      return last !== null && this.#usable(last.fetchedAt) ? Promise.resolve(last) : Promise.reject(this.#lastFailure)
    }
    this.#inFlight = this.#load().finally(() => { this.#inFlight = null })
    return this.#inFlight
  }

  async #load (): Promise<KeySet> {
    const fetchOptions = { dispatcher: this.#dispatcher, timeout: this.#timings.timeout, maxBytes: this.#timings.maxBytes }
    let discoveryFailed = false
    try {
      let discovery = this.#discovery
      if (discovery === null || clock() - discovery.fetchedAt >= this.#timings.ttl) {
        this.#discoveryFetches++
        try {
          discovery = { value: parseDiscovery(await fetchJson(this.#discoveryUrl, fetchOptions), this.#discoveryUrl), fetchedAt: clock() }
          this.#discovery = discovery
        } catch (err) {
          if (discovery === null || !this.#usable(discovery.fetchedAt)) throw err
          // Serving the last good document; health checks must still see the outage.
          discoveryFailed = true
          this.#failures++
          this.#lastError = err instanceof FetchFailure ? err.message : String(err)
          this.#warn(err, 'discovery')
        }
      }
      this.#jwksFetches++
      const keys = parseKeySet(await fetchJson(discovery.value.jwksUri, fetchOptions))
      this.#keySet = { keys, fetchedAt: clock() }
      if (!discoveryFailed) this.#lastError = undefined
      this.#lastFailure = null
      return this.#keySet
    } catch (err) {
      this.#failures++
      this.#lastError = err instanceof FetchFailure ? err.message : String(err)
      this.#lastFailure = new EntraAuthError('auth_oidc_error', undefined, { cause: err })
      this.#retryAt = clock() + Math.min(this.#timings.cooldown, FAILURE_BACKOFF)
      this.#warn(err, 'keys')
      const last = this.#keySet
      if (last !== null && this.#usable(last.fetchedAt)) return last
      throw this.#lastFailure
    }
  }

  #usable (fetchedAt: number): boolean {
    return clock() - fetchedAt < this.#timings.ttl + this.#timings.maxStale
  }

  #warn (err: unknown, what: string): void {
    const reason = err instanceof FetchFailure ? err.message : String(err)
    this.#logger?.warn({ discoveryUrl: this.#discoveryUrl.href, reason }, `fastify-entra-auth: could not refresh ${what} from the identity provider`)
  }

  state (): KeyStoreState {
    const set = this.#keySet
    return {
      ready: set !== null && this.#usable(set.fetchedAt),
      issuer: this.#discovery?.value.issuer,
      jwksUri: this.#discovery?.value.jwksUri.href,
      kids: set === null ? [] : [...set.keys.keys()],
      keysAge: set === null ? null : Math.round(clock() - set.fetchedAt),
      discoveryFetches: this.#discoveryFetches,
      jwksFetches: this.#jwksFetches,
      failures: this.#failures,
      lastError: this.#lastError
    }
  }

  async close (): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close()
  }
}
