/**
 * The fake Entra's authorize endpoint and the authorization-code (PKCE S256) and refresh-token
 * grants, through `handle()` and the in-process dispatcher: what a SPA or web app does with MSAL.
 */
import { createHash, randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { createEntraVerifier } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { grantsOf } from '../src/testing/fake-entra.js'

const API = '00000000-0000-4000-8000-0000000000a1'
const SPA = '00000000-0000-4000-8000-0000000000b1'
const WEB = '00000000-0000-4000-8000-0000000000b2'
const REDIRECT = 'http://localhost:3000/auth/callback'

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: Record<string, unknown> }

function pkce (): { verifier: string, challenge: string } {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

function claimsOf (jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString())
}

/** GET /authorize with `params` (defaults: SPA, code, S256 challenge, a state); the reply as `handle()` gives it. */
function authorize (entra: FakeEntra, params: Record<string, string | undefined>): { status: number, location: URL | undefined, body: string } {
  const query = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined) query.set(name, value)
  const reply = entra.handle({ method: 'GET', url: `${new URL(entra.authorizationEndpoint).pathname}?${query.toString()}`, headers: {}, body: '' })
  return { status: reply.status, location: reply.headers.location === undefined ? undefined : new URL(reply.headers.location), body: reply.body }
}

function authorizeParams (challenge: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { client_id: SPA, response_type: 'code', redirect_uri: REDIRECT, scope: `openid profile offline_access api://${API}/Files.Read`, state: 'st-1', nonce: 'n-1', code_challenge: challenge, code_challenge_method: 'S256', ...overrides }
}

async function token (entra: FakeEntra, form: Record<string, string>): Promise<Reply> {
  const response = await request(entra.tokenEndpoint, { method: 'POST', dispatcher: entra.dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() })
  return { status: response.statusCode, headers: response.headers, body: await response.body.json() as Record<string, unknown> }
}

function isInvalidGrant (t: Test, reply: Reply, aadsts: number, message = `invalid_grant AADSTS${aadsts}`): void {
  t.equal(reply.status, 400, message)
  t.equal(reply.body.error, 'invalid_grant')
  t.same(reply.body.error_codes, [aadsts])
}

/** Signs in and returns the code and the PKCE verifier. */
function signIn (entra: FakeEntra, overrides: Record<string, string | undefined> = {}): { code: string, verifier: string } {
  const { verifier, challenge } = pkce()
  const reply = authorize(entra, authorizeParams(challenge, overrides))
  const code = reply.location?.searchParams.get('code')
  if (reply.status !== 302 || code === null || code === undefined) throw new Error(`sign-in failed: ${reply.status} ${reply.location?.toString() ?? reply.body}`)
  return { code, verifier }
}

function redeem (entra: FakeEntra, code: string, verifier: string, extra: Record<string, string> = {}): Promise<Reply> {
  return token(entra, { grant_type: 'authorization_code', client_id: SPA, code, redirect_uri: REDIRECT, code_verifier: verifier, client_info: '1', ...extra })
}

