import {
  appOnlyToken, clientInfo, delegatedToken, idToken, resolveApi, resolveClient, tokenLifetime,
  type AuthorizationContext, type ResolvedApi, type SignedInUser, type UserGrant
} from './grants.js'
import { assertedUser, type AssertedUser } from './assertion.js'
import {
  errorResponse, jsonResponse, OAuthError, parseScopes, s256, sameSecret,
  type FakeEntraClient, type FakeHttpRequest, type FakeHttpResponse, type ParsedScopes
} from './oauth.js'
import { consentedScopes, testUsers } from './users.js'

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

export const GRANT_TYPES = ['authorization_code', 'client_credentials', 'refresh_token', JWT_BEARER] as const

export const AUTH_METHODS = ['client_secret_post', 'client_secret_basic', 'none'] as const

type Form = Map<string, string>

function parseForm (request: FakeHttpRequest): Form {
  const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') {
    throw new OAuthError('invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'. Send the parameters as application/x-www-form-urlencoded.")
  }
  const form: Form = new Map()
  for (const [name, value] of new URLSearchParams(request.body)) {
    if (form.has(name)) throw new OAuthError('invalid_request', 90014, `The request contains the parameter '${name}' more than once.`)
    form.set(name, value)
  }
  return form
}

function required (form: Form, name: string): string {
  const value = form.get(name)
  if (value === undefined || value === '') throw new OAuthError('invalid_request', 900144, `The request body must contain the following parameter: '${name}'.`)
  return value
}

function basicCredentials (header: string | undefined): { clientId: string, secret: string } | undefined {
  if (header === undefined) return undefined
  const match = /^Basic +([A-Za-z0-9+/]+=*)$/i.exec(header.trim())
  const decoded = match === null ? '' : Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) throw new OAuthError('invalid_client', 7000215, 'Invalid client secret provided: the Authorization header is not HTTP Basic credentials.', 401, { 'www-authenticate': 'Basic realm="fake-entra"' })
  try {
    const unescape = (value: string): string => decodeURIComponent(value.replaceAll('+', ' '))
    return { clientId: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) }
  } catch {
    throw new OAuthError('invalid_client', 7000215, 'Invalid client secret provided: the credentials of the Authorization header are not form-urlencoded (RFC 6749 section 2.3.1).', 401, { 'www-authenticate': 'Basic realm="fake-entra"' })
  }
}

