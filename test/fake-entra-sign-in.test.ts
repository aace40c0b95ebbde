/**
 * The fake Entra's sign-in page at the authorize endpoint: test users and a one-off user, the
 * button flow (a plain HTML form posting back), escaping, `prompt=none`, `autoSignIn`, user
 * consent to scopes, and the page being answered to loopback peers only.
 */
import { createHash, randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { grantsOf } from '../src/testing/fake-entra.js'
import { FAKE_USER_ID, FakeEntra, startFakeEntraServer, type FakeEntraOptions, type FakeHttpResponse } from '../src/testing/index.js'

const API = '00000000-0000-4000-8000-0000000000a1'
const SPA = '00000000-0000-4000-8000-0000000000b1'
const REDIRECT = 'http://localhost:3000/'
const ADA = { name: 'Ada Lovelace', username: 'ada@contoso.example', oid: '00000000-0000-4000-8000-00000000ada0', roles: ['Admin'] }
const GRACE = { username: 'grace.hopper@contoso.example', roles: [], scopes: ['access_as_user'] }

interface Flow { entra: FakeEntra, verifier: string, path: string }

function claimsOf (jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString())
}

function fake (t: Test, options: FakeEntraOptions = {}): FakeEntra {
  const entra = new FakeEntra({ apis: [{ clientId: API, scopes: ['access_as_user', 'Files.Read'] }], user: ADA, users: [GRACE], ...options })
  t.teardown(() => entra.close())
  return entra
}

/** The authorize request's path and query, with a fresh PKCE pair. */
function start (entra: FakeEntra, params: Record<string, string> = {}): Flow {
  const verifier = randomBytes(32).toString('base64url')
  const query = new URLSearchParams({
    client_id: SPA,
    response_type: 'code',
    redirect_uri: REDIRECT,
    scope: `openid profile offline_access api://${API}/access_as_user api://${API}/Files.Read`,
    state: 'st-1',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    ...params
  })
  return { entra, verifier, path: `${new URL(entra.authorizationEndpoint).pathname}?${query.toString()}` }
}

function get (flow: Flow, remoteAddress?: string): FakeHttpResponse {
  return flow.entra.handle({ method: 'GET', url: flow.path, headers: {}, body: '', ...(remoteAddress === undefined ? {} : { remoteAddress }) })
}

/** Submits a form of the page, as a browser does: POST to its action, urlencoded. */
function submit (flow: Flow, action: string, fields: Record<string, string>, remoteAddress?: string): FakeHttpResponse {
  return flow.entra.handle({ method: 'POST', url: action, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(), ...(remoteAddress === undefined ? {} : { remoteAddress }) })
}

/** `&#38;` → `&`: the HTML character references the page writes, decoded. */
function unescape (html: string): string {
  return html.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
}

/** The page's forms: action, and the buttons' name/value pairs. */
function forms (html: string): Array<{ action: string, buttons: Array<[string, string]> }> {
  return [...html.matchAll(/<form method="post" action="([^"]*)">([\s\S]*?)<\/form>/g)].map(match => ({
    action: unescape(match[1] as string),
    buttons: [...(match[2] as string).matchAll(/<button type="submit" name="([^"]+)" value="([^"]*)"/g)].map(button => [button[1] as string, unescape(button[2] as string)] as [string, string])
  }))
}

async function redeem (flow: Flow, reply: FakeHttpResponse): Promise<Record<string, unknown>> {
  const location = new URL(reply.headers.location as string)
  const code = location.searchParams.get('code')
  if (reply.status !== 302 || code === null) throw new Error(`no code: ${reply.status} ${reply.headers.location ?? reply.body}`)
  const response = await request(flow.entra.tokenEndpoint, {
    method: 'POST',
    dispatcher: flow.entra.dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: SPA, code, redirect_uri: REDIRECT, code_verifier: flow.verifier, client_info: '1' }).toString()
  })
  return await response.body.json() as Record<string, unknown>
}

