import { EntraAuthError } from './problems.js'
import { TENANT_TEMPLATE } from './issuers.js'
import type { TokenPermissions } from './scopes.js'

const NO_PERMISSION = "This token carries no permission: it has neither delegated scopes ('scp') nor app roles ('roles'), " +
  'and this API refuses such tokens (option requirePermissions), since any application can obtain one. ' +
  'Request a token with a scope or app role of this API (consent to it, or have an admin assign the app role).'

export function requiresPermissions (option: boolean | undefined, discoveryIssuer: string): boolean {
  return option ?? discoveryIssuer.includes(TENANT_TEMPLATE)
}

/** An `scp` without words or an empty `roles` carries no permission either. */
export function checkPermissions (token: TokenPermissions): void {
  if (token.all.size === 0) throw new EntraAuthError('auth_token_insufficient_scopes', NO_PERMISSION, { step: 'permissions' })
}