t.test('authorize signs the test user in and redirects back with code and state', async t => {
  const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'] }] })
  t.teardown(() => entra.close())
  const { challenge } = pkce()
  const reply = authorize(entra, authorizeParams(challenge))
  t.equal(reply.status, 302)
  t.equal(reply.location?.origin + (reply.location?.pathname ?? ''), REDIRECT)
  t.match(reply.location?.searchParams.get('code'), /^[\w-]{43}$/)
  t.equal(reply.location?.searchParams.get('state'), 'st-1')
  t.equal(entra.oauthRequests.authorize, 1)

  const fragment = authorize(entra, authorizeParams(challenge, { response_mode: 'fragment' }))
  t.equal(fragment.location?.search, '', 'fragment mode: nothing in the query')
  t.match(fragment.location?.hash, /^#code=[\w-]+&state=st-1$/)
})

t.test('code → tokens: delegated access token, ID token, refresh token, client_info; all pass validation', async t => {
  const now = Date.UTC(2026, 0, 1, 12)
  const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'] }], user: { name: 'Ada Lovelace', username: 'ada@contoso.example', roles: ['Admin'] }, now: () => now })
  t.teardown(() => entra.close())
  const { code, verifier } = signIn(entra)
  const reply = await redeem(entra, code, verifier)
  t.equal(reply.status, 200)
  t.match(reply.body, { token_type: 'Bearer', scope: `api://${API}/Files.Read`, expires_in: 3599, ext_expires_in: 3599, refresh_token: /^[\w-]{43}$/ })
  const access = claimsOf(reply.body.access_token as string)
  t.match(access, { aud: API, azp: SPA, azpacr: '0', scp: 'Files.Read', name: 'Ada Lovelace', preferred_username: 'ada@contoso.example', oid: '00000000-0000-4000-8000-0000000051e5', roles: ['Admin'], tid: entra.tenantId, ver: '2.0', iat: now / 1000 })
  t.notOk('idtyp' in access, 'a user token')
  t.not(access.sub, access.oid, 'delegated: sub is pairwise, not the object ID')
  const id = claimsOf(reply.body.id_token as string)
  t.match(id, { aud: SPA, iss: entra.issuerFor(), nonce: 'n-1', oid: access.oid, name: 'Ada Lovelace', preferred_username: 'ada@contoso.example', tid: entra.tenantId, ver: '2.0' })
  t.same(JSON.parse(Buffer.from(reply.body.client_info as string, 'base64url').toString()), { uid: access.oid, utid: entra.tenantId }, "MSAL's client_info: { uid, utid }")

  const verifierOfApi = createEntraVerifier({ clientId: API, ...entra.pluginOptions(), now: () => now })
  t.teardown(() => verifierOfApi.close())
  const verified = await verifierOfApi.verify(reply.body.access_token as string)
  t.match(verified, { version: '2.0', isAppOnly: false, clientId: SPA, objectId: access.oid })
  t.same(verified.scopes, ['Files.Read', 'Admin'])
  t.match(await verifierOfApi.verify(reply.body.id_token as string).catch((err: unknown) => err), { type: 'auth_token_claim_missing', detail: /ID token/ }, 'the plugin knows the ID token for one')
})

t.test('without openid / offline_access: no ID token, no refresh token; .default grants the API\'s scopes', async t => {
  const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'], tokenVersion: '1.0' }] })
  t.teardown(() => entra.close())
  const { code, verifier } = signIn(entra, { scope: `api://${API}/.default` })
  const reply = await redeem(entra, code, verifier, { client_info: '' })
  t.equal(reply.status, 200)
  t.same(Object.keys(reply.body).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'scope', 'token_type'])
  const access = claimsOf(reply.body.access_token as string)
  t.match(access, { aud: `api://${API}`, iss: `https://sts.windows.net/${entra.tenantId}/`, appid: SPA, appidacr: '0', scp: 'Files.Read Files.Write', upn: 'test.user@contoso.example', ver: '1.0' })
  const verifier1 = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
  t.teardown(() => verifier1.close())
  t.equal((await verifier1.verify(reply.body.access_token as string)).version, '1.0')
})

t.test('sign-in scopes only: a Microsoft Graph token that the API refuses', async t => {
  const entra = new FakeEntra({ autoSignIn: true })
  t.teardown(() => entra.close())
  const { code, verifier } = signIn(entra, { scope: 'openid profile' })
  const reply = await redeem(entra, code, verifier)
  t.equal(reply.status, 200)
  t.match(claimsOf(reply.body.access_token as string), { aud: 'https://graph.microsoft.com', scp: 'openid profile User.Read', ver: '1.0' })
  t.ok(reply.body.id_token)
  const apiVerifier = createEntraVerifier({ clientId: API, ...entra.pluginOptions() })
  t.teardown(() => apiVerifier.close())
  t.match(await apiVerifier.verify(reply.body.access_token as string).catch((err: unknown) => err), { type: 'auth_token_audience_invalid' })
})

