/** Continuous Access Evaluation claims challenges (learn.microsoft.com/entra/identity-platform/claims-challenge). */
import type { FastifyReply } from 'fastify'
import { sendProblemReply } from './problem-reply.js'
import { kVerifier } from '../core/internal.js'
import type { EntraToken } from '../entra/token.js'
import type { EntraVerifier, InternalVerifier } from '../verifier.js'

/** A claims request (OpenID Connect Core §5.5), as an object or as its JSON text. */
export type ClaimsRequest = string | Record<string, unknown>

export interface ClaimsChallengeOptions {
  /** The claims the client must obtain in a new token. */
  claims: ClaimsRequest
  /** Where the client signs in again. Default: the discovery document's `authorization_endpoint`. */
  authorizationUri?: string
  /** Supplies the default `authorizationUri` and `contact`. Default: the plugin's verifier. */
  verifier?: EntraVerifier
  /** `detail` of the problem body. */
  detail?: string
}

/** Problem type of a claims challenge reply (RFC 9457 body `type`). */
export const INSUFFICIENT_CLAIMS = 'auth_token_insufficient_claims'

const DEFAULT_DETAIL = 'This request needs a token with additional claims. Acquire a new token with the claims in the WWW-Authenticate challenge and try again.'

/** Visible ASCII except `"` and backslash: no escaping needed, no header injection. */
const QUOTABLE_URI = /^[\x21\x23-\x5B\x5D-\x7E]+$/

function claimsJson (claims: ClaimsRequest): string {
  const text = typeof claims === 'string' ? claims : JSON.stringify(claims)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new TypeError('fastify-entra-auth: the claims request must be a JSON object')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new TypeError('fastify-entra-auth: the claims request must be a JSON object')
  }
  return text
}

/**
 * True when the token's client can handle claims challenges (`xms_cc` contains `cp1`).
 * @example
 * ```ts
 * if (!supportsClaimsChallenge(request.entraToken)) await reply.code(403).send()
 * ```
 */
export function supportsClaimsChallenge (token: EntraToken | null | undefined): boolean {
  const capabilities: unknown = token?.claims.xms_cc
  return Array.isArray(capabilities) && capabilities.some(c => typeof c === 'string' && c.toLowerCase() === 'cp1')
}

/**
 * The `WWW-Authenticate` value of a claims challenge, as Microsoft's client libraries parse it.
 * @example
 * ```ts
 * buildClaimsChallenge({ claims: { access_token: { acrs: { essential: true, value: 'c1' } } }, authorizationUri: 'https://login.microsoftonline.com/common/oauth2/authorize' })
 * // 'Bearer realm="", authorization_uri="…", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"'
 * ```
 */
export function buildClaimsChallenge (options: { claims: ClaimsRequest, authorizationUri: string }): string {
  const { authorizationUri } = options
  if (typeof authorizationUri !== 'string' || !QUOTABLE_URI.test(authorizationUri)) {
    throw new TypeError('fastify-entra-auth: authorizationUri must be a URL without quotes, backslashes or control characters')
  }
  const claims = Buffer.from(claimsJson(options.claims), 'utf8').toString('base64')
  return `Bearer realm="", authorization_uri="${authorizationUri}", error="insufficient_claims", claims="${claims}"`
}

/**
 * Answers 401 with a claims challenge if the token's client can handle one; `false` if it did nothing.
 * @example
 * ```ts
 * import { claimsChallenge } from 'fastify-entra-auth'
 * const sent = claimsChallenge(reply, request.entraToken, { claims: { access_token: { acrs: { essential: true, value: 'c1' } } } })
 * if (!sent) await reply.code(403).send()
 * ```
 */
export function claimsChallenge (reply: FastifyReply, token: EntraToken | null | undefined, options: ClaimsChallengeOptions): boolean {
  if (!supportsClaimsChallenge(token)) return false
  const verifier = (options.verifier ?? (reply.server as { [kVerifier]?: EntraVerifier })[kVerifier]) as InternalVerifier | undefined
  const authorizationUri = options.authorizationUri ?? verifier?.discovery()?.authorizationEndpoint
  if (authorizationUri === undefined) {
    throw new TypeError('fastify-entra-auth: no authorizationUri given and no discovery document with an authorization_endpoint to take it from')
  }
  const challenge = buildClaimsChallenge({ claims: options.claims, authorizationUri })
  const body: Record<string, unknown> = { type: INSUFFICIENT_CLAIMS, title: 'Additional claims required', status: 401, detail: options.detail ?? DEFAULT_DETAIL }
  const contact = verifier?.options.contact
  if (contact !== undefined) body.contact = contact
  sendProblemReply(reply, 401, challenge, body)
  return true
}
