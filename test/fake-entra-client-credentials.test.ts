/**
 * The fake Entra's token endpoint, client-credentials grant, through the in-process dispatcher:
 * tokens that look like Entra's and pass the plugin's own validation, client authentication by
 * form and HTTP Basic, and every refusal in Entra's OAuth 2.0 error shape.
 */
import t, { type Test } from 'tap'
import { fetch, request } from 'undici'
import { createEntraVerifier } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { bearer, entraApp } from './helpers/index.js'
import { postToken, type TokenReply } from './helpers/token-endpoint.js'

const API = '00000000-0000-4000-8000-0000000000a1'
const DAEMON = '00000000-0000-4000-8000-0000000000c1'

type Reply = TokenReply

function claimsOf (jwt: string): { header: Record<string, unknown>, claims: Record<string, unknown> } {
  const [header, payload] = jwt.split('.')
  return { header: JSON.parse(Buffer.from(header as string, 'base64url').toString()), claims: JSON.parse(Buffer.from(payload as string, 'base64url').toString()) }
}

/** Entra's error reply: RFC 6749 §5.2 members plus AADSTS code, trace and correlation IDs, not cacheable. */
function isOAuthError (t: Test, reply: Reply, status: number, error: string, aadsts: number): void {
  t.equal(reply.status, status, `status ${status}`)
  t.equal(reply.body.error, error)
  t.match(reply.body.error_description, new RegExp(`^AADSTS${aadsts}: `))
  t.same(reply.body.error_codes, [aadsts])
  t.match(reply.body, { timestamp: /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/, trace_id: /^[\da-f-]{36}$/, correlation_id: /^[\w-]+$/ })
  t.equal(reply.headers['cache-control'], 'no-store')
  t.match(reply.headers['content-type'], /^application\/json/)
}

const CC = { grant_type: 'client_credentials', client_id: DAEMON, client_secret: 's3cret', scope: `api://${API}/.default` }

t.test('client credentials: a v2.0 app-only token with the configured app roles', async t => {
  const now = Date.UTC(2026, 0, 1, 12)
  const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All', 'Files.Write'] }], now: () => now })
  t.teardown(() => entra.close())
  const reply = await postToken(entra, CC)
  t.equal(reply.status, 200)
  t.equal(reply.headers['cache-control'], 'no-store', 'RFC 6749 §5.1: not cacheable')
  t.same(Object.keys(reply.body).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'token_type'], "Entra's client-credentials reply")
  t.match(reply.body, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 })
  const { header, claims } = claimsOf(reply.body.access_token as string)
  t.same(header, { typ: 'JWT', alg: 'RS256', kid: entra.keys[0]!.kid })
  const iat = now / 1000
  t.match(claims, { aud: API, iss: `https://login.microsoftonline.com/${entra.tenantId}/v2.0`, azp: DAEMON, azpacr: '1', idtyp: 'app', tid: entra.tenantId, ver: '2.0', iat, nbf: iat, exp: iat + 3599, roles: ['Reports.Read.All', 'Files.Write'] })
  t.equal(claims.oid, claims.sub, 'app-only: oid == sub')
  t.match(claims.oid, /^[\da-f]{8}-[\da-f]{4}-4[\da-f]{3}-8[\da-f]{3}-[\da-f]{12}$/, 'the service principal object ID is a GUID')
  t.notOk('scp' in claims, 'no delegated scopes')
  t.notOk('appid' in claims, 'v2.0: the client is azp')
})

t.test('the token passes the plugin: 200 on an app-role route, 403 on another role', async t => {
  const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }] })
  const app = await entraApp({ clientId: API, ...entra.pluginOptions() })
  app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async () => ({ ok: true }))
  app.get('/admin', { onRequest: app.entraAuth({ roles: ['Admin'] }) }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await entra.close() })
  const access = await entra.clientCredentials({ clientId: DAEMON })
  const me = await app.inject({ url: '/me', headers: bearer(access) })
  t.equal(me.statusCode, 200)
  t.match(me.json(), { version: '2.0', isAppOnly: true, clientId: DAEMON, tenantId: entra.tenantId, scopes: ['Reports.Read.All'] })
  t.equal((await app.inject({ url: '/reports', headers: bearer(access) })).statusCode, 200)
  const admin = await app.inject({ url: '/admin', headers: bearer(access) })
  t.equal(admin.statusCode, 403)
  t.equal(admin.json().type, 'auth_token_insufficient_scopes')
  t.match(admin.headers['www-authenticate'], /error="insufficient_scope"/)
  t.match(admin.headers['www-authenticate'], `scope="api://${API}/.default"`, 'an app role is requested with .default')
})

