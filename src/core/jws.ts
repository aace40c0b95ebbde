import { isUtf8 } from 'node:buffer'
import { EntraAuthError } from '../entra/problems.js'

/** Decoded JOSE header (RFC 7515 §4). */
export interface JoseHeader {
  alg: string
  kid: string
  typ?: string
  x5t?: string
  [parameter: string]: unknown
}

export interface DecodedJws {
  header: JoseHeader
  payload: Record<string, unknown>
}

/** Entra tokens reach 4–6 kB; refused before decoding, so deeply nested JSON can't hold the event loop. */
export const MAX_TOKEN_LENGTH = 64 * 1024

const BASE64URL = /^[A-Za-z0-9_-]*$/
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

const MAX_KID_LENGTH = 256

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** RFC 4648 §3.5: else up to 16 spellings decode to one signature, sidestepping a deny list keyed by the token. */
function isCanonicalBase64url (segment: string): boolean {
  return BASE64URL.test(segment) && hasCanonicalTail(segment)
}

function hasCanonicalTail (segment: string): boolean {
  return tailIsCanonical(segment, 0, segment.length)
}

function tailIsCanonical (text: string, start: number, end: number): boolean {
  const tail = (end - start) % 4
  if (tail === 0) return true
  if (tail === 1) return false
  const last = ALPHABET.indexOf(text[end - 1] as string)
  return (last & (tail === 2 ? 0x0f : 0x03)) === 0
}

export function checkTokenSize (token: string): void {
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new EntraAuthError('auth_token_invalid', `The token is longer than ${MAX_TOKEN_LENGTH} characters, far beyond any Microsoft Entra access token.`)
  }
}

/** Null prototype: nothing inherited from a polluted `Object.prototype` (say `roles`) reads as a claim. */
export function parseJsonObject (text: string): Record<string, unknown> | undefined {
  const value: unknown = JSON.parse(text)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  return Object.setPrototypeOf(value, null) as Record<string, unknown>
}

/** Judges nothing else, so a token debugger can show a token the verifier refuses. */
export function decodeSegment (segment: string, what: 'header' | 'payload'): Record<string, unknown> {
  if (!isCanonicalBase64url(segment)) {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not canonical base64url.`)
  }
  let text: string
  try {
    text = UTF8.decode(Buffer.from(segment, 'base64url'))
  } catch {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not valid UTF-8.`)
  }
  let value: Record<string, unknown> | undefined
  try {
    value = parseJsonObject(text)
  } catch {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not JSON.`)
  }
  if (value === undefined) {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not a JSON object.`)
  }
  return value
}

function own (header: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(header, name) ? header[name] : undefined
}

/** The checks that need neither a key nor the payload's JSON (left to fast-jwt, or {@link checkShape} before a fetch). */
export function precheckJws (token: string): Record<string, unknown> {
  checkTokenSize(token)
  const first = token.indexOf('.')
  const last = token.lastIndexOf('.')
  if (first < 0 || last === first || token.indexOf('.', first + 1) !== last) {
    throw new EntraAuthError('auth_token_invalid', 'The token is not a JWT: it must have three dot-separated parts.')
  }
  const header = token.slice(0, first)
  const payload = token.slice(first + 1, last)
  const signature = token.slice(last + 1)
  if (!isCanonicalBase64url(header)) throw new EntraAuthError('auth_token_invalid', 'The token header is not canonical base64url.')
  if (!hasCanonicalTail(payload)) throw new EntraAuthError('auth_token_invalid', 'The token payload is not canonical base64url.')
  // fast-jwt would call another character a bad signature.
  if (signature === '' || !isCanonicalBase64url(signature)) {
    throw new EntraAuthError('auth_token_invalid', 'The token signature is missing or not canonical base64url.')
  }
  if (!isUtf8(Buffer.from(payload, 'base64url'))) throw new EntraAuthError('auth_token_invalid', 'The token payload is not valid UTF-8.')
  return decodeSegment(header, 'header')
}

/** What {@link precheckJws} still checks of a token whose header segment passed before; false says nothing about why. */
export function passesKnownHeaderChecks (token: string, first: number): boolean {
  if (token.length > MAX_TOKEN_LENGTH) return false
  const last = token.lastIndexOf('.')
  // A fourth segment needs no scan here: fast-jwt's decoder refuses a '.' in the payload.
  if (last === first || last === token.length - 1) return false
  return tailIsCanonical(token, first + 1, last) && tailIsCanonical(token, last + 1, token.length)
}

/** fast-jwt turns invalid UTF-8 into U+FFFD: only a payload containing one is decoded again to tell. */
export function checkDecodedPayload (token: string, payload: Record<string, unknown>): void {
  if (!hasReplacementCharacter(payload)) return
  const first = token.indexOf('.')
  if (!isUtf8(Buffer.from(token.slice(first + 1, token.lastIndexOf('.')), 'base64url'))) {
    throw new EntraAuthError('auth_token_invalid', 'The token payload is not valid UTF-8.')
  }
}

function hasReplacementCharacter (value: object): boolean {
  const pending: object[] = [value]
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    for (const name in item) {
      if (name.includes('\ufffd')) return true
      const member: unknown = (item as Record<string, unknown>)[name]
      if (typeof member === 'string') {
        if (member.includes('\ufffd')) return true
      } else if (member !== null && typeof member === 'object') {
        pending.push(member)
      }
    }
  }
  return false
}

export function checkShape (token: string): Record<string, unknown> {
  const first = token.indexOf('.')
  const last = token.lastIndexOf('.')
  return decodeSegment(token.slice(first + 1, last), 'payload')
}

export function checkJoseHeader (header: Record<string, unknown>, token?: string): JoseHeader {
  if (own(header, 'alg') !== 'RS256') {
    // Entra signs access tokens with RS256 only; `none` and HMAC would let anyone forge tokens.
    throw new EntraAuthError('auth_token_invalid', "The token 'alg' must be RS256, the algorithm Microsoft Entra ID signs access tokens with.")
  }
  if (own(header, 'crit') !== undefined) {
    // RFC 7515 §4.1.11: extensions we don't understand must make the JWS invalid.
    throw new EntraAuthError('auth_token_invalid', "The token has a 'crit' header this API does not support.")
  }
  const kid = own(header, 'kid')
  if (kid === undefined) {
    if (token !== undefined) checkShape(token)
    throw new EntraAuthError('auth_token_key_error', "The token has no 'kid' header, so its signing key can't be found. Send an access token issued by Microsoft Entra ID.", { step: 'structure' })
  }
  if (typeof kid !== 'string' || kid === '' || kid.length > MAX_KID_LENGTH || !kid.isWellFormed()) {
    throw new EntraAuthError('auth_token_invalid', "The token 'kid' header is not a valid key ID.")
  }
  return header as JoseHeader
}

export function decodeJws (token: string): DecodedJws {
  const header = precheckJws(token)
  const payload = checkShape(token)
  return { header: checkJoseHeader(header), payload }
}
