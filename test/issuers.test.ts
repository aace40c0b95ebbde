/**
 * Issuers and tenants: clouds, B2C and External ID, single- and multi-tenant issuer rules,
 * `allowedTenants` as a predicate, Entra's v1.0 metadata documents and Azure AD B2C tokens. One
 * section per subject below, each with its own fixtures.
 */
import { createHash } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type EntraAuthOptions, CHANNELS, createEntraVerifier, EntraAuthError, EntraToken, type EntraTenantPredicate, type VerifyTraceContext } from '../src/index.js'
import { FakeEntra, type FakeEntraOptions, MOCK_ISSUER, MockClaims, MockJwk, MockJwtClient } from '../src/testing/index.js'
import { TENANT_REFUSAL_MEMORY_MS, TENANT_REFUSALS_MAX } from '../src/entra/tenants.js'
import { assertProblem, bearer, captureLogs, entraApp, RecordingDispatcher, type LogLine, type TokenView } from './helpers/index.js'
import { serveMetadata, type MetadataServer, jwkFromPem } from './helpers/metadata.js'
import { readFixture } from './helpers/fixtures.js'

/**
 * Entra breadth (issue 3): clouds, B2C and External ID discovery, `?appid=` key sets, single- and
 * multi-tenant issuer rules, the signing-key issuer rule, app-only vs delegated tokens, delegated
 * scopes vs app roles, and tokens an API must not accept (Graph, ID tokens).
 */