t.test('a v1.0 API gets v1.0 tokens: sts.windows.net issuer, App ID URI audience, appid, x5t', async t => {
  const entra = new FakeEntra({ apis: [{ clientId: API, tokenVersion: '1.0', appRoles: ['Reports.Read.All'] }] })
  t.teardown(() => entra.close())
  const reply = await postToken(entra, CC)
  const { header, claims } = claimsOf(reply.body.access_token as string)
  t.equal(header.x5t, header.kid)
  t.match(claims, { aud: `api://${API}`, iss: `https://sts.windows.net/${entra.tenantId}/`, appid: DAEMON, appidacr: '1', idtyp: 'app', ver: '1.0', roles: ['Reports.Read.All'] })
  t.notOk('azp' in claims)
  const verifier = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
  t.teardown(() => verifier.close())
  const verified = await verifier.verify(reply.body.access_token as string)
  t.equal(verified.version, '1.0')
  t.equal(verified.isAppOnly, true)
})

t.test('a bare client ID names the API too; per-client app roles replace the API\'s', async t => {
  const entra = new FakeEntra({
    apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }],
    clients: [{ clientId: DAEMON, secret: 's3cret' }, { clientId: 'other-app', secret: 'x', appRoles: [] }]
  })
  t.teardown(() => entra.close())
  const bare = await postToken(entra, { ...CC, scope: `${API}/.default` })
  t.equal(bare.status, 200)
  t.equal(claimsOf(bare.body.access_token as string).claims.aud, API)
  const other = await postToken(entra, { ...CC, client_id: 'other-app', client_secret: 'x' })
  t.equal(other.status, 200)
  t.notOk('roles' in claimsOf(other.body.access_token as string).claims, 'no app permission: no roles claim, as Entra')
})

t.test('HTTP Basic client authentication (RFC 6749 §2.3.1), through fetch as well', async t => {
  const entra = new FakeEntra({ clients: [{ clientId: DAEMON, secret: 'p@ss word:1' }] })
  t.teardown(() => entra.close())
  const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`
  const response = await fetch(entra.tokenEndpoint, {
    method: 'POST',
    dispatcher: entra.dispatcher,
    headers: { authorization: basic(DAEMON, 'p@ss word:1') },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: `api://${API}/.default` })
  })
  t.equal(response.status, 200)
  t.equal(claimsOf((await response.json() as { access_token: string }).access_token).claims.azp, DAEMON)
  t.equal(entra.oauthRequests.token, 1)

  const wrong = await postToken(entra, { grant_type: 'client_credentials', scope: CC.scope }, { authorization: basic(DAEMON, 'nope') })
  isOAuthError(t, wrong, 401, 'invalid_client', 7000215)
  t.equal(wrong.headers['www-authenticate'], 'Basic realm="fake-entra"', 'RFC 6749 §5.2: a Basic challenge for Basic credentials')
  const both = await postToken(entra, { ...CC, client_secret: 'p@ss word:1' }, { authorization: basic(DAEMON, 'p@ss word:1') })
  isOAuthError(t, both, 400, 'invalid_request', 90014)
  const garbled = await postToken(entra, { grant_type: 'client_credentials', scope: CC.scope }, { authorization: 'Basic !!!' })
  isOAuthError(t, garbled, 401, 'invalid_client', 7000215)
})

