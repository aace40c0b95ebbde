/**
 * The last steps of admitting a token whose signature and claims checked out: the `EntraToken`
 * with its client claim, the `allowedTenants` predicate, then `requirePermissions` (contract
 * order: … → client → scopes). Also says once, when the discovery document is first seen, which
 * configured token versions can't work with its issuer.
 */
import { checkPermissions, requiresPermissions } from './entra/permissions.js'
import { clientClaimOf, issuerWarnings } from './entra/issuers.js'
import { createTenantCheck } from './entra/tenants.js'
import type { StepRecorder } from './entra/steps.js'
import type { JoseHeader } from './core/jws.js'
import type { ResolvedOptions } from './options.js'
import { mintEntraToken, type EntraClaims, type EntraToken } from './entra/token.js'

/** Fastify's logger, pino, or console-like. */
export interface AdmissionLogger {
  warn: (obj: object, msg: string) => void
  error?: (obj: object, msg: string) => void
}

export interface Admission {
  /** Call with the discovery issuer whenever it is at hand; logs configuration warnings once. */
  discovered: (discoveryIssuer: string) => void
  /** Builds the token and runs the tenant predicate and the permission rule; rejects with `EntraAuthError`. */
  admit: (raw: string, header: JoseHeader, claims: EntraClaims, discoveryIssuer: string, record?: StepRecorder) => Promise<EntraToken>
}

export function createAdmission (options: ResolvedOptions, logger: AdmissionLogger | undefined): Admission {
  const host = options.discoveryUrl.hostname
  let warnedFor: string | undefined
  const checkTenant = options.tenantPredicate === null ? null : createTenantCheck(options.tenantPredicate, options.jwks.timeout, options.now)

  function discovered (discoveryIssuer: string): void {
    if (warnedFor === discoveryIssuer) return
    warnedFor = discoveryIssuer
    for (const message of issuerWarnings(discoveryIssuer, options.tokenVersions, host)) {
      logger?.warn({ discoveryUrl: options.discoveryUrl.href, issuer: discoveryIssuer }, message)
    }
  }

  async function admit (raw: string, header: JoseHeader, claims: EntraClaims, discoveryIssuer: string, record?: StepRecorder): Promise<EntraToken> {
    discovered(discoveryIssuer)
    const token = mintEntraToken(raw, header, claims, clientClaimOf(claims, discoveryIssuer, host))
    if (checkTenant !== null) {
      try {
        await checkTenant(token, record)
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
    if (requiresPermissions(options.requirePermissions, discoveryIssuer)) {
      if (record !== undefined) record('permissions', token.all.size > 0, { scp: [...token.delegated], roles: [...token.roles] })
      checkPermissions(token)
    }
    return token
  }

  return { discovered, admit }
}
