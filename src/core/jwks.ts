import buildGetJwks from 'get-jwks'
import type { Dispatcher } from 'undici'
import { answeringFromMemory, failureReason, FetchFailure, parseJson, withDeadline } from './http.js'

/**
 * The get-jwks layer: get-jwks fetches the key set from the discovered `jwks_uri` and resolves
 * every key the package installs (`getJwk`, and `getPublicKey` for the PEM @fastify/jwt is given).
 * What this layer adds, because get-jwks 11 resolves one `kid` per call and keeps no key set
 * (docs/architecture.md, "Libraries"):
 * - one refresh = one get-jwks instance and one request: get-jwks asks for the token's `kid` (or,
 *   with none, a kid of the current set, or on a first load a placeholder); the guarded dispatcher
 *   reports the body of exactly the URL get-jwks requested, and the layer parses it, so every
 *   fetch learns the whole published set;
 * - every usable entry of that document is then resolved by the same get-jwks instance; the
 *   requests of these lookups are answered from memory with that document's usable entries, so N
 *   keys cost one fetch (get-jwks caches per `kid`, not per document) and all come from one document;
 * - a new instance per refresh: its `cache` and `staleCache` start empty, so a key the provider
 *   removed never comes back from them;
 * - `fetchOptions` carry the refresh's own deadline signal and `redirect: 'error'`;
 * - `{}` and `{"keys":[]}` both give `NO_JWKS`, and a `null` entry makes its lookup throw a
 *   TypeError: the layer judges the document itself, so a malformed one is an outage and one bad
 *   entry can't hide the good keys.
 */

/** get-jwks' error codes that mean an outage, mapped here and nowhere else. */
export const GET_JWKS_OUTAGE: Readonly<Record<string, string>> = {
  OPENID_CONFIGURATION_REQUEST_FAILED: 'discovery request failed',
  JWKS_REQUEST_FAILED: 'JWKS request failed',
  NO_JWKS_URI: "discovery document has no 'jwks_uri'",
  NO_JWKS: 'JWKS has no keys',
  DOMAIN_NOT_ALLOWED: 'JWKS domain not allowed'
}

/** The `kid` asked for on a first load, when no token kid and no known kid exist (docs/architecture.md). */
const PLACEHOLDER_KID = 'fastify-entra-auth:first-load'

/** What get-jwks returned for one `kid`. */
export interface ResolvedJwk {
  /** `getJwk`'s answer: the JWK as published. */
  readonly jwk: Readonly<Record<string, unknown>>
  /** `getPublicKey`'s answer: the PEM @fastify/jwt is given. */
  readonly pem: string
}

export interface JwksSourceOptions {
  /** The discovered `jwks_uri` (same origin as the discovery URL, checked before). */
  jwksUri: URL
  /** Guarded dispatcher; its `onResponse` reports into {@link JwksSource.received}. */
  dispatcher: Dispatcher
  timeout: number
  /** get-jwks' `buildGetJwks`; tests pass a wrapper that records its calls. */
  buildGetJwks?: typeof buildGetJwks | undefined
}

/** Fetches the JWKS document through get-jwks, and resolves its keys with get-jwks. */
export class JwksSource {
  readonly #jwksUri: URL
  readonly #dispatcher: Dispatcher
  readonly #timeout: number
  readonly #build: typeof buildGetJwks
  readonly #domain: string
  readonly #jwksPath: string
  /** The URL get-jwks requests: its `domain` + `jwksPath` (a `#fragment` of `jwks_uri` is not sent). */
  readonly #requested: string
  readonly #responses = new Map<string, { statusCode: number, body: Buffer }>()
  readonly #refused = new Map<string, FetchFailure>()
  /** This refresh's usable entries, served to get-jwks' later lookups. */
  #usable: Buffer | undefined

  constructor (options: JwksSourceOptions) {
    this.#jwksUri = options.jwksUri
    this.#timeout = options.timeout
    this.#build = options.buildGetJwks ?? buildGetJwks
    this.#domain = `${options.jwksUri.origin}/`
    this.#jwksPath = options.jwksUri.pathname + options.jwksUri.search
    this.#requested = new URL(this.#domain + this.#jwksPath.slice(1)).href
    this.#dispatcher = answeringFromMemory(options.dispatcher, url => url === this.#requested ? this.#usable : undefined)
  }

  get jwksUri (): URL {
    return this.#jwksUri
  }