t.test('the page lists the test users with their roles and scopes, a button each, and a one-off form', async t => {
  const entra = fake(t)
  const flow = start(entra)
  const page = get(flow)
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html; charset=utf-8$/)
  t.equal(page.headers['cache-control'], 'no-store')
  t.match(page.headers['content-security-policy'], /default-src 'none'/, 'no script runs on it')
  t.match(page.headers['content-security-policy'], /frame-ancestors 'none'/)
  t.notMatch(page.body, /<script/i, 'plain HTML')
  t.equal(grantsOf(entra).codes.size, 0, 'no code before a choice')

  const graceOid = /<code>([\da-f-]{36})<\/code><\/td>\s*<td><span class="none">none<\/span>/.exec(page.body)?.[1]
  t.ok(graceOid, "Grace's row: her oid, and no app roles")
  for (const shown of ['Ada Lovelace', 'ada@contoso.example', ADA.oid, '<code>Admin</code>', 'Grace Hopper', 'grace.hopper@contoso.example']) t.match(page.body, shown)
  t.match(page.body, /ada@contoso\.example[\s\S]*<code>access_as_user<\/code> <code>Files\.Read<\/code>[\s\S]*grace\.hopper/, 'Ada is granted both scopes')
  t.match(page.body, /grace\.hopper@contoso\.example[\s\S]*<td><code>access_as_user<\/code><\/td>/, 'Grace only the one she consented to')
  const [users, oneOff] = forms(page.body)
  t.equal(users?.action, flow.path, 'the forms post back to the authorize request')
  t.same(users?.buttons, [['user', ADA.oid], ['user', graceOid]], 'a button per user, default first')
  t.equal(oneOff?.action, flow.path)
  t.match(page.body, /<input name="username" required/)
  t.match(page.body, /<input name="roles"/)
})

t.test('picking a user on the page completes the code flow as that user', async t => {
  const entra = fake(t)
  const flow = start(entra)
  const [users] = forms(get(flow).body)
  const [name, graceOid] = users?.buttons[1] as [string, string]
  const reply = submit(flow, users?.action as string, { [name]: graceOid })
  t.equal(reply.status, 302)
  t.equal(new URL(reply.headers.location as string).searchParams.get('state'), 'st-1')
  const tokens = await redeem(flow, reply)
  const access = claimsOf(tokens.access_token as string)
  t.match(access, { oid: graceOid, name: 'Grace Hopper', preferred_username: 'grace.hopper@contoso.example', scp: 'access_as_user' })
  t.notOk('roles' in access, 'no app roles assigned')
  t.match(claimsOf(tokens.id_token as string), { oid: graceOid, preferred_username: 'grace.hopper@contoso.example' })
  t.same(JSON.parse(Buffer.from(tokens.client_info as string, 'base64url').toString()), { uid: graceOid, utid: entra.tenantId })
  t.equal(tokens.scope, `api://${API}/access_as_user`, 'the reply names the scopes granted')

  // MSAL refreshes with the scopes it first asked for: the user's consent caps them again.
  const refreshed = await request(entra.tokenEndpoint, {
    method: 'POST',
    dispatcher: entra.dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', client_id: SPA, refresh_token: tokens.refresh_token as string, scope: `openid offline_access api://${API}/access_as_user api://${API}/Files.Read` }).toString()
  })
  const refreshedBody = await refreshed.body.json() as Record<string, unknown>
  t.equal(refreshed.statusCode, 200)
  t.match(claimsOf(refreshedBody.access_token as string), { oid: graceOid, scp: 'access_as_user' }, 'the refresh token keeps the user')

  const ada = await redeem(flow, submit(flow, users?.action as string, { user: ADA.oid }))
  t.match(claimsOf(ada.access_token as string), { oid: ADA.oid, name: 'Ada Lovelace', roles: ['Admin'], scp: 'access_as_user Files.Read' })

  const unknown = submit(flow, users?.action as string, { user: '00000000-0000-4000-8000-00000000dead' })
  t.equal(unknown.status, 302)
  t.match(new URL(unknown.headers.location as string).searchParams.get('error_description'), /^AADSTS50034: /)
})

