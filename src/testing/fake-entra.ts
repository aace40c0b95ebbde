import { randomUUID } from 'node:crypto'
import { Dispatcher, MockAgent, request as undiciRequest } from 'undici'
import { isTenantId } from '../entra/issuers.js'
import { authorizeEndpoint, RESPONSE_MODES } from './authorize.js'
import { checkApis, GrantStore, type AuthorizationContext } from './grants.js'
import { MockJwk } from './mock-jwks.js'
import { MockClaims, MockJwtClient, type ClaimOverrides } from './mock-jwt.js'
import { errorResponse, OAuthError, OIDC_SCOPES, type FakeAuthorizationOptions, type FakeHttpRequest, type FakeHttpResponse } from './oauth.js'
import { AUTH_METHODS, GRANT_TYPES, tokenEndpoint } from './token-endpoint.js'
import { testUsers } from './users.js'

/** How the fake identity provider answers. */
export type FakeEntraMode =
  | 'ok'
  | 'discovery-404'
  | 'discovery-not-json'
  | 'discovery-empty'
  | 'jwks-404'
  | 'jwks-not-json'
  | 'jwks-empty'
  /** Accepts the request and never answers (until the client's timeout aborts it). */
  | 'hang'

export interface FakeEntraOptions extends FakeAuthorizationOptions {
  /** Tenant GUID of single-tenant tokens. Default: `tenant` when that is a GUID, else a fixed test GUID. */
  tenantId?: string
  /** The authority path segment: the tenant ID (default), `organizations` or `common`. */
  tenant?: string
  /** Origin serving discovery and keys. Default `https://login.microsoftonline.com` (never contacted). */
  origin?: string
  /** Issuer published in discovery. Default Entra's v2.0 issuer for `tenant` on `origin`. */
  issuer?: string
  /** JWK `issuer` member of each published key (default the discovery issuer; `null` omits it). */
  keyIssuer?: string | null
  /** Clock of the token and authorize endpoints, in milliseconds. Default `Date.now`. */
  now?: () => number
}

/** Fixed tenant ID used by the fake (a GUID, as Entra's are). */
export const FAKE_TENANT_ID = '72f988bf-0000-4000-8000-00000000f00d'

/** Options of {@link FakeEntra.clientCredentials}. */
export interface ClientCredentialsRequest {
  clientId: string
  /** Default `'fake-secret'` (any secret is accepted unless `clients` registers one). */
  secret?: string
  /** Default `api://{api}/.default` for the only configured API. */
  scope?: string
}

async function bodyText (body: Dispatcher.DispatchOptions['body']): Promise<string> {
  if (body === undefined || body === null) return ''
  if (typeof body === 'string') return body
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8')
  const chunks: Buffer[] = []
  for await (const chunk of body as AsyncIterable<string | Uint8Array>) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk))
  return Buffer.concat(chunks).toString('utf8')
}

function headerRecord (headers: Dispatcher.DispatchOptions['headers']): Record<string, string | undefined> {
  const record: Record<string, string | undefined> = {}
  if (headers === undefined || headers === null) return record
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) record[String(headers[i]).toLowerCase()] = String(headers[i + 1])
    return record
  }
  const entries = Symbol.iterator in (headers as object) ? [...(headers as Iterable<[string, string]>)] : Object.entries(headers)
  for (const [name, value] of entries) if (value !== undefined) record[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value)
  return record
}

let grantStoreOf: (entra: FakeEntra) => GrantStore

/** For the package's own tests; not exported by `./testing`. */
export function grantsOf (entra: FakeEntra): GrantStore {
  return grantStoreOf(entra)
}

/**
 * A fake Microsoft Entra ID served through an undici dispatcher: `app.inject` tests need no network.
 * @example
 * ```ts
 * import { FakeEntra } from 'fastify-entra-auth/testing'
 * const entra = new FakeEntra()
 * await app.register(entraAuth, { clientId, ...entra.pluginOptions() })
 * const token = entra.token(clientId, { scp: 'Files.Read' })
 * ```
 */
export class FakeEntra {
  readonly tenantId: string
  readonly origin: string
  readonly issuer: string
  readonly oidcEndpoint: string
  readonly jwksUri: string
  /** Keys published in the JWKS; the first signs by default. Replace or push to rotate. */
  keys: MockJwk[]
  mode: FakeEntraMode = 'ok'
  /** Discovery and JWKS requests received so far. */
  readonly requests: { discovery: number, jwks: number } = { discovery: 0, jwks: 0 }
  /** Token and authorize requests received so far. */
  readonly oauthRequests = { token: 0, authorize: 0 }
  /** The authorization server's registrations: APIs, clients, the signed-in user, token lifetime. */
  readonly authorization: FakeAuthorizationOptions
  readonly #grants = new GrantStore()

