import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { parseDiscovery, type Discovery } from './discovery.js'
import { createAgent, failureReason, fetchJson, FetchFailure, guardDispatcher, LibraryFailure } from './http.js'
import { JwksSource, type JwksSourceOptions, type ResolvedJwk } from './jwks.js'
import { buildJwtVerifiers, type JwtVerify } from './signature.js'
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
  /** get-jwks' PEM of the key (`getPublicKey`): what @fastify/jwt was registered with. */
  readonly pem: string
  /** `kid`, modulus, exponent and issuer: equal fingerprints are the same key across refreshes. */
  readonly fingerprint: string
  /** This key's `jwt.verify`, from @fastify/jwt registered for it when the key was installed. */
  readonly verify: JwtVerify
}

/** Minimal logger: Fastify's, pino, or console-like. */
export interface KeyStoreLogger {
  warn: (obj: object, msg: string) => void
  /** A library that fails to load or to work (falls back to `warn`). */
  error?: (obj: object, msg: string) => void
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
 * Whether an RSA public key is usable. Degenerate keys are refused: a short modulus, and a public
 * exponent that is even or below 3 (with e = 1 the "signature" is the padded hash itself, which
 * anyone can compute; RFC 8017 §3.1 requires 3 <= e <= n - 1).
 */
function isStrongRsa (key: KeyObject): boolean {
  const details = key.asymmetricKeyDetails
  const exponent = details?.publicExponent
  if (key.asymmetricKeyType !== 'rsa' || (details?.modulusLength ?? 0) < MIN_MODULUS_BITS) return false
  return typeof exponent === 'bigint' && exponent >= 3n && exponent % 2n === 1n
}

function rsaKeyOf (jwk: Readonly<Record<string, unknown>>): KeyObject | undefined {
  try {
    const key = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e } as JsonWebKey, format: 'jwk' })
    return isStrongRsa(key) ? key : undefined
  } catch {
    return undefined
  }
}

function fingerprintOf (jwk: Readonly<Record<string, unknown>>): string {
  const issuer = typeof jwk.issuer === 'string' && jwk.issuer.trim() !== '' ? jwk.issuer : null
  return JSON.stringify([jwk.kid, jwk.n, jwk.e, issuer])
}

/**
 * The usable entries of a JWKS document, one per `kid`, before get-jwks resolves them. Anything
 * that is not an RSA signing key is left out, so it can never verify a token. A key whose `issuer`
 * member is not a string is skipped (it must not mean "unrestricted"). A document without a `keys`
 * array, or with no usable key, is a failed fetch: the last good set keeps serving.
 */
export function usableEntries (document: unknown, previous: ReadonlyMap<string, SigningKey> | undefined): Array<Readonly<Record<string, unknown>>> {
  const keys = (document as { keys?: unknown } | null)?.keys
  if (document === null || typeof document !== 'object' || !Array.isArray(keys)) {
    throw new FetchFailure("JWKS has no 'keys' array")
  }
  const result = new Map<string, Readonly<Record<string, unknown>>>()
  for (const jwk of keys as unknown[]) {
    if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) continue
    const entry = jwk as Record<string, unknown>
    const { kid, issuer } = entry
    if (typeof kid !== 'string' || kid === '' || result.has(kid) || !isSigningJwk(entry)) continue
    if (issuer !== undefined && typeof issuer !== 'string') continue
    if (previous?.get(kid)?.fingerprint !== fingerprintOf(entry) && rsaKeyOf(entry) === undefined) continue
    result.set(kid, entry)
  }
  if (result.size === 0) throw new NoUsableKeys('JWKS has no usable RS256 signing key')
  return [...result.values()]
}

/**
 * The key set from get-jwks' answers. A key equal to one of `previous` keeps its object (and its
 * @fastify/jwt), so cached tokens stay valid across refreshes; the new ones get @fastify/jwt
 * registered now. Rejects with a `LibraryFailure` when @fastify/jwt fails.
 */
export async function installKeySet (resolved: ReadonlyMap<string, ResolvedJwk>, previous: ReadonlyMap<string, SigningKey> | undefined): Promise<Map<string, SigningKey>> {
  const fresh: Array<Omit<SigningKey, 'verify'>> = []
  const inOrder: Array<SigningKey | number> = []
  for (const [kid, { jwk, pem }] of resolved) {
    const fingerprint = fingerprintOf(jwk)
    const known = previous?.get(kid)
    if (known !== undefined && known.fingerprint === fingerprint) {
      inOrder.push(known)
      continue
    }
    let publicKey: KeyObject
    try {
      publicKey = createPublicKey(pem)
    } catch {
      continue
    }
    if (!isStrongRsa(publicKey)) continue
    const issuer = typeof jwk.issuer === 'string' && jwk.issuer.trim() !== '' ? jwk.issuer : undefined
    inOrder.push(fresh.push({ kid, issuer, publicKey, pem, fingerprint }) - 1)
  }
  const verifiers = await buildJwtVerifiers(fresh.map(key => key.pem))
  const result = new Map<string, SigningKey>()
  for (const item of inOrder) {
    const key = typeof item === 'number' ? Object.freeze({ ...fresh[item] as Omit<SigningKey, 'verify'>, verify: verifiers[item] as JwtVerify }) : item
    result.set(key.kid, key)
  }
  if (result.size === 0) throw new LibraryFailure('get-jwks resolved none of the usable keys of the JWKS')
  return result
}

