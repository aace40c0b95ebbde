import { createHash } from 'node:crypto'
import { EntraAuthError } from './problems.js'
import type { StepRecorder } from './steps.js'
import type { EntraToken } from './token.js'
import { TENANT_NOT_ALLOWED } from './claims.js'
import { isTenantId } from './issuers.js'

export type TenantPredicate = (tenantId: string, token: EntraToken) => boolean | Promise<boolean>

export type TenantCheck = (token: EntraToken, record?: StepRecorder) => Promise<void>

export const TENANT_REFUSAL_MEMORY_MS = 10_000
export const TENANT_REFUSALS_MAX = 1000

const CHECK_FAILED = "Whether your tenant may use this API could not be checked (the API's tenant check failed). This is not a problem with your request: try again later."

/** Only `true` admits; refusals are remembered, failures are the app's (503) and are not (docs/security.md). */
export function createTenantCheck (predicate: TenantPredicate, deadline: number, now: () => number): TenantCheck {
  // Keyed by a digest of the token: a refused token's text (up to 64 KiB) is not kept.
  const refusals = new Map<string, number>()

  function remembered (key: string): boolean {
    const at = refusals.get(key)
    if (at === undefined) return false
    const t = now()
    if (t >= at && t - at < TENANT_REFUSAL_MEMORY_MS) return true
    refusals.delete(key)
    return false
  }

  function remember (key: string): void {
    if (refusals.size >= TENANT_REFUSALS_MAX) refusals.delete(refusals.keys().next().value as string)
    refusals.set(key, now())
  }

  return async function checkTenant (token, record) {
    const tid = token.claims.tid
    if (!isTenantId(tid)) throw refused(record, tid, false)
    const key = createHash('sha256').update(token.raw).digest('base64url')
    if (remembered(key)) throw refused(record, tid, true)
    let allowed: unknown
    try {
      allowed = await settleWithin(predicate(tid, token), deadline)
    } catch (err) {
      record?.('tenant', false, { tid })
      throw new EntraAuthError('auth_tenant_check_error', CHECK_FAILED, { cause: err, claim: 'tid' })
    }
    if (allowed !== true) {
      remember(key)
      throw refused(record, tid, false)
    }
    record?.('tenant', true, { tid })
  }
}

function refused (record: StepRecorder | undefined, tid: unknown, fromMemory: boolean): EntraAuthError {
  record?.('tenant', false, fromMemory ? { tid, remembered: true } : { tid })
  return new EntraAuthError('auth_token_issuer_untrusted', TENANT_NOT_ALLOWED, { step: 'tenant', claim: 'tid' })
}

function settleWithin (answer: unknown, deadline: number): unknown {
  if (typeof (answer as PromiseLike<unknown> | null)?.then !== 'function') return answer
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the allowedTenants predicate did not settle within jwks.timeout (${deadline} ms)`)), deadline)
  })
  return Promise.race([answer, late]).finally(() => clearTimeout(timer))
}
