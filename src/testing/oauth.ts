import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'

/** One HTTP request to the fake Entra, as both the in-process dispatcher and the HTTP server see it. */
export interface FakeHttpRequest {
  method: string
  /** Path and query, e.g. `/{tenant}/oauth2/v2.0/token`. */
  url: string
  /** Header names in lower case. */
  headers: Record<string, string | undefined>
  /** The request body as text (`''` when there is none). */
  body: string
  /** The peer's IP address, when the request came over a socket (the loopback server sets it). */
  remoteAddress?: string
}

/** The fake's answer. */
export interface FakeHttpResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/** The API (resource) that tokens are issued for: an app registration that exposes scopes and app roles. */
export interface FakeEntraApi {
  /** Application (client) ID of the API: the `aud` of its v2.0 tokens. */
  clientId: string
  /** Access-token version the API's registration asks for (`requestedAccessTokenVersion`). Default `'2.0'`. */
  tokenVersion?: '1.0' | '2.0'
  /** App roles (application permissions) granted to client applications; their tokens carry them in `roles`. Default none. */
  appRoles?: string[]
  /** Delegated scopes the API exposes; `.default` grants all of them. Default: any scope asked for (`.default`: `access_as_user`). */
  scopes?: string[]
}

/** A client application registration. */
export interface FakeEntraClient {
  clientId: string
  /** Its client secret; without one it is a public client (a SPA or a native app: PKCE and no secret). */
  secret?: string
  /** App roles granted to this client, replacing the API's `appRoles` in its app-only tokens. */
  appRoles?: string[]
  /** Its registered redirect URIs. Default: any `https` URL, and `http` on loopback (as Entra allows for development). */
  redirectUris?: string[]
  /** Delegated permissions on other APIs (`api://{client id}/{scope}`), for on-behalf-of. Default: all. */
  permissions?: string[]
}

/** A test user that the authorize endpoint can sign in. */
export interface FakeEntraUser {
  /** Object ID. Default a fixed GUID. */
  oid?: string
  /** Display name (`name`). Default `Test User`. */
  name?: string
  /** Sign-in name (`preferred_username`, v1.0 `upn`). Default `test.user@contoso.example`. */
  username?: string
  /** App roles assigned to the user; delegated tokens carry them in `roles`. Default none. */
  roles?: string[]
  /** Delegated scopes the user has consented to. Default: any scope asked for. */
  scopes?: string[]
}

/** Options of the fake's authorization server (token and authorize endpoints). */
export interface FakeAuthorizationOptions {
  /** The protected APIs. Default: any API ID asked for, with the defaults of {@link FakeEntraApi}. */
  apis?: FakeEntraApi[]
  /** The client applications. Default: any client ID, with any secret (or none, as a public client). */
  clients?: FakeEntraClient[]
  /** The default user: signed in by `prompt=none` and `autoSignIn`, listed first on the sign-in page. */
  user?: FakeEntraUser
  /** More test users, listed on the sign-in page. */
  users?: FakeEntraUser[]
  /** Sign the default user in at once, with no sign-in page (for automated clients). Default `false`. */
  autoSignIn?: boolean
  /** Lifetime of access and ID tokens, in seconds. Default 3599, as Entra answers client-credentials requests. */
  tokenLifetime?: number
}

/** Fixed object ID of the default test user. */
export const FAKE_USER_ID = '00000000-0000-4000-8000-0000000051e5'

/** Entra's error reply: RFC 6749 §5.2 plus Entra's AADSTS number and trace members. */
export class OAuthError extends Error {
  readonly error: string
  suberror: string | undefined = undefined

  constructor (code: string, readonly aadsts: number, description: string, readonly status = 400, readonly headers: Record<string, string> = {}) {
    super(description)
    this.error = code
  }
}

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' }

export function jsonResponse (status: number, body: unknown, headers: Record<string, string> = {}): FakeHttpResponse {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8', ...NO_STORE, ...headers }, body: JSON.stringify(body) }
}

function entraTimestamp (ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

export function errorResponse (error: OAuthError, now: number, correlationId?: string): FakeHttpResponse {
  const traceId = randomUUID()
  const correlation = correlationId !== undefined && /^[\w-]{1,64}$/.test(correlationId) ? correlationId : randomUUID()
  const timestamp = entraTimestamp(now)
  return jsonResponse(error.status, {
    error: error.error,
    ...(error.suberror === undefined ? {} : { suberror: error.suberror }),
    error_description: `AADSTS${error.aadsts}: ${error.message} Trace ID: ${traceId} Correlation ID: ${correlation} Timestamp: ${timestamp}`,
    error_codes: [error.aadsts],
    timestamp,
    trace_id: traceId,
    correlation_id: correlation,
    error_uri: `https://login.microsoftonline.com/error?code=${error.aadsts}`
  }, error.headers)
}

export function opaque (): string {
  return randomBytes(32).toString('base64url')
}

/** Constant time, for secrets of any length. */
export function sameSecret (given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

export function s256 (verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url')
}

export function stableGuid (seed: string): string {
  const hex = createHash('sha256').update(seed).digest('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}

/** Scopes for sign-in and refresh tokens rather than for an API (OpenID Connect §5.4). */
export const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access'])

export const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000'

export interface ParsedScopes {
  oidc: string[]
  resource: { clientId: string, uri: string }
  names: string[]
}

/** Entra issues a token for one resource at a time (AADSTS28000): scopes of two APIs are refused. */
export function parseScopes (scope: string | undefined): ParsedScopes {
  const words = (scope ?? '').split(' ').filter(word => word !== '')
  if (words.length === 0) throw new OAuthError('invalid_request', 900144, "The request body must contain the following parameter: 'scope'.")
  const oidc: string[] = []
  const names: string[] = []
  let resource: { clientId: string, uri: string } | undefined
  for (const word of words) {
    if (OIDC_SCOPES.has(word)) {
      oidc.push(word)
      continue
    }
    const match = /^(api:\/\/)?([^/\s]+)\/([^/\s]+)$/.exec(word)
    if (match === null) throw new OAuthError('invalid_scope', 70011, `The provided value for the input parameter 'scope' is not valid. The scope ${word} is not valid: name an API's scope as api://{client id}/{scope}.`)
    const [, prefix = '', clientId = '', name = ''] = match
    const uri = prefix + clientId
    if (resource !== undefined && resource.uri !== uri) throw new OAuthError('invalid_scope', 28000, `Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${scope ?? ''} is not valid.`)
    resource = { clientId, uri }
    names.push(name)
  }
  return { oidc, resource: resource ?? { clientId: GRAPH_APP_ID, uri: GRAPH_APP_ID }, names }
}
