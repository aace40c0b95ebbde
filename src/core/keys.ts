import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { createAgent, failureReason, fetchJson, FetchFailure, guardDispatcher, LibraryFailure } from './http.js'
import { JwksSource, type JwksSourceOptions, type ResolvedJwk } from './jwks.js'
import { buildJwtVerifiers, type JwtVerify } from './signature.js'
import type { KeyTimings } from '../options.js'
import { EntraAuthError } from '../entra/problems.js'
import { keysFetchChannel, keysRefreshChannel } from './tracing.js'

export interface Discovery {
  readonly issuer: string
  readonly jwksUri: URL
  readonly authorizationEndpoint: string | undefined
  readonly tokenEndpoint: string | undefined
}

function optionalString (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/** `jwks_uri` must be on the discovery URL's origin; `issuer` is taken as published (Entra's need not be). */
export function parseDiscovery (document: unknown, discoveryUrl: URL): Discovery {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new FetchFailure('discovery document is not a JSON object')
  }
  const { issuer, jwks_uri: jwksUri, authorization_endpoint: authorize, token_endpoint: token } = document as Record<string, unknown>
  if (typeof issuer !== 'string' || issuer === '') throw new FetchFailure("discovery document has no 'issuer'")
  if (typeof jwksUri !== 'string' || jwksUri === '') throw new FetchFailure("discovery document has no 'jwks_uri'")
  let url: URL
  try {
    url = new URL(jwksUri)
  } catch {
    throw new FetchFailure("discovery document 'jwks_uri' is not a URL")
  }
  if (url.origin !== discoveryUrl.origin) {
    throw new FetchFailure(`discovery document 'jwks_uri' is on ${url.origin}, not on the discovery URL's origin ${discoveryUrl.origin}`)
  }
  return Object.freeze({
    issuer,
    jwksUri: url,
    authorizationEndpoint: optionalString(authorize),
    tokenEndpoint: optionalString(token)
  })
}

/** A JWKS with no usable key: a failed fetch, never an empty trust list. */
export class NoUsableKeys extends FetchFailure {
  override name = 'NoUsableKeys'
}

export interface SigningKey {
  readonly kid: string
  readonly issuer: string | undefined
  readonly publicKey: KeyObject
  readonly pem: string
  readonly fingerprint: string
  readonly verify: JwtVerify
}

export interface KeyStoreLogger {
  warn: (obj: object, msg: string) => void
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

interface CurrentKey {
  readonly set: KeySet | null
  readonly kid: string
  readonly key: SigningKey | undefined
  readonly refreshAt: number
  readonly staleAt: number
}

const MIN_MODULUS_BITS = 2048

/** After a failed fetch (or `cooldown`, if shorter): an outage must not turn every request into a fetch. */
const FAILURE_BACKOFF = 5000

/** RFC 7517 §4.2 `use`, §4.3 `key_ops`; RFC 7518 §3.3. */
function isSigningJwk (jwk: Record<string, unknown>): boolean {
  const { kty, use, alg, key_ops: ops } = jwk
  if (kty !== 'RSA') return false
  if (use !== undefined && use !== 'sig') return false
  if (alg !== undefined && alg !== 'RS256') return false
  return ops === undefined || (Array.isArray(ops) && ops.includes('verify'))
}

/** With e = 1 the "signature" is the padded hash itself; RFC 8017 §3.1 requires 3 <= e <= n - 1. */
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

/** One entry per `kid`; a non-string `issuer` is skipped (it must not mean "unrestricted"). */
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

/** A key equal to one of `previous` keeps its object, so cached tokens stay valid across refreshes. */
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
  clock?: (() => number) | undefined
  buildGetJwks?: JwksSourceOptions['buildGetJwks']
}

/** Microsoft's signing-key rollover guidance (learn.microsoft.com/entra/identity-platform/signing-key-rollover), as docs/keys.md describes. */
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
  #retryAt = -Infinity
  #lastCurrent: CurrentKey = { set: null, kid: '', key: undefined, refreshAt: 0, staleAt: 0 }

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

  async discovery (): Promise<Discovery> {
    if (this.#discovery === null) await this.refresh()
    return (this.#discovery as unknown as Stamped<Discovery>).value
  }

  peekDiscovery (): Discovery | undefined {
    return this.#discovery?.value
  }

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

  /** A provider may re-publish a `kid` with new key material: refresh at most once per `cooldown`. */
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

  currentKey (kid: string): SigningKey | undefined {
    const set = this.#keySet
    if (set === null) return undefined
    let current = this.#lastCurrent
    if (current.set !== set || current.kid !== kid) {
      const key = set.keys.get(kid)
      if (key === undefined) return undefined
      current = this.#remember(set, key, kid)
    }
    return this.#stillUsable(current) ? current.key : undefined
  }

  revalidate (): void {
    const set = this.#keySet
    if (set !== null && this.#clock() - set.fetchedAt >= this.#timings.ttl && this.#inFlight === null && this.#clock() >= this.#retryAt) {
      this.refresh().catch(() => {})
    }
  }

  /** A cached token must not outlive its key nor the set's `ttl + maxStale`; a set past `ttl` is refreshed meanwhile. */
  isCurrent (key: SigningKey): boolean {
    const set = this.#keySet
    if (set === null) return false
    let current = this.#lastCurrent
    if (current.set !== set || current.key !== key) {
      if (set.keys.get(key.kid) !== key) return false
      current = this.#remember(set, key, key.kid)
    }
    return this.#stillUsable(current)
  }

  /** Nearly every token asks about the same key of the same set: the last answer, with its deadlines, spares a lookup. */
  #remember (set: KeySet, key: SigningKey, kid: string): CurrentKey {
    const { ttl, maxStale } = this.#timings
    this.#lastCurrent = { set, kid, key, refreshAt: set.fetchedAt + ttl, staleAt: set.fetchedAt + ttl + maxStale }
    return this.#lastCurrent
  }

  /** One clock read: usable within `ttl + maxStale`, refreshed in the background once past `ttl`. */
  #stillUsable (current: CurrentKey): boolean {
    const now = this.#clock()
    if (now >= current.staleAt) return false
    if (now >= current.refreshAt) this.revalidate()
    return true
  }

  refresh (kid?: string): Promise<KeySet> {
    if (this.#inFlight !== null) return this.#inFlight
    if (this.#clock() < this.#retryAt && this.#lastFailure !== null) {
      const last = this.#keySet
      return last !== null && this.#usable(last.fetchedAt) ? Promise.resolve(last) : Promise.reject(this.#lastFailure)
    }
    if (keysRefreshChannel.hasSubscribers) keysRefreshChannel.publish({ event: 'start', discoveryUrl: this.#discoveryUrl.href })
    this.#inFlight = this.#load(kid).finally(() => { this.#inFlight = null })
    return this.#inFlight
  }

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
      // No usable key: every kid unknown (401, as for `{"keys":[]}`); anything else is an outage (503).
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