t.test('a one-off user: the username and app roles typed in, an object ID that stays the same', async t => {
  const entra = fake(t)
  const flow = start(entra)
  const [, oneOff] = forms(get(flow).body)
  const first = await redeem(flow, submit(flow, oneOff?.action as string, { username: ' alan.turing@contoso.example ', roles: 'Reports.Read, Admin Reports.Read' }))
  const access = claimsOf(first.access_token as string)
  t.match(access, { name: 'Alan Turing', preferred_username: 'alan.turing@contoso.example', roles: ['Reports.Read', 'Admin'], scp: 'access_as_user Files.Read' })
  t.match(access.oid, /^[\da-f]{8}-[\da-f]{4}-4[\da-f]{3}-8[\da-f]{3}-[\da-f]{12}$/)
  t.not(access.oid, FAKE_USER_ID)
  const again = await redeem(flow, submit(flow, oneOff?.action as string, { username: 'alan.turing@contoso.example' }))
  t.equal(claimsOf(again.access_token as string).oid, access.oid, 'same username, same oid')
  t.notOk('roles' in claimsOf(again.access_token as string), 'no roles typed: none')

  for (const [fields, why] of [[{ username: 'not a username' }, /name@domain/], [{}, /name@domain/], [{ username: 'x@y.example', roles: 'A'.repeat(121) }, /App roles/]] as const) {
    const page = submit(flow, oneOff?.action as string, fields)
    t.equal(page.status, 400, 'shown again to be corrected')
    t.match(page.headers['content-type'], /^text\/html/)
    t.match(page.body, why)
    t.match(page.body, /class="error" role="alert"/)
  }
  t.equal(grantsOf(entra).codes.size, 0, 'no code for a refused one-off user (the others were redeemed)')
})