  /** Called by the guarded dispatcher with each complete response. */
  received (url: string, statusCode: number, body: Buffer): void {
    this.#responses.set(url, { statusCode, body })
  }

  /** Called by the guarded dispatcher when it refuses a response (too large, redirect, …). */
  refused (url: string, failure: FetchFailure): void {
    this.#refused.set(url, failure)
  }

  /**
   * Maps get-jwks' failure by its code. Returns when the document itself must be judged: get-jwks
   * found no key of the asked `kid` (`JWK_NOT_FOUND`), saw no keys (`NO_JWKS`: `{}` and
   * `{"keys":[]}` alike, which our parser tells apart), or tripped over an entry (a TypeError on
   * a `null` entry in `keys`) after a complete 2xx response.
   */
  #judge (err: unknown): void {
    const refused = this.#refused.get(this.#requested)
    if (refused !== undefined) throw refused
    if (err instanceof FetchFailure) throw err
    const code = (err as { code?: unknown } | null)?.code
    const status = this.#responses.get(this.#requested)?.statusCode
    const complete = status !== undefined && status >= 200 && status < 300
    if (code === 'JWK_NOT_FOUND' || (complete && (code === 'NO_JWKS' || err instanceof TypeError))) return
    // get-jwks parses the body before it looks at the status: report the status when there was one.
    const http = status === undefined || complete ? '' : `: HTTP status ${status}`
    if (typeof code === 'string' && code in GET_JWKS_OUTAGE) throw new FetchFailure(`${GET_JWKS_OUTAGE[code]}${http}`, { cause: err })
    if (err instanceof SyntaxError) throw new FetchFailure(http === '' ? 'JWKS is not JSON' : `JWKS request failed${http}`, { cause: err })
    throw new FetchFailure(`JWKS: ${failureReason(err, this.#timeout)}`, { cause: err })
  }

  /**
   * One refresh. get-jwks fetches the document, asking for `firstKid`; `select` judges the whole
   * document and returns its usable entries (it throws for a malformed one); get-jwks then
   * resolves each of them. Resolves with get-jwks' answer per `kid`. Everything ends within
   * `timeout`; rejects with a `FetchFailure` naming the reason.
   */
  async fetch (firstKid: string | undefined, select: (document: unknown) => Array<Readonly<Record<string, unknown>>>): Promise<Map<string, ResolvedJwk>> {
    this.#responses.clear()
    this.#refused.clear()
    this.#usable = undefined
    return await withDeadline(this.#timeout, 'JWKS', async signal => {
      const getJwks = this.#build({
        // get-jwks requests `domain + jwksPath`: exactly the discovered `jwks_uri` (query included).
        jwksPath: this.#jwksPath,
        fetchOptions: {
          dispatcher: this.#dispatcher,
          redirect: 'error',
          signal,
          headers: { accept: 'application/json', 'accept-encoding': 'identity' }
        } as never
      })
      const signature = (kid: string): { domain: string, alg: string, kid: string } => ({ domain: this.#domain, alg: 'RS256', kid })
      try {
        await getJwks.getJwk(signature(firstKid ?? PLACEHOLDER_KID))
      } catch (err) {
        this.#judge(err)
      }
      const response = this.#responses.get(this.#requested)
      if (response === undefined) throw new FetchFailure('JWKS response was not seen by the key layer')
      const entries = select(parseJson(response.body, 'JWKS'))
      this.#usable = Buffer.from(JSON.stringify({ keys: entries }))
      const resolved = new Map<string, ResolvedJwk>()
      for (const entry of entries) {
        const kid = entry.kid as string
        let jwk = await getJwks.getJwk(signature(kid)).catch(() => undefined)
        if (jwk !== undefined && JSON.stringify(jwk) !== JSON.stringify(entry)) {
          // get-jwks answered from the raw document with another entry of this kid (it takes the
          // first one): ask it again against the usable entries.
          getJwks.cache.delete(getJwks.generateCacheKey('RS256', kid, this.#domain))
          jwk = await getJwks.getJwk(signature(kid)).catch(() => undefined)
        }
        if (jwk === undefined || JSON.stringify(jwk) !== JSON.stringify(entry)) continue
        const pem = await getJwks.getPublicKey(signature(kid)).catch(() => undefined)
        if (pem !== undefined) resolved.set(kid, { jwk, pem })
      }
      return resolved
    })
  }
}
