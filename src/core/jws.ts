import { isUtf8 } from 'node:buffer'
import { EntraAuthError } from '../entra/problems.js'

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
  /** The header, with a null prototype: only its own members count. */
  header: JoseHeader
  /** The payload (claims), with a null prototype: only its own members count. */
  payload: Record<string, unknown>
}

/**
 * Longest token we decode, in characters. Entra tokens with many claims reach 4–6 kB; anything
 * this long is refused before decoding, so deeply nested JSON can't hold the event loop.
 */
export const MAX_TOKEN_LENGTH = 64 * 1024

/** Strict base64url alphabet, no padding (RFC 7515 §2). */
const BASE64URL = /^[A-Za-z0-9_-]*$/
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Longest `kid` we look up: Entra kids are 27–43 characters. */
const MAX_KID_LENGTH = 256

/** Refuses invalid UTF-8 instead of turning it into U+FFFD; keeps a BOM, which JSON.parse refuses. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * True when `segment` is the one canonical base64url spelling of its bytes (RFC 4648 §3.5): the
 * alphabet only, no padding, no impossible length, and zero unused bits in the last character.
 * Otherwise up to 16 spellings decode to the same signature, and a deny list keyed by the token
 * string could be sidestepped. O(1) after the alphabet test.
 */
function isCanonicalBase64url (segment: string): boolean {
  return BASE64URL.test(segment) && hasCanonicalTail(segment)
}

/**
 * The O(1) part of {@link isCanonicalBase64url}: a possible length and zero unused bits in the
 * last character. On the verifier's path the alphabet itself is checked by fast-jwt's decoder,
 * which refuses any other character in every segment.
 */
function hasCanonicalTail (segment: string): boolean {
  return tailIsCanonical(segment, 0, segment.length)
}

/** {@link hasCanonicalTail} of `text.slice(start, end)`, without the slice. */
function tailIsCanonical (text: string, start: number, end: number): boolean {
  const tail = (end - start) % 4
  // A length of 1 mod 4 can't come from any byte string: Buffer would silently drop it.
  if (tail === 0) return true
  if (tail === 1) return false
  const last = ALPHABET.indexOf(text[end - 1] as string)
  // 2 chars carry 1 byte (4 unused bits), 3 chars carry 2 bytes (2 unused bits).
  return (last & (tail === 2 ? 0x0f : 0x03)) === 0
}

/**
 * Refuses a token too long to be a real one, before anything is decoded. Call it first wherever a
 * token enters (`decodeJws` does).
 */
export function checkTokenSize (token: string): void {
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new EntraAuthError('auth_token_invalid', `The token is longer than ${MAX_TOKEN_LENGTH} characters, far beyond any Microsoft Entra access token.`)
  }
}

/**
 * Parses JSON text that must be an object, and gives the object a null prototype, so a property
 * inherited from a polluted `Object.prototype` (say `roles`) can never be read as a claim. O(1).
 * Returns undefined when the text is JSON but not an object; throws a SyntaxError when not JSON.
 */
export function parseJsonObject (text: string): Record<string, unknown> | undefined {
  const value: unknown = JSON.parse(text)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  return Object.setPrototypeOf(value, null) as Record<string, unknown>
}

/**
 * Decodes one segment of a compact JWS (`header` or `payload`): canonical base64url, strict
 * UTF-8, a JSON object with a null prototype. Throws `auth_token_invalid` saying which rule failed.
 * Judges nothing else, so a token debugger can show a token the verifier refuses.
 */
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

/** Reads an own member of a decoded JOSE header: nothing inherited from a polluted prototype counts. */
function own (header: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(header, name) ? header[name] : undefined
}

/**
 * The checks of a compact JWS that need neither a key nor the payload's JSON: at most
 * {@link MAX_TOKEN_LENGTH} characters, three segments, canonical base64url endings (no second
 * spelling of one signature), valid UTF-8 header and payload (invalid bytes would otherwise become
 * U+FFFD), and a header that is a JSON object (returned with a null prototype). The payload's JSON
 * and alphabet are left to fast-jwt's decoder when the key is at hand, and to {@link checkShape}
 * before the key store may go to the network.
 */
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
  // The signature's whole alphabet here: fast-jwt would call another character a bad signature.
  if (signature === '' || !isCanonicalBase64url(signature)) {
    throw new EntraAuthError('auth_token_invalid', 'The token signature is missing or not canonical base64url.')
  }
  if (!isUtf8(Buffer.from(payload, 'base64url'))) throw new EntraAuthError('auth_token_invalid', 'The token payload is not valid UTF-8.')
  return decodeSegment(header, 'header')
}

/**
 * The checks of {@link precheckJws} a token must still pass when its header segment is one that
 * passed them (and {@link checkJoseHeader}) before, byte for byte: size, three segments, canonical
 * endings. `first` is the index of the first dot. False says nothing about why (run `precheckJws`
 * for the refusal). The signature's alphabet is left to fast-jwt's decoder, and the payload's
 * UTF-8 to {@link checkDecodedPayload}, once the signature verified.
 */
export function passesKnownHeaderChecks (token: string, first: number): boolean {
  if (token.length > MAX_TOKEN_LENGTH) return false
  const last = token.lastIndexOf('.')
  if (last === first || last === token.length - 1 || token.indexOf('.', first + 1) !== last) return false
  return tailIsCanonical(token, first + 1, last) && tailIsCanonical(token, last + 1, token.length)
}

/**
 * The UTF-8 rule for a payload fast-jwt decoded: its decoder turns invalid bytes into U+FFFD, so a
 * payload with no U+FFFD in any name or string was valid UTF-8, and only one that has one (rare:
 * it may be a legitimate `\ufffd`) is decoded again to tell. A scan of the decoded claims costs
 * a fraction of decoding the payload a second time.
 */
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

/**
 * The rest of the token's shape, for when the key store may have to fetch: a payload in canonical
 * base64url that is a JSON object (returned, null prototype). No network before this passes.
 */
export function checkShape (token: string): Record<string, unknown> {
  const first = token.indexOf('.')
  const last = token.lastIndexOf('.')
  return decodeSegment(token.slice(first + 1, last), 'payload')
}

/**
 * The JOSE header rules that need no key: `alg` RS256, no `crit`, a usable `kid`. They run before
 * the key store is asked, so a malformed token costs no fetch.
 */
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
    // The token's shape comes before its kid: a malformed payload is auth_token_invalid either way.
    if (token !== undefined) checkShape(token)
    throw new EntraAuthError('auth_token_key_error', "The token has no 'kid' header, so its signing key can't be found. Send an access token issued by Microsoft Entra ID.", { step: 'structure' })
  }
  if (typeof kid !== 'string' || kid === '' || kid.length > MAX_KID_LENGTH || !kid.isWellFormed()) {
    throw new EntraAuthError('auth_token_invalid', "The token 'kid' header is not a valid key ID.")
  }
  return header as JoseHeader
}

/**
 * Decodes a compact JWS and applies every check that needs no key, in the verifier's order:
 * `precheckJws`, JSON object header and payload (null prototypes), `checkJoseHeader`. These run
 * before any network access, so garbage costs nothing.
 */
export function decodeJws (token: string): DecodedJws {
  const header = precheckJws(token)
  const payload = checkShape(token)
  return { header: checkJoseHeader(header), payload }
}