t.test('everything shown is escaped', async t => {
  const evil = '<img src=x onerror=alert(1)>"\'`='
  const entra = new FakeEntra({ user: { name: evil, username: `x${evil}@evil.example`, oid: `o${evil}`, roles: [`R${evil}`] }, users: [{ username: 'b@evil.example', scopes: [evil] }] })
  t.teardown(() => entra.close())
  const flow = start(entra, { client_id: `c${evil}`, scope: `openid api://${API}/s${encodeURIComponent('<b>')}`, login_hint: `h${evil}` })
  // A raw query too, as a browser may send it: quotes and angle brackets unencoded.
  const raw = { ...flow, path: `${flow.path}&extra="><script>alert(2)</script>` }
  for (const page of [get(flow), get(raw), submit(raw, raw.path, { username: evil })]) {
    t.notMatch(page.body, /<img|<script|<b>|onerror=alert\(1\)>/, 'no markup from the request or the options')
    t.notMatch(page.body, /['`]|src=x|"x|"o<|"h</, 'no attribute breaks out (the template has no \' or `)')
  }
  const page = get(flow)
  t.match(page.body, '&#60;img src&#61;x onerror&#61;alert(1)&#62;&#34;&#39;&#96;&#61;', 'the name, escaped')
  t.match(page.body, 'value="h&#60;img', 'the login_hint prefills the one-off username, escaped')
  const [users] = forms(get(raw).body)
  t.equal(users?.action, raw.path, 'the action decodes back to the request')
  t.equal(users?.buttons[0]?.[1], `o${evil}`, 'and the button to the oid')
})

t.test('prompt=none signs in the default user (or the login_hint one) with no page; autoSignIn always', async t => {
  const entra = fake(t)
  const silent = start(entra, { prompt: 'none' })
  const tokens = await redeem(silent, get(silent))
  t.match(claimsOf(tokens.access_token as string), { oid: ADA.oid, name: 'Ada Lovelace' })

  const hinted = start(entra, { prompt: 'none', login_hint: 'GRACE.hopper@contoso.example' })
  t.match(claimsOf((await redeem(hinted, get(hinted))).access_token as string), { preferred_username: 'grace.hopper@contoso.example' })

  const stranger = get(start(entra, { prompt: 'none', login_hint: 'nobody@contoso.example' }))
  t.equal(stranger.status, 302)
  const error = new URL(stranger.headers.location as string).searchParams
  t.equal(error.get('error'), 'login_required')
  t.match(error.get('error_description'), /^AADSTS50058: /)
  t.equal(error.get('state'), 'st-1')

  t.equal(get(start(entra, { prompt: 'select_account' })).status, 200, 'select_account shows the page')
  t.equal(get(start(entra, { prompt: 'login' })).status, 200)

  const auto = fake(t, { autoSignIn: true })
  const instant = start(auto)
  const reply = get(instant)
  t.equal(reply.status, 302, 'autoSignIn: redirected at once')
  t.match(claimsOf((await redeem(instant, reply)).access_token as string), { oid: ADA.oid })
  const plain = new FakeEntra({ autoSignIn: true })
  t.teardown(() => plain.close())
  const defaultFlow = start(plain, { scope: 'openid profile' })
  t.match(claimsOf((await redeem(defaultFlow, get(defaultFlow))).id_token as string), { oid: FAKE_USER_ID, name: 'Test User', preferred_username: 'test.user@contoso.example' }, 'with no users configured: Test User')
})

t.test('a user who consented to none of the scopes asked for: consent_required, not a token', async t => {
  const entra = fake(t)
  const flow = start(entra, { scope: `openid api://${API}/Files.Read`, prompt: 'none', login_hint: GRACE.username })
  const reply = get(flow)
  const error = new URL(reply.headers.location as string).searchParams
  t.equal(error.get('error'), 'consent_required')
  t.match(error.get('error_description'), /^AADSTS65001: /)
  const page = get(start(entra, { scope: `openid api://${API}/Files.Read` }))
  t.match(page.body, /none of those asked \(consent_required\)/, 'the page says so before the choice')
})

t.test('the page and its forms answer loopback peers only; prompt=none and autoSignIn answer anyone', async t => {
  const entra = fake(t)
  const flow = start(entra)
  for (const peer of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) t.equal(get(flow, peer).status, 200, `page for ${peer}`)
  for (const peer of ['203.0.113.7', '::ffff:203.0.113.7', '2001:db8::1', '10.0.0.1']) {
    const page = get(flow, peer)
    t.equal(page.status, 403, `no page for ${peer}`)
    t.match(page.body, /loopback clients only/)
    t.equal(submit(flow, flow.path, { user: ADA.oid }, peer).status, 403, 'nor a sign-in by form')
  }
  t.equal(get(start(entra, { prompt: 'none' }), '203.0.113.7').status, 302)
  t.equal(grantsOf(entra).codes.size, 1)

  // Over the loopback server, the peer is the socket's.
  const server = await startFakeEntraServer({ log: null, user: ADA })
  t.teardown(() => server.close())
  const url = new URL(start(server.entra).path, server.origin)
  const response = await fetch(url)
  t.equal(response.status, 200)
  t.match(await response.text(), /Sign in as Ada Lovelace/)
  const posted = await fetch(url, { method: 'POST', body: new URLSearchParams({ user: ADA.oid }), redirect: 'manual' })
  t.equal(posted.status, 302)
  t.match(posted.headers.get('location'), /^http:\/\/localhost:3000\/\?code=[\w-]{43}&state=st-1$/)
})

t.test('misconfigured users fail at construction, naming the option', async t => {
  t.throws(() => new FakeEntra({ user: { username: 'a@b.example' }, users: [{ username: 'A@b.example' }] }), { name: 'TypeError', message: /same username a@b\.example.*oid and username/ })
  t.throws(() => new FakeEntra({ users: [{ username: 'a@b.example', oid: 'x' }, { username: 'c@b.example', oid: 'x' }] }), { name: 'TypeError', message: /same oid x/ })
  const onlyUsers = new FakeEntra({ autoSignIn: true, users: [{ username: 'first@b.example' }, { username: 'second@b.example' }] })
  t.teardown(() => onlyUsers.close())
  const flow = start(onlyUsers, { scope: 'openid' })
  t.match(claimsOf((await redeem(flow, get(flow))).id_token as string), { preferred_username: 'first@b.example', name: 'First' }, 'without `user`, the first of `users` is the default')
})

t.test('GET and POST only', async t => {
  const entra = fake(t)
  const reply = entra.handle({ method: 'PUT', url: start(entra).path, headers: {}, body: '' })
  t.equal(reply.status, 400)
  t.same(JSON.parse(reply.body).error_codes, [900561])
})
