/**
 * Claims: route requirements (scopes and roles), `requirePermissions`, ID tokens presented as
 * access tokens, and the verified-token cache that judges time, keys and requirements again on
 * every request. One section per subject below, each with its own fixtures.
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type ScopeRequirement, createEntraVerifier, EntraAuthError, type EntraAuthOptions, type EntraToken } from '../src/index.js'
import { inspectToken } from '../src/inspect/validate.js'
import { FakeEntra, type FakeEntraOptions, type MockJwk, type MockJwtClient } from '../src/testing/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { TokenCache } from '../src/core/token-cache.js'
import type { SigningKey } from '../src/core/keys.js'
import { API_ID, assertProblem, bearer, closing, fakeEntra, parseChallenge } from './helpers/index.js'
import { readFixture } from './helpers/fixtures.js'
import { jwkFromPem, serveMetadata } from './helpers/metadata.js'

/**
 * Route requirements: what is refused when the route is defined, app-only routes, and the 403
 * challenge's `scope` (one alternative that would be enough, as clients request it).
 */
t.test('route requirements', async t => {
  const PREFIX = `api://${API_ID}/`

  async function appWith (t: Test): Promise<{ app: FastifyInstance, entra: ReturnType<typeof fakeEntra> }> {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    return { app, entra }
  }

  t.test('requirements that would open the route, or never admit anyone, throw when the route is defined', async t => {
    const { app } = await appWith(t)
    const refused: Array<[string, unknown, RegExp]> = [
      ['{}', {}, /names no scope and no app role.*\{ roles: \['Admin'\] \}/],
      ['{ roles: [] }', { roles: [] }, /names no scope and no app role/],
      ['{ scopes: [], roles: [] }', { scopes: [], roles: [] }, /a list read from configuration may have come out empty/],
      ['{ appOnly: true }', { appOnly: true }, /names no scope and no app role/],
      ["'Files.Read,Files.Write'", 'Files.Read,Files.Write', /'Files\.Read,Files\.Write', and scope names have no commas: write \['Files\.Read', 'Files\.Write'\] for any one of them, or 'Files\.Read Files\.Write' for all of them/],
      ["['A', 'B,C']", ['A', 'B,C'], /'B,C'.*\['B', 'C'\]/],
      ["{ roles: ['Admin,Reader'] }", { roles: ['Admin,Reader'] }, /the requirement's 'roles' contains 'Admin,Reader'/],
      ['appOnly with delegated scopes', { scopes: ['Files.Read'], roles: ['Files.Read.All'], appOnly: true }, /carry no delegated scopes.*put the app roles the route needs into 'roles'/],
      ["appOnly: 'yes'", { roles: ['A'], appOnly: 'yes' }, /'appOnly' must be true or false/],
      ['an unknown key', { role: ['A'] }, /unknown requirement key 'role' \(the object form is \{ scopes\?, roles\?, appOnly\? \}\)/],
      ['null', null, /must be a string, an array of strings, or \{ scopes\?, roles\?, appOnly\? \}; leave it out for authentication only/]
    ]
    for (const [label, requirement, message] of refused) {
      t.throws(() => app.entraAuth(requirement as ScopeRequirement), { name: 'TypeError', message }, `entraAuth(${label})`)
      t.throws(() => app.entraAuth.strategy(requirement as ScopeRequirement), TypeError, `strategy(${label})`)
    }
    // Authentication only stays as it was; an empty list inside a form with another non-empty one is fine.
    for (const requirement of [undefined, [], { scopes: [], roles: ['Admin'] }, { scopes: 'A', roles: [] }]) {
      t.doesNotThrow(() => app.entraAuth(requirement as ScopeRequirement), JSON.stringify(requirement) ?? 'undefined')
    }
  })

  t.test('an empty list from configuration is refused, not open', async t => {
    const { app, entra } = await appWith(t)
    const config = { adminRoles: ''.split(',').filter(Boolean) }
    t.throws(() => app.get('/admin', { onRequest: app.entraAuth({ roles: config.adminRoles }) }, async () => ({})), TypeError)
    await app.ready()
    t.equal((await app.inject({ url: '/admin', headers: bearer(entra.token(API_ID)) })).statusCode, 404, 'the route was never defined')
  })

  t.test('appOnly: only app-only tokens pass, a user with the app role gets 403', async t => {
    const { app, entra } = await appWith(t)
    app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'], appOnly: true }) }, async (request) => ({ app: request.entraToken?.isAppOnly }))
    app.get('/either', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async () => ({ ok: true }))
    await app.ready()

    const daemon = entra.client(API_ID, 'app').generate({ roles: ['Reports.Read.All'] })
    const daemonWithoutRole = entra.client(API_ID, 'app').generate({ roles: ['Other'] })
    const userWithRole = entra.client(API_ID).generate({ scp: 'access_as_user', roles: ['Reports.Read.All'] })
    // A user token whose client asked for no delegated scope still names a user: idtyp 'user'.
    const userWithoutScp = entra.client(API_ID).generate({ scp: false, roles: ['Reports.Read.All'], additionalClaims: { idtyp: 'user' } })
    // Without idtyp, Entra's rule: an app token has oid == sub (the preset's user token differs).
    const noIdtypUser = entra.client(API_ID).generate({ scp: false, roles: ['Reports.Read.All'] })
    const noIdtypApp = entra.client(API_ID, 'app').generate({ roles: ['Reports.Read.All'], additionalClaims: { idtyp: undefined } })
    // An `idtyp: app` token that carries delegated scopes is no app-only token.
    const appWithScp = entra.client(API_ID, 'app').generate({ scp: 'access_as_user', roles: ['Reports.Read.All'] })

    t.same((await app.inject({ url: '/reports', headers: bearer(daemon) })).json(), { app: true }, 'the daemon')
    t.equal((await app.inject({ url: '/reports', headers: bearer(noIdtypApp) })).statusCode, 200, 'an app token without idtyp (oid == sub, no scp)')
    for (const [label, token] of [['user with the app role', userWithRole], ['user without scp', userWithoutScp], ['user token without idtyp', noIdtypUser], ['idtyp app with scp', appWithScp]] as const) {
      const res = await app.inject({ url: '/reports', headers: bearer(token) })
      assertProblem(t, res, 'auth_token_insufficient_scopes', { scope: `${PREFIX}.default`, detail: /^This route is for applications: .*not a user's token, even one whose user was assigned the app role\. This route needs "Reports\.Read\.All" \(app role\)\./, credential: token })
      t.comment(label)
      t.equal((await app.inject({ url: '/either', headers: bearer(token) })).statusCode, 200, `${label}: the same token passes a route without appOnly`)
    }
    const res = await app.inject({ url: '/reports', headers: bearer(daemonWithoutRole) })
    assertProblem(t, res, 'auth_token_insufficient_scopes', { scope: `${PREFIX}.default`, detail: /^This route needs "Reports\.Read\.All" \(app role\)\. Request a token with them/ })
    t.notMatch(res.json().detail, /for applications/, 'an app without the role is told about the role only')

    t.test('explain() and the inspector judge it the same way', async t => {
      const requirement: ScopeRequirement = { roles: ['Reports.Read.All'], appOnly: true }
      const forUser = await app.entraAuth.explain(userWithRole, requirement)
      t.equal(forUser.valid, false)
      t.match(forUser.problem, { type: 'auth_token_insufficient_scopes', step: 'scopes', detail: /for applications/ })
      t.match(forUser.steps.at(-1), { step: 'scopes', ok: false, facts: { appOnly: true, isAppOnly: false } })
      t.equal((await app.entraAuth.explain(daemon, requirement)).valid, true)

      const inspected = await inspectToken(userWithRole, { clientId: API_ID, ...entra.pluginOptions(), requirement })
      t.match(inspected.validation?.problem, { type: 'auth_token_insufficient_scopes', detail: /for applications/ })
      t.equal((await inspectToken(daemon, { clientId: API_ID, ...entra.pluginOptions(), requirement })).validation?.valid, true)
      await t.rejects(inspectToken(daemon, { clientId: API_ID, ...entra.pluginOptions(), requirement: { roles: [], appOnly: true } }), TypeError)
    })
  })

  t.test("the challenge's scope names the first alternative as clients request it; the detail names all", async t => {
    const { app, entra } = await appWith(t)
    const routes: Array<[string, ScopeRequirement, string, RegExp]> = [
      ['/either', ['Files.Read', 'Files.ReadWrite'], `${PREFIX}Files.Read`, /needs "Files\.Read" or "Files\.ReadWrite"\. Request a token with one of them/],
      ['/both', 'Files.Read Files.Write', `${PREFIX}Files.Read ${PREFIX}Files.Write`, /needs "Files\.Read Files\.Write"\./],
      ['/mixed', ['A C', 'B C'], `${PREFIX}A ${PREFIX}C`, /needs "A C" or "B C"/],
      ['/delegated-first', { scopes: 'Jobs.Write', roles: 'Jobs.Run' }, `${PREFIX}Jobs.Write`, /needs "Jobs\.Write" \(delegated scope\) or "Jobs\.Run" \(app role\)/],
      ['/role', { roles: ['Jobs.Run', 'Jobs.Admin'] }, `${PREFIX}.default`, /needs "Jobs\.Run" \(app role\) or "Jobs\.Admin" \(app role\)/]
    ]
    for (const [url, requirement] of routes) app.get(url, { onRequest: app.entraAuth(requirement) }, async () => ({}))
    await app.ready()
    const token = entra.token(API_ID, { scp: 'Other', roles: false })
    for (const [url, , scope, detail] of routes) {
      const res = await app.inject({ url, headers: bearer(token) })
      assertProblem(t, res, 'auth_token_insufficient_scopes', { scope, detail })
      t.equal(parseChallenge(res.headers['www-authenticate']).params.error, 'insufficient_scope', url)
    }
  })

  t.test('the challenge uses the OpenAPI scope prefix when one is configured', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', openapi: { scopePrefix: 'https://contoso.com/files/' }, ...entra.pluginOptions() })
    app.get('/read', { onRequest: app.entraAuth(['Files.Read', 'Files.All']) }, async () => ({}))
    await app.ready()
    const res = await app.inject({ url: '/read', headers: bearer(entra.token(API_ID, { scp: 'Other' })) })
    assertProblem(t, res, 'auth_token_insufficient_scopes', { scope: 'https://contoso.com/files/Files.Read' })
  })
})

/**
 * `requirePermissions`: a token with neither `scp` nor `roles` carries no permission and is
 * refused even on authentication-only routes; default on for multi-tenant discovery issuers.
 */
t.test('requirePermissions', async t => {
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
})

/**
 * ID tokens presented as access tokens: `auth_token_claim_missing`, with a detail that names the
 * missing client claim (`azp` or `appid`) and says it looks like an ID token.
 */
t.test('ID tokens', async t => {
  const API = '8c7b6a59-0000-4000-8000-0000000000a1'

  t.test('test kit: v2.0 and v1.0 ID tokens', async t => {
    const entra = new FakeEntra()
    const app = Fastify({ logger: false })
    await app.register(entraAuth, { clientId: API, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(async () => { await app.close(); await entra.close() })
    const call = async (token: string): Promise<{ type: string, detail: string }> => (await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })).json()

    // ID tokens: audience the client itself, no client claim, no scp or roles, a nonce.
    const v2 = await call(entra.token(API, { aud: API, azp: false, scp: false, roles: false, additionalClaims: { nonce: 'n-0S6_WzA2Mj' } }))
    t.equal(v2.type, 'auth_token_claim_missing')
    t.match(v2.detail, /'azp'/)
    t.match(v2.detail, /looks like an ID token/)
    const v1 = await call(entra.client(API, 'v1').generate({ aud: API, scp: false, roles: false, appid: false, additionalClaims: { nonce: 'n-0S6_WzA2Mj' } }))
    t.equal(v1.type, 'auth_token_claim_missing')
    t.match(v1.detail, /'appid'/)
    t.match(v1.detail, /looks like an ID token/)

    // An access token that merely lacks its client claim is not called an ID token.
    const access = await call(entra.token(API, { azp: false, scp: 'access_as_user' }))
    t.equal(access.type, 'auth_token_claim_missing')
    t.match(access.detail, /'azp'/)
    t.notMatch(access.detail, /ID token/)
  })

  t.test('passport-azure-ad\'s real v1.0 ID token, through the tenant\'s v1.0 metadata document', async t => {
    const tenant = '268da1a1-9db4-48b9-b1fe-683250ba90cc'
    const oidcEndpoint = `https://login.microsoftonline.com/${tenant}/.well-known/openid-configuration`
    const key = jwkFromPem(readFixture('entra', '05-v1-delegated-access-token.passport-azure-ad.key.pem'), 'YbRAQRYcE_motWVJKHrwLBbd_9s')
    const metadata = serveMetadata(oidcEndpoint, `https://sts.windows.net/${tenant}/`, [key])
    const app = Fastify({ logger: false })
    await app.register(entraAuth, { clientId: '2abf3a52-7d86-460b-a1ef-77dc43de8aad', oidcEndpoint, dispatcher: metadata.dispatcher, now: () => 1471313477 * 1000, rejectionLogLevel: 'silent' })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(async () => { await app.close(); await metadata.close() })
    const call = (token: string): Promise<LightMyRequestResponse> => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })

    const res = await call(readFixture('peers', 'passport-v1-id-token.jwt'))
    t.equal(res.statusCode, 401)
    t.match(res.json(), { type: 'auth_token_claim_missing', detail: /'appid'.*looks like an ID token/ })
    // passport-azure-ad's twin alters only the padding bits of the last character: not canonical.
    t.equal((await call(readFixture('peers', 'passport-v1-id-token.bad-signature.jwt'))).json().type, 'auth_token_invalid')
  })
})

