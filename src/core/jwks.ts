import buildGetJwks from 'get-jwks'
import type { Dispatcher } from 'undici'
import { answeringFromMemory, failureReason, FetchFailure, parseJson, withDeadline } from './http.js'

/** The get-jwks layer: get-jwks 11 resolves one `kid` per call and keeps no key set (docs/architecture.md#libraries). */

export const GET_JWKS_OUTAGE: Readonly<Record<string, string>> = {
  OPENID_CONFIGURATION_REQUEST_FAILED: 'discovery request failed',
  JWKS_REQUEST_FAILED: 'JWKS request failed',
  NO_JWKS_URI: "discovery document has no 'jwks_uri'",
  NO_JWKS: 'JWKS has no keys',
  DOMAIN_NOT_ALLOWED: 'JWKS domain not allowed'
}

const PLACEHOLDER_KID = 'fastify-entra-auth:first-load'

export interface ResolvedJwk {
  readonly jwk: Readonly<Record<string, unknown>>
  readonly pem: string
}

export interface JwksSourceOptions {
  jwksUri: URL
  dispatcher: Dispatcher
  timeout: number
  buildGetJwks?: typeof buildGetJwks | undefined
}

export class JwksSource {
  readonly #jwksUri: URL
  readonly #dispatcher: Dispatcher
  readonly #timeout: number
  readonly #build: typeof buildGetJwks
  readonly #domain: string
  readonly #jwksPath: string
  /** `domain` + `jwksPath`: a `#fragment` of `jwks_uri` is not sent. */
  readonly #requested: string
  readonly #responses = new Map<string, { statusCode: number, body: Buffer }>()
  readonly #refused = new Map<string, FetchFailure>()
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

  received (url: string, statusCode: number, body: Buffer): void {
    this.#responses.set(url, { statusCode, body })
  }

  refused (url: string, failure: FetchFailure): void {
    this.#refused.set(url, failure)
  }

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

  async fetch (firstKid: string | undefined, select: (document: unknown) => Array<Readonly<Record<string, unknown>>>): Promise<Map<string, ResolvedJwk>> {
    this.#responses.clear()
    this.#refused.clear()
    this.#usable = undefined
    return await withDeadline(this.#timeout, 'JWKS', async signal => {
      const getJwks = this.#build({
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
          // get-jwks took another entry of this kid from the raw document: ask against the usable ones.
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
