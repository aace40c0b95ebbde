/**
 * `allowedTenants` as a predicate `(tenantId, token) => boolean | Promise<boolean>`: asked once
 * per new token (its answer cached with the verified token); a throw or rejection never admits
 * and is 503 `auth_tenant_check_error`.
 */
import diagnostics from 'node:diagnostics_channel'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { CHANNELS, createEntraVerifier, EntraAuthError, EntraToken, type EntraAuthOptions, type EntraTenantPredicate, type VerifyTraceContext } from '../src/index.js'
import { TENANT_REFUSAL_MEMORY_MS, TENANT_REFUSALS_MAX } from '../src/entra/tenants.js'
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

t.test('its answer is cached with the verified token; a refusal is remembered for 10 s', async t => {
  let allowB = false
  // Real time plus what the test adds: the fake mints tokens valid from now.
  const clock = { offset: 0 }
  const { calls, predicate } = recording(tid => tid === TENANT_A || allowB)
  const { call, token } = await fixture(t, predicate, { now: () => Date.now() + clock.offset })
  const a = token(TENANT_A)
  for (let i = 0; i < 3; i++) t.equal((await call(a)).statusCode, 200)
  t.equal(calls.tenants.length, 1, 'a cache hit does not ask again')
  t.equal((await call(token(TENANT_A, { uti: 'second' }))).statusCode, 200)
  t.equal(calls.tenants.length, 2, 'a new token asks again')

  const b = token(TENANT_B)
  for (let i = 0; i < 20; i++) t.match((await call(b)).json(), { type: 'auth_token_issuer_untrusted' })
  t.equal(calls.tenants.length, 3, 'replaying a refused token does not ask again')
  allowB = true
  clock.offset += TENANT_REFUSAL_MEMORY_MS - 1000
  t.equal((await call(b)).statusCode, 401, 'still remembered shortly before 10 s')
  t.equal((await call(token(TENANT_B, { uti: 'new' }))).statusCode, 200, 'another token of the tenant is asked about')
  t.equal(calls.tenants.length, 4)
  clock.offset += 1000
  t.equal((await call(b)).statusCode, 200, 'a tenant that signs up is admitted with the refused token 10 s later')
  t.equal(calls.tenants.length, 5)
  t.ok(TENANT_REFUSAL_MEMORY_MS <= 60_000, 'the contract allows at most 60 s')
})

t.test('a clock that goes back forgets refusals rather than remembering them longer', async t => {
  const clock = { offset: 0 }
  let allow = false
  const { calls, predicate } = recording(() => allow)
  const { call, token } = await fixture(t, predicate, { now: () => Date.now() + clock.offset })
  const raw = token(TENANT_B, { nbf: Math.floor(Date.now() / 1000) - 60 })
  t.equal((await call(raw)).statusCode, 401)
  t.equal((await call(raw)).statusCode, 401)
  t.equal(calls.tenants.length, 1)
  clock.offset -= 1000
  allow = true
  t.equal((await call(raw)).statusCode, 200)
  t.equal(calls.tenants.length, 2)
})

t.test('refusals are remembered in bounded memory: the oldest is forgotten first', async t => {
  const { calls, predicate } = recording(() => false)
  const entra = new FakeEntra({ tenant: 'organizations', tenantId: TENANT_A })
  const verifier = createEntraVerifier({ clientId: API, allowedTenants: predicate, ...entra.pluginOptions() })
  t.teardown(async () => { await verifier.close(); await entra.close() })
  const client = entra.client('c0ffee00-0000-4000-8000-000000000002')
  const tokens = Array.from({ length: TENANT_REFUSALS_MAX + 1 }, (_, i) => client.generate({ aud: API, iss: entra.issuerFor(TENANT_B), tid: TENANT_B, uti: `u${i}` }))
  const refusal = (raw: string): Promise<unknown> => verifier.verify(raw).then(() => 'admitted', (err: EntraAuthError) => err.type)
  for (const raw of tokens) t.equal(await refusal(raw), 'auth_token_issuer_untrusted')
  t.equal(calls.tenants.length, TENANT_REFUSALS_MAX + 1)
  t.equal(await refusal(tokens.at(-1)!), 'auth_token_issuer_untrusted')
  t.equal(calls.tenants.length, TENANT_REFUSALS_MAX + 1, 'the newest refusal is remembered')
  t.equal(await refusal(tokens[0]!), 'auth_token_issuer_untrusted')
  t.equal(calls.tenants.length, TENANT_REFUSALS_MAX + 2, 'the oldest was forgotten to make room')
})

t.test('a predicate that has not settled within jwks.timeout is 503 auth_tenant_check_error, and not remembered', { timeout: 20_000 }, async t => {
  let settle = false
  const { calls, predicate } = recording(() => settle ? Promise.resolve(true) : new Promise<boolean>(() => {}))
  const { call, token, logs } = await fixture(t, predicate, { jwks: { timeout: 50 } })
  const raw = token(TENANT_A)
  const res = await call(raw)
  t.equal(res.statusCode, 503)
  t.match(res.json(), { type: 'auth_tenant_check_error' })
  t.match(res.headers['retry-after'], /^\d+$/)
  const logged = logs.filter(line => /allowedTenants predicate failed/.test(line.msg))
  t.equal(logged.length, 1, 'logged for the operator')
  t.match(JSON.stringify(logged[0]), /did not settle within jwks\.timeout \(50 ms\)/)
  settle = true
  t.equal((await call(raw)).statusCode, 200, 'the token is judged afresh')
  t.equal(calls.tenants.length, 2)
})

t.test('concurrent validations of one token share one signature check and one predicate call', async t => {
  const entra = new FakeEntra({ tenant: 'organizations', tenantId: TENANT_A })
  t.teardown(() => entra.close())
  for (const [label, answer, outcome] of [['admitted', true, 'valid'], ['refused', false, 'auth_token_issuer_untrusted']] as const) {
    const { calls, predicate } = recording(async () => answer)
    const verifier = createEntraVerifier({ clientId: API, allowedTenants: predicate, ...entra.pluginOptions() })
    t.teardown(() => verifier.close())
    const signatures: unknown[] = []
    const tracing = diagnostics.tracingChannel(CHANNELS.verify)
    const handlers = { start () {}, end () {}, asyncStart () {}, error () {}, asyncEnd (message: unknown) { signatures.push(...(message as VerifyTraceContext).steps.filter(step => step.step === 'signature')) } }
    for (const traced of [false, true]) {
      if (traced) tracing.subscribe(handlers)
      calls.tenants.length = 0
      signatures.length = 0
      const raw = entra.token(API, { iss: entra.issuerFor(TENANT_A), tid: TENANT_A, uti: `${label}-${traced}` })
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => verifier.verify(raw)))
      if (traced) tracing.unsubscribe(handlers)
      t.equal(calls.tenants.length, 1, `${label}${traced ? ', traced' : ''}: one predicate call`)
      if (traced) t.equal(signatures.length, 1, `${label}: one signature check`)
      for (const result of results) {
        if (outcome === 'valid') t.equal(result.status === 'fulfilled' && result.value.tenantId, TENANT_A)
        else t.match(result.status === 'rejected' && result.reason, { type: outcome })
      }
      const admitted = results.filter(r => r.status === 'fulfilled').map(r => r.value)
      t.ok(admitted.every(token => token === admitted[0]), 'the same immutable token')
    }
  }
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
