/**
 * The predicate form of `allowedTenants`: multi-tenant (SaaS) APIs admit the tenants that signed
 * up, which live in a database rather than in a constant. No Fastify, no I/O of its own.
 */
import { EntraAuthError } from './problems.js'
import type { EntraToken } from './token.js'
import { TENANT_NOT_ALLOWED } from './claims.js'
import { isTenantId } from './issuers.js'

/** `(tenantId, token) => boolean | Promise<boolean>`; see `EntraTenantPredicate`. */
export type TenantPredicate = (tenantId: string, token: EntraToken) => boolean | Promise<boolean>

const CHECK_FAILED = "Whether your tenant may use this API could not be checked (the API's tenant check failed). This is not a problem with your request: try again later."

/**
 * Asks `predicate` about the token's tenant. Only `true` admits; any other answer is the same
 * refusal as a tenant missing from the list form (`auth_token_issuer_untrusted`). A predicate that
 * throws or rejects never admits either: that failure is the application's, not the client's, so
 * it is `auth_tenant_check_error` (503) with the error as `cause`.
 */
export async function checkTenant (predicate: TenantPredicate, token: EntraToken): Promise<void> {
  const tid = token.claims.tid
  // Entra's `tid` is always a GUID (and was bound into or matched against the issuer): the
  // predicate never sees anything else, so a lookup keyed on it needs no escaping.
  if (!isTenantId(tid)) throw new EntraAuthError('auth_token_issuer_untrusted', TENANT_NOT_ALLOWED, { step: 'tenant', claim: 'tid' })
  let allowed: unknown
  try {
    allowed = await predicate(tid, token)
  } catch (err) {
    throw new EntraAuthError('auth_tenant_check_error', CHECK_FAILED, { cause: err, claim: 'tid' })
  }
  if (allowed !== true) throw new EntraAuthError('auth_token_issuer_untrusted', TENANT_NOT_ALLOWED, { step: 'tenant', claim: 'tid' })
}
