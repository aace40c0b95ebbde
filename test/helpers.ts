import Fastify, { type FastifyInstance } from 'fastify'
import { Dispatcher } from 'undici'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import { FakeEntra, MockClaims, MockJwtClient, MOCK_ISSUER, type FakeEntraOptions } from '../src/testing/index.js'

export const CLIENT_ID = 'test_app_1'

export interface SeedFixture {
  app: FastifyInstance
  entra: FakeEntra
  client: MockJwtClient
  bearer: (token: string) => { authorization: string }
}

/** The seed's scope routes (seed.md), each at /scopes/<n>. */
export const SCOPE_ROUTES: string[][] = [
  ['SCOPE_A SCOPE_B'], ['SCOPE_A', 'SCOPE_B'], ['SCOPE_A SCOPE_C', 'SCOPE_B SCOPE_C'],
  ['ROLE_1 ROLE_2'], ['ROLE_1', 'ROLE_2'], ['ROLE_1 ROLE_3', 'ROLE_2 ROLE_3'],
  ['SCOPE_A ROLE_1'], ['SCOPE_A', 'ROLE_1'], ['SCOPE_A SCOPE_C ROLE_1 ROLE_3', 'SCOPE_B SCOPE_C ROLE_2 ROLE_3']
]

/**
 * The seed's fixture app: client ID `test_app_1`, allowed subjects and apps, discovery with the
 * mock issuer, one mock key; routes as in the seed's test suite.
 */
export async function seedApp (
  options: Partial<EntraAuthOptions> = {},
  entraOptions: FakeEntraOptions = {}
): Promise<SeedFixture> {
  const entra = new FakeEntra({ issuer: MOCK_ISSUER, keyIssuer: null, ...entraOptions })
  const app = Fastify({ logger: false })
  await app.register(entraAuth, {
    clientId: CLIENT_ID,
    allowedSubjects: ['test_subject'],
    allowedApps: ['test_app_2'],
    ...entra.pluginOptions(),
    ...options
  })
  app.get('/open', async () => ({ ok: true }))
  app.get('/restricted', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  app.get('/restricted/current-token', { onRequest: app.entraAuth() }, async (request) => ({ claims: request.entraToken?.claims }))
  app.post('/introspect', async (request) => app.entraAuth.introspect((request.body as { token: string }).token))
  SCOPE_ROUTES.forEach((requirement, i) => {
    app.get(`/scopes/${i}`, { preHandler: app.entraAuth(requirement) }, async () => ({ ok: true }))
  })
  const client = new MockJwtClient({ key: entra.keys[0]!, claims: new MockClaims({ selfAppId: CLIENT_ID }) })
  return { app, entra, client, bearer: (token) => ({ authorization: `Bearer ${token}` }) }
}

/** What the `/me` route of {@link entraApp} answers with: the parts of `request.entraToken` tests look at. */
export interface TokenView {
  version: '1.0' | '2.0'
  isAppOnly: boolean
  tenantId: string | undefined
  objectId: string | undefined
  clientId: string | undefined
  scopes: string[]
  sub: string
}

/**
 * An app with the plugin registered with `options` and `GET /me` protected by `app.entraAuth()`,
 * answering a {@link TokenView}. Add more routes before the first `inject`.
 */
export async function entraApp (options: EntraAuthOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { rejectionLogLevel: 'silent', ...options })
  app.get('/me', { onRequest: app.entraAuth() }, async (request): Promise<TokenView> => {
    const token = request.entraToken!
    return { version: token.version, isAppOnly: token.isAppOnly, tenantId: token.tenantId, objectId: token.objectId, clientId: token.clientId, scopes: token.scopes, sub: token.claims.sub }
  })
  return app
}

/** `{ authorization: 'Bearer <token>' }` */
export function bearerHeader (token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}

/**
 * Wraps a dispatcher (e.g. a FakeEntra's) and records the URL of every request the plugin makes,
 * so tests can see exactly which discovery and JWKS URLs were fetched.
 */
export class RecordingDispatcher extends Dispatcher {
  readonly urls: string[] = []
  readonly #inner: Dispatcher

  constructor (inner: Dispatcher) {
    super()
    this.#inner = inner
  }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.urls.push(new URL(opts.path, opts.origin).href)
    return this.#inner.dispatch(opts, handler)
  }

  override async close (): Promise<void> {
    await this.#inner.close()
  }

  override async destroy (): Promise<void> {
    await this.#inner.destroy()
  }
}
