import { verify } from 'node:crypto'
import type { SigningKey } from './keys.js'
import { EntraAuthError } from './problems.js'

/**
 * Verifies the RS256 signature of `token` with `key`, with node:crypto on the key object converted
 * once per key set. `token` must have passed `decodeJws` (three strict base64url segments, `alg`
 * RS256, no `crit`): those checks are not repeated, so the header and payload are not decoded a
 * second time. Any failure, including an unforeseen error, is `auth_token_signature_untrusted`:
 * fail closed, with a 401.
 */
export function verifySignature (token: string, key: SigningKey, untrustedDetail?: string): void {
  const dot = token.lastIndexOf('.')
  let valid = false
  try {
    // RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), node:crypto's default for RSA keys.
    valid = dot > 0 && verify('sha256', Buffer.from(token.slice(0, dot)), key.publicKey, Buffer.from(token.slice(dot + 1), 'base64url'))
  } catch (err) {
    throw new EntraAuthError('auth_token_signature_untrusted', untrustedDetail, { cause: err })
  }
  if (!valid) throw new EntraAuthError('auth_token_signature_untrusted', untrustedDetail)
}
