/**
 * `allowedTenants` as a predicate `(tenantId, token) => boolean | Promise<boolean>`: asked once
 * per new token (its answer cached with the verified token); a throw or rejection never admits
 * and is 503 `auth_tenant_check_error`.
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, EntraToken, type EntraAuthOptions, type EntraTenantPredicate } from '../src/index.js'
import { FakeEntra, MOCK_ISSUER } from '../src/testing/index.js'
import { logCapture } from './helpers/metadata.js'

const API = '4e5f6a7b-0000-4000-8000-0000000000a1'
const TENANT_A = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d'
const TENANT_B = '6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d2c'

interface Calls { tenants: string[], tokens: unknown[] }

async function fixture (t: Test, predicate: EntraTenantPredicate, options: Partial<EntraAuthOptions> = {}): Promise<{ entra: FakeEntra, app: FastifyInstance, logs: ReturnType<typeof logCapture>['lines'], call: (token: string) => Promise<LightMyRequestResponse>, token: (tid: string, overrides?: Record<string, unknown>) => string }> {
  const entra = new FakeEntra({ tenant: 'organizations', tenantId: TENANT_A })
  const capture = logCapture()
  const app = Fastify({ logger: { level: 'warn', stream: capture.stream } })
  await app.register(entraAuth, { clientId: API, allowedTenants: predicate, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => ({ tenant: request.entraToken!.tenantId }))
  t.teardown(async () => { await app.close(); await entra.close() })
  return {
    entra,
    app,
    logs: capture.lines,
    call: token => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } }),
    token: (tid, overrides = {}) => entra.token(API, { iss: entra.issuerFor(tid), tid, ...overrides })
  }
}

function recording (answer: (tenantId: string) => boolean | Promise<boolean>): { calls: Calls, predicate: EntraTenantPredicate } {
  const calls: Calls = { tenants: [], tokens: [] }
  return {
    calls,
    predicate: (tenantId, token) => {
      calls.tenants.push(tenantId)
      calls.tokens.push(token)
      return answer(tenantId)
    }
  }
}

t.test('admits the tenants it answers true for; others are auth_token_issuer_untrusted', async t => {
  for (const style of ['sync', 'async'] as const) {
    const { calls, predicate } = recording(tid => style === 'sync' ? tid === TENANT_A : Promise.resolve(tid === TENANT_A))
    const { call, token } = await fixture(t, predicate)
    const ok = await call(token(TENANT_A))
    t.equal(ok.statusCode, 200, style)
    t.same(ok.json(), { tenant: TENANT_A })
    const refused = await call(token(TENANT_B))
    t.equal(refused.statusCode, 401)
    t.match(refused.json(), { type: 'auth_token_issuer_untrusted', detail: /tenant/ })
    t.same(calls.tenants, [TENANT_A, TENANT_B])
  }
})

t.test('the predicate receives the tid and the verified EntraToken', async t => {
  const { calls, predicate } = recording(() => true)
  const { call, token } = await fixture(t, predicate)
  const raw = token(TENANT_A, { scp: 'access_as_user' })
  t.equal((await call(raw)).statusCode, 200)
  const seen = calls.tokens[0] as EntraToken
  t.ok(seen instanceof EntraToken)
  t.equal(seen.tenantId, TENANT_A)
  t.equal(seen.clientId, 'c0ffee00-0000-4000-8000-000000000002')
  t.same(seen.scopes, ['access_as_user'])
  // It is the token the request is then admitted with (and the cache keeps).
  t.equal(seen.raw, raw)
})

t.test('its answer is cached with the verified token; refusals are not', async t => {
  let allowB = false
  const { calls, predicate } = recording(tid => tid === TENANT_A || allowB)
  const { call, token } = await fixture(t, predicate)
  const a = token(TENANT_A)
  for (let i = 0; i < 3; i++) t.equal((await call(a)).statusCode, 200)
  t.equal(calls.tenants.length, 1, 'a cache hit does not ask again')
  t.equal((await call(token(TENANT_A))).statusCode, 200)
  t.equal(calls.tenants.length, 2, 'a new token asks again')

  const b = token(TENANT_B)
  t.equal((await call(b)).statusCode, 401)
  allowB = true
  t.equal((await call(b)).statusCode, 200, 'a tenant that signs up is admitted on its next request')
  t.equal(calls.tenants.length, 4)
})

t.test('a predicate that throws or rejects never admits: 503 auth_tenant_check_error', async t => {
  const failures: Array<[string, EntraTenantPredicate]> = [
    ['throws', () => { throw new Error('tenant database unreachable') }],
    ['rejects', async () => { throw new Error('tenant database unreachable') }],
    ['returns a rejected promise', () => Promise.reject(new Error('timeout'))]
  ]
  for (const [label, predicate] of failures) {
    const { call, token, logs } = await fixture(t, predicate)
    const raw = token(TENANT_A)
    const res = await call(raw)
    t.equal(res.statusCode, 503, label)
    t.equal(res.headers['content-type'], 'application/problem+json')
    t.equal(res.headers['www-authenticate'], 'Bearer', 'the failure is not the client\'s: no error attribute')
    t.match(res.headers['retry-after'], /^\d+$/, 'Retry-After, like every 503')
    const body = res.json() as { type: string, title: string, detail: string }
    t.equal(body.type, 'auth_tenant_check_error')
    t.equal(body.title, 'Tenant check failed')
    t.notOk(res.body.includes(raw.split('.')[2]!), 'the body does not contain the token')
    t.notMatch(res.body, /database|timeout/, 'nor the predicate\'s error')
    const logged = logs.filter(line => /allowedTenants predicate failed/.test(line.msg))
    t.equal(logged.length, 1, 'the error is logged for the operator')
    t.notOk(JSON.stringify(logs).includes(raw.split('.')[1]!), 'the log does not contain the token')
  }
})

t.test('after a failure the token is judged afresh', async t => {
  let down = true
  const { calls, predicate } = recording(() => { if (down) throw new Error('down'); return true })
  const { call, token } = await fixture(t, predicate)
  const raw = token(TENANT_A)
  t.equal((await call(raw)).statusCode, 503)
  down = false
  t.equal((await call(raw)).statusCode, 200)
  t.equal(calls.tenants.length, 2)
})

t.test('only true admits', async t => {
  for (const answer of ['yes', 1, {}, undefined, null]) {
    const { call, token } = await fixture(t, () => answer as unknown as boolean)
    t.equal((await call(token(TENANT_A))).json().type, 'auth_token_issuer_untrusted', JSON.stringify(answer) ?? 'undefined')
  }
})

t.test('it is asked only about tokens that passed every other claim check', async t => {
  const { calls, predicate } = recording(() => true)
  const { call, token, entra } = await fixture(t, predicate, { allowedApps: ['c0ffee00-0000-4000-8000-000000000002'] })
  const refused: Array<[string, string]> = [
    [token(TENANT_A, { exp: 1 }), 'auth_token_expired'],
    [token(TENANT_A, { aud: 'api://another-api' }), 'auth_token_audience_invalid'],
    [token(TENANT_A, { azp: 'rogue' }), 'auth_token_azp_not_trusted'],
    [token(TENANT_A, { iss: entra.issuerFor(TENANT_B) }), 'auth_token_issuer_untrusted'],
    [token(TENANT_A, { tid: 'not-a-guid', iss: entra.issuerFor(TENANT_A) }), 'auth_token_issuer_untrusted']
  ]
  for (const [raw, type] of refused) t.equal((await call(raw)).json().type, type)
  const [header, payload] = token(TENANT_A).split('.')
  t.equal((await call(`${header}.${payload}.${token(TENANT_B).split('.')[2]}`)).json().type, 'auth_token_signature_untrusted')
  t.same(calls.tenants, [], 'never asked')
})

t.test('it runs before requirePermissions (the tenant is judged at the issuer step)', async t => {
  const { call, token } = await fixture(t, tid => tid === TENANT_A)
  t.equal((await call(token(TENANT_B, { scp: false, roles: false }))).json().type, 'auth_token_issuer_untrusted')
  t.equal((await call(token(TENANT_A, { scp: false, roles: false }))).json().type, 'auth_token_insufficient_scopes')
})

t.test('a token without a GUID tid is refused without asking', async t => {
  const entra = new FakeEntra({ issuer: MOCK_ISSUER, keyIssuer: null })
  const { calls, predicate } = recording(() => true)
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: API, allowedTenants: predicate, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await entra.close() })
  for (const tid of [false, 'contoso', 42]) {
    const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${entra.token(API, { iss: MOCK_ISSUER, tid })}` } })
    t.equal(res.json().type, 'auth_token_issuer_untrusted')
  }
  t.same(calls.tenants, [])
})

t.test('standalone verifier: verify rejects with auth_tenant_check_error, introspect answers inactive', async t => {
  const entra = new FakeEntra({ tenant: 'organizations', tenantId: TENANT_A })
  const cause = new Error('down')
  const verifier = createEntraVerifier({ clientId: API, allowedTenants: () => { throw cause }, ...entra.pluginOptions() })
  t.teardown(async () => { await verifier.close(); await entra.close() })
  const raw = entra.token(API, { iss: entra.issuerFor(TENANT_A), tid: TENANT_A })
  const err = await verifier.verify(raw).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof EntraAuthError)
  t.match(err, { type: 'auth_tenant_check_error', status: 503 })
  t.equal((err as Error).cause, cause, 'the predicate\'s error is the cause')
  t.same(await verifier.introspect(raw), { active: false })
})

t.test('option checking: a list of strings or a function', async t => {
  for (const bad of [42, 'contoso', [42], {}]) {
    const app = Fastify({ logger: false })
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(entraAuth, { clientId: API, tenant: 'organizations', allowedTenants: bad as unknown as string[] }) }, /allowedTenants/, JSON.stringify(bad))
  }
})
