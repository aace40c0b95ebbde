import { EntraAuthError } from './problems.js'

/** Decoded JOSE header (RFC 7515 §4). Only `alg` and `kid` are used; the rest is kept for callers. */
export interface JoseHeader {
  alg: string
  kid: string
  typ?: string
  x5t?: string
  [parameter: string]: unknown
}

/** A compact JWS split and decoded, but not verified. */
export interface DecodedJws {
  header: JoseHeader
  payload: Record<string, unknown>
}

/** Strict base64url alphabet, no padding (RFC 7515 §2). */
const BASE64URL = /^[A-Za-z0-9_-]*$/

/** Longest `kid` we look up: Entra kids are 27–43 characters. */
const MAX_KID_LENGTH = 256

function decodeSegment (segment: string, what: 'header' | 'payload'): Record<string, unknown> {
  // A length of 1 mod 4 can't come from any byte string: Buffer would silently drop it.
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not base64url encoded.`)
  }
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
  } catch {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not JSON.`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not a JSON object.`)
  }
  return value as Record<string, unknown>
}

/**
 * Decodes a compact JWS and applies every check that needs no key: three strict base64url
 * segments, JSON object header and payload, `alg` RS256, no `crit`, a usable `kid`.
 * These run before any network access, so garbage costs nothing (contract §6).
 */
export function decodeJws (token: string): DecodedJws {
  const parts = token.split('.')
  if (parts.length !== 3) {
    throw new EntraAuthError('auth_token_invalid', 'The token is not a JWT: it must have three dot-separated parts.')
  }
  const [rawHeader, rawPayload, signature] = parts as [string, string, string]
  const header = decodeSegment(rawHeader, 'header')
  if (header.alg !== 'RS256') {
    // Entra signs access tokens with RS256 only; `none` and HMAC would let anyone forge tokens.
    throw new EntraAuthError('auth_token_invalid', "The token 'alg' must be RS256, the algorithm Microsoft Entra ID signs access tokens with.")
  }
  if (header.crit !== undefined) {
    // RFC 7515 §4.1.11: extensions we don't understand must make the JWS invalid.
    throw new EntraAuthError('auth_token_invalid', "The token has a 'crit' header this API does not support.")
  }
  if (signature === '' || !BASE64URL.test(signature) || signature.length % 4 === 1) {
    throw new EntraAuthError('auth_token_invalid', 'The token signature is missing or not base64url encoded.')
  }
  const payload = decodeSegment(rawPayload, 'payload')
  const kid = header.kid
  if (kid === undefined) {
    throw new EntraAuthError('auth_token_key_error', "The token has no 'kid' header, so its signing key can't be found. Send an access token issued by Microsoft Entra ID.")
  }
  if (typeof kid !== 'string' || kid === '' || kid.length > MAX_KID_LENGTH || !kid.isWellFormed()) {
    throw new EntraAuthError('auth_token_invalid', "The token 'kid' header is not a valid key ID.")
  }
  return { header: header as JoseHeader, payload }
}