t.test('tenants and clouds', async t => {
  const CLIENT = 'c1e47000-0000-4000-8000-000000000001'
  const TENANT_A = '11111111-2222-4333-8444-555555555555'
  const TENANT_B = '66666666-7777-4888-9999-aaaaaaaaaaaa'
  const GRAPH = '00000003-0000-0000-c000-000000000000'

  interface Fixture {
    app: FastifyInstance
    entra: FakeEntra
    recorder: RecordingDispatcher
    call: (token: string, url?: string) => Promise<LightMyRequestResponse>
  }

  /**
   * A FakeEntra shaped by `entraOptions` and the plugin registered with `options`. Unless `options`
   * names `tenant`, the plugin gets the fake's `oidcEndpoint`. All fetches go through a recorder.
   */
  async function fixture (t: Test, entraOptions: FakeEntraOptions, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
    const entra = new FakeEntra(entraOptions)
    const recorder = new RecordingDispatcher(entra.dispatcher)
    const endpoint = options.tenant === undefined && options.oidcEndpoint === undefined ? { oidcEndpoint: entra.oidcEndpoint } : {}
    const app = await entraApp({ clientId: CLIENT, ...endpoint, dispatcher: recorder, ...options } as EntraAuthOptions)
    t.teardown(async () => {
      await app.close()
      await entra.close()
    })
    const call = (token: string, url = '/me'): Promise<LightMyRequestResponse> => app.inject({ url, headers: bearer(token) })
    return { app, entra, recorder, call }
  }

  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

  t.test('tenant + authorityHost derive the discovery URL', async t => {
    t.test('public cloud, tenant given as a domain', async t => {
      // Entra answers a domain's discovery with the tenant's GUID issuer.
      const { entra, recorder, call } = await fixture(t,
        { tenant: 'contoso.onmicrosoft.com', tenantId: TENANT_A, issuer: `https://login.microsoftonline.com/${TENANT_A}/v2.0` },
        { tenant: 'contoso.onmicrosoft.com' })
      const res = await call(entra.token(CLIENT))
      t.equal(res.statusCode, 200)
      t.equal(recorder.urls[0], 'https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration')
      t.equal(recorder.urls[1], entra.jwksUri)
    })

    t.test('US Government (login.microsoftonline.us)', async t => {
      const { entra, recorder, call } = await fixture(t,
        { tenant: TENANT_A, origin: 'https://login.microsoftonline.us' },
        { tenant: TENANT_A, authorityHost: 'login.microsoftonline.us' })
      const token = entra.token(CLIENT)
      t.equal((await call(token)).statusCode, 200)
      t.equal(recorder.urls[0], `https://login.microsoftonline.us/${TENANT_A}/v2.0/.well-known/openid-configuration`)
      // A public-cloud issuer for the same tenant is another authority.
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_A}/v2.0` })), 'auth_token_issuer_untrusted')
    })

    t.test('authorityHost may be written as a URL', async t => {
      const { entra, recorder, call } = await fixture(t,
        { tenant: TENANT_A, origin: 'https://login.microsoftonline.us' },
        { tenant: TENANT_A, authorityHost: 'https://login.microsoftonline.us/' })
      t.equal((await call(entra.token(CLIENT))).statusCode, 200)
      t.equal(recorder.urls[0], `https://login.microsoftonline.us/${TENANT_A}/v2.0/.well-known/openid-configuration`)
    })

    t.test('China (login.chinacloudapi.cn), discovery issuer as Entra publishes it', async t => {
      // China's v2.0 metadata names login.partner.microsoftonline.cn as issuer; v1.0 tokens come from sts.chinacloudapi.cn.
      for (const tenant of [TENANT_A, 'organizations']) {
        const issuer = `https://login.partner.microsoftonline.cn/${tenant === 'organizations' ? '{tenantid}' : TENANT_A}/v2.0`
        const { entra, recorder, call } = await fixture(t,
          { tenant, tenantId: TENANT_A, origin: 'https://login.chinacloudapi.cn', issuer },
          { tenant, authorityHost: 'login.chinacloudapi.cn' })
        const v2 = await call(entra.token(CLIENT, { iss: `https://login.partner.microsoftonline.cn/${TENANT_A}/v2.0` }))
        t.equal(v2.statusCode, 200, `v2.0 token, ${tenant}`)
        t.equal(recorder.urls[0], `https://login.chinacloudapi.cn/${tenant}/v2.0/.well-known/openid-configuration`)
        const v1 = await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.chinacloudapi.cn/${TENANT_A}/` }))
        t.equal(v1.statusCode, 200, `v1.0 token, ${tenant}`)
        // The public cloud's v1.0 issuer for the same tenant is not China's.
        assertProblem(t, await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${TENANT_A}/` })), 'auth_token_issuer_untrusted')
      }
    })

    t.test('Azure AD B2C (b2clogin.com, user-flow path, issuer with a trailing slash)', async t => {
      const issuer = `https://contoso.b2clogin.com/${TENANT_A}/v2.0/`
      const { entra, recorder, call } = await fixture(t,
        { tenant: 'contoso.onmicrosoft.com/B2C_1_signupsignin1', tenantId: TENANT_A, origin: 'https://contoso.b2clogin.com', issuer, keyIssuer: null },
        { tenant: 'contoso.onmicrosoft.com/B2C_1_signupsignin1', authorityHost: 'contoso.b2clogin.com' })
      // B2C tokens carry no `tid`; the issuer is compared exactly as published.
      const res = await call(entra.token(CLIENT, { iss: issuer, tid: false, tfp: 'B2C_1_signupsignin1' }))
      t.equal(res.statusCode, 200)
      t.equal(recorder.urls[0], 'https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_signupsignin1/v2.0/.well-known/openid-configuration')
      t.equal(recorder.urls[1], 'https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_signupsignin1/discovery/v2.0/keys')
      assertProblem(t, await call(entra.token(CLIENT, { iss: issuer.slice(0, -1), tid: false })), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://contoso.b2clogin.com/tfp/${TENANT_A}/b2c_1_signupsignin1/v2.0/`, tid: false })), 'auth_token_issuer_untrusted')
    })

    t.test('Azure AD B2C access tokens as B2C issues them: ver "1.0" with azp, no appid, v2.0 issuer', async t => {
      const issuer = `https://contoso.b2clogin.com/${TENANT_A}/v2.0/`
      const { entra, call } = await fixture(t,
        { tenant: 'contoso.onmicrosoft.com/B2C_1_signupsignin1', tenantId: TENANT_A, origin: 'https://contoso.b2clogin.com', issuer, keyIssuer: null },
        { tenant: 'contoso.onmicrosoft.com/B2C_1_signupsignin1', authorityHost: 'contoso.b2clogin.com' })
      const res = await call(entra.token(CLIENT, { iss: issuer, ver: '1.0', tid: false, tfp: 'B2C_1_signupsignin1', scp: 'demo.read' }))
      t.equal(res.statusCode, 200)
    })

    t.test('Microsoft Entra External ID (ciamlogin.com, issuer on the tenant-ID host)', async t => {
      const issuer = `https://${TENANT_A}.ciamlogin.com/${TENANT_A}/v2.0`
      const { entra, recorder, call } = await fixture(t,
        { tenant: TENANT_A, origin: 'https://contoso.ciamlogin.com', issuer },
        { tenant: TENANT_A, authorityHost: 'contoso.ciamlogin.com' })
      const res = await call(entra.token(CLIENT, { iss: issuer }))
      t.equal(res.statusCode, 200)
      t.equal((res.json() as TokenView).tenantId, TENANT_A)
      t.equal(recorder.urls[0], `https://contoso.ciamlogin.com/${TENANT_A}/v2.0/.well-known/openid-configuration`)
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://contoso.ciamlogin.com/${TENANT_A}/v2.0` })), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_A}/v2.0` })), 'auth_token_issuer_untrusted')
    })
  })

  t.test('a discovery URL with ?appid= (claims-mapping apps get app-specific keys) works end to end', async t => {
    const entra = new FakeEntra({ tenant: TENANT_A })
    const discoveryUrl = `${entra.oidcEndpoint}?appid=${CLIENT}`
    const jwksUri = `${entra.jwksUri}?appid=${CLIENT}`
    entra.discoveryDocument = { issuer: entra.issuer, jwks_uri: jwksUri, authorization_endpoint: `https://login.microsoftonline.com/${TENANT_A}/oauth2/v2.0/authorize` }
    const recorder = new RecordingDispatcher(entra.dispatcher)
    const app = await entraApp({ clientId: CLIENT, oidcEndpoint: discoveryUrl, dispatcher: recorder })
    t.teardown(async () => { await app.close(); await entra.close() })
    const res = await app.inject({ url: '/me', headers: bearer(entra.token(CLIENT)) })
    t.equal(res.statusCode, 200)
    t.same(recorder.urls, [discoveryUrl, jwksUri], 'the query is kept on discovery, and the published app-specific jwks_uri is used')
  })

  t.test('multi-tenant: {tenantid} is bound to the token\'s tid', async t => {
    const multi = (t: Test, options: Partial<EntraAuthOptions> = {}, entraOptions: FakeEntraOptions = {}): Promise<Fixture> =>
      fixture(t, { tenant: 'organizations', tenantId: TENANT_A, ...entraOptions }, options)

    t.test('v2.0 and v1.0 tokens of any tenant', async t => {
      const { entra, call } = await multi(t)
      t.equal(entra.issuer, 'https://login.microsoftonline.com/{tenantid}/v2.0')
      for (const tid of [TENANT_A, TENANT_B]) {
        const v2 = await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${tid}/v2.0`, tid }))
        t.equal(v2.statusCode, 200)
        t.equal((v2.json() as TokenView).tenantId, tid)
        const v1 = await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${tid}/`, tid }))
        t.equal(v1.statusCode, 200)
        t.match(v1.json() as TokenView, { version: '1.0', tenantId: tid })
      }
    })

    t.test('the issuer\'s tenant must be the tid', async t => {
      const { entra, call } = await multi(t)
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_B}/v2.0`, tid: TENANT_A })), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${TENANT_B}/`, tid: TENANT_A })), 'auth_token_issuer_untrusted')
      // The versions' issuers are not interchangeable. A 1.0 token under the discovery (v2.0) issuer
      // is Azure AD B2C's shape, held to `azp`: an Entra v1 token (appid, no azp) relabelled so lacks it.
      const relabelled = assertProblem(t, await call(entra.client(CLIENT, 'v1').generate({ iss: `https://login.microsoftonline.com/${TENANT_A}/v2.0`, tid: TENANT_A })), 'auth_token_claim_missing')
      t.match(relabelled.detail, /'azp'/)
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://sts.windows.net/${TENANT_A}/`, tid: TENANT_A })), 'auth_token_issuer_untrusted')
    })

    t.test('a tid that is no GUID is never substituted', async t => {
      const { entra, call } = await multi(t)
      const cases: Array<[string, unknown]> = [
        ['https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0', 'contoso.onmicrosoft.com'],
        [`https://login.microsoftonline.com/${TENANT_B.toUpperCase()}/v2.0`, TENANT_B.toUpperCase()],
        ['https://login.microsoftonline.com/{tenantid}/v2.0', '{tenantid}'],
        ['https://login.microsoftonline.com/{tenantid}/v2.0', false],
        ['https://login.microsoftonline.com/common/v2.0', 'common'],
        [`https://login.microsoftonline.com/${TENANT_A}/v2.0`, [TENANT_A]],
        [`https://login.microsoftonline.com/${TENANT_A}x/v2.0`, `${TENANT_A}x`],
        ['https://login.microsoftonline.com/../v2.0', '..']
      ]
      for (const [iss, tid] of cases) {
        assertProblem(t, await call(entra.token(CLIENT, { iss, tid })), 'auth_token_issuer_untrusted')
      }
    })

    t.test('allowedTenants', async t => {
      const { entra, call } = await multi(t, { allowedTenants: [TENANT_A] })
      t.equal((await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_A}/v2.0`, tid: TENANT_A }))).statusCode, 200)
      const { detail } = assertProblem(t, await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_B}/v2.0`, tid: TENANT_B })), 'auth_token_issuer_untrusted')
      t.match(detail, /tenant/)
      assertProblem(t, await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${TENANT_B}/`, tid: TENANT_B })), 'auth_token_issuer_untrusted')
    })
  })

  t.test('single tenant', async t => {
    t.test('only the tenant\'s v2.0 and v1.0 issuers', async t => {
      const { entra, call } = await fixture(t, { tenant: TENANT_A })
      t.equal((await call(entra.token(CLIENT))).statusCode, 200)
      t.equal((await call(entra.client(CLIENT, 'v1').generate())).statusCode, 200)
      assertProblem(t, await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_B}/v2.0`, tid: TENANT_B })), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${TENANT_B}/`, tid: TENANT_B })), 'auth_token_issuer_untrusted')
      // No leniency: trailing slash, case.
      assertProblem(t, await call(entra.token(CLIENT, { iss: `${entra.issuer}/` })), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.token(CLIENT, { iss: entra.issuer.toUpperCase() })), 'auth_token_issuer_untrusted')
    })

    t.test('allowedTenants', async t => {
      const allowed = await fixture(t, { tenant: TENANT_A }, { allowedTenants: [TENANT_A] })
      t.equal((await allowed.call(allowed.entra.token(CLIENT))).statusCode, 200)
      const other = await fixture(t, { tenant: TENANT_A }, { allowedTenants: [TENANT_B] })
      assertProblem(t, await other.call(other.entra.token(CLIENT)), 'auth_token_issuer_untrusted')
    })
  })

  t.test('signing-key issuer: a key bound to one tenant never verifies another tenant\'s token', async t => {
    t.test('multi-tenant discovery, key bound to tenant A', async t => {
      const { entra, call } = await fixture(t, { tenant: 'organizations', tenantId: TENANT_A, keyIssuer: `https://login.microsoftonline.com/${TENANT_A}/v2.0` })
      t.equal((await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_A}/v2.0`, tid: TENANT_A }))).statusCode, 200)
      t.equal((await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${TENANT_A}/`, tid: TENANT_A }))).statusCode, 200)
      const { detail } = assertProblem(t, await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${TENANT_B}/v2.0`, tid: TENANT_B })), 'auth_token_issuer_untrusted')
      t.match(detail, /signing key/)
      assertProblem(t, await call(entra.client(CLIENT, 'v1').generate({ iss: `https://sts.windows.net/${TENANT_B}/`, tid: TENANT_B })), 'auth_token_issuer_untrusted')
    })

    t.test('single-tenant discovery, key bound to another tenant', async t => {
      const { entra, call } = await fixture(t, { tenant: TENANT_A, keyIssuer: `https://login.microsoftonline.com/${TENANT_B}/v2.0` })
      assertProblem(t, await call(entra.token(CLIENT)), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.client(CLIENT, 'v1').generate()), 'auth_token_issuer_untrusted')
    })

    t.test('a key with the template serves every tenant; one without issuer is not restricted', async t => {
      for (const keyIssuer of ['https://login.microsoftonline.com/{tenantid}/v2.0', null]) {
        const { entra, call } = await fixture(t, { tenant: 'organizations', tenantId: TENANT_A, keyIssuer })
        for (const tid of [TENANT_A, TENANT_B]) {
          t.equal((await call(entra.token(CLIENT, { iss: `https://login.microsoftonline.com/${tid}/v2.0`, tid }))).statusCode, 200)
        }
      }
    })

    t.test('one key per tenant in the same set: each signs only for its own tenant', async t => {
      const { entra, call } = await fixture(t, { tenant: 'organizations', tenantId: TENANT_A, keyIssuer: `https://login.microsoftonline.com/${TENANT_A}/v2.0` })
      const keyB = entra.newKey()
      keyB.issuer = `https://login.microsoftonline.com/${TENANT_B}/v2.0`
      entra.keys.push(keyB)
      const claimsOf = (tid: string): Record<string, unknown> => ({ iss: `https://login.microsoftonline.com/${tid}/v2.0`, tid })
      t.equal((await call(entra.client(CLIENT, 'v2', keyB).generate(claimsOf(TENANT_B)))).statusCode, 200)
      assertProblem(t, await call(entra.client(CLIENT, 'v2', keyB).generate(claimsOf(TENANT_A))), 'auth_token_issuer_untrusted')
      assertProblem(t, await call(entra.client(CLIENT, 'v2').generate(claimsOf(TENANT_B))), 'auth_token_issuer_untrusted')
    })
  })

  t.test('app-only and delegated tokens', async t => {
    const { entra, call } = await fixture(t, { tenant: TENANT_A })

    t.test('v2.0 delegated', async t => {
      const token = entra.client(CLIENT, 'v2').generate({ oid: 'aaaaaaaa-0000-4000-8000-000000000001' })
      const view = (await call(token)).json() as TokenView
      t.match(view, { version: '2.0', isAppOnly: false, tenantId: TENANT_A, objectId: 'aaaaaaaa-0000-4000-8000-000000000001', clientId: 'c0ffee00-0000-4000-8000-000000000002' })
    })

    t.test('v1.0 delegated: client from appid', async t => {
      const view = (await call(entra.client(CLIENT, 'v1').generate())).json() as TokenView
      t.match(view, { version: '1.0', isAppOnly: false, tenantId: TENANT_A, clientId: 'c0ffee00-0000-4000-8000-000000000002' })
    })

    t.test('v2.0 app-only (idtyp app)', async t => {
      const view = (await call(entra.client(CLIENT, 'app').generate())).json() as TokenView
      t.match(view, { version: '2.0', isAppOnly: true, tenantId: TENANT_A, clientId: 'c0ffee00-0000-4000-8000-000000000003', scopes: ['access_as_application'] })
      t.equal(view.objectId, view.sub, 'the service principal: oid == sub')
    })

    t.test('app-only without idtyp: no scp and oid == sub', async t => {
      const view = (await call(entra.client(CLIENT, 'app').generate({ idtyp: false }))).json() as TokenView
      t.equal(view.isAppOnly, true)
    })

    t.test('idtyp is authoritative', async t => {
      t.equal(((await call(entra.client(CLIENT, 'app').generate({ idtyp: 'user' }))).json() as TokenView).isAppOnly, false)
      t.equal(((await call(entra.client(CLIENT, 'v2').generate({ idtyp: 'app' }))).json() as TokenView).isAppOnly, true)
    })

    t.test('a token without scp whose oid differs from sub is not app-only', async t => {
      t.equal(((await call(entra.client(CLIENT, 'v2').generate({ scp: false }))).json() as TokenView).isAppOnly, false)
    })
  })

  t.test('{ scopes, roles }: delegated scopes and app roles are kept apart (Microsoft.Identity.Web\'s RequiredScopeOrAppPermission)', async t => {
    const { app, entra, call } = await fixture(t, { tenant: TENANT_A })
    app.get('/files', { onRequest: app.entraAuth({ scopes: ['Files.Read'], roles: ['Files.Read.All'] }) }, async () => 'ok')
    app.get('/mixed', { onRequest: app.entraAuth(['Files.Read', 'Files.Read.All']) }, async () => 'ok')
    const user = (scp: string, roles: string[] = []): string => entra.client(CLIENT, 'v2').generate({ scp, roles })
    const appOnly = (roles: string[]): string => entra.client(CLIENT, 'app').generate({ roles })

    t.test('a user token with the scope in scp passes', async t => {
      t.equal((await call(user('Files.Read'), '/files')).statusCode, 200)
      t.equal((await call(user('User.Read Files.Read'), '/files')).statusCode, 200)
    })

    t.test('an app token with the role passes', async t => {
      t.equal((await call(appOnly(['Files.Read.All']), '/files')).statusCode, 200)
    })

    t.test('an app role assigned to a user (roles in a delegated token) passes, as in Microsoft.Identity.Web', async t => {
      t.equal((await call(user('User.Read', ['Files.Read.All']), '/files')).statusCode, 200)
    })

    t.test('the role name in scp does not satisfy roles', async t => {
      const res = await call(user('Files.Read.All'), '/files')
      assertProblem(t, res, 'auth_token_insufficient_scopes', { status: 403 })
      t.equal(res.headers['www-authenticate'], `Bearer error="insufficient_scope", error_description="Insufficient scopes", scope="api://${CLIENT}/Files.Read"`, 'the first alternative, as clients request it')
    })

    t.test('the scope name in roles does not satisfy scopes', async t => {
      assertProblem(t, await call(appOnly(['Files.Read']), '/files'), 'auth_token_insufficient_scopes', { status: 403 })
      assertProblem(t, await call(user('User.Read', ['Files.Read']), '/files'), 'auth_token_insufficient_scopes', { status: 403 })
    })

    t.test('no case or substring leniency', async t => {
      assertProblem(t, await call(user('files.read'), '/files'), 'auth_token_insufficient_scopes', { status: 403 })
      assertProblem(t, await call(user('Files.ReadWrite'), '/files'), 'auth_token_insufficient_scopes', { status: 403 })
      assertProblem(t, await call(appOnly(['Files.Read.All.Extra']), '/files'), 'auth_token_insufficient_scopes', { status: 403 })
    })

    t.test('the array form pools scp and roles, so the crossed tokens pass there', async t => {
      t.equal((await call(user('Files.Read.All'), '/mixed')).statusCode, 200)
      t.equal((await call(appOnly(['Files.Read']), '/mixed')).statusCode, 200)
    })

    t.test('unknown requirement keys throw when the route is defined', async t => {
      t.throws(() => app.entraAuth({ scope: ['Files.Read'] } as never), TypeError)
    })
  })

  t.test('Microsoft Graph tokens are refused with a detail naming Graph', async t => {
    const { entra, call } = await fixture(t, { tenant: TENANT_A })

    t.test('aud is Graph (valid signature)', async t => {
      for (const aud of [GRAPH, 'https://graph.microsoft.com', 'https://graph.microsoft.com/', [GRAPH]]) {
        const { detail } = assertProblem(t, await call(entra.token(CLIENT, { aud })), 'auth_token_audience_invalid')
        t.match(detail, /Graph/)
      }
    })

    t.test('a nonce JOSE header (Graph signs a hash of it, so the signature never verifies)', async t => {
      const client = entra.client(CLIENT)
      const nonce = 'kM9Yj0u2fUAGf8hLgnmsJ1nSqTuYJTWiuMdDGBDDsKM'
      const claims = client.claims.build()
      for (const aud of [GRAPH, CLIENT]) {
        const signed = client.sign({ typ: 'JWT', nonce: createHash('sha256').update(nonce).digest('base64url'), alg: 'RS256', kid: client.key.kid }, { ...claims, aud })
        const [, payload, signature] = signed.split('.')
        const graphToken = `${encode({ typ: 'JWT', nonce, alg: 'RS256', kid: client.key.kid })}.${payload}.${signature}`
        const { detail } = assertProblem(t, await call(graphToken), 'auth_token_signature_untrusted')
        t.match(detail, /Graph/)
      }
    })

    t.test('another app\'s token is an audience failure without the Graph detail', async t => {
      const { detail } = assertProblem(t, await call(entra.token(CLIENT, { aud: 'api://another-app' })), 'auth_token_audience_invalid')
      t.notMatch(detail, /Graph/)
    })
  })

  t.test('ID tokens are refused with a detail saying so', async t => {
    const { entra, call } = await fixture(t, { tenant: TENANT_A })
    // v2.0 ID token: aud is the client, no scp, roles or azp.
    const v2 = entra.token(CLIENT, { scp: false, roles: false, azp: false, nonce: 'n-0S6_WzA2Mj', preferred_username: 'alice@contoso.com' })
    const v2Problem = assertProblem(t, await call(v2), 'auth_token_claim_missing')
    t.match(v2Problem.detail, /ID token/)
    // v1.0 ID token: sts issuer, no appid.
    const v1 = entra.client(CLIENT, 'v1').generate({ aud: CLIENT, scp: false, roles: false, appid: false, appidacr: false, upn: 'alice@contoso.com' })
    const v1Problem = assertProblem(t, await call(v1), 'auth_token_claim_missing')
    t.match(v1Problem.detail, /ID token/)
    // An access token merely missing its client claim is not called an ID token.
    const { detail } = assertProblem(t, await call(entra.token(CLIENT, { azp: false })), 'auth_token_claim_missing')
    t.notMatch(detail, /ID token/)
    t.match(detail, /'azp'/)
  })

  const CLIENT_ID = '5d9a4f0e-1111-4222-8333-444455556666'
  const OTHER_TENANT = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'

  // Regression: with a fixed (single-tenant) issuer nothing bound `tid`, so a token naming tenant A
  // in `iss` and tenant B in `tid` passed `allowedTenants: [B]`.
  t.test('a token whose tid differs from its issuer tenant is refused', async t => {
    const entra = new FakeEntra()
    const app = Fastify()
    await app.register(entraAuth, { clientId: CLIENT_ID, allowedTenants: [entra.tenantId, OTHER_TENANT], ...entra.pluginOptions() })
    app.get('/', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(() => app.close())

    const inject = (token: string) => app.inject({ url: '/', headers: { authorization: `Bearer ${token}` } })
    t.equal((await inject(entra.token(CLIENT_ID))).statusCode, 200, 'consistent token passes')
    for (const preset of ['v2', 'v1'] as const) {
      const mixed = entra.client(CLIENT_ID, preset).generate({ additionalClaims: { tid: OTHER_TENANT } })
      const res = await inject(mixed)
      t.equal(res.statusCode, 401, preset)
      t.equal(res.json().type, 'auth_token_issuer_untrusted', preset)
    }
    const numeric = await inject(entra.client(CLIENT_ID).generate({ additionalClaims: { tid: 42 } }))
    t.equal(numeric.json().type, 'auth_token_issuer_untrusted', 'non-string tid')
  })
})

