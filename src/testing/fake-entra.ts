import { randomUUID } from 'node:crypto'
import { Dispatcher, MockAgent } from 'undici'
import { isTenantId } from '../entra/issuers.js'
import { MockJwk } from './mock-jwks.js'
import { MockClaims, MockJwtClient, type ClaimOverrides } from './mock-jwt.js'

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

export interface FakeEntraOptions {
  /** Tenant GUID of single-tenant tokens. Default: `tenant` when that is a GUID, else a fixed test GUID. */
  tenantId?: string
  /**
   * The authority path segment: the tenant ID (default) or `organizations` / `common` for a
   * multi-tenant discovery document with the `{tenantid}` issuer template.
   */
  tenant?: string
  /** Origin serving discovery and keys. Default `https://login.microsoftonline.com` (never contacted). */
  origin?: string
  /** Issuer published in discovery. Default Entra's v2.0 issuer for `tenant` on `origin`. */
  issuer?: string
  /** Publish each key with this JWK `issuer` member (Entra does; default the discovery issuer). Set `null` to omit. */
  keyIssuer?: string | null
}

/** Fixed tenant ID used by the fake (a GUID, as Entra's are). */
export const FAKE_TENANT_ID = '72f988bf-0000-4000-8000-00000000f00d'

interface Counts { discovery: number, jwks: number }

/**
 * A fake Microsoft Entra ID: discovery document and JWKS served to the plugin through an undici
 * dispatcher, so `app.inject` tests need no network and no server. It counts requests and can be
 * switched into failure modes.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify'
 * import entraAuth from 'fastify-entra-auth'
 * import { FakeEntra } from 'fastify-entra-auth/testing'
 *
 * const clientId = 'my-api'
 * const entra = new FakeEntra()
 * const app = Fastify()
 * await app.register(entraAuth, { clientId, ...entra.pluginOptions() })
 * app.get('/files', { onRequest: app.entraAuth('Files.Read') }, async () => ['a.txt'])
 * const token = entra.token(clientId, { scp: 'Files.Read' })
 * const reply = await app.inject({ url: '/files', headers: { authorization: `Bearer ${token}` } })
 * console.log(reply.statusCode) // 200
 * await app.close()
 * await entra.close()
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
  /** Requests received so far. */
  readonly requests: Counts = { discovery: 0, jwks: 0 }
  /** Replaces the discovery document when set. */
  discoveryDocument: unknown = undefined
  /** Replaces the JWKS document when set. */
  jwksDocument: unknown = undefined
  /** The dispatcher to pass as the plugin's `dispatcher` option. */
  readonly dispatcher: Dispatcher
  readonly #keyIssuer: string | null
  readonly #agents: MockAgent[]

  constructor (options: FakeEntraOptions = {}) {
    // A GUID authority segment is the tenant: its tokens must carry it as `tid`, not the default.
    this.tenantId = options.tenantId ?? (options.tenant !== undefined && isTenantId(options.tenant) ? options.tenant : FAKE_TENANT_ID)
    const tenant = options.tenant ?? this.tenantId
    this.origin = (options.origin ?? 'https://login.microsoftonline.com').replace(/\/+$/, '')
    const multiTenant = tenant === 'organizations' || tenant === 'common'
    this.issuer = options.issuer ?? `${this.origin}/${multiTenant ? '{tenantid}' : tenant}/v2.0`
    this.oidcEndpoint = `${this.origin}/${tenant}/v2.0/.well-known/openid-configuration`
    this.jwksUri = `${this.origin}/${tenant}/discovery/v2.0/keys`
    this.#keyIssuer = options.keyIssuer === undefined ? this.issuer : options.keyIssuer
    this.keys = [this.newKey()]

    const answering = new MockAgent({ connections: 1 })
    answering.disableNetConnect()
    answering.get(this.origin).intercept({ path: () => true, method: 'GET' }).reply(opts => this.#answer(opts.path)).persist()
    const hanging = new MockAgent({ connections: 1 })
    hanging.disableNetConnect()
    hanging.get(this.origin).intercept({ path: () => true, method: 'GET' }).reply(200, '{}').delay(60 * 60 * 1000).persist()
    this.#agents = [answering, hanging]

    const fake = this
    this.dispatcher = new (class FakeEntraDispatcher extends Dispatcher {
      override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
        const path = opts.path ?? ''
        if (path.startsWith(new URL(fake.oidcEndpoint).pathname)) fake.requests.discovery++
        else fake.requests.jwks++
        return (fake.mode === 'hang' ? hanging : answering).dispatch(opts, handler)
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
   * Options to spread into the plugin's options: `oidcEndpoint`, `dispatcher`, and key timings
   * for tests. `jwks.cooldown` is 0, so a key you publish after start (`entra.keys.push(…)`) is
   * fetched by the first token that uses it, instead of after the 5-minute cooldown that protects
   * a real identity provider from floods of unknown `kid`s. Give your own `jwks` after the spread
   * to test other timings.
   */
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

  /** Shortcut: a signed v2.0 delegated token for `clientId` with `overrides`. */
  token (clientId: string, overrides: ClaimOverrides = {}): string {
    return this.client(clientId).generate(overrides)
  }

  /** Releases the mock agents. */
  async close (): Promise<void> {
    await this.dispatcher.close()
  }

  #answer (path: string): { statusCode: number, data: string } {
    const isDiscovery = path.startsWith(new URL(this.oidcEndpoint).pathname)
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
        authorization_endpoint: this.oidcEndpoint.replace('v2.0/.well-known/openid-configuration', 'oauth2/v2.0/authorize'),
        token_endpoint: this.oidcEndpoint.replace('v2.0/.well-known/openid-configuration', 'oauth2/v2.0/token'),
        id_token_signing_alg_values_supported: ['RS256']
      }
      return { statusCode: 200, data: JSON.stringify(document) }
    }
    return { statusCode: 200, data: JSON.stringify(this.jwksDocument ?? { keys: this.keys.map(key => key.toJSON()) }) }
  }
}

/**
 * Claim presets with Entra's real shapes, for the fake's tenant:
 * - `v2`: v2.0 delegated (user) token: `azp`, `scp` string;
 * - `v1`: v1.0 delegated token: `sts.windows.net` issuer, `api://` audience, `appid`;
 * - `app`: v2.0 app-only token: `roles`, no `scp`, `oid == sub`, `idtyp: 'app'`.
 */
export function presets (entra: FakeEntra, clientId: string): Record<'v2' | 'v1' | 'app', Partial<MockClaims>> {
  const user = randomUUID()
  const base = { tid: entra.tenantId, oid: user }
  return {
    v2: { iss: entra.issuerFor(), ver: '2.0', azp: 'c0ffee00-0000-4000-8000-000000000002', scp: 'access_as_user', roles: [], sub: `sub-${user}`, extra: base },
    v1: { iss: entra.issuerFor(entra.tenantId, '1.0'), ver: '1.0', aud: `api://${clientId}`, azp: undefined, scp: 'access_as_user', roles: [], sub: `sub-${user}`, extra: { ...base, appid: 'c0ffee00-0000-4000-8000-000000000002', appidacr: '1' } },
    app: { iss: entra.issuerFor(), ver: '2.0', azp: 'c0ffee00-0000-4000-8000-000000000003', scp: undefined, roles: ['access_as_application'], sub: user, extra: { ...base, idtyp: 'app', azpacr: '1' } }
  }
}