t.test('codes are single use, short-lived, and bound to client, redirect URI and challenge', async t => {
  let now = Date.UTC(2026, 0, 1, 12)
  const entra = new FakeEntra({ autoSignIn: true, now: () => now })
  t.teardown(() => entra.close())

  const first = signIn(entra)
  t.equal((await redeem(entra, first.code, first.verifier)).status, 200)
  isInvalidGrant(t, await redeem(entra, first.code, first.verifier), 54005)

  const expired = signIn(entra)
  now += 10 * 60 * 1000
  isInvalidGrant(t, await redeem(entra, expired.code, expired.verifier), 70008)

  const otherClient = signIn(entra)
  isInvalidGrant(t, await redeem(entra, otherClient.code, otherClient.verifier, { client_id: WEB }), 70000)
  isInvalidGrant(t, await redeem(entra, otherClient.code, otherClient.verifier), 54005)

  const otherRedirect = signIn(entra)
  isInvalidGrant(t, await redeem(entra, otherRedirect.code, otherRedirect.verifier, { redirect_uri: 'http://localhost:3000/other' }), 70000)

  const wrongVerifier = signIn(entra)
  isInvalidGrant(t, await redeem(entra, wrongVerifier.code, pkce().verifier), 501481)
  isInvalidGrant(t, await redeem(entra, wrongVerifier.code, wrongVerifier.verifier), 54005, 'a failed redemption used the code up')

  const noVerifier = signIn(entra)
  isInvalidGrant(t, await token(entra, { grant_type: 'authorization_code', client_id: SPA, code: noVerifier.code, redirect_uri: REDIRECT }), 501481)

  isInvalidGrant(t, await redeem(entra, 'not-a-code', first.verifier), 9002313)
  const missing = await token(entra, { grant_type: 'authorization_code', client_id: SPA, redirect_uri: REDIRECT, code_verifier: first.verifier })
  t.match(missing, { status: 400, body: { error: 'invalid_request', error_codes: [900144] } })
})

t.test('a confidential web app redeems with its secret; a wrong or missing secret is invalid_client', async t => {
  const entra = new FakeEntra({ autoSignIn: true, clients: [{ clientId: WEB, secret: 'web-secret' }] })
  t.teardown(() => entra.close())
  const ok = signIn(entra, { client_id: WEB })
  const reply = await redeem(entra, ok.code, ok.verifier, { client_id: WEB, client_secret: 'web-secret' })
  t.equal(reply.status, 200)
  t.equal(claimsOf(reply.body.access_token as string).azpacr, '1', 'authenticated with a secret')
  const wrong = signIn(entra, { client_id: WEB })
  t.match(await redeem(entra, wrong.code, wrong.verifier, { client_id: WEB, client_secret: 'nope' }), { status: 401, body: { error: 'invalid_client', error_codes: [7000215] } })
  const none = signIn(entra, { client_id: WEB })
  t.match(await redeem(entra, none.code, none.verifier, { client_id: WEB }), { status: 401, body: { error: 'invalid_client', error_codes: [7000218] } })
})

t.test('refresh tokens: new tokens, rotation, narrowing only, bound to the client, expiry', async t => {
  let now = Date.UTC(2026, 0, 1, 12)
  const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read', 'Files.Write'] }], now: () => now })
  t.teardown(() => entra.close())
  const { code, verifier } = signIn(entra, { scope: `openid offline_access api://${API}/Files.Read api://${API}/Files.Write` })
  const first = await redeem(entra, code, verifier)
  const refresh = first.body.refresh_token as string

  now += 60_000
  const second = await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: refresh, scope: `openid offline_access api://${API}/Files.Read`, client_info: '1' })
  t.equal(second.status, 200)
  t.equal(claimsOf(second.body.access_token as string).scp, 'Files.Read', 'the scope of a refresh may narrow the grant')
  t.equal(claimsOf(second.body.access_token as string).iat, now / 1000)
  t.ok(second.body.id_token, 'openid: a new ID token')
  t.ok(second.body.client_info)
  t.not(second.body.refresh_token, refresh, 'rotated')
  isInvalidGrant(t, await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: refresh }), 9002313)

  const wider = await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: second.body.refresh_token as string, scope: `api://${API}/Files.Write` })
  isInvalidGrant(t, wider, 65001)

  const again = await redeem(entra, signIn(entra, { scope: `offline_access api://${API}/Files.Read` }).code, '')
  t.equal(again.status, 400, 'an empty verifier is refused')
  const fresh = signIn(entra, { scope: `offline_access api://${API}/Files.Read` })
  const third = await redeem(entra, fresh.code, fresh.verifier)
  const unscoped = await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: third.body.refresh_token as string })
  t.equal(unscoped.status, 200, 'no scope: the same grant')
  t.equal(claimsOf(unscoped.body.access_token as string).scp, 'Files.Read')
  isInvalidGrant(t, await token(entra, { grant_type: 'refresh_token', client_id: WEB, refresh_token: unscoped.body.refresh_token as string }), 70000)

  const late = signIn(entra, { scope: `offline_access api://${API}/Files.Read` })
  const lateTokens = await redeem(entra, late.code, late.verifier)
  now += 24 * 60 * 60 * 1000
  isInvalidGrant(t, await token(entra, { grant_type: 'refresh_token', client_id: SPA, refresh_token: lateTokens.body.refresh_token as string }), 70008)
})

