/**
 * The README's "Testing your app" recipes, each run as its table line writes it, so the table
 * can't drift from the kit's API.
 */
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import entraAuth from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'

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
