/**
 * Apps and fakes the tests build: the Python flask-entra-auth suite's fixture app (`seedApp`), an
 * app answering the admitted token (`entraApp`), log capture, and teardown helpers. Tests stay
 * table-driven: they build one of these and call it with `app.inject`.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import entraAuth, { type EntraAuthDecorator, type EntraAuthOptions } from '../../src/index.js'
import { FakeEntra, MockClaims, MockJwtClient, MOCK_ISSUER, type FakeEntraOptions } from '../../src/testing/index.js'
import type { EntraVerifier, InternalVerifier } from '../../src/verifier.js'
import { bearer } from './http.js'

/** The resolved options of a verifier (internal: not part of the public `EntraVerifier`). */
export function resolvedOptionsOf (verifier: EntraVerifier): InternalVerifier['options'] {
  return (verifier as InternalVerifier).options
}

/** Client ID of the flask-entra-auth suite's fixture app. */
export const CLIENT_ID = 'test_app_1'
/** An Entra-shaped API's client ID, and another API of the same tenant. */
export const API_ID = '11111111-2222-4333-8444-555555555555'
export const OTHER_API_ID = '99999999-8888-4777-8666-555555555555'

/** What `t.teardown` needs: any tap `Test`. */
export interface Teardown { teardown: (fn: () => unknown) => void }

export interface SeedFixture {
  app: FastifyInstance
  entra: FakeEntra
  client: MockJwtClient
  bearer: (token: string) => { authorization: string }
}

/** The scope routes of the flask-entra-auth suite, each at /scopes/<n>. */
export const SCOPE_ROUTES: string[][] = [
  ['SCOPE_A SCOPE_B'], ['SCOPE_A', 'SCOPE_B'], ['SCOPE_A SCOPE_C', 'SCOPE_B SCOPE_C'],
  ['ROLE_1 ROLE_2'], ['ROLE_1', 'ROLE_2'], ['ROLE_1 ROLE_3', 'ROLE_2 ROLE_3'],
  ['SCOPE_A ROLE_1'], ['SCOPE_A', 'ROLE_1'], ['SCOPE_A SCOPE_C ROLE_1 ROLE_3', 'SCOPE_B SCOPE_C ROLE_2 ROLE_3']
]

/**
 * The flask-entra-auth suite's fixture app: client ID `test_app_1`, allowed subjects and apps,
 * discovery with the mock issuer, one mock key; routes as in that suite. Not closed for you: use
 * {@link seedFixture} inside a test.
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
  } as EntraAuthOptions)
  app.get('/open', async () => ({ ok: true }))
  app.get('/restricted', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  app.get('/restricted/current-token', { onRequest: app.entraAuth() }, async (request) => ({ claims: request.entraToken?.claims }))
  app.post('/introspect', async (request) => app.entraAuth.introspect((request.body as { token: string }).token))
  SCOPE_ROUTES.forEach((requirement, i) => {
    app.get(`/scopes/${i}`, { preHandler: app.entraAuth(requirement) }, async () => ({ ok: true }))
  })
  const client = new MockJwtClient({ key: entra.keys[0]!, claims: new MockClaims({ selfAppId: CLIENT_ID }) })
  return { app, entra, client, bearer }
}

/** {@link seedApp} with rejections not logged, closed (with its fake Entra) when the test ends. */
export async function seedFixture (t: Teardown, options: Partial<EntraAuthOptions> = {}, entraOptions: FakeEntraOptions = {}): Promise<SeedFixture> {
  const fx = await seedApp({ rejectionLogLevel: 'silent', ...options }, entraOptions)
  t.teardown(async () => {
    await fx.app.close()
    await fx.entra.close()
  })
  return fx
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
export async function entraApp (options: EntraAuthOptions, fastifyOptions: FastifyServerOptions = { logger: false }): Promise<FastifyInstance> {
  const app = Fastify(fastifyOptions)
  await app.register(entraAuth, { rejectionLogLevel: 'silent', ...options })
  app.get('/me', { onRequest: app.entraAuth() }, async (request): Promise<TokenView> => {
    const token = request.entraToken!
    return { version: token.version, isAppOnly: token.isAppOnly, tenantId: token.tenantId, objectId: token.objectId, clientId: token.clientId, scopes: token.scopes, sub: token.claims.sub }
  })
  return app
}

/** A fake Entra closed when the test ends. */
export function fakeEntra (t: Teardown, options: FakeEntraOptions = {}): FakeEntra {
  const entra = new FakeEntra(options)
  t.teardown(async () => { await entra.close() })
  return entra
}

/** Closes `app` when the test ends. */
export function closing<T extends FastifyInstance> (t: Teardown, app: T): T {
  t.teardown(async () => { await app.close() })
  return app
}

/** The decorator of a registration that was given another `decorator` name. */
export function decoratorOf (app: FastifyInstance, name: string): EntraAuthDecorator {
  return (app as unknown as Record<string, EntraAuthDecorator>)[name] as EntraAuthDecorator
}

/** One JSON log line. */
export interface LogLine { level: number, msg: string, reqId?: string, [key: string]: unknown }

/**
 * A Fastify `logger` option writing JSON lines into `lines` (parsed) and `raw` (as written), for
 * tests that read what was logged (and check that no token ever is).
 */
export function captureLogs (level = 'info'): { logger: { level: string, stream: { write: (line: string) => void } }, lines: LogLine[], raw: string[] } {
  const lines: LogLine[] = []
  const raw: string[] = []
  const stream = { write (line: string) { raw.push(line); lines.push(JSON.parse(line) as LogLine) } }
  return { logger: { level, stream }, lines, raw }
}
