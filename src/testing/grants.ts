import { randomBytes } from 'node:crypto'
import { appIdUriHint } from '../options.js'
import type { MockJwk } from './mock-jwks.js'
import { MockClaims, MockJwtClient } from './mock-jwt.js'
import type { SignedInUser } from './users.js'
export type { SignedInUser }
import {
  GRAPH_APP_ID, OAuthError, opaque, stableGuid,
  type FakeAuthorizationOptions, type FakeEntraApi, type FakeEntraClient, type ParsedScopes
} from './oauth.js'

export interface AuthorizationContext {
  readonly tenantId: string
  readonly signingKey: MockJwk
  readonly keys: readonly MockJwk[]
  issuerFor: (tenantId?: string, version?: '1.0' | '2.0') => string
  now: () => number
  readonly authorization: FakeAuthorizationOptions
  readonly grants: GrantStore
}

export interface ResolvedApi {
  clientId: string
  uri: string
  version: '1.0' | '2.0'
  appRoles: string[]
  scopes: string[] | undefined
}

export interface UserGrant {
  clientId: string
  confidential: boolean
  resource: ParsedScopes['resource']
  scopes: string[]
  oidc: string[]
  nonce?: string
  user: SignedInUser
}

export interface CodeGrant extends UserGrant {
  redirectUri: string
  codeChallenge: string
  expiresAt: number
}

/** Entra's codes live about 10 minutes; its refresh tokens 24 hours (SPAs) to 90 days. */
export const CODE_LIFETIME_MS = 10 * 60 * 1000
export const REFRESH_LIFETIME_MS = 24 * 60 * 60 * 1000

export class GrantStore {
  readonly codes = new Map<string, CodeGrant>()
  readonly redeemed = new Map<string, number>()
  readonly refreshTokens = new Map<string, UserGrant & { expiresAt: number }>()

  issueCode (grant: Omit<CodeGrant, 'expiresAt'>, now: number): string {
    return this.#issue(this.codes, grant, CODE_LIFETIME_MS, now)
  }

  /** RFC 6749 §4.1.2: a code is used once, whatever happens next. */
  takeCode (code: string, now: number): CodeGrant {
    if (!this.codes.has(code) && this.redeemed.has(code)) throw new OAuthError('invalid_grant', 54005, 'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.')
    const grant = this.#take(this.codes, code, 'code')
    this.redeemed.set(code, grant.expiresAt)
    return unexpired(grant, now)
  }

  issueRefreshToken (grant: UserGrant, now: number): string {
    return this.#issue(this.refreshTokens, grant, REFRESH_LIFETIME_MS, now)
  }

  takeRefreshToken (token: string, now: number): UserGrant {
    const { expiresAt, ...rest } = unexpired(this.#take(this.refreshTokens, token, 'refresh_token'), now)
    return rest
  }

  #issue<T> (store: Map<string, T & { expiresAt: number }>, grant: T, lifetime: number, now: number): string {
    this.#sweep(now)
    const value = opaque()
    store.set(value, { ...grant, expiresAt: now + lifetime })
    return value
  }

  #take<T> (store: Map<string, T>, value: string, parameter: 'code' | 'refresh_token'): T {
    const grant = store.get(value)
    if (grant === undefined) throw new OAuthError('invalid_grant', 9002313, `Invalid request. The provided value for the '${parameter}' parameter is not valid.`)
    store.delete(value)
    return grant
  }

  #sweep (now: number): void {
    for (const [code, grant] of this.codes) if (now >= grant.expiresAt) this.codes.delete(code)
    for (const [code, expiresAt] of this.redeemed) if (now >= expiresAt) this.redeemed.delete(code)
    for (const [token, grant] of this.refreshTokens) if (now >= grant.expiresAt) this.refreshTokens.delete(token)
  }
}

