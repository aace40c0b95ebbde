import { EntraAuthError } from './problems.js'

/**
 * Longest `Authorization` header value we parse. Entra tokens with many claims reach ~4–6 kB and
 * the contract accepts at least 12 kB; Node itself caps all headers at 16 kB by default.
 */
const MAX_HEADER_LENGTH = 64 * 1024

/** RFC 6750 §2.1 b64token, the only characters a bearer credential may contain. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/**
 * Extracts the bearer token from an `Authorization` header value (RFC 6750 §2.1).
 * The scheme is case-insensitive (RFC 7235 §2.1); anything but exactly `Bearer <token>` is refused.
 */
export function bearerToken (header: string | string[] | undefined): string {
  if (header === undefined || header === '') throw new EntraAuthError('auth_header_missing')
  // Node joins repeated Authorization headers only for some names; treat an array as ambiguous.
  if (typeof header !== 'string') {
    throw new EntraAuthError('auth_header_invalid', "Send exactly one 'Authorization' header of the form 'Bearer <access token>'.")
  }
  if (header.length > MAX_HEADER_LENGTH) {
    throw new EntraAuthError('auth_header_invalid', "The 'Authorization' header is too long to hold an access token.")
  }
  const space = header.indexOf(' ')
  const scheme = space === -1 ? header : header.slice(0, space)
  if (scheme.toLowerCase() !== 'bearer') {
    throw new EntraAuthError('auth_header_invalid', "The 'Authorization' header must use the 'Bearer' scheme: 'Bearer <access token>'.")
  }
  const token = space === -1 ? '' : header.slice(space + 1)
  if (!B64TOKEN.test(token)) {
    throw new EntraAuthError('auth_header_invalid', "The 'Authorization' header must be 'Bearer' followed by one space and the access token, nothing else.")
  }
  return token
}
