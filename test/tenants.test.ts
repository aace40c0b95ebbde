/**
 * Entra breadth (issue 3): clouds, B2C and External ID discovery, `?appid=` key sets, single- and
 * multi-tenant issuer rules, the signing-key issuer rule, app-only vs delegated tokens, delegated
 * scopes vs app roles, and tokens an API must not accept (Graph, ID tokens).
 */
import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import { FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'
import { assertProblem, bearer, entraApp, RecordingDispatcher, type TokenView } from './helpers/index.js'

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
