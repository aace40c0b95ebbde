/** The one registry of problem types (RFC 9457); a test keeps the README's table equal to it. */

/** RFC 6750 §3.1 error codes used in the `WWW-Authenticate` challenge. */
export type ChallengeError = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | null

export interface ProblemDefinition {
  readonly status: number
  readonly title: string
  /** Default `detail`; call sites may give a more specific one. */
  readonly detail: string
  readonly challenge: ChallengeError
}

/** A problem type slug, e.g. `auth_token_expired`. */
export type ProblemType =
  | 'auth_header_missing'
  | 'auth_header_invalid'
  | 'auth_oidc_error'
  | 'auth_token_key_error'
  | 'auth_token_invalid'
  | 'auth_token_signature_untrusted'
  | 'auth_token_claim_missing'
  | 'auth_token_issuer_untrusted'
  | 'auth_token_audience_invalid'
  | 'auth_token_expired'
  | 'auth_token_immature'
  | 'auth_token_ver_not_supported'
  | 'auth_token_subject_not_trusted'
  | 'auth_token_azp_not_trusted'
  | 'auth_token_insufficient_scopes'
  | 'auth_tenant_check_error'

const registry = {
  auth_header_missing: {
    status: 401,
    title: 'Missing authorization header',
    detail: "Ensure your request includes an 'Authorization' header with a bearer token and try again.",
    challenge: null
  },
  auth_header_invalid: {
    status: 401,
    title: 'Invalid authorization header',
    detail: "Ensure your 'Authorization' header has exactly the form 'Bearer <access token>' and try again.",
    challenge: 'invalid_request'
  },
  auth_oidc_error: {
    status: 503,
    title: 'Identity provider unavailable',
    detail: 'The signing keys of the identity provider could not be loaded. This is not a problem with your request: try again later.',
    challenge: null
  },
  auth_token_key_error: {
    status: 401,
    title: 'Token signing key unknown',
    detail: "The token's 'kid' header does not name a signing key of the identity provider. Request a new token from Microsoft Entra ID and try again.",
    challenge: 'invalid_token'
  },
  auth_token_invalid: {
    status: 401,
    title: 'Invalid token',
    detail: 'The access token could not be parsed as an RS256-signed JWT. Ensure you send the access token (not the ID token) unmodified.',
    challenge: 'invalid_token'
  },
  auth_token_signature_untrusted: {
    status: 401,
    title: 'Token signature untrusted',
    detail: 'The token signature does not verify with the signing key. Ensure the token was issued by Microsoft Entra ID for this API and was not modified.',
    challenge: 'invalid_token'
  },
  auth_token_claim_missing: {
    status: 401,
    title: 'Token missing required claim',
    detail: 'The token lacks a claim every Entra access token carries. Request a new access token for this API.',
    challenge: 'invalid_token'
  },
  auth_token_issuer_untrusted: {
    status: 401,
    title: 'Token issuer untrusted',
    detail: 'The token was issued by an authority or tenant this API does not trust. Request a token from the tenant this API is registered in.',
    challenge: 'invalid_token'
  },
  auth_token_audience_invalid: {
    status: 401,
    title: 'Token audience invalid',
    detail: 'The token was issued for another resource. Request a token with a scope of this API.',
    challenge: 'invalid_token'
  },
  auth_token_expired: {
    status: 401,
    title: 'Token expired',
    detail: 'The token has expired. Request a new access token and try again.',
    challenge: 'invalid_token'
  },
  auth_token_immature: {
    status: 401,
    title: 'Token not yet valid',
    detail: "The token's 'nbf' (not before) time is in the future. Check the clock of the token issuer and try again later.",
    challenge: 'invalid_token'
  },
  auth_token_ver_not_supported: {
    status: 401,
    title: 'Token version not supported',
    detail: "The token's 'ver' claim names an Entra token version this API does not accept.",
    challenge: 'invalid_token'
  },
  auth_token_subject_not_trusted: {
    status: 403,
    title: 'Token subject not allowed',
    detail: 'The user or principal in this token is not allowed to use this API. Ask its owner for access.',
    challenge: 'insufficient_scope'
  },
  auth_token_azp_not_trusted: {
    status: 403,
    title: 'Client application not allowed',
    detail: 'The client application that requested this token is not allowed to use this API. Ask its owner for access.',
    challenge: 'insufficient_scope'
  },
  auth_token_insufficient_scopes: {
    status: 403,
    title: 'Insufficient scopes',
    detail: 'The token lacks the scopes or app roles this route needs. Request a token with them and try again.',
    challenge: 'insufficient_scope'
  },
  auth_tenant_check_error: {
    status: 503,
    title: 'Tenant check failed',
    detail: 'Whether your tenant may use this API could not be checked. This is not a problem with your request: try again later.',
    challenge: null
  }
} as const satisfies Record<ProblemType, ProblemDefinition>

for (const definition of Object.values(registry)) Object.freeze(definition)

/** The problem types by slug, deeply frozen. */
export const problems: Readonly<Record<ProblemType, ProblemDefinition>> = Object.freeze(registry)

