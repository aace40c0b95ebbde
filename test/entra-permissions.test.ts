/**
 * `requirePermissions`: a token with neither `scp` nor `roles` carries no permission and is
 * refused even on authentication-only routes; default on for multi-tenant discovery issuers.
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions } from '../src/index.js'
import { FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'

const API = '3f9e8d7c-0000-4000-8000-0000000000a1'
const TENANT = '2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901'

async function fixture (t: Test, entraOptions: FakeEntraOptions, options: Partial<EntraAuthOptions> = {}): Promise<{ entra: FakeEntra, app: FastifyInstance, call: (token: string, url?: string) => Promise<LightMyRequestResponse> }> {
  const entra = new FakeEntra({ tenantId: TENANT, ...entraOptions })
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: API, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  app.get('/read', { onRequest: app.entraAuth(['access_as_user']) }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await entra.close() })
  return { entra, app, call: (token, url = '/me') => app.inject({ url, headers: { authorization: `Bearer ${token}` } }) }
}

const multi = { tenant: 'organizations' }
/** A v2.0 token of the fake's tenant with `overrides` (its issuer bound for the multi-tenant fake). */
const tokenOf = (entra: FakeEntra, overrides: Record<string, unknown>): string => entra.token(API, { iss: entra.issuerFor(TENANT), tid: TENANT, ...overrides })

t.test('multi-tenant: a token without scp and roles is refused on an authentication-only route', async t => {
  const { entra, call } = await fixture(t, multi)
  for (const [label, overrides] of [
    ['no scp, no roles', { scp: false, roles: false }],
    ['empty scp, empty roles', { scp: '', roles: [] }],
    ['scp of spaces, roles not an array', { scp: '   ', roles: 'Admin' }]
  ] as const) {
    const res = await call(tokenOf(entra, overrides))
    t.equal(res.statusCode, 403, label)
    t.equal(res.headers['content-type'], 'application/problem+json')
    const body = res.json() as { type: string, detail: string }
    t.equal(body.type, 'auth_token_insufficient_scopes', label)
    t.match(body.detail, /requirePermissions/, 'the detail names the option')
    t.match(body.detail, /neither .*'scp'.* nor .*'roles'/, 'and says why')
    t.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", error_description="Insufficient scopes"', 'no scope attribute: no particular scope is missing')
  }
  t.equal((await call(tokenOf(entra, { scp: 'access_as_user', roles: false }))).statusCode, 200, 'a delegated scope is a permission')
  t.equal((await call(tokenOf(entra, { scp: false, roles: ['Reader'] }))).statusCode, 200, 'an app role is a permission')
  t.equal((await call(entra.client(API, 'app').generate({ iss: entra.issuerFor(TENANT), tid: TENANT }))).statusCode, 200, 'app-only token with roles')
})

t.test('requirePermissions: false admits them in a multi-tenant app', async t => {
  const { entra, call } = await fixture(t, multi, { requirePermissions: false })
  t.equal((await call(tokenOf(entra, { scp: false, roles: false }))).statusCode, 200)
  // Routes that need scopes still refuse them, naming the scopes.
  const res = await call(tokenOf(entra, { scp: false, roles: false }), '/read')
  t.equal(res.statusCode, 403)
  t.match(res.headers['www-authenticate'], `scope="api://${API}/access_as_user"`)
})

t.test('single tenant: admitted by default, refused with requirePermissions: true', async t => {
  const single = await fixture(t, {})
  t.equal((await single.call(tokenOf(single.entra, { scp: false, roles: false }))).statusCode, 200)
  const strict = await fixture(t, {}, { requirePermissions: true })
  const res = await strict.call(tokenOf(strict.entra, { scp: false, roles: false }))
  t.equal(res.statusCode, 403)
  t.match(res.json(), { type: 'auth_token_insufficient_scopes', detail: /requirePermissions/ })
  t.equal((await strict.call(tokenOf(strict.entra, {}))).statusCode, 200)
})

t.test('it is the last token check: earlier failures keep their own problem type', async t => {
  const { entra, call } = await fixture(t, multi, { allowedApps: ['c0ffee00-0000-4000-8000-000000000002'], allowedSubjects: ['alice'] })
  const bare = { scp: false, roles: false, sub: 'alice' }
  t.equal((await call(tokenOf(entra, { ...bare, aud: 'api://someone-else' }))).json().type, 'auth_token_audience_invalid', 'aud before permissions')
  t.equal((await call(tokenOf(entra, { ...bare, sub: 'mallory' }))).json().type, 'auth_token_subject_not_trusted', 'sub before permissions')
  t.equal((await call(tokenOf(entra, { ...bare, azp: 'rogue' }))).json().type, 'auth_token_azp_not_trusted', 'client before permissions')
  t.equal((await call(tokenOf(entra, { ...bare, exp: 1 }))).json().type, 'auth_token_expired', 'time before permissions')
  t.equal((await call(tokenOf(entra, bare))).json().type, 'auth_token_insufficient_scopes')
})

t.test('verify() applies it too (it is a verifier option)', async t => {
  const entra = new FakeEntra({ tenantId: TENANT, ...multi })
  const verifier = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
  t.teardown(async () => { await verifier.close(); await entra.close() })
  const err = await verifier.verify(tokenOf(entra, { scp: false, roles: false })).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof EntraAuthError)
  t.match(err, { type: 'auth_token_insufficient_scopes', status: 403, detail: /requirePermissions/ })
  t.same(await verifier.introspect(tokenOf(entra, { scp: false, roles: false })), { active: false })
  t.equal((await verifier.verify(tokenOf(entra, {}))).tenantId, TENANT)
})

t.test('the option is checked at register time', async t => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(entraAuth, { clientId: API, tenant: 'organizations', requirePermissions: 'yes' as unknown as boolean }) }, /requirePermissions/)
})