/** RFC 6749 §2.3: a secret in the form or in Basic, never both; `publicAllowed` for PKCE clients. */
function authenticateClient (ctx: AuthorizationContext, request: FakeHttpRequest, form: Form, publicAllowed: boolean): { client: FakeEntraClient, confidential: boolean } {
  const basic = basicCredentials(request.headers.authorization)
  // RFC 6749 §5.2: a client that authenticated with the Authorization header gets a matching challenge.
  const challenge: Record<string, string> = basic === undefined ? {} : { 'www-authenticate': 'Basic realm="fake-entra"' }
  if (basic !== undefined && form.has('client_secret')) throw new OAuthError('invalid_request', 90014, 'The client sent credentials both in the Authorization header and in the body; use one method (RFC 6749 section 2.3).')
  const formId = form.get('client_id')
  if (basic !== undefined && formId !== undefined && formId !== basic.clientId) throw new OAuthError('invalid_request', 90014, 'The client_id in the body does not match the one in the Authorization header.')
  const clientId = basic?.clientId ?? formId
  if (clientId === undefined || clientId === '') throw new OAuthError('invalid_request', 900144, "The request body must contain the following parameter: 'client_id'.")
  const client = resolveClient(ctx, clientId)
  const secret = basic?.secret ?? form.get('client_secret')
  if (secret === undefined || secret === '') {
    if (publicAllowed && client.secret === undefined) return { client, confidential: false }
    throw new OAuthError('invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", 401, challenge)
  }
  // Entra refuses a secret from a client registered as public: it could otherwise get app-only tokens.
  if (client.known && client.secret === undefined) {
    throw new OAuthError('invalid_client', 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.", 401, challenge)
  }
  if (client.secret !== undefined && !sameSecret(secret, client.secret)) {
    throw new OAuthError('invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`, 401, challenge)
  }
  return { client, confidential: true }
}

function delegatedScopes (api: ResolvedApi, clientId: string, parsed: ParsedScopes): string[] {
  if (parsed.names.length === 0) return [...parsed.oidc.filter(scope => scope !== 'offline_access'), 'User.Read']
  const granted = new Set<string>()
  for (const name of parsed.names) {
    if (name === '.default') {
      for (const scope of api.scopes ?? ['access_as_user']) granted.add(scope)
      continue
    }
    if (api.scopes !== undefined && !api.scopes.includes(name)) {
      throw new OAuthError('invalid_scope', 650053, `The application '${clientId}' asked for scope '${name}' that doesn't exist on the resource '${api.clientId}'.`)
    }
    granted.add(name)
  }
  return [...granted]
}

export function userGrantScopes (ctx: AuthorizationContext, clientId: string, scope: string | undefined): Pick<UserGrant, 'resource' | 'scopes' | 'oidc'> {
  const parsed = parseScopes(scope)
  const api = resolveApi(ctx, parsed.resource)
  return { resource: parsed.resource, scopes: delegatedScopes(api, clientId, parsed), oidc: parsed.oidc }
}

function clientCredentials (ctx: AuthorizationContext, request: FakeHttpRequest, form: Form): FakeHttpResponse {
  const { client } = authenticateClient(ctx, request, form, false)
  const scope = required(form, 'scope')
  const parsed = parseScopes(scope)
  if (parsed.oidc.length > 0 || parsed.names.length !== 1 || parsed.names[0] !== '.default') {
    throw new OAuthError('invalid_scope', 1002012, `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`)
  }
  const api = resolveApi(ctx, parsed.resource)
  const lifetime = tokenLifetime(ctx)
  return jsonResponse(200, { token_type: 'Bearer', expires_in: lifetime, ext_expires_in: lifetime, access_token: appOnlyToken(ctx, api, client) })
}

function userTokens (ctx: AuthorizationContext, grant: UserGrant, form: Form): FakeHttpResponse {
  const api = resolveApi(ctx, grant.resource)
  const lifetime = tokenLifetime(ctx)
  const prefix = api.clientId === grant.resource.clientId ? `${grant.resource.uri}/` : ''
  const body: Record<string, unknown> = {
    token_type: 'Bearer',
    scope: grant.scopes.map(name => prefix + name).join(' '),
    expires_in: lifetime,
    ext_expires_in: lifetime,
    access_token: delegatedToken(ctx, api, grant)
  }
  if (grant.oidc.includes('offline_access')) body.refresh_token = ctx.grants.issueRefreshToken(grant, ctx.now())
  if (grant.oidc.includes('openid')) body.id_token = idToken(ctx, grant)
  if (form.get('client_info') === '1') body.client_info = clientInfo(ctx, grant.user)
  return jsonResponse(200, body)
}

function authorizationCode (ctx: AuthorizationContext, request: FakeHttpRequest, form: Form): FakeHttpResponse {
  const { client, confidential } = authenticateClient(ctx, request, form, true)
  const code = required(form, 'code')
  const redirectUri = required(form, 'redirect_uri')
  const verifier = form.get('code_verifier')
  const grant = ctx.grants.takeCode(code, ctx.now())
  // RFC 6749 §4.1.3: the code is bound to the client it was issued to and to the redirect URI.
  if (grant.clientId !== client.clientId) throw new OAuthError('invalid_grant', 70000, "The provided value for the 'code' parameter is not valid: it was issued to another client.")
  if (grant.redirectUri !== redirectUri) throw new OAuthError('invalid_grant', 70000, "The provided value for the 'redirect_uri' parameter is not valid: it does not match the redirect URI of the authorization request.")
  // RFC 7636 §4.6: S256 of the verifier must equal the challenge sent to the authorize endpoint.
  if (verifier === undefined || verifier === '') throw new OAuthError('invalid_grant', 501481, "The Code_Verifier is missing: send the 'code_verifier' that matches the code_challenge of the authorization request.")
  if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || s256(verifier) !== grant.codeChallenge) {
    throw new OAuthError('invalid_grant', 501481, 'The Code_Verifier does not match the code_challenge supplied in the authorization request.')
  }
  return userTokens(ctx, { clientId: grant.clientId, confidential, resource: grant.resource, scopes: grant.scopes, oidc: grant.oidc, ...(grant.nonce === undefined ? {} : { nonce: grant.nonce }), user: grant.user }, form)
}

function refreshToken (ctx: AuthorizationContext, request: FakeHttpRequest, form: Form): FakeHttpResponse {
  const { client, confidential } = authenticateClient(ctx, request, form, true)
  const grant = ctx.grants.takeRefreshToken(required(form, 'refresh_token'), ctx.now())
  if (grant.clientId !== client.clientId) throw new OAuthError('invalid_grant', 70000, "The provided value for the 'refresh_token' parameter is not valid: it was issued to another client.")
  let next: UserGrant = { ...grant, confidential, oidc: grant.oidc.includes('offline_access') ? grant.oidc : [...grant.oidc, 'offline_access'] }
  const scope = form.get('scope')
  if (scope !== undefined && scope !== '') {
    // RFC 6749 §6: the scope of a refresh may narrow the grant, never widen it.
    const asked = userGrantScopes(ctx, client.clientId, scope)
    const consented = consentedScopes(grant.user, asked.resource, asked.scopes)
    const widened = asked.resource.clientId !== grant.resource.clientId ? consented : consented.filter(name => !grant.scopes.includes(name))
    if (widened.length > 0 || consented.length === 0) throw new OAuthError('invalid_grant', 65001, `The user or administrator has not consented to use the application '${client.clientId}' with scope '${(consented.length === 0 ? asked.scopes : widened).join(' ')}'. Send an interactive authorization request for this user and resource.`)
    asked.scopes = consented
    next = { ...next, scopes: asked.scopes, oidc: [...new Set([...asked.oidc, 'offline_access'])] }
  }
  return userTokens(ctx, next, form)
}

function onBehalfOfUser (ctx: AuthorizationContext, asserted: AssertedUser): SignedInUser {
  const known = testUsers(ctx.authorization).find(user => user.oid === asserted.oid)
  if (known !== undefined) return known
  return { oid: asserted.oid, name: asserted.name ?? asserted.username ?? asserted.oid, username: asserted.username ?? '', roles: asserted.roles, scopes: undefined }
}

function consented (client: FakeEntraClient, api: ResolvedApi, parsed: ParsedScopes, scopes: string[]): string[] {
  if (client.permissions === undefined) return scopes
  const permitted = scopes.filter(scope => client.permissions?.includes(`api://${api.clientId}/${scope}`) === true)
  const missing = parsed.names.includes('.default') ? (permitted.length === 0 ? scopes : []) : scopes.filter(scope => !permitted.includes(scope))
  if (missing.length === 0) return permitted
  const error = new OAuthError('invalid_grant', 65001, `The user or administrator has not consented to use the application with ID '${client.clientId}' for scope '${missing.join(' ')}' of '${parsed.resource.uri}'. Send an interactive authorization request for this user and resource.`)
  error.suberror = 'consent_required'
  throw error
}

function onBehalfOf (ctx: AuthorizationContext, request: FakeHttpRequest, form: Form): FakeHttpResponse {
  const { client } = authenticateClient(ctx, request, form, false)
  const use = required(form, 'requested_token_use')
  if (use !== 'on_behalf_of') throw new OAuthError('invalid_request', 70003, `The requested_token_use '${use}' is not supported: the jwt-bearer grant of this fake Entra is on-behalf-of (requested_token_use=on_behalf_of).`)
  const asserted = assertedUser(ctx, required(form, 'assertion'), client.clientId)
  const parsed = parseScopes(required(form, 'scope'))
  const api = resolveApi(ctx, parsed.resource)
  const scopes = consented(client, api, parsed, delegatedScopes(api, client.clientId, parsed))
  const user = onBehalfOfUser(ctx, asserted)
  return userTokens(ctx, { clientId: client.clientId, confidential: true, resource: parsed.resource, scopes, oidc: parsed.oidc, user }, form)
}

/** `POST /{tenant}/oauth2/v2.0/token` (RFC 6749 §3.2); failures are Entra's JSON error replies. */
export function tokenEndpoint (ctx: AuthorizationContext, request: FakeHttpRequest): FakeHttpResponse {
  try {
    if (request.method !== 'POST') throw new OAuthError('invalid_request', 900561, `The endpoint only accepts POST, OPTIONS requests. Received a ${request.method} request.`)
    const form = parseForm(request)
    const grantType = required(form, 'grant_type')
    if (grantType === 'client_credentials') return clientCredentials(ctx, request, form)
    if (grantType === 'authorization_code') return authorizationCode(ctx, request, form)
    if (grantType === 'refresh_token') return refreshToken(ctx, request, form)
    if (grantType === JWT_BEARER) return onBehalfOf(ctx, request, form)
    throw new OAuthError('unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grantType}'. This fake Entra supports ${GRANT_TYPES.join(', ')}.`)
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
    return errorResponse(err, ctx.now(), request.headers['client-request-id'])
  }
}
