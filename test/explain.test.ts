/**
 * `verifier.explain()` and `fastify.entraAuth.explain`: the steps the real validation ran, in the
 * order of checks, with what each compared; the verdict equals `verify`'s; no extra fetch; errors
 * of `verify` carry the step and claim they came from.
 */
import diagnostics from 'node:diagnostics_channel'
import Fastify from 'fastify'
import t from 'tap'
import entraAuth, { CHANNELS, createEntraVerifier, EntraAuthError, type EntraVerifier, type Explanation, type ValidationStep } from '../src/index.js'
import { FakeEntra, MockJwk, MockJwtClient } from '../src/testing/index.js'

const CLIENT_ID = '6e1c9b1a-0000-4000-8000-00000000a11d'
const OTHER_TENANT = '11111111-2222-4333-8444-555555555555'
const TOKEN_STEPS: ValidationStep[] = ['structure', 'discovery', 'keys', 'key', 'signature', 'claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client']

const entra = new FakeEntra()
t.teardown(() => entra.close())
const user = entra.client(CLIENT_ID, 'v2')

function verifierWith (extra: Record<string, unknown> = {}): EntraVerifier {
  const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...entra.pluginOptions(), ...extra } as Parameters<typeof createEntraVerifier>[0])
  t.teardown(() => verifier.close())
  return verifier
}

async function rejection (promise: Promise<unknown>): Promise<EntraAuthError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof EntraAuthError) return err
    throw err
  }
  throw new Error('did not reject')
}

function stepsOf (explanation: Explanation): string[] {
  return explanation.steps.map(step => `${step.step}:${step.ok ? 'ok' : 'FAIL'}`)
}

t.test('a valid token: every step passes, in order, with its facts', async t => {
  const verifier = verifierWith()
  const token = user.generate()
  const explanation = await verifier.explain(token)
  t.equal(explanation.valid, true)
  t.equal(explanation.problem, null)
  t.same(explanation.steps.map(step => step.step), TOKEN_STEPS)
  t.ok(explanation.steps.every(step => step.ok && step.problem === undefined && step.detail !== ''))
  t.equal(explanation.token?.tenantId, entra.tenantId)
  const facts = Object.fromEntries(explanation.steps.map(step => [step.step, step.facts]))
  const kid = (entra.keys[0] as MockJwk).kid
  t.match(facts.structure, { alg: 'RS256', kid })
  t.match(facts.discovery, { issuer: `https://login.microsoftonline.com/${entra.tenantId}/v2.0` })
  t.match(facts.keys, { kids: [kid] })
  t.match(facts.key, { kid })
  t.match(facts.iss, { iss: `https://login.microsoftonline.com/${entra.tenantId}/v2.0`, expected: [`https://login.microsoftonline.com/${entra.tenantId}/v2.0`], tid: entra.tenantId })
  t.same(facts.aud, { aud: CLIENT_ID, accepted: [CLIENT_ID, `api://${CLIENT_ID}`] })
  t.match(facts.exp, { clockTolerance: 0 })
  t.ok((facts.exp as { inSeconds: number }).inSeconds > 3000, 'exp relative to now, in seconds')
  t.ok((facts.nbf as { inSeconds: number }).inSeconds <= 0, 'nbf in the past')
  t.match(facts.client, { claim: 'azp', allowed: null })
  t.notMatch(JSON.stringify(explanation.steps), token.split('.')[2] as string, 'no step carries the token')

  const withScopes = await verifier.explain(user.generate({ scp: 'Files.Read' }), ['Files.Read'])
  t.same(withScopes.steps.map(step => step.step), [...TOKEN_STEPS, 'scopes'])
  t.match(withScopes.steps.at(-1), { ok: true, facts: { granted: ['Files.Read'], needs: '"Files.Read"' } })
})

