/** What a token is, read from its claims without validating it. */
import { defaultClientClaim, graphTokenDetail, isAppOnlyClaims, isGraphToken, looksLikeIdToken, scopesOf, type EntraToken } from '../entra/token.js'
import { decodeSegment } from '../core/jws.js'
import { EntraAuthError } from '../entra/problems.js'

/** Decodes with the verifier's own decoder but judges nothing, so a refused token can still be looked at. */

export function normalizeToken (input: string): string {
  return input.trim().replace(/^bearer\s+/i, '').trim()
}

export function decodeToken (input: string): { header: Record<string, unknown>, claims: Record<string, unknown> } {
  const parts = normalizeToken(input).split('.')
  if (parts.length === 5) {
    throw new EntraAuthError('auth_token_invalid', 'The token has five parts: it is encrypted (JWE) and only its recipient can read it.')
  }
  if (parts.length !== 3) {
    throw new EntraAuthError('auth_token_invalid', `The token is not a JWT: it has ${parts.length} dot-separated part(s), not three.`)
  }
  return { header: decodeSegment(parts[0] as string, 'header'), claims: decodeSegment(parts[1] as string, 'payload') }
}

export type TokenKind = 'delegated' | 'app-only' | 'id-token' | 'unknown'

/** Read from the claims: not a proof of anything until validated. */
export interface TokenIdentity {
  tenantId: string | undefined
  objectId: string | undefined
  subject: string | undefined
  clientId: string | undefined
  version: '1.0' | '2.0' | undefined
  isAppOnly: boolean
  scopes: string[]
  /** For humans only: never authorize on it. */
  name: string | undefined
}

export interface TokenTime {
  claim: 'iat' | 'nbf' | 'exp'
  value: unknown
  iso: string | undefined
  relative: string | undefined
}

export interface TokenDescription {
  header: Record<string, unknown>
  claims: Record<string, unknown>
  version: '1.0' | '2.0' | undefined
  kind: TokenKind
  /** Issued for Microsoft Graph: only Graph can validate it. */
  graph: boolean
  summary: string
  identity: TokenIdentity
  times: TokenTime[]
  notes: string[]
}

export function iso (seconds: unknown): string | undefined {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return undefined
  const date = new Date(seconds * 1000)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export function relativeTime (seconds: number, nowMs: number): string {
  const diff = seconds - nowMs / 1000
  const abs = Math.abs(diff)
  const amount = abs < 120
    ? `${Math.round(abs)} s`
    : abs < 2 * 3600
      ? `${Math.round(abs / 60)} min`
      : abs < 2 * 86400
        ? `${Math.round(abs / 3600)} h`
        : abs < 2 * 365 * 86400
          ? `${Math.round(abs / 86400)} days`
          : `${Math.round(abs / (365.25 * 86400))} years`
  return diff >= 0 ? `in ${amount}` : `${amount} ago`
}

function stringOf (value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

export function identityOf (claims: Record<string, unknown>, verified?: EntraToken): TokenIdentity {
  const ver = claims.ver
  const version = ver === '2.0' || ver === '1.0' ? ver : undefined
  return {
    tenantId: stringOf(claims.tid),
    objectId: stringOf(claims.oid),
    subject: stringOf(claims.sub),
    clientId: verified?.clientId ?? (version === undefined ? stringOf(claims.azp) ?? stringOf(claims.appid) : stringOf(claims[defaultClientClaim(version)])),
    version,
    isAppOnly: isAppOnlyClaims(claims),
    scopes: scopesOf(claims),
    name: [claims.name, claims.preferred_username, claims.upn, claims.unique_name].map(stringOf).find(v => v !== undefined)
  }
}

const KIND_WORDS: Readonly<Record<TokenKind, string>> = {
  delegated: 'delegated (user) access token',
  'app-only': 'app-only (client credentials) access token',
  'id-token': 'ID token',
  unknown: 'token of unknown shape'
}

export function describeToken (token: string, options: { now?: number } = {}): TokenDescription {
  const now = options.now ?? Date.now()
  const { header, claims } = decodeToken(token)
  const identity = identityOf(claims)
  const version = identity.version
  const graph = isGraphToken(header, claims)
  const kind: TokenKind = looksLikeIdToken(claims)
    ? 'id-token'
    : identity.isAppOnly
      ? 'app-only'
      : typeof claims.scp === 'string' || claims.idtyp === 'user' ? 'delegated' : 'unknown'

  const notes: string[] = []
  if (kind === 'id-token') {
    notes.push('This is an ID token: it proves a sign-in to the client app named in aud and is not meant for APIs. Send an access token requested for the API.')
  }
  if (graph) notes.push(graphTokenDetail())
  if (kind === 'unknown') notes.push("Neither delegated (no 'scp') nor app-only ('oid' differs from 'sub', no idtyp 'app') by Entra's rules.")
  if (version === undefined) {
    notes.push(`'ver' is ${JSON.stringify(claims.ver) ?? 'absent'}: Entra access tokens carry "1.0" or "2.0".`)
  } else {
    const iss = stringOf(claims.iss) ?? ''
    if (version === '2.0' && !iss.endsWith('/v2.0')) notes.push(`'ver' is 2.0 but the issuer ${JSON.stringify(iss)} is not in the v2.0 form (…/{tenant}/v2.0).`)
    if (version === '1.0' && iss.endsWith('/v2.0')) notes.push(`'ver' is 1.0 but the issuer ${JSON.stringify(iss)} is in the v2.0 form.`)
    const clientClaim = version === '2.0' ? 'azp' : 'appid'
    if (kind !== 'id-token' && claims[clientClaim] === undefined) notes.push(`A v${version} access token names its client app in '${clientClaim}', which is missing.`)
  }
  if (claims._claim_names !== undefined) notes.push("Group overage: the user has too many groups for the 'groups' claim; query Microsoft Graph for them.")

  const times: TokenTime[] = (['iat', 'nbf', 'exp'] as const).filter(claim => claims[claim] !== undefined).map(claim => {
    const value = claims[claim]
    const at = iso(value)
    return { claim, value, iso: at, relative: at === undefined ? undefined : relativeTime(value as number, now) }
  })
  if (typeof claims.exp === 'number' && claims.exp * 1000 <= now) notes.push(`Expired ${relativeTime(claims.exp, now)}.`)
  if (typeof claims.nbf === 'number' && claims.nbf * 1000 > now) notes.push(`Not valid before ${iso(claims.nbf)} (${relativeTime(claims.nbf, now)}).`)

  const summary = `${version === undefined ? 'Not an Entra v1.0/v2.0' : `Entra v${version}`} ${KIND_WORDS[kind]}${graph ? ' for Microsoft Graph' : ''}`
  return { header, claims, version, kind, graph, summary, identity, times, notes }
}