export function asAuthError (err: unknown): EntraAuthError {
  return err instanceof EntraAuthError ? err : new EntraAuthError('auth_token_invalid', undefined, { cause: err })
}

/** RFC 9457 problem details body as the plugin sends it. */
export interface ProblemBody {
  type: ProblemType
  title: string
  status: number
  detail: string
  contact?: string
}

/** `Retry-After` of a 503 (RFC 9110 §10.2.3): the key store does not refetch sooner after a failure. */
export const RETRY_AFTER_SECONDS = 5

export function problemHeaders (status: number, challenge: string): Record<string, string> {
  const headers: Record<string, string> = { 'www-authenticate': challenge }
  if (status === 503) headers['retry-after'] = String(RETRY_AFTER_SECONDS)
  return headers
}

/** The steps of a validation, in the order they run (docs/security.md). */
export type ValidationStep =
  | 'request' | 'structure' | 'discovery' | 'keys' | 'key' | 'signature'
  | 'claims' | 'nbf' | 'exp' | 'ver' | 'iss' | 'aud' | 'sub' | 'client' | 'tenant' | 'permissions' | 'scopes'

const STEP_OF: Readonly<Record<ProblemType, ValidationStep>> = Object.freeze({
  auth_header_missing: 'request',
  auth_header_invalid: 'request',
  auth_oidc_error: 'keys',
  auth_token_key_error: 'key',
  auth_token_invalid: 'structure',
  auth_token_signature_untrusted: 'signature',
  auth_token_claim_missing: 'claims',
  auth_token_issuer_untrusted: 'iss',
  auth_token_audience_invalid: 'aud',
  auth_token_expired: 'exp',
  auth_token_immature: 'nbf',
  auth_token_ver_not_supported: 'ver',
  auth_token_subject_not_trusted: 'sub',
  auth_token_azp_not_trusted: 'client',
  auth_token_insufficient_scopes: 'scopes',
  auth_tenant_check_error: 'tenant'
})

const CLAIM_OF: Partial<Record<ValidationStep, string>> = { nbf: 'nbf', exp: 'exp', ver: 'ver', iss: 'iss', aud: 'aud', sub: 'sub' }

/** What an `EntraAuthError` may be told besides its type and detail. */
export interface EntraAuthErrorOptions {
  requiredScope?: string
  cause?: unknown
  challengeError?: ChallengeError
  /** The validation step that failed, when not the type's usual one. */
  step?: ValidationStep
  /** The claim that failed the step, when not the step's usual one. */
  claim?: string
}

/**
 * The error every token failure is reported with; the route hook turns it into a problem reply.
 * @example
 * ```ts
 * try { await verifier.verify(token) } catch (err) {
 *   if (err instanceof EntraAuthError && err.type === 'auth_token_expired') refresh()
 * }
 * ```
 */
export class EntraAuthError extends Error {
  /** Problem type slug (stable API; switch on this). */
  readonly type: ProblemType
  readonly title: string
  /** HTTP status the plugin replies with. */
  readonly status: number
  /** What the caller should do; never contains the token or key material. */
  readonly detail: string
  /** Alias of `status`, for Fastify's default error handler. */
  readonly statusCode: number
  /** Space-separated scopes named in an `insufficient_scope` challenge. */
  readonly requiredScope: string | undefined
  /** RFC 6750 §3.1 error code of the challenge; `null` when there was no bearer token to judge. */
  readonly challengeError: ChallengeError
  /** The validation step the failure came from (e.g. `exp`, `signature`). */
  readonly step: ValidationStep
  /** The claim that failed (e.g. `exp`, `tid`), for failures of a claim rule. */
  readonly claim: string | undefined

  constructor (type: ProblemType, detail?: string, options?: EntraAuthErrorOptions) {
    const def = problems[type]
    super(`${type}: ${detail ?? def.detail}`, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'EntraAuthError'
    this.type = type
    this.title = def.title
    this.status = def.status
    this.statusCode = def.status
    this.detail = detail ?? def.detail
    this.requiredScope = options?.requiredScope
    this.challengeError = options?.challengeError !== undefined ? options.challengeError : def.challenge
    this.step = options?.step ?? STEP_OF[type]
    this.claim = options?.claim ?? CLAIM_OF[this.step]
  }

  /** Response headers for this error; Fastify's default error handler copies them. */
  get headers (): Record<string, string> {
    return problemHeaders(this.status, this.challenge())
  }

  /** The RFC 9457 body for this error. */
  toProblem (contact?: string): ProblemBody {
    const body: ProblemBody = { type: this.type, title: this.title, status: this.status, detail: this.detail }
    if (contact !== undefined) body.contact = contact
    return body
  }

  /** The RFC 6750 §3 challenge; bare `Bearer` without credentials to judge, or for a 503. */
  challenge (): string {
    const code = this.challengeError
    if (code === null) return 'Bearer'
    let value = `Bearer error="${code}", error_description="${this.title}"`
    if (this.requiredScope !== undefined) value += `, scope="${this.requiredScope}"`
    return value
  }
}
