/**
 * On-behalf-of in the fake Entra: a middle-tier API exchanges a user's token for it for a token
 * for a downstream API, for the same user (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
 * `requested_token_use=on_behalf_of`), with Entra's refusals; and MSAL Node's acquireTokenOnBehalfOf.
 */
import { createHash, randomBytes } from 'node:crypto'
import { ConfidentialClientApplication, PublicClientApplication } from '@azure/msal-node'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { createEntraVerifier } from '../src/index.js'
import { FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'
import { bearer, entraApp } from './helpers/index.js'
import { msalNetworkClient, postToken, type TokenReply } from './helpers/token-endpoint.js'

const API = '00000000-0000-4000-8000-0000000000a1'
const DOWNSTREAM = '00000000-0000-4000-8000-0000000000d2'
const SPA = '00000000-0000-4000-8000-0000000000c3'
const SECRET = 'api-secret'
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

type Reply = TokenReply

function fake (options: FakeEntraOptions = {}): FakeEntra {
  return new FakeEntra({
    apis: [{ clientId: API, scopes: ['access_as_user'] }, { clientId: DOWNSTREAM, scopes: ['Data.Read', 'Data.Write'] }],
    clients: [{ clientId: API, secret: SECRET }, { clientId: DOWNSTREAM, secret: 'downstream-secret' }, { clientId: SPA }],
    // The SPA's sign-in is followed by handle() here, not a browser: no sign-in page.
    autoSignIn: true,
    ...options
  })
}

function obo (assertion: string, extra: Record<string, string> = {}): Record<string, string> {
  return { grant_type: JWT_BEARER, requested_token_use: 'on_behalf_of', client_id: API, client_secret: SECRET, assertion, scope: `api://${DOWNSTREAM}/.default`, ...extra }
}

function claimsOf (jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
}

function refused (t: Test, reply: Reply, status: number, error: string, aadsts: number, description?: RegExp): void {
  t.equal(reply.status, status, `status ${status}`)
  t.equal(reply.body.error, error)
  t.same(reply.body.error_codes, [aadsts])
  t.match(reply.body.error_description, new RegExp(`^AADSTS${aadsts}: `))
  if (description !== undefined) t.match(reply.body.error_description, description)
  t.notOk('access_token' in reply.body)
}

t.test('a user token for the API becomes a token for the downstream API, for the same user', async t => {
  const entra = fake({ user: { name: 'Ada Lovelace', username: 'ada@contoso.example', roles: ['Reader'] } })
  t.teardown(() => entra.close())
  const verifier = await createEntraVerifier({ clientId: DOWNSTREAM, ...entra.pluginOptions() })
  t.teardown(() => verifier.close())
  // The configured user's object ID: the downstream token takes their names and roles from the directory.
  const assertion = entra.token(API, { scp: 'access_as_user', oid: '00000000-0000-4000-8000-0000000051e5', roles: ['Reader'] })

  const reply = await postToken(entra, obo(assertion))
  t.equal(reply.status, 200)
  t.match(reply.body, { token_type: 'Bearer', expires_in: 3599, scope: `api://${DOWNSTREAM}/Data.Read api://${DOWNSTREAM}/Data.Write` })
  t.notOk('refresh_token' in reply.body, 'no offline_access asked for: no refresh token')
  const downstream = claimsOf(reply.body.access_token as string)
  const incoming = claimsOf(assertion)
  t.match(downstream, { aud: DOWNSTREAM, azp: API, azpacr: '1', oid: incoming.oid, tid: entra.tenantId, scp: 'Data.Read Data.Write', name: 'Ada Lovelace', preferred_username: 'ada@contoso.example', roles: ['Reader'], ver: '2.0' })
  t.not(downstream.sub, incoming.sub, 'sub is pairwise: another app, another subject')
  t.match(downstream.sub, /^[\da-f]{32}$/)
  const verified = await verifier.verify(reply.body.access_token as string)
  t.equal(verified.objectId, incoming.oid)
  t.same(verified.scopes, ['Data.Read', 'Data.Write', 'Reader'], 'scp and the user\'s app roles')
  t.equal(verified.isAppOnly, false)

  const narrow = await postToken(entra, obo(assertion, { scope: `api://${DOWNSTREAM}/Data.Read offline_access` }))
  t.equal(narrow.status, 200)
  t.equal(claimsOf(narrow.body.access_token as string).scp, 'Data.Read', 'only the scope asked for')
  t.equal(claimsOf(narrow.body.access_token as string).sub, downstream.sub, 'one user, one subject per app')
  t.type(narrow.body.refresh_token, 'string', 'offline_access: a refresh token for the API to use later')
  const refreshed = await postToken(entra, { grant_type: 'refresh_token', client_id: API, client_secret: SECRET, refresh_token: narrow.body.refresh_token as string })
  t.equal(refreshed.status, 200)
  t.match(claimsOf(refreshed.body.access_token as string), { aud: DOWNSTREAM, oid: incoming.oid, scp: 'Data.Read', name: 'Ada Lovelace' }, 'the refreshed token is for the same user')

  const { client_id: _id, client_secret: _secret, ...withoutClient } = obo(assertion)
  const basic = await postToken(entra, withoutClient, { authorization: `Basic ${Buffer.from(`${API}:${SECRET}`).toString('base64')}` })
  t.equal(basic.status, 200, 'client_secret_basic works too')
})

t.test('v1.0 assertions and a v1.0 downstream API; a user the fake does not list keeps the assertion\'s names', async t => {
  const entra = fake({ apis: [{ clientId: API }, { clientId: DOWNSTREAM, tokenVersion: '1.0', scopes: ['Data.Read'] }] })
  t.teardown(() => entra.close())
  const assertion = entra.client(API, 'v1').generate({ scp: 'user_impersonation', additionalClaims: { upn: 'grace@contoso.example', name: 'Grace Hopper' } })
  const reply = await postToken(entra, obo(assertion))
  t.equal(reply.status, 200)
  t.match(claimsOf(reply.body.access_token as string), { aud: `api://${DOWNSTREAM}`, appid: API, appidacr: '1', iss: `https://sts.windows.net/${entra.tenantId}/`, upn: 'grace@contoso.example', name: 'Grace Hopper', scp: 'Data.Read', ver: '1.0', oid: claimsOf(assertion).oid })
})

t.test('a bad assertion is AADSTS50013; only the API the token was issued for may exchange it', async t => {
  const entra = fake()
  t.teardown(() => entra.close())
  const now = Math.floor(Date.now() / 1000)
  const good = entra.token(API, { scp: 'access_as_user' })
  const [header] = good.split('.') as [string]
  const forged = { ...claimsOf(good), scp: 'access_as_user Admin' }
  const foreign = entra.newKey()
  const cases: Array<[string, string, RegExp]> = [
    ['not a JWT', 'not-a-jwt', /not a signed JWT/],
    ['a tampered payload', `${header}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${good.split('.')[2] as string}`, /signature does not verify/],
    ['another key (not published)', entra.client(API, 'v2', foreign).generate({ scp: 'access_as_user' }), /not one of this tenant's signing keys/],
    ['expired', entra.token(API, { scp: 'access_as_user', iat: now - 7200, nbf: now - 7200, exp: now - 3600 }), /not within its valid time range/],
    ['not yet valid', entra.token(API, { scp: 'access_as_user', nbf: now + 3600 }), /not within its valid time range/],
    ['another tenant', entra.token(API, { scp: 'access_as_user', iss: 'https://login.microsoftonline.com/11111111-2222-4333-8444-555555555555/v2.0' }), /not issued by this tenant/],
    ['for another API', entra.token(DOWNSTREAM, { scp: 'access_as_user' }), new RegExp(`audience in the assertion was '${DOWNSTREAM}' and the expected audience is '${API}'`)],
    ['app-only', entra.client(API, 'app').generate(), /not a user's token/],
    ['no scp', entra.token(API, { scp: false }), /not a user's token/]
  ]
  for (const [what, assertion, description] of cases) {
    t.test(what, async t => { refused(t, await postToken(entra, obo(assertion)), 400, 'invalid_grant', 50013, description) })
  }
  // The downstream API can't replay a token it received: the assertion must be for the caller.
  const replay = await postToken(entra, obo(good, { client_id: DOWNSTREAM, client_secret: 'downstream-secret', scope: `api://${API}/.default` }))
  refused(t, replay, 400, 'invalid_grant', 50013, /audience/)
})

t.test('the caller is the API as a confidential client; the request names a known downstream API and its scopes', async t => {
  const entra = fake()
  t.teardown(() => entra.close())
  const assertion = entra.token(API, { scp: 'access_as_user' })
  const { client_secret: _secret, ...noSecret } = obo(assertion)
  refused(t, await postToken(entra, noSecret), 401, 'invalid_client', 7000218)
  refused(t, await postToken(entra, obo(assertion, { client_secret: 'wrong' })), 401, 'invalid_client', 7000215)
  refused(t, await postToken(entra, obo(assertion, { client_id: SPA, client_secret: 'anything' })), 401, 'invalid_client', 700025)
  const { client_secret: _s, ...spa } = obo(assertion, { client_id: SPA })
  refused(t, await postToken(entra, spa), 401, 'invalid_client', 7000218, undefined)
  const { requested_token_use: _use, ...noUse } = obo(assertion)
  refused(t, await postToken(entra, noUse), 400, 'invalid_request', 900144, /requested_token_use/)
  refused(t, await postToken(entra, obo(assertion, { requested_token_use: 'something_else' })), 400, 'invalid_request', 70003)
  const { assertion: _a, ...noAssertion } = obo(assertion)
  refused(t, await postToken(entra, noAssertion), 400, 'invalid_request', 900144, /assertion/)
  refused(t, await postToken(entra, obo(assertion, { scope: 'api://00000000-0000-4000-8000-0000000000ff/.default' })), 400, 'invalid_resource', 500011)
  refused(t, await postToken(entra, obo(assertion, { scope: `api://${DOWNSTREAM}/Data.Delete` })), 400, 'invalid_scope', 650053)
  const document = await (await request(entra.oidcEndpoint, { dispatcher: entra.dispatcher })).body.json() as { grant_types_supported: string[] }
  t.ok(document.grant_types_supported.includes(JWT_BEARER), 'discovery advertises the grant')
})

t.test('consent: an API registered with permissions gets only those; a scope not consented is AADSTS65001 consent_required', async t => {
  const entra = fake({ clients: [{ clientId: API, secret: SECRET, permissions: [`api://${DOWNSTREAM}/Data.Read`] }] })
  t.teardown(() => entra.close())
  const assertion = entra.token(API, { scp: 'access_as_user' })
  const all = await postToken(entra, obo(assertion))
  t.equal(all.status, 200)
  t.equal(claimsOf(all.body.access_token as string).scp, 'Data.Read', '.default: the consented scopes only')
  const write = await postToken(entra, obo(assertion, { scope: `api://${DOWNSTREAM}/Data.Read api://${DOWNSTREAM}/Data.Write` }))
  refused(t, write, 400, 'invalid_grant', 65001, /not consented to use the application with ID '.*' for scope 'Data.Write'/)
  t.equal(write.body.suberror, 'consent_required', "Entra's suberror: the client must ask the user")
  const none = fake({ clients: [{ clientId: API, secret: SECRET, permissions: [] }] })
  t.teardown(() => none.close())
  const nothing = await postToken(none, obo(none.token(API, { scp: 'access_as_user' })))
  refused(t, nothing, 400, 'invalid_grant', 65001, /for scope 'Data.Read Data.Write'/)
  t.equal(nothing.body.suberror, 'consent_required')
})

t.test('MSAL Node: a user signs in to the SPA, the API calls the downstream API with acquireTokenOnBehalfOf', async t => {
  const REDIRECT = 'http://localhost:3000/callback'
  const entra = fake({ clients: [{ clientId: API, secret: SECRET }, { clientId: SPA, redirectUris: [REDIRECT] }], user: { name: 'Ada Lovelace', username: 'ada@contoso.example' } })
  t.teardown(() => entra.close())
  const system = { networkClient: msalNetworkClient(entra) }
  // The SPA (a public client) signs the user in with the code flow and PKCE.
  const spa = new PublicClientApplication({ auth: { clientId: SPA, authority: entra.authority }, system })
  const verifier = randomBytes(32).toString('base64url')
  const scopes = [`api://${API}/access_as_user`]
  const url = new URL(await spa.getAuthCodeUrl({ scopes, redirectUri: REDIRECT, codeChallenge: createHash('sha256').update(verifier).digest('base64url'), codeChallengeMethod: 'S256' }))
  const signIn = entra.handle({ method: 'GET', url: url.pathname + url.search, headers: {}, body: '' })
  const code = new URL(signIn.headers.location as string).searchParams.get('code') as string
  const signedIn = await spa.acquireTokenByCode({ code, scopes, redirectUri: REDIRECT, codeVerifier: verifier })

  // The API checks the incoming token, then asks for the downstream API on the user's behalf.
  const api = await entraApp({ clientId: API, ...entra.pluginOptions() })
  const downstream = await entraApp({ clientId: DOWNSTREAM, ...entra.pluginOptions() })
  t.teardown(async () => { await api.close(); await downstream.close() })
  const middle = new ConfidentialClientApplication({ auth: { clientId: API, clientSecret: SECRET, authority: entra.authority }, system })
  downstream.get('/data', { onRequest: downstream.entraAuth({ scopes: ['Data.Read'] }) }, async request => ({ oid: request.entraToken?.objectId, via: request.entraToken?.clientId }))
  api.get('/report', { onRequest: api.entraAuth({ scopes: ['access_as_user'] }) }, async request => {
    const result = await middle.acquireTokenOnBehalfOf({ oboAssertion: request.entraToken?.raw as string, scopes: [`api://${DOWNSTREAM}/Data.Read`] })
    const data = await downstream.inject({ url: '/data', headers: bearer(result?.accessToken ?? '') })
    return { status: data.statusCode, data: data.json() }
  })
  const report = await api.inject({ url: '/report', headers: bearer(signedIn.accessToken) })
  t.equal(report.statusCode, 200)
  t.same(report.json(), { status: 200, data: { oid: signedIn.account?.localAccountId, via: API } }, 'the downstream API sees the same user, called by the API')
  t.equal(entra.oauthRequests.token, 2, 'one code redemption, one on-behalf-of exchange')

  const again = await api.inject({ url: '/report', headers: bearer(signedIn.accessToken) })
  t.equal(again.statusCode, 200)
  t.equal(entra.oauthRequests.token, 2, "MSAL serves the second call from its cache, keyed by the assertion's hash")
})
