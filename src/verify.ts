import { createVerifier, TokenError } from 'fast-jwt'
import type { SigningKey } from './keys.js'
import { EntraAuthError } from './problems.js'

type SignatureVerifier = (token: string) => unknown

/**
 * One fast-jwt verifier per key, built once: fast-jwt parses the key when the verifier is created,
 * whereas a key callback makes it parse the PEM again on every token. Weakly held, so keys that
 * left the key set are collected with their verifier.
 */
const verifiers = new WeakMap<SigningKey, SignatureVerifier>()

function verifierFor (key: SigningKey): SignatureVerifier {
  let verifier = verifiers.get(key)
  if (verifier === undefined) {
    verifier = createVerifier({
      key: key.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      algorithms: ['RS256'],
      // Time and claim rules are ours (entra/claims.ts), judged with the configured clock,
      // and only after the signature; fast-jwt checks the signature alone.
      ignoreExpiration: true,
      ignoreNotBefore: true,
      cache: false
    })
    verifiers.set(key, verifier)
  }
  return verifier
}

/** fast-jwt error codes that mean "this token is malformed", not "the signature is wrong". */
const MALFORMED = new Set<string>([
  TokenError.codes.malformed,
  TokenError.codes.invalidType,
  TokenError.codes.invalidPayload,
  TokenError.codes.invalidAlgorithm,
  TokenError.codes.missingSignature,
  TokenError.codes.invalidCritHeader,
  TokenError.codes.invalidClaimType,
  TokenError.codes.invalidClaimValue
])

/**
 * Verifies the RS256 signature of `token` with `key`. Upstream errors are mapped by their
 * `code` (never by message) so none reaches Fastify without a status.
 */
export function verifySignature (token: string, key: SigningKey, untrustedDetail?: string): void {
  try {
    verifierFor(key)(token)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' && MALFORMED.has(code)) {
      throw new EntraAuthError('auth_token_invalid', undefined, { cause: err })
    }
    // invalidSignature, verifyError (bad signature bytes), invalidKey, or anything unforeseen:
    // the token is not trusted. Fail closed, with a 401.
    throw new EntraAuthError('auth_token_signature_untrusted', untrustedDetail, { cause: err })
  }
}
