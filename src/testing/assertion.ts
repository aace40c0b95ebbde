import { verify } from 'node:crypto'
import { checkJoseHeader, checkShape, precheckJws } from '../core/jws.js'
import type { AuthorizationContext } from './grants.js'
import { OAuthError } from './oauth.js'

export interface AssertedUser {
  oid: string
  name: string | undefined
  username: string | undefined
  roles: string[]
  scopes: string[]
}

function invalid (reason: string): OAuthError {
  return new OAuthError('invalid_grant', 50013, `Assertion failed validation: ${reason}`)
}

function string (claims: Record<string, unknown>, name: string): string | undefined {
  const value = claims[name]
  return typeof value === 'string' && value !== '' ? value : undefined
}

export function assertedUser (ctx: AuthorizationContext, assertion: string, clientId: string): AssertedUser {
  let claims: Record<string, unknown>
  let kid: string
  try {
    kid = checkJoseHeader(precheckJws(assertion), assertion).kid
    claims = checkShape(assertion)
  } catch (err) {
    throw invalid(`the assertion is not a signed JWT (${(err as Error).message})`)
  }
  const key = ctx.keys.find(candidate => candidate.kid === kid)
  if (key === undefined) throw invalid(`the key '${kid}' is not one of this tenant's signing keys.`)
  const last = assertion.lastIndexOf('.')
  if (!verify('sha256', Buffer.from(assertion.slice(0, last)), key.publicKey, Buffer.from(assertion.slice(last + 1), 'base64url'))) {
    throw invalid('the signature does not verify with the tenant\'s signing key.')
  }
  const version = claims.ver === '1.0' ? '1.0' : '2.0'
  const expectedIssuer = ctx.issuerFor(ctx.tenantId, version)
  if (claims.iss !== expectedIssuer || claims.tid !== ctx.tenantId) throw invalid(`the assertion was not issued by this tenant: expected issuer '${expectedIssuer}'.`)
  const now = ctx.now() / 1000
  if (typeof claims.exp !== 'number' || now >= claims.exp || (typeof claims.nbf === 'number' && now < claims.nbf)) {
    throw invalid('the assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token.')
  }
  const audiences = version === '1.0' ? [clientId, `api://${clientId}`] : [clientId]
  if (typeof claims.aud !== 'string' || !audiences.includes(claims.aud)) {
    throw invalid(`the assertion audience does not match the client app presenting the assertion. The audience in the assertion was '${String(claims.aud)}' and the expected audience is '${clientId}' or one of the Application Id URIs of this application.`)
  }
  const oid = string(claims, 'oid')
  const scopes = string(claims, 'scp')?.split(' ').filter(scope => scope !== '') ?? []
  if (oid === undefined || scopes.length === 0 || claims.idtyp === 'app') {
    throw invalid('the assertion is not a user\'s token: on-behalf-of exchanges a delegated access token (with scp), never an app-only one.')
  }
  return {
    oid,
    name: string(claims, 'name'),
    username: string(claims, 'preferred_username') ?? string(claims, 'upn') ?? string(claims, 'unique_name'),
    roles: Array.isArray(claims.roles) ? claims.roles.filter((role): role is string => typeof role === 'string') : [],
    scopes
  }
}