  static {
    grantStoreOf = entra => entra.#grants
  }

  /** The token endpoint, `{origin}/{tenant}/oauth2/v2.0/token`. */
  readonly tokenEndpoint: string
  /** The authorize endpoint, `{origin}/{tenant}/oauth2/v2.0/authorize`. */
  readonly authorizationEndpoint: string
  /** The authority to configure clients with (MSAL's `authority`): `{origin}/{tenant}`. */
  readonly authority: string
  readonly now: () => number
  /** Replaces the discovery document when set. */
  discoveryDocument: unknown = undefined
  /** Replaces the JWKS document when set. */
  jwksDocument: unknown = undefined
  /** The dispatcher to pass as the plugin's `dispatcher` option. */
  readonly dispatcher: Dispatcher
  readonly #keyIssuer: string | null
  readonly #agents: MockAgent[]
  readonly #tenant: string

  constructor (options: FakeEntraOptions = {}) {
    this.tenantId = options.tenantId ?? (options.tenant !== undefined && isTenantId(options.tenant) ? options.tenant : FAKE_TENANT_ID)
    const tenant = options.tenant ?? this.tenantId
    this.origin = (options.origin ?? 'https://login.microsoftonline.com').replace(/\/+$/, '')
    const multiTenant = tenant === 'organizations' || tenant === 'common'
    this.issuer = options.issuer ?? `${this.origin}/${multiTenant ? '{tenantid}' : tenant}/v2.0`
    this.oidcEndpoint = `${this.origin}/${tenant}/v2.0/.well-known/openid-configuration`
    this.jwksUri = `${this.origin}/${tenant}/discovery/v2.0/keys`
    this.#keyIssuer = options.keyIssuer === undefined ? this.issuer : options.keyIssuer
    this.keys = [this.newKey()]
    this.#tenant = tenant
    this.authority = `${this.origin}/${tenant}`
    this.tokenEndpoint = `${this.authority}/oauth2/v2.0/token`
    this.authorizationEndpoint = `${this.authority}/oauth2/v2.0/authorize`
    this.now = options.now ?? Date.now
    const { apis, clients, user, users, autoSignIn, tokenLifetime } = options
    checkApis('FakeEntra', apis)
    this.authorization = { ...(apis === undefined ? {} : { apis }), ...(clients === undefined ? {} : { clients }), ...(user === undefined ? {} : { user }), ...(users === undefined ? {} : { users }), ...(autoSignIn === undefined ? {} : { autoSignIn }), ...(tokenLifetime === undefined ? {} : { tokenLifetime }) }
    testUsers(this.authorization)

    const answering = new MockAgent({ connections: 1 })
    answering.disableNetConnect()
    answering.get(this.origin).intercept({ path: () => true, method: () => true }).reply(opts => {
      const answer = this.handle({ method: opts.method, url: opts.path, headers: headerRecord(opts.headers), body: typeof opts.body === 'string' ? opts.body : '' })
      return { statusCode: answer.status, data: answer.body, responseOptions: { headers: answer.headers } }
    }).persist()
    const hanging = new MockAgent({ connections: 1 })
    hanging.disableNetConnect()
    hanging.get(this.origin).intercept({ path: () => true, method: () => true }).reply(200, '{}').delay(60 * 60 * 1000).persist()
    this.#agents = [answering, hanging]

    const fake = this
    this.dispatcher = new (class FakeEntraDispatcher extends Dispatcher {
      override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
        const agent = fake.mode === 'hang' ? hanging : answering
        // A hanging fake never reaches handle(): count the attempt here.
        if (fake.mode === 'hang' && opts.method === 'GET') fake.#countFetch(new URL(opts.path ?? '/', fake.origin).pathname)
        if (opts.body === undefined || opts.body === null || typeof opts.body === 'string') return agent.dispatch(opts, handler)
        bodyText(opts.body).then(
          body => agent.dispatch({ ...opts, body }, handler),
          (err: Error) => { (handler as { onError?: (err: Error) => void }).onError?.(err) }
        )
        return true
      }

      override async close (): Promise<void> {
        await Promise.all(fake.#agents.map(agent => agent.close()))
      }

      override async destroy (): Promise<void> {
        await Promise.all(fake.#agents.map(agent => agent.destroy()))
      }
    })() as Dispatcher
  }

  /** A new key carrying this fake's key issuer; not published until you add it to `keys`. */
  newKey (kid?: string): MockJwk {
    return new MockJwk({ ...(kid === undefined ? {} : { kid }), ...(this.#keyIssuer === null ? {} : { issuer: this.#keyIssuer }) })
  }

  /**
   * Gets an app-only access token with the client-credentials grant, as a daemon would.
   * @example
   * ```ts
   * import { FakeEntra } from 'fastify-entra-auth/testing'
   * const entra = new FakeEntra({ apis: [{ clientId, appRoles: ['Reports.Read.All'] }] })
   * const daemonToken = await entra.clientCredentials({ clientId: 'my-daemon' })
   * ```
   */
  async clientCredentials (request: ClientCredentialsRequest): Promise<string> {
    const apis = this.authorization.apis
    const scope = request.scope ?? (apis?.length === 1 ? `api://${(apis[0] as { clientId: string }).clientId}/.default` : undefined)
    if (scope === undefined) throw new TypeError('FakeEntra.clientCredentials: pass `scope` (api://{client id of the API}/.default) unless exactly one API is configured in `apis`')
    const response = await undiciRequest(this.tokenEndpoint, {
      method: 'POST',
      dispatcher: this.dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: request.clientId, client_secret: request.secret ?? 'fake-secret', scope }).toString()
    })
    const body = await response.body.json() as { access_token?: string, error?: string, error_description?: string }
    if (response.statusCode !== 200 || typeof body.access_token !== 'string') throw new Error(`fake Entra token request failed: ${body.error ?? response.statusCode} ${body.error_description ?? ''}`.trim())
    return body.access_token
  }

  /** Answers one HTTP request, for the in-process dispatcher and the loopback server alike. */
  handle (request: FakeHttpRequest): FakeHttpResponse {
    try {
      return this.#route(request)
    } catch {
      // No request, however malformed (a request target `http://[`), may end the server: it is 400.
      return errorResponse(new OAuthError('invalid_request', 90013, 'Invalid input received from the user: the request is malformed.'), this.now(), undefined)
    }
  }

  #route (request: FakeHttpRequest): FakeHttpResponse {
    const path = new URL(request.url, this.origin).pathname
    const endpoint = /^\/([^/]+)\/oauth2\/v2\.0\/(token|authorize)$/.exec(path)
    const cors = { 'access-control-allow-origin': '*' }
    if (request.method === 'OPTIONS') {
      return { status: 204, headers: { ...cors, 'access-control-allow-methods': 'GET, POST, OPTIONS', 'access-control-allow-headers': request.headers['access-control-request-headers'] ?? '*', 'access-control-max-age': '600' }, body: '' }
    }
    let answer: FakeHttpResponse
    if (endpoint !== null && (endpoint[1] === this.#tenant || endpoint[1] === this.tenantId)) {
      this.oauthRequests[endpoint[2] as 'token' | 'authorize']++
      answer = endpoint[2] === 'token' ? tokenEndpoint(this.#context, request) : authorizeEndpoint(this.#context, request)
    } else if (endpoint !== null) {
      answer = { status: 400, headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify({ error: 'invalid_request', error_description: `AADSTS90002: Tenant '${endpoint[1] ?? ''}' not found. This fake Entra serves '${this.#tenant}'.`, error_codes: [90002] }) }
    } else if (request.method !== 'GET') {
      answer = { status: 405, headers: { 'content-type': 'text/plain', allow: 'GET' }, body: 'Method Not Allowed' }
    } else {
      const { statusCode, data } = this.#answer(path)
      answer = { status: statusCode, headers: { 'content-type': statusCode === 200 && data.startsWith('{') ? 'application/json; charset=utf-8' : 'text/plain' }, body: data }
    }
    return { ...answer, headers: { ...answer.headers, ...cors } }
  }

  /** A getter, so that replacing `keys` rotates the signing key. */
  get #context (): AuthorizationContext {
    return {
      tenantId: this.tenantId,
      signingKey: this.keys[0] as MockJwk,
      keys: this.keys,
      issuerFor: (tenantId, version) => this.issuerFor(tenantId, version),
      now: this.now,
      authorization: this.authorization,
      grants: this.#grants
    }
  }

  /** Options to spread into the plugin's: `oidcEndpoint`, `dispatcher`, and `jwks.cooldown: 0` so new keys are fetched at once. */
  pluginOptions (): { oidcEndpoint: string, dispatcher: Dispatcher, jwks: { cooldown: number } } {
    return { oidcEndpoint: this.oidcEndpoint, dispatcher: this.dispatcher, jwks: { cooldown: 0 } }
  }

  /** The issuer of tokens for `tenantId` (the template bound for multi-tenant fakes). */
  issuerFor (tenantId: string = this.tenantId, version: '1.0' | '2.0' = '2.0'): string {
    if (version === '1.0') return `https://sts.windows.net/${tenantId}/`
    return this.issuer.replace('{tenantid}', tenantId)
  }

  /** A token client for `clientId` with the claims of a preset (see {@link presets}), signed by `key`. */
  client (clientId: string, preset: 'v2' | 'v1' | 'app' = 'v2', key: MockJwk = this.keys[0] as MockJwk): MockJwtClient {
    const claims = new MockClaims({ selfAppId: clientId })
    Object.assign(claims, presets(this, clientId)[preset])
    return new MockJwtClient({ key, claims })
  }

  /** A signed v2.0 delegated token for the API `apiClientId`, with `overrides` (`false` removes a claim). */
  token (apiClientId: string, overrides: ClaimOverrides = {}): string {
    return this.client(apiClientId).generate(overrides)
  }

  /** Releases the mock agents. */
  async close (): Promise<void> {
    await this.dispatcher.close()
  }

  /** A replaced `jwks_uri` may point anywhere: any other GET counts as a key-set request. */
  #countFetch (path: string): boolean {
    const isDiscovery = path === new URL(this.oidcEndpoint).pathname
    if (isDiscovery) this.requests.discovery++
    else this.requests.jwks++
    return isDiscovery
  }

  #answer (path: string): { statusCode: number, data: string } {
    const isDiscovery = this.#countFetch(path)
    const failure = isDiscovery ? this.mode.startsWith('discovery-') : this.mode.startsWith('jwks-')
    if (failure) {
      if (this.mode.endsWith('-404')) return { statusCode: 404, data: 'Not Found' }
      if (this.mode.endsWith('-not-json')) return { statusCode: 200, data: '<html>Service unavailable</html>' }
      return { statusCode: 200, data: '{}' }
    }
    if (isDiscovery) {
      const document = this.discoveryDocument ?? {
        issuer: this.issuer,
        jwks_uri: this.jwksUri,
        authorization_endpoint: this.authorizationEndpoint,
        token_endpoint: this.tokenEndpoint,
        response_types_supported: ['code'],
        response_modes_supported: [...RESPONSE_MODES],
        grant_types_supported: [...GRANT_TYPES],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: [...AUTH_METHODS],
        scopes_supported: [...OIDC_SCOPES],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'name', 'nonce', 'oid', 'preferred_username', 'tid', 'ver'],
        cloud_instance_name: 'microsoftonline.com'
      }
      return { statusCode: 200, data: JSON.stringify(document) }
    }
    return { statusCode: 200, data: JSON.stringify(this.jwksDocument ?? { keys: this.keys.map(key => key.toJSON()) }) }
  }
}

/** Claim presets with Entra's real shapes: `v2` and `v1` delegated tokens, `app` an app-only v2.0 token. */
export function presets (entra: FakeEntra, clientId: string): Record<'v2' | 'v1' | 'app', Partial<MockClaims>> {
  const user = randomUUID()
  const base = { tid: entra.tenantId, oid: user }
  return {
    v2: { iss: entra.issuerFor(), ver: '2.0', azp: 'c0ffee00-0000-4000-8000-000000000002', scp: 'access_as_user', roles: [], sub: `sub-${user}`, extra: base },
    v1: { iss: entra.issuerFor(entra.tenantId, '1.0'), ver: '1.0', aud: `api://${clientId}`, azp: undefined, scp: 'access_as_user', roles: [], sub: `sub-${user}`, extra: { ...base, appid: 'c0ffee00-0000-4000-8000-000000000002', appidacr: '1' } },
    app: { iss: entra.issuerFor(), ver: '2.0', azp: 'c0ffee00-0000-4000-8000-000000000003', scp: undefined, roles: ['access_as_application'], sub: user, extra: { ...base, idtyp: 'app', azpacr: '1' } }
  }
}
