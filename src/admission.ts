/** After signature and claims: the `EntraToken`, the `allowedTenants` predicate, then `requirePermissions`. */
import { TENANT_TEMPLATE, issuerWarnings } from './entra/issuers.js'
import type { CheckedClaims } from './entra/claims.js'
import { createTenantCheck } from './entra/tenants.js'
import { runSteps, type Step, type StepRecorder } from './entra/steps.js'
import type { JoseHeader } from './core/jws.js'
import type { ResolvedOptions } from './options.js'
import { mintEntraToken, type EntraToken } from './entra/token.js'
import { EntraAuthError } from './entra/problems.js'
import type { TokenPermissions } from './entra/scopes.js'

/** `requirePermissions`: any app of any tenant can get a token with neither `scp` nor `roles` (docs/architecture.md). */
const NO_PERMISSION = "This token carries no permission: it has neither delegated scopes ('scp') nor app roles ('roles'), " +
  'and this API refuses such tokens (option requirePermissions), since any application can obtain one. ' +
  'Request a token with a scope or app role of this API (consent to it, or have an admin assign the app role).'

function requiresPermissions (option: boolean | undefined, discoveryIssuer: string): boolean {
  return option ?? discoveryIssuer.includes(TENANT_TEMPLATE)
}

/** An `scp` without words or an empty `roles` carries no permission either. */
function checkPermissions (token: TokenPermissions): void {
  if (token.all.size === 0) throw new EntraAuthError('auth_token_insufficient_scopes', NO_PERMISSION, { step: 'permissions' })
}

export interface AdmissionLogger {
  warn: (obj: object, msg: string) => void
  error?: (obj: object, msg: string) => void
}

export interface Admission {
  discovered: (discoveryIssuer: string) => void
  admit: (raw: string, header: JoseHeader, checked: CheckedClaims, discoveryIssuer: string, record?: StepRecorder) => EntraToken | Promise<EntraToken>
}

const PERMISSION_STEPS: ReadonlyArray<Step<EntraToken>> = [
  { step: 'permissions', rule: checkPermissions, facts: token => ({ scp: [...token.delegated], roles: [...token.roles] }) }
]

export function createAdmission (options: ResolvedOptions, logger: AdmissionLogger | undefined): Admission {
  const host = options.discoveryUrl.hostname
  let seenIssuer: string | undefined
  let permissionsRequired = false
  const checkTenant = options.tenantPredicate === null ? null : createTenantCheck(options.tenantPredicate, options.jwks.timeout, options.now)

  function discovered (discoveryIssuer: string): void {
    if (seenIssuer === discoveryIssuer) return
    seenIssuer = discoveryIssuer
    permissionsRequired = requiresPermissions(options.requirePermissions, discoveryIssuer)
    for (const message of issuerWarnings(discoveryIssuer, options.tokenVersions, host)) {
      logger?.warn({ discoveryUrl: options.discoveryUrl.href, issuer: discoveryIssuer }, message)
    }
  }

  function admit (raw: string, header: JoseHeader, checked: CheckedClaims, discoveryIssuer: string, record?: StepRecorder): EntraToken | Promise<EntraToken> {
    discovered(discoveryIssuer)
    const token = mintEntraToken(raw, header, checked.payload, checked.clientClaim)
    if (checkTenant === null) return permitted(token, discoveryIssuer, record)
    return tenantAdmits(checkTenant, token, record).then(() => permitted(token, discoveryIssuer, record))
  }

  async function tenantAdmits (check: NonNullable<typeof checkTenant>, token: EntraToken, record: StepRecorder | undefined): Promise<void> {
    try {
      await check(token, record)
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause
      if (cause !== undefined && logger !== undefined) {
        const message = 'fastify-entra-auth: the allowedTenants predicate failed; the request was refused with 503'
        if (logger.error !== undefined) logger.error({ err: cause }, message)
        else logger.warn({ err: cause }, message)
      }
      throw err
    }
  }

  function permitted (token: EntraToken, discoveryIssuer: string, record: StepRecorder | undefined): EntraToken {
    const required = discoveryIssuer === seenIssuer ? permissionsRequired : requiresPermissions(options.requirePermissions, discoveryIssuer)
    if (required) runSteps(PERMISSION_STEPS, token, record)
    return token
  }

  return { discovered, admit }
}
