/** Where a request's access token comes from: RFC 6750 §2.1 `Authorization` header rules, then opt-in cookie/session sources. */
import { checkTokenSize } from '../core/jws.js'
import { EntraAuthError } from '../entra/problems.js'
import type { EntraTokenSource } from '../options.js'

/** RFC 6750 §2.1 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** RFC 7235 §2.1 auth-scheme. */
const AUTH_SCHEME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

const SP = 0x20

/** RFC 6750 §2.1 `"Bearer" 1*SP b64token`; another scheme gets a challenge without error code (§3.1). */
export function bearerToken (header: string | string[] | undefined): string {
  if (header === undefined || header === '') throw new EntraAuthError('auth_header_missing')
  if (typeof header !== 'string') throw duplicateHeaders()
  const space = header.indexOf(' ')
  const scheme = space === -1 ? header : header.slice(0, space)
  if (scheme.toLowerCase() !== 'bearer') {
    if (AUTH_SCHEME.test(scheme)) {
      throw new EntraAuthError('auth_header_invalid', "The 'Authorization' header must use the 'Bearer' scheme: 'Bearer <access token>'.", { challengeError: null })
    }
    throw new EntraAuthError('auth_header_invalid', "The 'Authorization' header must have the form 'Bearer <access token>'.")
  }
  if (space === -1) throw malformedBearer()
  let start = space + 1
  while (header.charCodeAt(start) === SP) start++
  const token = header.slice(start)
  checkTokenSize(token)
  if (token === '') throw malformedBearer()
  return token
}

/** Left out of {@link bearerToken}: a regex over the whole token was a third of a cache hit. */
export function checkBearerCharset (token: string): void {
  if (!B64TOKEN.test(token)) throw malformedBearer()
}

function malformedBearer (): EntraAuthError {
  return new EntraAuthError('auth_header_invalid', "The 'Authorization' header must be 'Bearer' followed by a space and the access token, nothing else.")
}

/** A proxy may have judged another one. */
export function duplicateHeaders (): EntraAuthError {
  return new EntraAuthError('auth_header_invalid', "Send exactly one 'Authorization' header of the form 'Bearer <access token>'.")
}

export function authorizationHeaderCount (rawHeaders: readonly string[]): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    if (name.length === 13 && name.toLowerCase() === 'authorization') count++
  }
  return count
}

export interface CredentialCarrier {
  readonly headers: { readonly authorization?: string | string[] | undefined }
  readonly raw?: { readonly rawHeaders?: readonly string[] }
  readonly cookies?: Record<string, string | undefined>
  readonly session?: unknown
}

function sessionValue (session: unknown, key: string): unknown {
  if (session === null || typeof session !== 'object') return undefined
  const get = (session as { get?: unknown }).get
  return typeof get === 'function' ? get.call(session, key) : (session as Record<string, unknown>)[key]
}

/** Never the query string (RFC 6750 §2.3): it leaks into logs, history and `Referer`. Null: no credentials. */
export function findToken (request: CredentialCarrier, sources: readonly EntraTokenSource[]): string | null {
  if (isFromHeader(request)) {
    const rawHeaders = request.raw?.rawHeaders
    if (rawHeaders !== undefined && authorizationHeaderCount(rawHeaders) > 1) throw duplicateHeaders()
    return bearerToken(request.headers.authorization)
  }
  for (const source of sources) {
    const value = 'cookie' in source ? request.cookies?.[source.cookie] : sessionValue(request.session, source.session)
    if (typeof value === 'string' && value !== '') return value
  }
  return null
}

export function isFromHeader (request: CredentialCarrier): boolean {
  const header = request.headers.authorization
  return header !== undefined && header !== ''
}
