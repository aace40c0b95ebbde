/**
 * Entra's v1.0 metadata documents (`…/{tenant}/.well-known/openid-configuration`, issuer
 * `https://sts.windows.net/{tid}/`): v1.0 tokens are held to that issuer, v2.0 tokens to the v2.0
 * issuer of the same tenant and cloud. Also the sovereign clouds' v1.0 issuers, and the start-up
 * warning for configurations that can't work.
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import { FakeEntra, MOCK_ISSUER, MockClaims, MockJwk, MockJwtClient } from '../src/testing/index.js'
import { logCapture, serveMetadata, type MetadataServer } from './helpers/metadata.js'

const TENANT_A = '5e1c0d4a-7b2f-4c3e-9a8d-1f2e3d4c5b6a'
const TENANT_B = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
const API = '7d0c3a52-0000-4000-8000-0000000000a1'
const CLIENT_APP = '7d0c3a52-0000-4000-8000-0000000000c1'

interface View { version: string, clientId: string | undefined, tenantId: string | undefined }

interface Fixture {
  metadata: MetadataServer
  app: FastifyInstance
  key: MockJwk
  logs: ReturnType<typeof logCapture>['lines']
  call: (token: string) => Promise<LightMyRequestResponse>
}

/** An app whose discovery document is `oidcEndpoint` with `issuer`, one key with `keyIssuer`. */
async function fixture (t: Test, oidcEndpoint: string, issuer: string, keyIssuer: string | null, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
  const key = new MockJwk(keyIssuer === null ? {} : { issuer: keyIssuer })
  const metadata = serveMetadata(oidcEndpoint, issuer, [key.toJSON()])
  const capture = logCapture()
  const app = Fastify({ logger: { level: 'warn', stream: capture.stream } })
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
    const capture = logCapture()
    const app = Fastify({ logger: { level: 'warn', stream: capture.stream } })
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
