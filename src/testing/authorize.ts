import { isLoopbackHost } from '../core/http.js'
import { resolveClient, type AuthorizationContext } from './grants.js'
import { errorResponse, OAuthError, type FakeHttpRequest, type FakeHttpResponse } from './oauth.js'
import { userGrantScopes } from './token-endpoint.js'

/** How the authorize endpoint returns its answer (OAuth 2.0 Multiple Response Type Encoding Practices). */
export const RESPONSE_MODES = ['query', 'fragment'] as const

/**
 * The redirect URI, if the client may use it: one of its registered URIs, or (no URIs registered)
 * any `https` URL and `http` on loopback, as Entra accepts for development (AADSTS50011 otherwise).
 * RFC 6749 §3.1.2: absolute, without a fragment.
 */
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

/**
 * `GET /{tenant}/oauth2/v2.0/authorize` (RFC 6749 §4.1.1): signs in the configured test user at
 * once, with no form, and redirects back with `code` and `state`. PKCE is required and only
 * `S256` is accepted (RFC 7636 §4.2; `plain` offers no protection when the request can be read).
 * Errors about the client or the redirect URI are shown, never redirected (RFC 6749 §4.1.2.1);
 * the others go back to the client as `error` and `error_description`.
 */
export function authorizeEndpoint (ctx: AuthorizationContext, request: FakeHttpRequest): FakeHttpResponse {
  const query = new URL(request.url, 'http://fake-entra.invalid').searchParams
  const state = query.get('state') ?? undefined
  let redirectUri: string
  let mode: string
  try {
    if (request.method !== 'GET') throw new OAuthError('invalid_request', 900561, `The endpoint only accepts GET requests. Received a ${request.method} request.`)
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
    // RFC 7636 §4.2: BASE64URL of a SHA-256 digest is 43 characters.
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) throw new OAuthError('invalid_request', 5000542, 'The code_challenge is not a BASE64URL-encoded SHA-256 digest.')
    const clientId = query.get('client_id') as string
    const scopes = userGrantScopes(ctx, clientId, query.get('scope') ?? undefined)
    const nonce = query.get('nonce') ?? undefined
    const code = ctx.grants.issueCode({ clientId, confidential: false, ...scopes, ...(nonce === undefined ? {} : { nonce }), redirectUri, codeChallenge: challenge }, ctx.now())
    return redirect(redirectUri, mode, { code, state })
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
    return redirect(redirectUri, mode, { error: err.error, error_description: `AADSTS${err.aadsts}: ${err.message}`, state })
  }
}