function unexpired<T extends { expiresAt: number }> (grant: T, now: number): T {
  if (now >= grant.expiresAt) throw new OAuthError('invalid_grant', 70008, 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.')
  return grant
}

export function resolveClient (ctx: AuthorizationContext, clientId: string): FakeEntraClient & { known: boolean } {
  const clients = ctx.authorization.clients
  if (clients === undefined) return { clientId, known: false }
  const client = clients.find(candidate => candidate.clientId === clientId)
  if (client === undefined) throw new OAuthError('unauthorized_client', 700016, `Application with identifier '${clientId}' was not found in the directory '${ctx.tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`)
  return { ...client, known: true }
}

export function apiIdProblem (subject: string, clientId: string): string | undefined {
  if (clientId === '' || /\s/.test(clientId)) return `${subject} must be the API's application (client) ID, got '${clientId}'`
  const hint = appIdUriHint(subject, clientId)
  if (hint === undefined) return undefined
  return hint.clientId === undefined ? hint.message : `${hint.message} (clients still ask for its scopes as '${clientId}/{scope}')`
}

export function checkApis (where: string, apis: readonly FakeEntraApi[] | undefined): void {
  const seen = new Set<string>()
  for (const [index, api] of (apis ?? []).entries()) {
    const problem = apiIdProblem(`apis[${index}].clientId`, api.clientId)
    if (problem !== undefined) throw new TypeError(`${where}: ${problem}`)
    if (seen.has(api.clientId)) throw new TypeError(`${where}: apis[${index}].clientId '${api.clientId}' is given twice: describe each API once`)
    seen.add(api.clientId)
  }
}

export function resolveApi (ctx: AuthorizationContext, resource: ParsedScopes['resource']): ResolvedApi {
  if (resource.clientId === GRAPH_APP_ID) return { clientId: GRAPH_APP_ID, uri: 'https://graph.microsoft.com', version: '1.0', appRoles: [], scopes: undefined }
  const apis = ctx.authorization.apis
  const api: FakeEntraApi | undefined = apis === undefined ? { clientId: resource.clientId } : apis.find(candidate => candidate.clientId === resource.clientId)
  if (api === undefined) throw new OAuthError('invalid_resource', 500011, `The resource principal named ${resource.uri} was not found in the tenant named ${ctx.tenantId}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`)
  return { clientId: api.clientId, uri: resource.uri, version: api.tokenVersion ?? '2.0', appRoles: api.appRoles ?? [], scopes: api.scopes }
}

function lifetime (ctx: AuthorizationContext): number {
  return ctx.authorization.tokenLifetime ?? 3599
}

function opaqueClaims (): Record<string, string> {
  return { aio: randomBytes(48).toString('base64url'), rh: `0.${randomBytes(40).toString('base64url')}.`, uti: randomBytes(16).toString('base64url') }
}

function sign (ctx: AuthorizationContext, version: '1.0' | '2.0', claims: Record<string, unknown>): string {
  const key = ctx.signingKey
  const signer = new MockJwtClient({ key, claims: new MockClaims({ selfAppId: '' }) })
  const header = version === '1.0' ? { typ: 'JWT', alg: 'RS256', x5t: key.kid, kid: key.kid } : { typ: 'JWT', alg: 'RS256', kid: key.kid }
  return signer.sign(header, claims)
}

function times (ctx: AuthorizationContext): { iat: number, nbf: number, exp: number } {
  const now = Math.floor(ctx.now() / 1000)
  return { iat: now, nbf: now, exp: now + lifetime(ctx) }
}

function accessBase (ctx: AuthorizationContext, api: ResolvedApi, clientId: string, acr: '0' | '1'): Record<string, unknown> {
  if (api.version === '1.0') {
    return { aud: api.uri, iss: ctx.issuerFor(ctx.tenantId, '1.0'), ...times(ctx), appid: clientId, appidacr: acr }
  }
  return { aud: api.clientId, iss: ctx.issuerFor(ctx.tenantId, '2.0'), ...times(ctx), azp: clientId, azpacr: acr }
}

export function servicePrincipalId (ctx: AuthorizationContext, clientId: string): string {
  return stableGuid(`sp:${ctx.tenantId}:${clientId}`)
}

export function appOnlyToken (ctx: AuthorizationContext, api: ResolvedApi, client: FakeEntraClient): string {
  const oid = servicePrincipalId(ctx, client.clientId)
  const roles = client.appRoles ?? api.appRoles
  return sign(ctx, api.version, {
    ...accessBase(ctx, api, client.clientId, '1'),
    ...opaqueClaims(),
    ...(api.version === '1.0' ? { idp: ctx.issuerFor(ctx.tenantId, '1.0') } : {}),
    idtyp: 'app',
    oid,
    ...(roles.length > 0 ? { roles: [...roles] } : {}),
    sub: oid,
    tid: ctx.tenantId,
    ver: api.version
  })
}

/** Entra's `sub` is pairwise: one per user and application. */
function pairwiseSubject (userId: string, appId: string): string {
  return stableGuid(`sub:${userId}:${appId}`).replaceAll('-', '').slice(0, 32)
}

export function delegatedToken (ctx: AuthorizationContext, api: ResolvedApi, grant: UserGrant): string {
  const user = grant.user
  const names = api.version === '1.0'
    ? { amr: ['pwd'], name: user.name, unique_name: user.username, upn: user.username }
    : { name: user.name, preferred_username: user.username }
  return sign(ctx, api.version, {
    ...accessBase(ctx, api, grant.clientId, grant.confidential ? '1' : '0'),
    ...opaqueClaims(),
    ...names,
    oid: user.oid,
    ...(user.roles.length > 0 ? { roles: [...user.roles] } : {}),
    scp: grant.scopes.join(' '),
    sub: pairwiseSubject(user.oid, api.clientId),
    tid: ctx.tenantId,
    ver: api.version
  })
}

export function idToken (ctx: AuthorizationContext, grant: UserGrant): string {
  const user = grant.user
  return sign(ctx, '2.0', {
    aud: grant.clientId,
    iss: ctx.issuerFor(ctx.tenantId, '2.0'),
    ...times(ctx),
    name: user.name,
    ...(grant.nonce === undefined ? {} : { nonce: grant.nonce }),
    oid: user.oid,
    preferred_username: user.username,
    rh: opaqueClaims().rh,
    sub: pairwiseSubject(user.oid, grant.clientId),
    tid: ctx.tenantId,
    uti: opaqueClaims().uti,
    ver: '2.0'
  })
}

export function clientInfo (ctx: AuthorizationContext, user: SignedInUser): string {
  return Buffer.from(JSON.stringify({ uid: user.oid, utid: ctx.tenantId })).toString('base64url')
}

export function tokenLifetime (ctx: AuthorizationContext): number {
  return lifetime(ctx)
}