t.test('each failure: explain names the step, the problem and what was compared; verify rejects with the same step and claim', async t => {
  const now = Math.floor(Date.now() / 1000)
  const published = entra.keys[0] as MockJwk
  const impostor = new MockJwtClient({ key: new MockJwk({ kid: published.kid, fresh: true }), claims: user.claims })
  const cases: Array<{ name: string, token: string, step: ValidationStep, type: string, claim?: string, facts?: object, options?: Record<string, unknown> }> = [
    { name: 'not a JWT', token: 'abc.def.ghi', step: 'structure', type: 'auth_token_invalid' },
    { name: 'no kid', token: user.generateEmpty(), step: 'structure', type: 'auth_token_key_error' },
    { name: 'unknown kid', token: new MockJwtClient({ key: entra.newKey('not-published'), claims: user.claims }).generate(), step: 'key', type: 'auth_token_key_error', facts: { kid: 'not-published', kids: [published.kid] } },
    { name: 'another key with the same kid', token: impostor.generate(), step: 'signature', type: 'auth_token_signature_untrusted', facts: { kid: published.kid } },
    { name: 'no azp', token: user.generate({ azp: false }), step: 'claims', type: 'auth_token_claim_missing', claim: 'azp', facts: { missing: 'azp' } },
    { name: 'exp a string', token: user.generate({ exp: String(now + 3600) }), step: 'claims', type: 'auth_token_invalid', claim: 'exp' },
    { name: 'not yet valid', token: user.generate({ nbf: now + 600 }), step: 'nbf', type: 'auth_token_immature', claim: 'nbf' },
    { name: 'expired', token: user.generate({ exp: now - 60 }), step: 'exp', type: 'auth_token_expired', claim: 'exp', facts: { exp: now - 60 } },
    { name: 'v2 token, v1 only', token: user.generate(), step: 'ver', type: 'auth_token_ver_not_supported', claim: 'ver', options: { tokenVersions: ['1.0'] }, facts: { ver: '2.0', accepted: ['1.0'] } },
    { name: 'other issuer', token: user.generate({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0` }), step: 'iss', type: 'auth_token_issuer_untrusted', claim: 'iss', facts: { expected: [`https://login.microsoftonline.com/${entra.tenantId}/v2.0`] } },
    { name: 'tenant not allowed', token: user.generate(), step: 'iss', type: 'auth_token_issuer_untrusted', claim: 'tid', options: { allowedTenants: [OTHER_TENANT] }, facts: { allowedTenants: [OTHER_TENANT] } },
    { name: 'other audience', token: user.generate({ aud: 'another-api' }), step: 'aud', type: 'auth_token_audience_invalid', claim: 'aud', facts: { aud: 'another-api' } },
    { name: 'subject not allowed', token: user.generate(), step: 'sub', type: 'auth_token_subject_not_trusted', claim: 'sub', options: { allowedSubjects: ['someone'] } },
    { name: 'client not allowed', token: user.generate(), step: 'client', type: 'auth_token_azp_not_trusted', claim: 'azp', options: { allowedApps: ['another-client'] }, facts: { allowed: ['another-client'] } }
  ]
  for (const c of cases) {
    await t.test(c.name, async t => {
      const verifier = verifierWith(c.options)
      const explanation = await verifier.explain(c.token)
      t.equal(explanation.valid, false)
      t.match(explanation.problem, { type: c.type, step: c.step, claim: c.claim })
      const at = TOKEN_STEPS.indexOf(c.step)
      t.same(stepsOf(explanation), [...TOKEN_STEPS.slice(0, at).map(step => `${step}:ok`), `${c.step}:FAIL`], 'earlier steps passed; it stopped at the failure')
      const failed = explanation.steps.at(-1)
      t.equal(failed?.problem, c.type)
      t.equal(failed?.detail, explanation.problem?.detail)
      if (c.facts !== undefined) t.match(failed?.facts, c.facts)

      const error = await rejection(verifier.verify(c.token))
      t.equal(error.type, c.type, 'verify rejects with the same type')
      t.equal(error.step, c.step, 'the error carries the step')
      t.equal(error.claim, c.claim, 'and the claim')
    })
  }
  await t.test('scopes', async t => {
    const explanation = await verifierWith().explain(user.generate(), { scopes: ['Files.Read'] })
    t.match(explanation.problem, { type: 'auth_token_insufficient_scopes', step: 'scopes' })
    t.match(explanation.steps.at(-1), { step: 'scopes', ok: false, facts: { granted: ['access_as_user'], needs: '"Files.Read" (delegated scope)' } })
    await t.rejects(verifierWith().explain(user.generate(), ['']), TypeError, 'a malformed requirement is a TypeError')
  })
})

t.test('an identity provider outage is a failed step, not a rejection', async t => {
  for (const [mode, step] of [['discovery-404', 'discovery'], ['jwks-not-json', 'keys']] as const) {
    const fake = new FakeEntra()
    fake.mode = mode
    t.teardown(() => fake.close())
    const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...fake.pluginOptions() })
    t.teardown(() => verifier.close())
    const explanation = await verifier.explain(fake.client(CLIENT_ID).generate())
    t.match(explanation.problem, { type: 'auth_oidc_error', step }, mode)
    t.match(explanation.steps.at(-1), { step, ok: false, problem: 'auth_oidc_error', facts: { lastError: String } })
    t.equal((await rejection(verifier.verify(fake.client(CLIENT_ID).generate()))).step, step)
  }
})

t.test('same key store and caches: explain fetches nothing more than verify', async t => {
  const fake = new FakeEntra()
  t.teardown(() => fake.close())
  const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...fake.pluginOptions() })
  t.teardown(() => verifier.close())
  const client = fake.client(CLIENT_ID)
  await verifier.explain(client.generate({ aud: 'x' }))
  await verifier.explain(client.generate())
  await verifier.verify(client.generate())
  t.same(fake.requests, { discovery: 1, jwks: 1 })
  const token = client.generate()
  await verifier.verify(token)
  const cached = await verifier.verify(token)
  t.equal(await verifier.verify(token), cached, 'cached')
  t.equal((await verifier.explain(token)).steps.length, TOKEN_STEPS.length, 'a cached token is still explained step by step')
  t.equal(await verifier.verify(token), cached, 'and stays cached as it was')
  t.same(fake.requests, { discovery: 1, jwks: 1 })
})

