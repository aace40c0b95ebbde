import { isIP } from 'node:net'
import { isLoopbackHost } from '../core/http.js'
import { resolveClient, type AuthorizationContext, type UserGrant } from './grants.js'
import { errorResponse, OAuthError, type FakeHttpRequest, type FakeHttpResponse } from './oauth.js'
import { notOnLoopback, signInPage } from './sign-in-page.js'
import { userGrantScopes } from './token-endpoint.js'
import { consentedScopes, oneOffUser, testUsers, type SignedInUser } from './users.js'

export const RESPONSE_MODES = ['query', 'fragment'] as const

/** Unregistered clients may use any `https` URL and `http` on loopback, as Entra allows for development. */
function checkRedirectUri (registered: string[] | undefined, value: string | null): string {
  if (value === null || value === '') throw new OAuthError('invalid_request', 900144, "The request body must contain the following parameter: 'redirect_uri'.")
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new OAuthError('invalid_request', 50011, `The redirect URI '${value}' is not an absolute URL.`)
  }
  const allowed = registered !== undefined
    ? registered.includes(value)
    : url.hash === '' && (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname)))
  if (!allowed) throw new OAuthError('invalid_request', 50011, `The redirect URI '${value}' specified in the request does not match the redirect URIs configured for the application.`)
  return value
}

function redirect (redirectUri: string, mode: string, params: Record<string, string | undefined>): FakeHttpResponse {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined) search.set(name, value)
  const url = new URL(redirectUri)
  if (mode === 'fragment') url.hash = search.toString()
  else for (const [name, value] of search) url.searchParams.append(name, value)
  return { status: 302, headers: { location: url.toString(), 'cache-control': 'no-store', pragma: 'no-cache' }, body: '' }
}

function fromLoopback (request: FakeHttpRequest): boolean {
  const peer = request.remoteAddress
  if (peer === undefined) return true
  const v4 = peer.startsWith('::ffff:') ? peer.slice(7) : peer
  return (isIP(v4) === 4 && v4.startsWith('127.')) || peer === '::1'
}

function whoSignsIn (ctx: AuthorizationContext, request: FakeHttpRequest, query: URLSearchParams, grant: Pick<UserGrant, 'resource' | 'scopes'>): SignedInUser | FakeHttpResponse {
  const users = testUsers(ctx.authorization)
  const hint = query.get('login_hint') ?? undefined
  if (request.method === 'GET' && (query.get('prompt') === 'none' || ctx.authorization.autoSignIn === true)) {
    if (hint === undefined || hint === '') return users[0] as SignedInUser
    const hinted = users.find(user => user.username.toLowerCase() === hint.toLowerCase())
    if (hinted === undefined) throw new OAuthError('login_required', 50058, `A silent sign-in request was sent but the user '${hint}' is not a test user of this fake Entra.`)
    return hinted
  }
  if (!fromLoopback(request)) return notOnLoopback()
  const page = (error?: string): FakeHttpResponse => signInPage({
    action: request.url,
    clientId: query.get('client_id') as string,
    asked: (query.get('scope') ?? '').split(' ').filter(scope => scope !== ''),
    users: users.map(user => ({ user, scopes: consentedScopes(user, grant.resource, grant.scopes) })),
    ...(hint === undefined ? {} : { loginHint: hint }),
    ...(error === undefined ? {} : { error })
  }, error === undefined ? 200 : 400)
  if (request.method === 'GET') return page()
  const form = new URLSearchParams(request.body)
  const picked = form.get('user')
  if (picked !== null) {
    const user = users.find(candidate => candidate.oid === picked)
    if (user === undefined) throw new OAuthError('invalid_request', 50034, `The user account '${picked}' does not exist in the directory of this fake Entra.`)
    return user
  }
  try {
    return oneOffUser(form.get('username') ?? '', form.get('roles') ?? '')
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
    return page(err.message)
  }
}

/** `GET /{tenant}/oauth2/v2.0/authorize` (RFC 6749 §4.1.1); client and redirect URI errors are shown, never redirected (§4.1.2.1). */
export function authorizeEndpoint (ctx: AuthorizationContext, request: FakeHttpRequest): FakeHttpResponse {
  const query = new URL(request.url, 'http://fake-entra.invalid').searchParams
  const state = query.get('state') ?? undefined
  let redirectUri: string
  let mode: string
  try {
    if (request.method !== 'GET' && request.method !== 'POST') throw new OAuthError('invalid_request', 900561, `The endpoint only accepts GET and POST requests. Received a ${request.method} request.`)
    const clientId = query.get('client_id')
    if (clientId === null || clientId === '') throw new OAuthError('invalid_request', 900144, "The request body must contain the following parameter: 'client_id'.")
    const client = resolveClient(ctx, clientId)
    redirectUri = checkRedirectUri(client.redirectUris, query.get('redirect_uri'))
    mode = query.get('response_mode') ?? 'query'
    if (!(RESPONSE_MODES as readonly string[]).includes(mode)) throw new OAuthError('invalid_request', 900144, `The response_mode '${mode}' is not supported: use ${RESPONSE_MODES.join(' or ')}.`)
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
    return errorResponse(err, ctx.now(), request.headers['client-request-id'])
  }
  try {
    const responseType = query.get('response_type')
    if (responseType !== 'code') throw new OAuthError('unsupported_response_type', 700054, `response_type '${responseType ?? ''}' is not enabled for the application: this fake Entra supports 'code'.`)
    const challenge = query.get('code_challenge')
    const method = query.get('code_challenge_method') ?? 'plain'
    if (challenge === null || challenge === '') throw new OAuthError('invalid_request', 9002325, 'Proof Key for Code Exchange is required: send code_challenge and code_challenge_method=S256.')
    if (method !== 'S256') throw new OAuthError('invalid_request', 5000541, `The code_challenge_method '${method}' is not supported: this fake Entra accepts only S256.`)
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) throw new OAuthError('invalid_request', 5000542, 'The code_challenge is not a BASE64URL-encoded SHA-256 digest.')
    const clientId = query.get('client_id') as string
    const scopes = userGrantScopes(ctx, clientId, query.get('scope') ?? undefined)
    const user = whoSignsIn(ctx, request, query, scopes)
    if (!('oid' in user)) return user
    const granted = consentedScopes(user, scopes.resource, scopes.scopes)
    if (granted.length === 0) throw new OAuthError('consent_required', 65001, `The user '${user.username}' has not consented to use the application '${clientId}' with scope '${scopes.scopes.join(' ')}'.`)
    const nonce = query.get('nonce') ?? undefined
    const code = ctx.grants.issueCode({ clientId, confidential: false, ...scopes, scopes: granted, ...(nonce === undefined ? {} : { nonce }), user, redirectUri, codeChallenge: challenge }, ctx.now())
    return redirect(redirectUri, mode, { code, state })
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
    return redirect(redirectUri, mode, { error: err.error, error_description: `AADSTS${err.aadsts}: ${err.message}`, state })
  }
}
