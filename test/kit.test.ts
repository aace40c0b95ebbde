/**
 * The README's "Testing your app" recipes, each run as its table line writes it, so the table
 * can't drift from the kit's API.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError } from '../src/index.js'
import { FakeEntra, MOCK_ISSUER, MockClaims, MockJwks, MockJwtClient } from '../src/testing/index.js'
import fastifyAuth from '@fastify/auth'
import { API_ID, assertProblem, bearer, closing, fakeEntra } from './helpers/index.js'

const API = 'my-api'
const OTHER = '0b0b0b0b-0000-4000-8000-00000000beef'

async function setup (t: Test, entra = new FakeEntra()) {
  const app = Fastify()
  await app.register(entraAuth, { clientId: API, ...entra.pluginOptions(), jwks: { cooldown: 0, timeout: 200 } })
  app.get('/files', { onRequest: app.entraAuth(['Files.Read']) }, async request => ({ version: request.entraToken?.version, appOnly: request.entraToken?.isAppOnly }))
  app.get('/daemon', { onRequest: app.entraAuth({ roles: ['Files.Read.All'] }) }, async request => ({ appOnly: request.entraToken?.isAppOnly }))
  t.teardown(async () => { await app.close(); await entra.close() })
  const call = (token = '', url = '/files') => app.inject({ url, headers: { authorization: `Bearer ${token}` } })
  return { app, entra, call }
}

t.test('valid, missing, expired, wrong audience, wrong scope', async t => {
  const { app, entra, call } = await setup(t)
  t.equal((await call(entra.token(API, { scp: 'Files.Read' }))).statusCode, 200)
  const missing = await app.inject({ url: '/files' })
  t.same([missing.statusCode, missing.json().type], [401, 'auth_header_missing'])
  const expired = await call(entra.token(API, { exp: Math.floor(Date.now() / 1000) - 60 }))
  t.same([expired.statusCode, expired.json().type], [401, 'auth_token_expired'])
  const audience = await call(entra.token('another-api', { scp: 'Files.Read' }))
  t.same([audience.statusCode, audience.json().type], [401, 'auth_token_audience_invalid'])
  const scope = await call(entra.token(API, { scp: 'Other' }))
  t.same([scope.statusCode, scope.json().type], [403, 'auth_token_insufficient_scopes'])
})

t.test('app-only and v1', async t => {
  const { entra, call } = await setup(t)
  const app = await call(entra.client(API, 'app').generate({ roles: ['Files.Read.All'] }), '/daemon')
  t.same([app.statusCode, app.json()], [200, { appOnly: true }])
  const v1 = await call(entra.client(API, 'v1').generate({ scp: 'Files.Read' }))
  t.same([v1.statusCode, v1.json().version], [200, '1.0'])
})

t.test('another tenant', async t => {
  const { entra, call } = await setup(t)
  const res = await call(entra.token(API, { tid: OTHER, iss: entra.issuer.replace(entra.tenantId, OTHER) }))
  t.same([res.statusCode, res.json().type], [401, 'auth_token_issuer_untrusted'])

  const multi = new FakeEntra({ tenant: 'organizations' })
  const { call: callMulti } = await setup(t, multi)
  t.equal((await callMulti(multi.token(API, { tid: OTHER, iss: multi.issuerFor(OTHER), scp: 'Files.Read' }))).statusCode, 200)
})

t.test('key rotation', async t => {
  const { entra, call } = await setup(t)
  t.equal((await call(entra.token(API, { scp: 'Files.Read' }))).statusCode, 200)
  const fetched = entra.requests.jwks
  const key = entra.newKey(); entra.keys.push(key)
  t.equal((await call(entra.client(API, 'v2', key).generate({ scp: 'Files.Read' }))).statusCode, 200)
  t.equal(entra.requests.jwks, fetched + 1)
})

t.test('provider down', async t => {
  for (const mode of ['discovery-404', 'jwks-404', 'hang'] as const) {
    const entra = new FakeEntra()
    entra.mode = mode
    const { call } = await setup(t, entra)
    const res = await call(entra.token(API, { scp: 'Files.Read' }))
    t.same([res.statusCode, res.json().type], [503, 'auth_oidc_error'], mode)
  }
})

t.test('entra.pluginOptions(): a key published after start verifies at once', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  await app.ready()
  t.equal((await app.inject({ url: '/me', headers: bearer(entra.token(API_ID)) })).statusCode, 200)
  t.equal(entra.requests.jwks, 1)

  const rotated = entra.newKey()
  entra.keys.push(rotated)
  const token = entra.client(API_ID, 'v2', rotated).generate()
  t.equal((await app.inject({ url: '/me', headers: bearer(token) })).statusCode, 200, 'the new kid is fetched and admitted')
  t.equal(entra.requests.jwks, 2, 'by one refresh')
  t.same(entra.pluginOptions().jwks, { cooldown: 0 })
})

t.test('with the production cooldown, the same rotation waits (what pluginOptions() avoids)', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  // Spreading your own `jwks` after pluginOptions() replaces the test timings.
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), jwks: {} })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  await app.ready()
  const rotated = entra.newKey()
  entra.keys.push(rotated)
  assertProblem(t, await app.inject({ url: '/me', headers: bearer(entra.client(API_ID, 'v2', rotated).generate()) }), 'auth_token_key_error')
  t.equal(entra.requests.jwks, 1, 'no refresh within the cooldown')
})

/** The README's API-key strategy. */
async function verifyApiKey (request: FastifyRequest): Promise<void> {
  if (request.headers['x-api-key'] !== 'let-me-in') throw Object.assign(new Error('invalid API key'), { statusCode: 401 })
}

