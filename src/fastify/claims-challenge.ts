/**
 * Continuous Access Evaluation claims challenges: telling a client that can handle one (its token
 * carries `xms_cc: ['cp1']`) to come back with a token satisfying a claims request.
 */
import type { FastifyReply } from 'fastify'
import { sendProblemReply } from './problem-reply.js'
import { kVerifier } from '../core/internal.js'
import type { EntraToken } from '../entra/token.js'
import type { EntraVerifier, InternalVerifier } from '../verifier.js'

/**
 * A claims request (OpenID Connect Core §5.5), e.g. an authentication context
 * `{ access_token: { acrs: { essential: true, value: 'c1' } } }`, or the one a CAE resource sends
 * after a revocation event, `{ access_token: { nbf: { essential: true, value: '1604106651' } } }`.
 * Given as an object (serialised as JSON) or as its JSON text (sent unchanged).
 */
export type ClaimsRequest = string | Record<string, unknown>

export interface ClaimsChallengeOptions {
  /** The claims the client must obtain in a new token. */
  claims: ClaimsRequest
  /**
   * `authorization_uri` of the challenge: where the client signs in again. Default: the
   * `authorization_endpoint` of the discovery document of `verifier`.
   */
  authorizationUri?: string
  /**
   * The verifier whose discovery document supplies the default `authorizationUri` and whose
   * `contact` option is added to the problem body. Default: the verifier of the plugin registered
   * for this app, whatever its `decorator` name.
   */
  verifier?: EntraVerifier
  /** `detail` of the problem body. */
  detail?: string
}

/** Problem type of a claims challenge reply (RFC 9457 body `type`). */
export const INSUFFICIENT_CLAIMS = 'auth_token_insufficient_claims'

const DEFAULT_DETAIL = 'This request needs a token with additional claims. Acquire a new token with the claims in the WWW-Authenticate challenge and try again.'

/** A URI in a quoted-string: visible ASCII except `"` and backslash (no escaping needed, no header injection). */
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
 * True when the token's client declared it can handle claims challenges: Entra puts the client
 * capabilities it requested into `xms_cc`, and `cp1` is the CAE capability.
 *
 * @example
 * ```ts
 * app.post('/transfer', { onRequest: app.entraAuth() }, async (request, reply) => {
 *   if (!supportsClaimsChallenge(request.entraToken)) return reply.code(403).send()
 *   return { ok: true }
 * })
 * ```
 */
export function supportsClaimsChallenge (token: EntraToken | null | undefined): boolean {
  const capabilities: unknown = token?.claims.xms_cc
  return Array.isArray(capabilities) && capabilities.some(c => typeof c === 'string' && c.toLowerCase() === 'cp1')
}

/**
 * The `WWW-Authenticate` value of a claims challenge, in the form Microsoft's client libraries
 * parse: `Bearer realm="", authorization_uri="…", error="insufficient_claims", claims="<base64>"`.
 * The claims request is base64 encoded (RFC 4648 §4), as in Microsoft's examples.
 *
 * @example
 * ```ts
 * buildClaimsChallenge({
 *   claims: { access_token: { acrs: { essential: true, value: 'c1' } } },
 *   authorizationUri: 'https://login.microsoftonline.com/common/oauth2/authorize'
 * })
 * // 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"'
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
 * Answers with a Continuous Access Evaluation claims challenge — 401, one `WWW-Authenticate`
 * header built by {@link buildClaimsChallenge}, and an `application/problem+json` body of type
 * `auth_token_insufficient_claims` — but only when the token's client can handle one
 * (`xms_cc` contains `cp1`). Returns `true` when it sent the reply (return `reply` from your
 * handler then), and `false` when it did nothing: the client would not understand the challenge,
 * so decide otherwise (e.g. refuse with 403).
 *
 * Throws a `TypeError` when the claims request is not a JSON object, or when no
 * `authorizationUri` is given and the verifier has no discovery document with an
 * `authorization_endpoint`.
 *
 * @example
 * ```ts
 * import { claimsChallenge } from 'fastify-entra-auth'
 *
 * app.post('/transfer', { onRequest: app.entraAuth(['Funds.Transfer']) }, async (request, reply) => {
 *   const token = request.entraToken!
 *   const acrs = token.claims.acrs
 *   if (!Array.isArray(acrs) || !acrs.includes('c1')) {
 *     // Step-up: ask for authentication context c1 (e.g. MFA) with a claims challenge.
 *     if (claimsChallenge(reply, token, { claims: { access_token: { acrs: { essential: true, value: 'c1' } } } })) return reply
 *     return reply.code(403).send({ error: 'This operation needs a client that supports claims challenges.' })
 *   }
 *   return transfer(request.body)
 * })
 * ```
 */
export function claimsChallenge (reply: FastifyReply, token: EntraToken | null | undefined, options: ClaimsChallengeOptions): boolean {
  if (!supportsClaimsChallenge(token)) return false
  // Every verifier is made by createEntraVerifier or the plugin: both are InternalVerifiers.
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