/**
 * The verified-token cache: a token seen before is not verified again, but time, key presence and
 * route requirements are still judged on every request, and the cache stays bounded.
 *
 * A cache hit is observed by identity: a full verification builds a new `EntraToken`, a hit hands
 * back the instance built the first time.
 */
t.test('verified-token cache', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

  const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

  /** One fake Entra for the file (key generation is slow); each fixture resets it. */
  const entra = new FakeEntra()
  const baseKey = entra.keys[0] as MockJwk
  t.teardown(() => entra.close())

  interface Reply { status: number, type: string | undefined, token: EntraToken | null }

  interface Fixture {
    app: FastifyInstance
    client: MockJwtClient
    /** The pinned clock (ms) every token time check uses; tokens are minted against it too. */
    clock: { now: number }
    get: (url: string, token: string) => Promise<Reply>
    size: () => number
  }

  async function fixture (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
    entra.mode = 'ok'
    entra.jwksDocument = undefined
    entra.discoveryDocument = undefined
    entra.keys = [baseKey]
    const clock = { now: Date.now() }
    const app = Fastify({ logger: false })
    // One clock for token times and the key store (internal option): tests move it instead of sleeping.
    await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), now: () => clock.now, ...options, [kKeyStoreClock]: () => clock.now } as unknown as EntraAuthOptions)
    /** `request.entraToken` when each response was sent, by the test's `x-probe` header. */
    const seen = new Map<string, EntraToken | null>()
    let probes = 0
    app.addHook('onResponse', async (request) => { seen.set(request.headers['x-probe'] as string, request.entraToken) })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    app.get('/read', { onRequest: app.entraAuth(['access_as_user']) }, async () => ({ ok: true }))
    app.get('/admin', { onRequest: app.entraAuth(['Admin.All']) }, async () => ({ ok: true }))
    t.teardown(() => app.close())
    const client = entra.client(API_ID)
    client.claims.now = () => clock.now
    return {
      app,
      client,
      clock,
      async get (url, token) {
        const probe = String(++probes)
        const res = await app.inject({ url, headers: { authorization: `Bearer ${token}`, 'x-probe': probe } })
        const type = res.statusCode === 200 ? undefined : (res.json() as { type: string }).type
        for (let i = 0; i < 100 && !seen.has(probe); i++) await sleep(1)
        t.ok(seen.has(probe), 'request recorded')
        return { status: res.statusCode, type, token: seen.get(probe) ?? null }
      },
      size: () => app.entraAuth.state().tokenCache.size
    }
  }

  t.test('a token seen before is not verified again', async t => {
    const fx = await fixture(t)
    const token = fx.client.generate()
    t.equal(fx.size(), 0)
    const first = await fx.get('/me', token)
    t.equal(first.status, 200)
    t.ok(first.token !== null)
    t.equal(fx.size(), 1, 'cached after the first success')
    const second = await fx.get('/me', token)
    t.equal(second.status, 200)
    t.equal(second.token, first.token, 'the cached EntraToken is handed back: no second verification')
    t.equal(fx.size(), 1)
    t.equal(await fx.app.entraAuth.verify(token), first.token, 'app.entraAuth.verify shares the cache')

    const other = await fx.get('/me', fx.client.generate({ additionalClaims: { n: 2 } }))
    t.equal(other.status, 200)
    t.not(other.token, first.token, 'another token is verified on its own')
    t.equal(fx.size(), 2)

    t.equal(fx.app.entraAuth.state().tokenCache.max, 4096, 'bounded by default')
  })

  t.test('the cache key is the exact token string', async t => {
    const fx = await fixture(t)
    const token = fx.client.generate()
    t.equal((await fx.get('/me', token)).status, 200)
    const [h, p, s] = token.split('.') as [string, string, string]
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11)
    t.equal((await fx.get('/me', `${h}.${p}.${flipped}`)).type, 'auth_token_signature_untrusted', 'another signature')
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
    const forged = Buffer.from(JSON.stringify({ ...payload, scp: 'Admin.All' })).toString('base64url')
    t.equal((await fx.get('/admin', `${h}.${forged}.${s}`)).type, 'auth_token_signature_untrusted', 'another payload with the cached signature')
    t.equal((await fx.get('/me', `${token}.`)).type, 'auth_token_invalid', 'a suffix')
    t.equal(fx.size(), 1, 'failures are not cached')
    t.equal((await fx.get('/me', fx.client.generate({ exp: Math.floor(fx.clock.now / 1000) - 1 }))).type, 'auth_token_expired')
    t.equal(fx.size(), 1, 'expired tokens are not cached')
  })

  t.test('exp is enforced on a cache hit', async t => {
    const fx = await fixture(t)
    const exp = Math.floor(fx.clock.now / 1000) + 60
    const token = fx.client.generate({ exp })
    const first = await fx.get('/me', token)
    t.equal(first.status, 200)
    fx.clock.now = exp * 1000 - 1
    const hit = await fx.get('/me', token)
    t.equal(hit.status, 200, 'a millisecond before exp')
    t.equal(hit.token, first.token, 'served from the cache')
    fx.clock.now = exp * 1000
    const expired = await fx.get('/me', token)
    t.same({ status: expired.status, type: expired.type }, { status: 401, type: 'auth_token_expired' }, 'at exp')
    t.equal(expired.token, null)
    t.equal(fx.size(), 0, 'the expired entry is dropped')
    t.equal((await fx.app.entraAuth.introspect(token)).active, false, 'introspection agrees')
  })

  t.test('exp on a cache hit honours clockTolerance', async t => {
    const fx = await fixture(t, { clockTolerance: 5000 })
    const exp = Math.floor(fx.clock.now / 1000) + 60
    const token = fx.client.generate({ exp })
    const first = await fx.get('/me', token)
    fx.clock.now = exp * 1000 + 4000
    const hit = await fx.get('/me', token)
    t.equal(hit.status, 200, 'within the tolerance')
    t.equal(hit.token, first.token)
    fx.clock.now = exp * 1000 + 5000
    t.equal((await fx.get('/me', token)).type, 'auth_token_expired', 'past the tolerance')
  })

  t.test('nbf is enforced on a cache hit', async t => {
    const fx = await fixture(t)
    const start = fx.clock.now
    const nbf = Math.floor(start / 1000)
    const token = fx.client.generate({ nbf })
    const first = await fx.get('/me', token)
    t.equal(first.status, 200)
    // The clock steps back (NTP correction): the cached token is not yet valid again.
    fx.clock.now = nbf * 1000 - 1
    const early = await fx.get('/me', token)
    t.same({ status: early.status, type: early.type }, { status: 401, type: 'auth_token_immature' })
    t.equal(fx.size(), 0, 'dropped')
    fx.clock.now = start
    const again = await fx.get('/me', token)
    t.equal(again.status, 200)
    t.not(again.token, first.token, 'verified afresh')

    // A token refused as immature is not cached, and is accepted once its time has come.
    const later = fx.client.generate({ nbf: nbf + 30, additionalClaims: { n: 2 } })
    t.equal((await fx.get('/me', later)).type, 'auth_token_immature')
    t.equal(fx.size(), 1)
    fx.clock.now = (nbf + 30) * 1000
    t.equal((await fx.get('/me', later)).status, 200)
  })

  t.test('route requirements run on cached tokens', async t => {
    const fx = await fixture(t)
    const token = fx.client.generate()
    const read = await fx.get('/read', token)
    t.equal(read.status, 200)
    const admin = await fx.get('/admin', token)
    t.same({ status: admin.status, type: admin.type, token: admin.token }, { status: 403, type: 'auth_token_insufficient_scopes', token: null }, 'same token, route needing another scope')
    t.equal(fx.size(), 1, 'it was a cache hit')
    const readAgain = await fx.get('/read', token)
    t.equal(readAgain.status, 200)
    t.equal(readAgain.token, read.token)

    // The other way round: a 403 still caches the (valid) token, and the scope check runs on the hit.
    const other = fx.client.generate({ additionalClaims: { n: 2 } })
    t.equal((await fx.get('/admin', other)).type, 'auth_token_insufficient_scopes')
    t.equal(fx.size(), 2)
    t.equal((await fx.get('/admin', other)).type, 'auth_token_insufficient_scopes', 'the hit is still refused')
    t.equal((await fx.get('/read', other)).status, 200)
    t.equal((await fx.get('/me', other)).status, 200)
  })

  t.test('a cached entry is dropped when its key leaves the set', async t => {
    const fx = await fixture(t, { jwks: { ttl: 200, cooldown: 60_000 } })
    const newKey = entra.newKey()
    const token = fx.client.generate()
    const first = await fx.get('/me', token)
    t.equal(first.status, 200)
    t.equal(fx.size(), 1)
    entra.keys = [newKey]
    fx.clock.now += 250
    // Past ttl: the hit itself starts a background refresh; wait until the set was replaced.
    await fx.get('/me', token)
    for (let i = 0; i < 500 && fx.app.entraAuth.state().keys.kids.includes(baseKey.kid); i++) await sleep(10)
    t.same(fx.app.entraAuth.state().keys.kids, [newKey.kid], 'the key set was refreshed')
    const after = await fx.get('/me', token)
    t.same({ status: after.status, type: after.type }, { status: 401, type: 'auth_token_key_error' })
    t.equal(fx.size(), 0, 'the entry is gone')
  })

  t.test('memory is bounded', async t => {
    const fx = await fixture(t, { tokenCache: { max: 10 } })
    const tokens = Array.from({ length: 50 }, (_, i) => fx.client.generate({ additionalClaims: { n: i } }))
    const statuses = []
    for (const token of tokens) statuses.push((await fx.get('/me', token)).status)
    t.same([...new Set(statuses)], [200])
    t.equal(fx.app.entraAuth.state().tokenCache.max, 10)
    t.ok(fx.size() <= 10, `size ${fx.size()}`)
    t.ok(fx.size() > 0, 'still caching')
    const last = tokens.at(-1) as string
    t.equal((await fx.get('/me', last)).token, await fx.app.entraAuth.verify(last), 'recent tokens are cached')
    t.equal((await fx.get('/me', tokens[0] as string)).status, 200, 'an evicted token is verified again')
    t.ok(fx.size() <= 10)
  })

  t.test('tokenCache.max 0 disables the cache', async t => {
    const fx = await fixture(t, { tokenCache: { max: 0 } })
    const token = fx.client.generate()
    const first = await fx.get('/me', token)
    const second = await fx.get('/me', token)
    t.equal(first.status, 200)
    t.equal(second.status, 200)
    t.not(second.token, first.token, 'verified every time')
    t.same(fx.app.entraAuth.state().tokenCache, { size: 0, max: 0, bytes: 0 })
  })

  t.test('bad tokenCache options fail at register time', async t => {
    for (const tokenCache of [{ max: -1 }, { max: 1.5 }, { max: '10' }, { size: 10 }]) {
      const app = Fastify({ logger: false })
      t.teardown(() => app.close())
      await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), tokenCache } as unknown as EntraAuthOptions) }, TypeError, JSON.stringify(tokenCache))
    }
  })
})