/**
 * `allowedTenants` as a predicate `(tenantId, token) => boolean | Promise<boolean>`: asked once
 * per new token (its answer cached with the verified token); a throw or rejection never admits
 * and is 503 `auth_tenant_check_error`.
 */
t.test('tenant predicate', async t => {
  const API = '4e5f6a7b-0000-4000-8000-0000000000a1'
  const TENANT_A = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d'
  const TENANT_B = '6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d2c'

  interface Calls { tenants: string[], tokens: unknown[] }

  async function fixture (t: Test, predicate: EntraTenantPredicate, options: Partial<EntraAuthOptions> = {}): Promise<{ entra: FakeEntra, app: FastifyInstance, logs: LogLine[], call: (token: string) => Promise<LightMyRequestResponse>, token: (tid: string, overrides?: Record<string, unknown>) => string }> {
    const entra = new FakeEntra({ tenant: 'organizations', tenantId: TENANT_A })
    const capture = captureLogs('warn')
    const app = Fastify({ logger: capture.logger })
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
})

/**
 * Entra's v1.0 metadata documents (`…/{tenant}/.well-known/openid-configuration`, issuer
 * `https://sts.windows.net/{tid}/`): v1.0 tokens are held to that issuer, v2.0 tokens to the v2.0
 * issuer of the same tenant and cloud. Also the sovereign clouds' v1.0 issuers, and the start-up
 * warning for configurations that can't work.
 */
t.test('v1.0 metadata documents', async t => {
  const TENANT_A = '5e1c0d4a-7b2f-4c3e-9a8d-1f2e3d4c5b6a'
  const TENANT_B = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
  const API = '7d0c3a52-0000-4000-8000-0000000000a1'
  const CLIENT_APP = '7d0c3a52-0000-4000-8000-0000000000c1'

  interface View { version: string, clientId: string | undefined, tenantId: string | undefined }

  interface Fixture {
    metadata: MetadataServer
    app: FastifyInstance
    key: MockJwk
    logs: LogLine[]
    call: (token: string) => Promise<LightMyRequestResponse>
  }

  /** An app whose discovery document is `oidcEndpoint` with `issuer`, one key with `keyIssuer`. */
  async function fixture (t: Test, oidcEndpoint: string, issuer: string, keyIssuer: string | null, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
    const key = new MockJwk(keyIssuer === null ? {} : { issuer: keyIssuer })
    const metadata = serveMetadata(oidcEndpoint, issuer, [key.toJSON()])
    const capture = captureLogs('warn')
    const app = Fastify({ logger: capture.logger })
    await app.register(entraAuth, { clientId: API, oidcEndpoint, dispatcher: metadata.dispatcher, rejectionLogLevel: 'silent', ...options } as EntraAuthOptions)
    app.get('/me', { onRequest: app.entraAuth() }, async (request): Promise<View> => {
      const token = request.entraToken!
      return { version: token.version, clientId: token.clientId, tenantId: token.tenantId }
    })
    await app.ready()
    t.teardown(async () => { await app.close(); await metadata.close() })
    return { metadata, app, key, logs: capture.lines, call: token => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } }) }
  }

  /** An Entra-shaped token: v1.0 (appid, api:// audience) or v2.0 (azp), with a delegated scope. */
  function token (key: MockJwk, version: '1.0' | '2.0', iss: string, tid: string, overrides: Record<string, unknown> = {}): string {
    const client = new MockJwtClient({ key, claims: new MockClaims({ selfAppId: API }) })
    const shape = version === '1.0'
      ? { ver: '1.0', aud: `api://${API}`, azp: false, appid: CLIENT_APP }
      : { ver: '2.0', aud: API, azp: CLIENT_APP }
    return client.generate({ iss, tid, scp: 'access_as_user', roles: false, sub: 'user-1', ...shape, ...overrides })
  }

  function typeOf (res: LightMyRequestResponse): string {
    return (res.json() as { type?: string }).type ?? String(res.statusCode)
  }

  const v1Endpoint = (tenant: string, host = 'login.microsoftonline.com'): string => `https://${host}/${tenant}/.well-known/openid-configuration`

  t.test('single-tenant v1.0 metadata document: both token versions work', async t => {
    for (const keyIssuer of [`https://login.microsoftonline.com/${TENANT_A}/v2.0`, 'https://login.microsoftonline.com/{tenantid}/v2.0', null]) {
      t.test(`key issuer ${String(keyIssuer)}`, async t => {
        const { key, call, logs } = await fixture(t, v1Endpoint(TENANT_A), `https://sts.windows.net/${TENANT_A}/`, keyIssuer)
        const v1 = await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A))
        t.equal(v1.statusCode, 200, 'v1.0 token with the v1.0 issuer')
        t.same(v1.json(), { version: '1.0', clientId: CLIENT_APP, tenantId: TENANT_A })
        const v2 = await call(token(key, '2.0', `https://login.microsoftonline.com/${TENANT_A}/v2.0`, TENANT_A))
        t.equal(v2.statusCode, 200, 'v2.0 token with the v2.0 issuer of the same tenant')
        t.same(v2.json(), { version: '2.0', clientId: CLIENT_APP, tenantId: TENANT_A })
        t.same(logs.filter(line => line.level >= 40), [], 'nothing to warn about')
      })
    }
  })

  t.test('v1.0 metadata document: each version is held to its own issuer and client claim', async t => {
    const { key, call } = await fixture(t, v1Endpoint(TENANT_A), `https://sts.windows.net/${TENANT_A}/`, `https://login.microsoftonline.com/${TENANT_A}/v2.0`)
    const cases: Array<[string, string, string]> = [
      [token(key, '2.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A), 'auth_token_issuer_untrusted', 'v2.0 token with the v1.0 issuer'],
      [token(key, '1.0', `https://login.microsoftonline.com/${TENANT_A}/v2.0`, TENANT_A), 'auth_token_issuer_untrusted', 'v1.0 token with the v2.0 issuer'],
      [token(key, '1.0', `https://sts.windows.net/${TENANT_B}/`, TENANT_B), 'auth_token_issuer_untrusted', 'v1.0 token of another tenant'],
      [token(key, '2.0', `https://login.microsoftonline.com/${TENANT_B}/v2.0`, TENANT_B), 'auth_token_issuer_untrusted', 'v2.0 token of another tenant'],
      [token(key, '2.0', `https://login.microsoftonline.us/${TENANT_A}/v2.0`, TENANT_A), 'auth_token_issuer_untrusted', 'v2.0 token of another cloud'],
      [token(key, '1.0', `https://sts.windows.net/${TENANT_A}`, TENANT_A), 'auth_token_issuer_untrusted', 'v1.0 issuer without its trailing slash'],
      [token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_B), 'auth_token_issuer_untrusted', 'tid of another tenant than the issuer'],
      // Under the STS issuer, Entra's v1 shape holds: the B2C rule (azp) does not apply.
      [token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A, { appid: false, azp: CLIENT_APP }), 'auth_token_claim_missing', 'v1.0 token with azp instead of appid']
    ]
    for (const [raw, type, label] of cases) t.equal(typeOf(await call(raw)), type, label)
  })

  t.test('v1.0 metadata document: the signing key\'s issuer is compared in its v2.0 form', async t => {
    const { key, call } = await fixture(t, v1Endpoint(TENANT_A), `https://sts.windows.net/${TENANT_A}/`, `https://login.microsoftonline.com/${TENANT_B}/v2.0`)
    t.equal(typeOf(await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A))), 'auth_token_issuer_untrusted')
    t.equal(typeOf(await call(token(key, '2.0', `https://login.microsoftonline.com/${TENANT_A}/v2.0`, TENANT_A))), 'auth_token_issuer_untrusted')
  })

  t.test('multi-tenant v1.0 metadata document (common, {tenantid} STS issuer)', async t => {
    const { key, call } = await fixture(t, v1Endpoint('common'), 'https://sts.windows.net/{tenantid}/', 'https://login.microsoftonline.com/{tenantid}/v2.0')
    for (const tid of [TENANT_A, TENANT_B]) {
      const v1 = await call(token(key, '1.0', `https://sts.windows.net/${tid}/`, tid))
      t.equal(v1.statusCode, 200, `v1.0 token of ${tid}`)
      t.same(v1.json(), { version: '1.0', clientId: CLIENT_APP, tenantId: tid })
      const v2 = await call(token(key, '2.0', `https://login.microsoftonline.com/${tid}/v2.0`, tid))
      t.equal(v2.statusCode, 200, `v2.0 token of ${tid}`)
    }
    t.equal(typeOf(await call(token(key, '1.0', `https://sts.windows.net/${TENANT_B}/`, TENANT_A))), 'auth_token_issuer_untrusted', 'tid bound into the issuer')
    t.equal(typeOf(await call(token(key, '2.0', `https://login.microsoftonline.com/${TENANT_B}/v2.0`, TENANT_A))), 'auth_token_issuer_untrusted', 'tid bound into the v2.0 issuer')
    t.equal(typeOf(await call(token(key, '1.0', 'https://sts.windows.net/contoso.onmicrosoft.com/', 'contoso.onmicrosoft.com'))), 'auth_token_issuer_untrusted', 'a tid that is no GUID')
    // A multi-tenant issuer turns requirePermissions on by default.
    t.equal(typeOf(await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A, { scp: false }))), 'auth_token_insufficient_scopes')
  })

  t.test('sovereign clouds', async t => {
    t.test('China v1.0 document: v2.0 tokens carry login.partner.microsoftonline.cn', async t => {
      const { key, call } = await fixture(t, v1Endpoint(TENANT_A, 'login.chinacloudapi.cn'), `https://sts.chinacloudapi.cn/${TENANT_A}/`, null)
      t.equal((await call(token(key, '1.0', `https://sts.chinacloudapi.cn/${TENANT_A}/`, TENANT_A))).statusCode, 200)
      t.equal((await call(token(key, '2.0', `https://login.partner.microsoftonline.cn/${TENANT_A}/v2.0`, TENANT_A))).statusCode, 200)
      t.equal(typeOf(await call(token(key, '2.0', `https://login.microsoftonline.com/${TENANT_A}/v2.0`, TENANT_A))), 'auth_token_issuer_untrusted')
    })

    t.test('US Government v1.0 document with the sts.windows.net issuer: v2.0 tokens carry login.microsoftonline.us', async t => {
      const { key, call } = await fixture(t, v1Endpoint(TENANT_A, 'login.microsoftonline.us'), `https://sts.windows.net/${TENANT_A}/`, null)
      t.equal((await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A))).statusCode, 200)
      t.equal((await call(token(key, '2.0', `https://login.microsoftonline.us/${TENANT_A}/v2.0`, TENANT_A))).statusCode, 200)
      t.equal(typeOf(await call(token(key, '2.0', `https://login.microsoftonline.com/${TENANT_A}/v2.0`, TENANT_A))), 'auth_token_issuer_untrusted')
    })

    t.test('US Government v2.0 document: both published forms of the v1.0 issuer', async t => {
      const { key, call } = await fixture(t, `https://login.microsoftonline.us/${TENANT_A}/v2.0/.well-known/openid-configuration`, `https://login.microsoftonline.us/${TENANT_A}/v2.0`, null)
      t.equal((await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A))).statusCode, 200, 'sts.windows.net (Microsoft Q&A)')
      t.equal((await call(token(key, '1.0', `https://login.microsoftonline.us/${TENANT_A}/`, TENANT_A))).statusCode, 200, 'login.microsoftonline.us (Bot Framework SDK)')
      t.equal(typeOf(await call(token(key, '1.0', `https://sts.chinacloudapi.cn/${TENANT_A}/`, TENANT_A))), 'auth_token_issuer_untrusted')
    })

    t.test('public v2.0 document: only sts.windows.net', async t => {
      const { key, call } = await fixture(t, `https://login.microsoftonline.com/${TENANT_A}/v2.0/.well-known/openid-configuration`, `https://login.microsoftonline.com/${TENANT_A}/v2.0`, null)
      t.equal((await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A))).statusCode, 200)
      t.equal(typeOf(await call(token(key, '1.0', `https://login.microsoftonline.us/${TENANT_A}/`, TENANT_A))), 'auth_token_issuer_untrusted')
    })
  })

  t.test('a configuration that can\'t validate Entra v1.0 tokens is logged once at start-up', async t => {
    const warnings = (logs: Fixture['logs']): string[] => logs.filter(line => line.level === 40 && /tokenVersions/.test(line.msg)).map(line => line.msg)

    t.test('non-Entra issuer with tokenVersions including 1.0', async t => {
      const { key, call, logs } = await fixture(t, 'https://idp.example.com/.well-known/openid-configuration', 'https://idp.example.com/', null)
      t.equal(warnings(logs).length, 1, 'one warning when discovery loaded at start-up')
      t.match(warnings(logs)[0], /https:\/\/idp\.example\.com\//)
      // Its v1.0 tokens with an STS issuer are refused; more requests don't repeat the warning.
      t.equal(typeOf(await call(token(key, '1.0', `https://sts.windows.net/${TENANT_A}/`, TENANT_A))), 'auth_token_issuer_untrusted')
      t.equal((await call(token(key, '2.0', 'https://idp.example.com/', TENANT_A))).statusCode, 200)
      t.equal(warnings(logs).length, 1)
    })

    t.test('no warning for a workable configuration', async t => {
      const quiet: Array<[string, string, Partial<EntraAuthOptions>]> = [
        ['https://idp.example.com/.well-known/openid-configuration', 'https://idp.example.com/', { tokenVersions: ['2.0'] }],
        [`https://login.microsoftonline.com/${TENANT_A}/v2.0/.well-known/openid-configuration`, `https://login.microsoftonline.com/${TENANT_A}/v2.0`, {}],
        ['https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration', 'https://login.microsoftonline.com/{tenantid}/v2.0', {}],
        [v1Endpoint(TENANT_A), `https://sts.windows.net/${TENANT_A}/`, {}],
        ['https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_signin/v2.0/.well-known/openid-configuration', `https://contoso.b2clogin.com/${TENANT_A}/v2.0/`, {}]
      ]
      for (const [endpoint, issuer, options] of quiet) {
        const { logs } = await fixture(t, endpoint, issuer, null, options)
        t.same(warnings(logs), [], issuer)
      }
    })

    t.test('when discovery first loads after start-up, on the first request', async t => {
      const entra = new FakeEntra({ issuer: MOCK_ISSUER, keyIssuer: null })
      entra.mode = 'discovery-404'
      const capture = captureLogs('warn')
      const app = Fastify({ logger: capture.logger })
      await app.register(entraAuth, { clientId: API, ...entra.pluginOptions(), rejectionLogLevel: 'silent', jwks: { cooldown: 0 } })
      app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
      t.teardown(async () => { await app.close(); await entra.close() })
      await app.ready()
      t.same(warnings(capture.lines), [], 'nothing known yet')
      entra.mode = 'ok'
      const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${entra.client(API).generate({ iss: MOCK_ISSUER })}` } })
      t.equal(res.statusCode, 200)
      t.equal(warnings(capture.lines).length, 1)
    })
  })
})

/**
 * Azure AD B2C's version 1.0 access tokens: client in `azp`, `iss` the B2C discovery issuer. Tested
 * with passport-azure-ad's real B2C token and key (test/fixtures/peers/README.md) and with tokens
 * minted by the test kit.
 */
t.test('Azure AD B2C', async t => {
  const TENANT = '0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5'
  const API = 'b2c0a9e1-0000-4000-8000-0000000000a1'
  const WEB_APP = 'b2c0a9e1-0000-4000-8000-0000000000c1'
  const OTHER_APP = 'b2c0a9e1-0000-4000-8000-0000000000c2'
  const B2C_ISSUER = `https://contoso.b2clogin.com/${TENANT}/v2.0/`

  interface ClientView { version: string, clientId: string | undefined, scopes: string[] }

  async function b2cApp (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<{ entra: FakeEntra, app: FastifyInstance, call: (token: string) => Promise<LightMyRequestResponse> }> {
    const entra = new FakeEntra({ tenant: 'contoso.onmicrosoft.com/B2C_1_signupsignin1', tenantId: TENANT, origin: 'https://contoso.b2clogin.com', issuer: B2C_ISSUER, keyIssuer: null })
    const app = Fastify({ logger: false })
    await app.register(entraAuth, { clientId: API, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
    app.get('/me', { onRequest: app.entraAuth() }, async (request): Promise<ClientView> => {
      const token = request.entraToken!
      return { version: token.version, clientId: token.clientId, scopes: token.scopes }
    })
    app.get('/read', { onRequest: app.entraAuth(['demo.read']) }, async () => ({ ok: true }))
    t.teardown(async () => { await app.close(); await entra.close() })
    return { entra, app, call: token => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } }) }
  }

  /** A token as B2C issues it: ver 1.0, client in azp, no appid, B2C's issuer; `tid` as B2C sends it. */
  function b2cToken (entra: FakeEntra, overrides: Record<string, unknown> = {}): string {
    return entra.token(API, { iss: B2C_ISSUER, ver: '1.0', azp: WEB_APP, tid: TENANT, scp: 'demo.read', additionalClaims: { tfp: 'B2C_1_signupsignin1' }, ...overrides })
  }

  t.test('test kit: B2C access tokens (ver 1.0, azp, B2C issuer) are admitted with azp as the client', async t => {
    const { entra, app, call } = await b2cApp(t)
    const res = await call(b2cToken(entra))
    t.equal(res.statusCode, 200)
    t.same(res.json(), { version: '1.0', clientId: WEB_APP, scopes: ['demo.read'] })
    // Without `tid` (B2C leaves it out unless configured) too.
    t.equal((await call(b2cToken(entra, { tid: false }))).statusCode, 200)
    t.equal((await app.inject({ url: '/read', headers: { authorization: `Bearer ${b2cToken(entra)}` } })).statusCode, 200)

    const token = await app.entraAuth.verify(b2cToken(entra))
    t.equal(token.clientId, WEB_APP)
    t.equal((await app.entraAuth.introspect(b2cToken(entra))).client_id, WEB_APP)
  })

  t.test('the B2C client claim is azp: required, checked by allowedApps, appid never stands in', async t => {
    const { entra, call } = await b2cApp(t, { allowedApps: [WEB_APP] })
    t.equal((await call(b2cToken(entra))).statusCode, 200)
    const rogue = await call(b2cToken(entra, { azp: OTHER_APP }))
    t.equal(rogue.statusCode, 403)
    t.equal(rogue.json().type, 'auth_token_azp_not_trusted')
    // An allowed `appid` does not vouch for another `azp`…
    t.equal((await call(b2cToken(entra, { azp: OTHER_APP, additionalClaims: { appid: WEB_APP } }))).json().type, 'auth_token_azp_not_trusted')
    // …nor replace a missing one.
    const missing = await call(b2cToken(entra, { azp: false, additionalClaims: { appid: WEB_APP } }))
    t.equal(missing.statusCode, 401)
    t.equal(missing.json().type, 'auth_token_claim_missing')
    t.match(missing.json().detail, /'azp'/)
  })

  t.test('a 1.0 token is held to the B2C issuer exactly; an STS issuer has no B2C counterpart', async t => {
    const { entra, call } = await b2cApp(t)
    for (const iss of [B2C_ISSUER.slice(0, -1), `https://contoso.b2clogin.com/tfp/${TENANT}/b2c_1_signupsignin1/v2.0/`, `https://login.microsoftonline.com/${TENANT}/v2.0`]) {
      // Not the discovery issuer, so the STS shape (appid) applies, and no STS issuer is derived for B2C.
      const res = await call(b2cToken(entra, { iss, additionalClaims: { appid: WEB_APP } }))
      t.equal(res.json().type, 'auth_token_issuer_untrusted', iss)
    }
    const sts = await call(b2cToken(entra, { iss: `https://sts.windows.net/${TENANT}/`, azp: false, additionalClaims: { appid: WEB_APP } }))
    t.equal(sts.json().type, 'auth_token_issuer_untrusted', 'an STS-form 1.0 token keeps appid and is not B2C\'s')
    // v2.0 tokens under the same issuer keep working.
    t.equal((await call(b2cToken(entra, { ver: '2.0' }))).statusCode, 200)
    // tokenVersions still applies to B2C's 1.0 tokens.
    const { entra: only2, call: call2 } = await b2cApp(t, { tokenVersions: ['2.0'] })
    t.equal((await call2(b2cToken(only2))).json().type, 'auth_token_ver_not_supported')
  })

  /** The token with one bit of its signature flipped, still canonical base64url. */
  function tamperedSignature (token: string): string {
    const [header, payload, signature] = token.split('.') as [string, string, string]
    const bytes = Buffer.from(signature, 'base64url')
    bytes[100] = (bytes[100] as number) ^ 0x01
    return `${header}.${payload}.${bytes.toString('base64url')}`
  }

  // passport-azure-ad's real B2C token (2016): an ID token (`nonce`, no azp), so it is refused as
  // an access token, after its signature verified with B2C's real key.
  const PEER = {
    token: readFixture('peers', 'passport-b2c-id-token.jwt'),
    badSignature: readFixture('peers', 'passport-b2c-id-token.bad-signature.jwt'),
    key: jwkFromPem(readFixture('peers', 'passport-b2c-id-token.key.pem'), 'IdTokenSigningKeyContainer.v2'),
    issuer: 'https://login.microsoftonline.com/22bf40c6-1186-4ea5-b49b-3dc4ec0f54eb/v2.0/',
    oidcEndpoint: 'https://login.microsoftonline.com/22bf40c6-1186-4ea5-b49b-3dc4ec0f54eb/v2.0/.well-known/openid-configuration?p=b2c_1_signin',
    aud: 'f0b6e4eb-2d8c-40b6-b9c6-e26d1074846d',
    verifyAt: 1474692884
  }

  t.test('passport-azure-ad B2C token: signature verified with the real key, refused as an ID token', async t => {
    const metadata = serveMetadata(PEER.oidcEndpoint, PEER.issuer, [PEER.key])
    const app = Fastify({ logger: false })
    await app.register(entraAuth, { clientId: PEER.aud, oidcEndpoint: PEER.oidcEndpoint, dispatcher: metadata.dispatcher, now: () => PEER.verifyAt * 1000, rejectionLogLevel: 'silent' })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(async () => { await app.close(); await metadata.close() })
    const call = (token: string): Promise<LightMyRequestResponse> => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })

    const res = await call(PEER.token)
    t.equal(res.statusCode, 401)
    t.equal(res.json().type, 'auth_token_claim_missing', 'past the signature: the B2C client claim azp is missing')
    t.match(res.json().detail, /'azp'/)
    t.match(res.json().detail, /ID token/)
    t.notOk(res.body.includes(PEER.token.split('.')[2]!), 'the detail does not echo the token')

    const bad = await call(tamperedSignature(PEER.token))
    t.equal(bad.statusCode, 401)
    t.equal(bad.json().type, 'auth_token_signature_untrusted', 'one signature bit changed: the real key refuses it')
    // passport-azure-ad's own twin changes only the last character's padding bits: a second
    // spelling of the same signature, refused before any key is used.
    t.equal((await call(PEER.badSignature)).json().type, 'auth_token_invalid')
    t.equal(metadata.requests.discovery, 1)
  })

  t.test('passport-azure-ad B2C token through the standalone verifier', async t => {
    const metadata = serveMetadata(PEER.oidcEndpoint, PEER.issuer, [PEER.key])
    const verifier = createEntraVerifier({ clientId: PEER.aud, oidcEndpoint: PEER.oidcEndpoint, dispatcher: metadata.dispatcher, now: () => PEER.verifyAt * 1000 })
    t.teardown(async () => { await verifier.close(); await metadata.close() })
    const err = await verifier.verify(PEER.token).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof EntraAuthError)
    t.match(err, { type: 'auth_token_claim_missing', detail: /'azp'.*ID token/ })
    const bad = await verifier.verify(tamperedSignature(PEER.token)).then(() => undefined, (e: unknown) => e)
    t.match(bad, { type: 'auth_token_signature_untrusted' })
    // The same key set with another key: the real token's kid is unknown, so it never reaches the claims.
    metadata.keys = [jwkFromPem(readFixture('peers', 'passport-b2c-id-token.key.pem'), 'another-kid')]
    const other = createEntraVerifier({ clientId: PEER.aud, oidcEndpoint: PEER.oidcEndpoint, dispatcher: metadata.dispatcher, now: () => PEER.verifyAt * 1000 })
    t.teardown(() => other.close())
    t.match(await other.verify(PEER.token).then(() => undefined, (e: unknown) => e), { type: 'auth_token_key_error' })
  })
})
