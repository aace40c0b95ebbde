import { authorizationHeaderCount, bearerToken, duplicateHeaders } from '../core/bearer.js'
import type { EntraTokenSource } from '../options.js'

export interface CredentialCarrier {
  readonly headers: { readonly authorization?: string | string[] | undefined }
  readonly raw?: { readonly rawHeaders?: readonly string[] }
  readonly cookies?: Record<string, string | undefined>
  readonly session?: unknown
}

function sessionValue (session: unknown, key: string): unknown {
  if (session === null || typeof session !== 'object') return undefined
  const get = (session as { get?: unknown }).get
  return typeof get === 'function' ? get.call(session, key) : (session as Record<string, unknown>)[key]
}

/** Never the query string (RFC 6750 §2.3): it leaks into logs, history and `Referer`. Null: no credentials. */
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

export function isFromHeader (request: CredentialCarrier): boolean {
  const header = request.headers.authorization
  return header !== undefined && header !== ''
}
