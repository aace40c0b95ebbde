import { checkTokenSize } from './jws.js'
import { EntraAuthError } from '../entra/problems.js'

/** RFC 6750 §2.1 b64token, the only characters a bearer credential may contain. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** RFC 7235 §2.1 auth-scheme (RFC 7230 §3.2.6 token). */
const AUTH_SCHEME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

const SP = 0x20

/**
 * Extracts the bearer token from an `Authorization` header value (RFC 6750 §2.1:
 * `"Bearer" 1*SP b64token`). The scheme is case-insensitive (RFC 7235 §2.1). Credentials of another
 * scheme (`Basic …`) are refused with a challenge without error code (RFC 6750 §3.1: the request
 * carried no bearer token); a malformed Bearer credential is `invalid_request`. A token longer than
 * any real one is `auth_token_invalid` before it is looked at.
 */
export function bearerToken (header: string | string[] | undefined): string {
  if (header === undefined || header === '') throw new EntraAuthError('auth_header_missing')
  // Node keeps only the first of repeated Authorization headers; an array means the request had several.
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

/**
 * The b64token alphabet check {@link bearerToken} leaves out: the route hook runs it only on a
 * cache miss, since a cached token is a verified JWS and passed it before (a regex over the
 * whole token was a third of a cache hit).
 */
export function checkBearerCharset (token: string): void {
  if (!B64TOKEN.test(token)) throw malformedBearer()
}

function malformedBearer (): EntraAuthError {
  return new EntraAuthError('auth_header_invalid', "The 'Authorization' header must be 'Bearer' followed by a space and the access token, nothing else.")
}

/** A request with more than one `Authorization` header: a proxy may have judged another one. */
export function duplicateHeaders (): EntraAuthError {
  return new EntraAuthError('auth_header_invalid', "Send exactly one 'Authorization' header of the form 'Bearer <access token>'.")
}

/**
 * Counts `Authorization` headers as they were on the wire (Node's `rawHeaders`: name, value, …),
 * since `headers.authorization` keeps only the first of several.
 */
export function authorizationHeaderCount (rawHeaders: readonly string[]): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    if (name.length === 13 && name.toLowerCase() === 'authorization') count++
  }
  return count
}
