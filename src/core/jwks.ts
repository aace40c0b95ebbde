import buildGetJwks from 'get-jwks'
import type { Dispatcher } from 'undici'
import { failureReason, FetchFailure, parseJson } from './http.js'

/**
 * The get-jwks layer: get-jwks fetches the key set from the discovered `jwks_uri`; this layer
 * makes every fetch learn the WHOLE published set, which get-jwks alone cannot give.
 *
 * What get-jwks 11 does, and what this layer adds (each fact has a tripwire test):
 * - it resolves one `kid` per call and keeps no key set: the layer reads the body get-jwks
 *   received (reported by the guarded dispatcher) and parses every key of it, so one refresh
 *   learns the whole set and a forged `kid` can neither multiply fetches nor pin the set;
 * - its caches can hand back a key the provider removed (`staleCache` on errors): a fresh
 *   get-jwks instance per refresh has empty caches, so only the document just fetched counts;
 * - its `timeout` fetch option does nothing with the global `fetch`: each refresh passes its own
 *   `AbortSignal.timeout` instead;
 * - the global `fetch` follows redirects unless told not to: `redirect: 'error'`, and the guarded
 *   dispatcher refuses them at the dispatcher level too;
 * - `{}` and `{"keys":[]}` both give `NO_JWKS`: the layer parses the document itself, so a
 *   malformed one (`{}`) is an outage and one with no usable key is told apart (never installed
 *   as an empty trust list);
 * - its lookup throws a TypeError on a `null` entry in `keys`: the layer then parses the complete
 *   document itself, so one bad entry can't hide the good keys.
 */

/** get-jwks' error codes (src/error.js) that mean an outage, mapped here and nowhere else. */
export const GET_JWKS_OUTAGE: Readonly<Record<string, string>> = {
  OPENID_CONFIGURATION_REQUEST_FAILED: 'discovery request failed',
  JWKS_REQUEST_FAILED: 'JWKS request failed',
  NO_JWKS_URI: "discovery document has no 'jwks_uri'",
  NO_JWKS: 'JWKS has no keys',
  DOMAIN_NOT_ALLOWED: 'JWKS domain not allowed'
}

/** Any value get-jwks asks for: its `kid` lookup result is not used (see above). */
const PROBE_KID = 'fastify-entra-auth:whole-set'

export interface JwksSourceOptions {
  /** The discovered `jwks_uri` (same origin as the discovery URL, checked before). */
  jwksUri: URL
  /** Guarded dispatcher; its `onBody` reports into {@link JwksSource.received}. */
  dispatcher: Dispatcher
  timeout: number
}

/** Fetches the whole JWKS document through get-jwks. */
export class JwksSource {
  readonly #jwksUri: URL
  readonly #dispatcher: Dispatcher
  readonly #timeout: number
  #response: { statusCode: number, body: Buffer } | null = null
  #refused: FetchFailure | null = null

  constructor (options: JwksSourceOptions) {
    this.#jwksUri = options.jwksUri
    this.#dispatcher = options.dispatcher
    this.#timeout = options.timeout
  }

  get jwksUri (): URL {
    return this.#jwksUri
  }

  #reset (): void {
    this.#response = null
    this.#refused = null
  }

  /** Called by the guarded dispatcher with each complete response. */
  received (url: string, statusCode: number, body: Buffer): void {
    if (url === this.#jwksUri.href) this.#response = { statusCode, body }
  }

  /** Called by the guarded dispatcher when it refuses a response (too large, redirect, …). */
  refused (url: string, failure: FetchFailure): void {
    if (url === this.#jwksUri.href) this.#refused = failure
  }

  /**
   * Maps get-jwks' failure by its code. Returns when the document itself must be judged: get-jwks
   * found no key of the probe `kid` (`JWK_NOT_FOUND`), saw no keys (`NO_JWKS`: `{}` and
   * `{"keys":[]}` alike, which our parser tells apart), or tripped over an entry (a TypeError on
   * a `null` entry in `keys`) after a complete 2xx response.
   */
  #judge (err: unknown): void {
    if (this.#refused !== null) throw this.#refused
    const code = (err as { code?: unknown } | null)?.code
    const status = this.#response?.statusCode
    const complete = status !== undefined && status >= 200 && status < 300
    if (code === 'JWK_NOT_FOUND' || (complete && (code === 'NO_JWKS' || err instanceof TypeError))) return
    // get-jwks parses the body before it looks at the status: report the status when there was one.
    const http = status === undefined || complete ? '' : `: HTTP status ${status}`
    if (typeof code === 'string' && code in GET_JWKS_OUTAGE) throw new FetchFailure(`${GET_JWKS_OUTAGE[code]}${http}`, { cause: err })
    if (err instanceof SyntaxError) throw new FetchFailure(http === '' ? 'JWKS is not JSON' : `JWKS request failed${http}`, { cause: err })
    throw new FetchFailure(`JWKS: ${failureReason(err, this.#timeout)}`, { cause: err })
  }

  /**
   * The JWKS document as published. Rejects with a `FetchFailure` naming the reason when the
   * provider can't be reached, answers non-2xx, not JSON, or without keys.
   */
  async fetch (): Promise<unknown> {
    this.#reset()
    const getJwks = buildGetJwks({
      // `domain + jwksPath` is exactly the discovered `jwks_uri` (query included: `?appid=`).
      jwksPath: this.#jwksUri.pathname + this.#jwksUri.search,
      max: 1,
      fetchOptions: {
        dispatcher: this.#dispatcher,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeout),
        headers: { accept: 'application/json', 'accept-encoding': 'identity' }
      } as never
    })
    try {
      await getJwks.getJwk({ domain: `${this.#jwksUri.origin}/`, alg: 'RS256', kid: PROBE_KID })
    } catch (err) {
      this.#judge(err)
    }
    if (this.#response === null) throw new FetchFailure('JWKS response was not seen by the key layer')
    return parseJson(this.#response.body, 'JWKS')
  }
}