export interface KeyStoreOptions {
  discoveryUrl: URL
  timings: KeyTimings
  dispatcher?: Dispatcher | undefined
  logger?: KeyStoreLogger | undefined
  /** Monotonic milliseconds; tests pass a fake one to move time without sleeping. */
  clock?: (() => number) | undefined
  /** get-jwks' `buildGetJwks` (tests pass a wrapper that records what get-jwks resolved). */
  buildGetJwks?: JwksSourceOptions['buildGetJwks']
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
  readonly #buildGetJwks: JwksSourceOptions['buildGetJwks']
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
    this.#buildGetJwks = options.buildGetJwks
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
      set = await this.refresh(kid)
    } else {
      this.revalidate()
    }
    const key = set.keys.get(kid)
    if (key !== undefined) return key

    // Unknown kid: either a key rolled over (refresh now) or a forgery (don't let it cost fetches).
    if (this.#inFlight !== null) {
      set = await this.#inFlight.catch(() => set as KeySet)
    } else if (this.#clock() - set.fetchedAt >= this.#timings.cooldown) {
      set = await this.refresh(kid)
    }
    const refreshed = set.keys.get(kid)
    if (refreshed !== undefined) return refreshed
    throw new EntraAuthError('auth_token_key_error')
  }

  /**
   * After `failed`, the key for `kid`, did not verify a token's signature (`error`): a provider may
   * re-publish a `kid` with new key material (README, Security guarantees). Refreshes at most once per `cooldown`
   * (or joins the refresh in flight) and resolves with the key now published under `kid` when it
   * is another one; otherwise rethrows `error`. Any other error is rethrown as it is.
   */
  async keyAfterSignatureFailure (kid: string, failed: SigningKey, error: unknown): Promise<SigningKey> {
    if (!(error instanceof EntraAuthError) || error.type !== 'auth_token_signature_untrusted') throw error
    let set = this.#keySet
    if (set !== null && set.keys.get(kid) === failed) {
      const last = set
      if (this.#inFlight !== null) {
        set = await this.#inFlight.catch(() => last)
      } else if (this.#clock() - set.fetchedAt >= this.#timings.cooldown) {
        set = await this.refresh(kid).catch(() => last)
      }
    }
    const key = set?.keys.get(kid)
    if (key === undefined || key === failed) throw error
    return key
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
  refresh (kid?: string): Promise<KeySet> {
    if (this.#inFlight !== null) return this.#inFlight
    if (this.#clock() < this.#retryAt && this.#lastFailure !== null) {
      // The provider failed moments ago: don't let every request turn into another fetch.
      const last = this.#keySet
      return last !== null && this.#usable(last.fetchedAt) ? Promise.resolve(last) : Promise.reject(this.#lastFailure)
    }
    if (keysRefreshChannel.hasSubscribers) keysRefreshChannel.publish({ event: 'start', discoveryUrl: this.#discoveryUrl.href })
    this.#inFlight = this.#load(kid).finally(() => { this.#inFlight = null })
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

  async #load (kid: string | undefined): Promise<KeySet> {
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
      if (this.#jwks?.jwksUri.href !== jwksUri.href) this.#jwks = new JwksSource({ jwksUri, dispatcher: this.#dispatcher, timeout, buildGetJwks: this.#buildGetJwks })
      const source = this.#jwks
      const previous = this.#keySet?.keys
      // get-jwks asks for the token's kid; with none, a kid of the current set (see core/jwks.ts).
      const firstKid = kid ?? previous?.keys().next().value
      const resolved = await this.#traced('jwks', jwksUri, () => source.fetch(firstKid, document => usableEntries(document, previous)))
      const keys = await installKeySet(resolved, previous)
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
    if (err instanceof LibraryFailure) {
      // An incompatible library release, not the provider: error level, with the library's error.
      const log = this.#logger?.error ?? this.#logger?.warn
      log?.call(this.#logger, { discoveryUrl: this.#discoveryUrl.href, reason, err: err.cause }, `fastify-entra-auth: could not install ${what}: a library failed`)
      return
    }
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