t.test('fastify.entraAuth.explain uses the plugin verifier', async t => {
  const fake = new FakeEntra()
  t.teardown(() => fake.close())
  const app = Fastify()
  await app.register(entraAuth, { clientId: CLIENT_ID, ...fake.pluginOptions() })
  t.teardown(() => app.close())
  await app.ready()
  const explanation = await app.entraAuth.explain(fake.client(CLIENT_ID).generate({ aud: 'nope' }))
  t.match(explanation.problem, { type: 'auth_token_audience_invalid', step: 'aud', claim: 'aud' })
  t.equal(app.entraAuth.explain, app.entraAuth.verifier.explain)
})

t.test('errors outside token validation carry their step too', async t => {
  t.equal(new EntraAuthError('auth_header_missing').step, 'request')
  t.equal(new EntraAuthError('auth_header_missing').claim, undefined)
  t.equal(new EntraAuthError('auth_token_expired').claim, 'exp')
  t.match(new EntraAuthError('auth_token_invalid', undefined, { step: 'claims', claim: 'iat' }), { step: 'claims', claim: 'iat' })
})

t.test('the allowedTenants predicate and requirePermissions are steps too', async t => {
  const allowed = verifierWith({ allowedTenants: async (tid: string) => tid === entra.tenantId, requirePermissions: true })
  const ok = await allowed.explain(user.generate())
  t.same(ok.steps.slice(-2).map(step => `${step.step}:${step.ok}`), ['tenant:true', 'permissions:true'])

  const refused = await verifierWith({ allowedTenants: () => false }).explain(user.generate())
  t.match(refused.problem, { type: 'auth_token_issuer_untrusted', step: 'tenant', claim: 'tid' })
  t.match(refused.steps.at(-1), { step: 'tenant', ok: false, facts: { tid: entra.tenantId } })

  const failing = verifierWith({ allowedTenants: () => { throw new Error('database down') } })
  const broken = await failing.explain(user.generate())
  t.match(broken.problem, { type: 'auth_tenant_check_error', step: 'tenant' })
  t.match(await rejection(failing.verify(user.generate())), { type: 'auth_tenant_check_error', step: 'tenant', claim: 'tid' })

  const noPermission = await verifierWith({ requirePermissions: true }).explain(user.generate({ scp: false, roles: false }))
  t.match(noPermission.problem, { type: 'auth_token_insufficient_scopes', step: 'permissions' })
  t.match(noPermission.steps.at(-1), { step: 'permissions', ok: false, facts: { scp: [], roles: [] } })
})

t.test('explain() never touches the token cache: it neither reads, fills, nor evicts it, nor shares a validation in flight', async t => {
  const lookups: unknown[] = []
  const onLookup = (message: unknown): void => { lookups.push(message) }
  diagnostics.subscribe(CHANNELS.tokenCache, onLookup)
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.tokenCache, onLookup))
  const calls: string[] = []
  let offset = 0
  const verifier = verifierWith({ allowedTenants: (tid: string) => { calls.push(tid); return true }, now: () => Date.now() + offset })
  const token = user.generate()

  const explained = await verifier.explain(token)
  t.equal(explained.valid, true)
  t.same(verifier.state().tokenCache.size, 0, 'a valid token explained is not cached')
  t.same(lookups, [], 'no cache lookup')

  const verified = await verifier.verify(token)
  t.equal(verifier.state().tokenCache.size, 1)
  t.equal(calls.length, 2, 'verify asked the predicate itself: explain left nothing behind')
  lookups.length = 0
  const again = await verifier.explain(token)
  t.ok(again.steps.some(step => step.step === 'signature'), 'the cached token is validated afresh')
  t.not(again.token, verified, 'not the cached token object')
  t.equal(calls.length, 3, 'and the predicate asked again')
  t.same(lookups, [], 'no cache lookup')
  t.equal(await verifier.verify(token), verified, 'the cached token is still there')

  // Explaining a cached token at a time it has expired does not evict it (verify would).
  offset = 2 * 60 * 60 * 1000
  t.equal((await verifier.explain(token)).problem?.type, 'auth_token_expired')
  offset = 0
  t.equal(await verifier.verify(token), verified, 'still cached')

  // Concurrent explain() and verify() of a new token: each runs its own validation.
  const fresh = user.generate({ sub: 'concurrent' })
  calls.length = 0
  const [a, b] = await Promise.all([verifier.explain(fresh), verifier.verify(fresh)])
  t.equal(a.valid, true)
  t.not(a.token, b)
  t.equal(calls.length, 2)
})
