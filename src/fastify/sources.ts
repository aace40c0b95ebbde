import { authorizationHeaderCount, bearerToken, duplicateHeaders } from '../core/bearer.js'
import type { EntraTokenSource } from '../options.js'

/** The parts of a request the token may come from (structural, so this module needs no Fastify). */
export interface CredentialCarrier {
  readonly headers: { readonly authorization?: string | string[] | undefined }
  /** The Node request: its `rawHeaders` show every `Authorization` header, not only the first. */
  readonly raw?: { readonly rawHeaders?: readonly string[] }
  /** Set by `@fastify/cookie`. */
  readonly cookies?: Record<string, string | undefined>
  /** Set by `@fastify/session` or `@fastify/secure-session`; both have `get(key)`. */
  readonly session?: unknown
}

function sessionValue (session: unknown, key: string): unknown {
  if (session === null || typeof session !== 'object') return undefined
  const get = (session as { get?: unknown }).get
  return typeof get === 'function' ? get.call(session, key) : (session as Record<string, unknown>)[key]
}

/**
 * Finds the access token of a request: the `Authorization` header when present (RFC 6750 §2.1),
 * else the first configured source holding a non-empty string. The query string (RFC 6750 §2.3) is
 * never read: it leaks into logs, history and `Referer`. A header token's alphabet is left to
 * `checkBearerCharset` (see {@link isFromHeader}).
 *
 * @returns the token, or `null` when the request carries no credentials at all
 * @throws EntraAuthError `auth_header_invalid` for a malformed `Authorization` header, or for
 * more than one (ambiguous: a proxy in front may have judged the other one)
 */
export function findToken (request: CredentialCarrier, sources: readonly EntraTokenSource[]): string | null {
  const header = request.headers.authorization
  if (header !== undefined && header !== '') {
    const rawHeaders = request.raw?.rawHeaders
    if (rawHeaders !== undefined && authorizationHeaderCount(rawHeaders) > 1) throw duplicateHeaders()
    return bearerToken(header)
  }
  for (const source of sources) {
    const value = 'cookie' in source ? request.cookies?.[source.cookie] : sessionValue(request.session, source.session)
    if (typeof value === 'string' && value !== '') return value
  }
  return null
}

/** Whether {@link findToken} took the request's token from its `Authorization` header. */
export function isFromHeader (request: CredentialCarrier): boolean {
  const header = request.headers.authorization
  return header !== undefined && header !== ''
}
