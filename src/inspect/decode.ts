/** Decodes with the verifier's own decoder but judges nothing, so a refused token can still be looked at. */
import { decodeSegment } from '../core/jws.js'
import { EntraAuthError } from '../entra/problems.js'

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