t.test('authorize refusals: PKCE S256 only, response type, scopes go back to the client', async t => {
  const entra = new FakeEntra({ autoSignIn: true, apis: [{ clientId: API, scopes: ['Files.Read'] }] })
  t.teardown(() => entra.close())
  const { challenge } = pkce()
  const back = (overrides: Record<string, string | undefined>): URLSearchParams => {
    const reply = authorize(entra, authorizeParams(challenge, overrides))
    t.equal(reply.status, 302, 'redirected back to the client')
    t.equal(reply.location?.searchParams.get('state'), 'st-1', 'with its state')
    t.equal(reply.location?.searchParams.get('code'), null, 'and no code')
    return reply.location?.searchParams ?? new URLSearchParams()
  }
  t.match(back({ code_challenge_method: 'plain', code_challenge: 'a'.repeat(43) }).get('error_description'), /^AADSTS5000541: .*only S256/)
  t.equal(back({ code_challenge_method: undefined }).get('error'), 'invalid_request', 'no method means plain (RFC 7636 §4.3): refused')
  t.equal(back({ code_challenge: undefined, code_challenge_method: undefined }).get('error'), 'invalid_request', 'PKCE is required')
  t.equal(back({ code_challenge: 'short' }).get('error'), 'invalid_request')
  t.equal(back({ response_type: 'token' }).get('error'), 'unsupported_response_type')
  t.equal(back({ scope: `api://${API}/Files.Delete` }).get('error'), 'invalid_scope')
  t.equal(back({ scope: 'not a scope' }).get('error'), 'invalid_scope')
  t.equal(back({ scope: undefined }).get('error'), 'invalid_request')
  t.equal(grantsOf(entra).codes.size, 0, 'no code was issued')
})

t.test('authorize refusals about the client or the redirect URI are shown, never redirected', async t => {
  const entra = new FakeEntra({ autoSignIn: true, clients: [{ clientId: SPA, redirectUris: [REDIRECT] }] })
  t.teardown(() => entra.close())
  const { challenge } = pkce()
  const shown = (overrides: Record<string, string | undefined>, aadsts: number): void => {
    const reply = authorize(entra, authorizeParams(challenge, overrides))
    t.equal(reply.status, 400)
    t.equal(reply.location, undefined, 'no redirect')
    t.same(JSON.parse(reply.body).error_codes, [aadsts])
  }
  shown({ redirect_uri: 'https://evil.example/cb' }, 50011)
  shown({ redirect_uri: undefined }, 900144)
  shown({ client_id: undefined }, 900144)
  shown({ client_id: 'unknown' }, 700016)
  shown({ response_mode: 'form_post' }, 900144)
  const post = entra.handle({ method: 'POST', url: new URL(entra.authorizationEndpoint).pathname, headers: {}, body: '' })
  t.equal(post.status, 400)

  const open = new FakeEntra({ autoSignIn: true })
  t.teardown(() => open.close())
  for (const uri of ['http://evil.example/cb', 'http://localhost:3000/cb#frag', 'not a url']) {
    const reply = authorize(open, authorizeParams(challenge, { redirect_uri: uri }))
    t.equal(reply.status, 400, `${uri}: refused without registered redirect URIs too`)
  }
  t.equal(authorize(open, authorizeParams(challenge, { redirect_uri: 'http://127.0.0.1:8080/cb' })).status, 302, 'http on loopback is fine')
  t.equal(authorize(open, authorizeParams(challenge, { redirect_uri: 'https://app.example/cb' })).status, 302, 'https anywhere is fine')
})