t.test('a public client that presents a secret is refused (AADSTS700025): only confidential clients get app-only tokens', async t => {
  const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }], clients: [{ clientId: DAEMON, secret: 's3cret' }, { clientId: 'spa' }] })
  t.teardown(() => entra.close())
  for (const secret of ['anything', 's3cret']) {
    const posted = await postToken(entra, { ...CC, client_id: 'spa', client_secret: secret })
    isOAuthError(t, posted, 401, 'invalid_client', 700025)
    t.notOk('access_token' in posted.body)
    const basic = await postToken(entra, { grant_type: 'client_credentials', scope: CC.scope }, { authorization: `Basic ${Buffer.from(`spa:${secret}`).toString('base64')}` })
    isOAuthError(t, basic, 401, 'invalid_client', 700025)
    t.equal(basic.headers['www-authenticate'], 'Basic realm="fake-entra"')
  }
  // The same holds for the user grants: a public client redeems its code with PKCE alone.
  isOAuthError(t, await postToken(entra, { grant_type: 'authorization_code', client_id: 'spa', client_secret: 'x', code: 'c', redirect_uri: 'http://localhost/cb', code_verifier: 'v'.repeat(43) }), 401, 'invalid_client', 700025)
  isOAuthError(t, await postToken(entra, { grant_type: 'refresh_token', client_id: 'spa', client_secret: 'x', refresh_token: 'r' }), 401, 'invalid_client', 700025)
  const confidential = await postToken(entra, CC)
  t.equal(confidential.status, 200, 'the confidential client still gets its app-only token')
  t.match(claimsOf(confidential.body.access_token as string).claims, { idtyp: 'app', azpacr: '1', roles: ['Reports.Read.All'] })
  const anyClient = new FakeEntra({ apis: [{ clientId: API }] })
  t.teardown(() => anyClient.close())
  t.equal((await postToken(anyClient, { ...CC, client_id: 'unregistered' })).status, 200, 'without registrations any client ID with a secret is confidential')
})

t.test('refusals: client authentication, scope, grant type, request shape', async t => {
  const entra = new FakeEntra({ apis: [{ clientId: API }], clients: [{ clientId: DAEMON, secret: 's3cret' }, { clientId: 'spa' }] })
  t.teardown(() => entra.close())
  isOAuthError(t, await postToken(entra, { ...CC, client_secret: 'wrong' }), 401, 'invalid_client', 7000215)
  const { client_secret: _secret, ...noSecret } = CC
  isOAuthError(t, await postToken(entra, noSecret), 401, 'invalid_client', 7000218)
  isOAuthError(t, await postToken(entra, { ...noSecret, client_id: 'spa' }), 401, 'invalid_client', 7000218)
  isOAuthError(t, await postToken(entra, { ...CC, client_id: 'unknown-app' }), 400, 'unauthorized_client', 700016)
  isOAuthError(t, await postToken(entra, { grant_type: 'client_credentials', client_secret: 'x', scope: CC.scope }), 400, 'invalid_request', 900144)
  isOAuthError(t, await postToken(entra, { ...CC, scope: `api://${API}/Files.Read` }), 400, 'invalid_scope', 1002012)
  isOAuthError(t, await postToken(entra, { ...CC, scope: `openid api://${API}/.default` }), 400, 'invalid_scope', 1002012)
  isOAuthError(t, await postToken(entra, { ...CC, scope: 'Files.Read' }), 400, 'invalid_scope', 70011)
  isOAuthError(t, await postToken(entra, { ...CC, scope: `api://${API}/.default api://other/.default` }), 400, 'invalid_scope', 28000)
  isOAuthError(t, await postToken(entra, { ...CC, scope: 'api://unknown-api/.default' }), 400, 'invalid_resource', 500011)
  const { scope: _scope, ...noScope } = CC
  isOAuthError(t, await postToken(entra, noScope), 400, 'invalid_request', 900144)
  isOAuthError(t, await postToken(entra, { ...CC, grant_type: 'password' }), 400, 'unsupported_grant_type', 70003)
  isOAuthError(t, await postToken(entra, { ...CC, grant_type: '' }), 400, 'invalid_request', 900144)

  const json = await request(entra.tokenEndpoint, { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify(CC) })
  isOAuthError(t, { status: json.statusCode, headers: json.headers, body: await json.body.json() as Record<string, unknown> }, 400, 'invalid_request', 900144)
  const repeated = await request(entra.tokenEndpoint, { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `${new URLSearchParams(CC).toString()}&scope=x` })
  isOAuthError(t, { status: repeated.statusCode, headers: repeated.headers, body: await repeated.body.json() as Record<string, unknown> }, 400, 'invalid_request', 90014)
  const get = await request(entra.tokenEndpoint, { dispatcher: entra.dispatcher, headers: { 'client-request-id': 'my-correlation-1' } })
  const getReply = { status: get.statusCode, headers: get.headers, body: await get.body.json() as Record<string, unknown> }
  isOAuthError(t, getReply, 400, 'invalid_request', 900561)
  t.equal(getReply.body.correlation_id, 'my-correlation-1', "Entra echoes the client's client-request-id as correlation_id")
  const otherTenant = await request(entra.tokenEndpoint.replace(entra.tenantId, 'contoso.example'), { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(CC).toString() })
  t.equal(otherTenant.statusCode, 400)
  t.match(await otherTenant.body.json(), { error: 'invalid_request', error_codes: [90002] })
})