/**
 * The token cache itself (src/core/token-cache.ts): a first verification waits on probation, a
 * second sight (or a second verification) moves it to the main segment, evicted CLOCK-style.
 */
t.test('token cache segments', async t => {
  const key = {} as SigningKey
  const token = {} as EntraToken
  const HOUR = 3_600_000
  // nbf and exp: the cache keeps them for the verifier to judge, and judges neither itself.
  const times = [0, Infinity] as const
  // Distinct endings: the cache hashes a token's last 24 characters.
  const raw = (n: number, tail = ''): string => `header.payload.${'s'.repeat(40)}${tail}${String(n).padStart(8, '0')}`
  const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

  t.test('probation, then the main segment on a second sight', async t => {
    const cache = new TokenCache({ max: 64, maxBytes: 1 << 25 })
    cache.set(raw(1), token, key, HOUR, ...times)
    t.equal(cache.size, 1, 'on probation')
    t.equal(cache.get(raw(1))?.token, token, 'a probation hit')
    t.equal(cache.size, 1, 'moved, not copied')
    t.ok(cache.bytes > 0, 'counted in the main segment')
    t.equal(cache.get(raw(1))?.token, token, 'a main hit')
    t.equal(cache.get(raw(2)), undefined)
    t.equal(cache.get(`x${raw(1)}`), undefined, 'the same ending is not the same token')
  })

  t.test('a second verification goes straight to the main segment (the doorkeeper)', async t => {
    const cache = new TokenCache({ max: 64, maxBytes: 1 << 25 })
    cache.set(raw(1), token, key, HOUR, ...times)
    const before = cache.bytes
    cache.set(raw(1), token, key, HOUR, ...times)
    t.ok(cache.bytes > before, 'in the main segment')
    t.equal(cache.size, 1, 'and no longer on probation')
  })

  t.test('never-seen tokens seldom pass the doorkeeper', async t => {
    // 20,000 first verifications: all but the doorkeeper's false positives stay out of the main
    // segment (probation holds 256 of them at most), and a second one of each is let in.
    const cache = new TokenCache({ max: 4096, maxBytes: 1 << 30 })
    for (let i = 0; i < 20_000; i++) cache.set(raw(i, 'n'), token, key, HOUR, ...times)
    const main = cache.size - 256
    t.ok(main < 20_000 * 0.02, `${main} let into the main segment`)
    cache.set(raw(19_999, 'n'), token, key, HOUR, ...times)
    t.ok(cache.get(raw(19_999, 'n')), 'a second verification is let in')
  })

  t.test('a newcomer takes its probation slot', async t => {
    // 8 entries: 2 probation slots, so of 3 first verifications at least one is displaced.
    const cache = new TokenCache({ max: 8, maxBytes: 1 << 25 })
    for (let i = 0; i < 3; i++) cache.set(raw(i), token, key, HOUR, ...times)
    t.ok(cache.size <= 2, `size ${cache.size}`)
    t.ok(cache.size >= 1)
  })

  t.test('stale entries are never served, in either segment', async t => {
    const cache = new TokenCache({ max: 64, maxBytes: 1 << 25 })
    cache.set(raw(1), token, key, 1, ...times)
    cache.set(raw(2), token, key, 1, ...times)
    cache.set(raw(2), token, key, 1, ...times)
    await sleep(5)
    t.equal(cache.get(raw(1)), undefined, 'on probation')
    t.equal(cache.get(raw(2)), undefined, 'in the main segment')
    t.equal(cache.size, 0, 'both dropped')
    t.equal(cache.bytes, 0)
    cache.set(raw(3), token, key, 0, ...times)
    t.equal(cache.size, 0, 'a token with no time left is not stored')
  })

  t.test('eviction spares entries read since they were inserted (CLOCK)', async t => {
    // 12 entries: 2 probation slots and 10 in the main segment.
    const cache = new TokenCache({ max: 12, maxBytes: 1 << 25 })
    const admit = (n: number): void => { cache.set(raw(n), token, key, HOUR, ...times); cache.set(raw(n), token, key, HOUR, ...times) }
    for (let i = 0; i < 10; i++) admit(i)
    for (let i = 0; i < 5; i++) t.ok(cache.get(raw(i)), `read ${i}`)
    for (let i = 10; i < 15; i++) admit(i)
    t.equal(cache.size, 10, 'bounded by the main segment')
    for (let i = 0; i < 5; i++) t.ok(cache.get(raw(i)), `${i}, read, was spared`)
    for (let i = 5; i < 10; i++) t.equal(cache.get(raw(i)), undefined, `${i}, never read, was evicted`)
    for (let i = 10; i < 15; i++) t.ok(cache.get(raw(i)), `${i} is in`)
  })

  t.test('bounded by bytes', async t => {
    const entry = raw(0).length * 4 + 1024
    const cache = new TokenCache({ max: 64, maxBytes: entry * 3 })
    for (let i = 0; i < 6; i++) { cache.set(raw(i), token, key, HOUR, ...times); cache.set(raw(i), token, key, HOUR, ...times) }
    t.equal(cache.bytes, entry * 3)
    const small = new TokenCache({ max: 64, maxBytes: entry - 1 })
    small.set(raw(1), token, key, HOUR, ...times)
    small.set(raw(1), token, key, HOUR, ...times)
    t.equal(small.size, 0, 'an entry larger than maxBytes is not kept')
  })

  t.test('delete, and a cache of size 0', async t => {
    const cache = new TokenCache({ max: 64, maxBytes: 1 << 25 })
    cache.set(raw(1), token, key, HOUR, ...times)
    cache.set(raw(2), token, key, HOUR, ...times)
    cache.set(raw(2), token, key, HOUR, ...times)
    cache.delete(raw(1))
    cache.delete(raw(2))
    cache.delete(raw(3))
    t.equal(cache.size, 0)
    t.equal(cache.bytes, 0)
    const off = new TokenCache({ max: 0, maxBytes: 1 << 25 })
    off.set(raw(1), token, key, HOUR, ...times)
    off.delete(raw(1))
    t.equal(off.get(raw(1)), undefined)
    t.equal(off.size, 0)
    const tiny = new TokenCache({ max: 2, maxBytes: 1 << 25 })
    tiny.set(raw(1), token, key, HOUR, ...times)
    t.equal(tiny.get(raw(1))?.token, token, 'no probation in a tiny cache: kept at once')
    t.equal(tiny.get(raw(9)), undefined)
  })
})
