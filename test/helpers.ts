import Fastify, { type FastifyInstance } from 'fastify'
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