t.test('nothing is logged or echoed: secrets never appear in error replies', async t => {
  const entra = new FakeEntra({ clients: [{ clientId: DAEMON, secret: 'right-secret' }] })
  t.teardown(() => entra.close())
  const reply = await postToken(entra, { ...CC, client_secret: 'guessed-secret-value' })
  t.notMatch(JSON.stringify(reply.body), /guessed-secret-value|right-secret/)
})

t.test('discovery advertises exactly what the endpoints support; CORS for browsers', async t => {
  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  const response = await request(entra.oidcEndpoint, { dispatcher: entra.dispatcher })
  const document = await response.body.json() as Record<string, unknown>
  t.match(document, {
    issuer: entra.issuer,
    token_endpoint: `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/token`,
    authorization_endpoint: `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/authorize`,
    jwks_uri: entra.jwksUri
  })
  t.same(document.grant_types_supported, ['authorization_code', 'client_credentials', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer'])
  t.same(document.code_challenge_methods_supported, ['S256'])
  t.same(document.response_types_supported, ['code'])
  t.same(document.response_modes_supported, ['query', 'fragment'])
  t.same(document.token_endpoint_auth_methods_supported, ['client_secret_post', 'client_secret_basic', 'none'])
  t.notOk('end_session_endpoint' in document, 'no sign-out endpoint is served, so none is advertised')
  t.same(entra.requests, { discovery: 1, jwks: 0 })
  const preflight = await request(entra.tokenEndpoint, { method: 'OPTIONS', dispatcher: entra.dispatcher, headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-client-sku' } })
  await preflight.body.dump()
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], '*')
  t.equal(preflight.headers['access-control-allow-headers'], 'content-type,x-client-sku')
})

t.test('clientCredentials() needs a scope unless one API is configured, and reports refusals', async t => {
  const entra = new FakeEntra({ clients: [{ clientId: DAEMON, secret: 's3cret' }] })
  t.teardown(() => entra.close())
  await t.rejects(entra.clientCredentials({ clientId: DAEMON, secret: 's3cret' }), TypeError)
  const access = await entra.clientCredentials({ clientId: DAEMON, secret: 's3cret', scope: `${API}/.default` })
  t.equal(claimsOf(access).claims.aud, API, 'any API is accepted when none is configured')
  await t.rejects(entra.clientCredentials({ clientId: DAEMON, secret: 'bad', scope: `${API}/.default` }), /invalid_client AADSTS7000215/)
})

t.test('keys: rotating the fake\'s keys changes the signing key of issued tokens', async t => {
  const entra = new FakeEntra({ apis: [{ clientId: API }] })
  t.teardown(() => entra.close())
  const next = entra.newKey('rotated')
  entra.keys = [next]
  t.equal(claimsOf(await entra.clientCredentials({ clientId: DAEMON })).header.kid, 'rotated')
})