async function reportsApp (t: Test, order: 'readme' | 'reversed'): Promise<{ app: FastifyInstance, entra: FakeEntra }> {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(fastifyAuth)
  await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof EntraAuthError) return app.entraAuth.sendProblem(reply, error)
    return reply.send(error)
  })
  const strategies = [verifyApiKey, app.entraAuth.strategy('Reports.Read')]
  if (order === 'reversed') strategies.reverse()
  app.get('/reports', { onRequest: app.auth(strategies) }, async () => ({ ok: true }))
  return { app, entra }
}

t.test('@fastify/auth as in the README: the Entra strategy last, so its problem is what clients get', async t => {
  const { app, entra } = await reportsApp(t, 'readme')
  assertProblem(t, await app.inject('/reports'), 'auth_header_missing')
  assertProblem(t, await app.inject({ url: '/reports', headers: { authorization: 'Bearer not.a.token' } }), 'auth_token_invalid')
  assertProblem(t, await app.inject({ url: '/reports', headers: bearer(entra.token('another-api', { scp: 'Reports.Read' })) }), 'auth_token_audience_invalid')
  assertProblem(t, await app.inject({ url: '/reports', headers: bearer(entra.token(API_ID, { scp: 'Other' })) }), 'auth_token_insufficient_scopes', { scope: `api://${API_ID}/Reports.Read` })
  t.equal((await app.inject({ url: '/reports', headers: bearer(entra.token(API_ID, { scp: 'Reports.Read' })) })).statusCode, 200)
  t.equal((await app.inject({ url: '/reports', headers: { 'x-api-key': 'let-me-in' } })).statusCode, 200)

  // The other order: every failure becomes the API key's error, which is why the README orders them so.
  const reversed = await reportsApp(t, 'reversed')
  const res = await reversed.app.inject('/reports')
  t.equal(res.statusCode, 401)
  t.match(res.json(), { message: 'invalid API key' })
})

t.test('standalone introspect: { active: false } for bad tokens, rejects with auth_oidc_error when keys can\'t be had', async t => {
  const entra = fakeEntra(t)
  const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions() })
  t.teardown(() => verifier.close())
  t.same(await verifier.introspect('not.a.token'), { active: false })
  t.match(await verifier.introspect(entra.token(API_ID)), { active: true })

  const down = fakeEntra(t)
  down.mode = 'jwks-404'
  const unavailable = createEntraVerifier({ clientId: API_ID, ...down.pluginOptions() })
  t.teardown(() => unavailable.close())
  await t.rejects(unavailable.introspect(down.token(API_ID)), { name: 'EntraAuthError', type: 'auth_oidc_error', status: 503 })
})

t.test('MockJwks, MockClaims and MockJwtClient plug into the plugin through a FakeEntra', async t => {
  const jwks = new MockJwks()
  const client = new MockJwtClient({ key: jwks.jwk, claims: new MockClaims({ selfAppId: 'my-api' }) })
  // The mocks' tokens carry the mock issuer; the fake publishes it and serves the MockJwks.
  const entra = fakeEntra(t, { issuer: MOCK_ISSUER, keyIssuer: null })
  entra.jwksDocument = jwks.toJSON()
  const app = closing(t, Fastify())
  await app.register(entraAuth, { clientId: 'my-api', rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  app.get('/a', { onRequest: app.entraAuth(['SCOPE_A']) }, async request => ({ sub: request.entraToken?.claims.sub }))
  const res = await app.inject({ url: '/a', headers: bearer(client.generate()) })
  t.same([res.statusCode, res.json()], [200, { sub: 'test_subject' }])
  assertProblem(t, await app.inject({ url: '/a', headers: bearer(client.generate({ scp: 'SCOPE_B', roles: false })) }), 'auth_token_insufficient_scopes', { scope: 'api://my-api/SCOPE_A' })
})
