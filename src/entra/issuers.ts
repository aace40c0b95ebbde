/**
 * Entra issuer rules, pure (no Fastify, no I/O).
 * https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-issuer
 */

/** Placeholder Entra publishes in multi-tenant discovery documents and in JWK `issuer` members. */
export const TENANT_TEMPLATE = '{tenantid}'

/** Entra tenant IDs are GUIDs; anything else must never be substituted into an issuer. */
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The tenant GUID Entra uses for personal Microsoft accounts. */
export const CONSUMER_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad'

/**
 * v2.0 authority host → host of the v1.0 issuer of the same cloud. v1.0 access tokens name the
 * Security Token Service (`https://sts.windows.net/{tid}/`), not the login host.
 */
const V1_HOST_OF: Readonly<Record<string, string>> = {
  'login.microsoftonline.com': 'sts.windows.net',
  'login.microsoftonline.us': 'login.microsoftonline.us',
  'login.chinacloudapi.cn': 'sts.chinacloudapi.cn',
  'login.partner.microsoftonline.cn': 'sts.chinacloudapi.cn'
}
const V2_ISSUER = /^https:\/\/([^/]+)\/([0-9a-f-]{36})\/v2\.0$/
/** The tenant segment of an Entra issuer, v1.0 (`https://sts.windows.net/{tid}/`) or v2.0. */
const ISSUER_TENANT = /^https:\/\/[^/]+\/([0-9a-f-]{36})\//

export function isTenantId (value: unknown): value is string {
  return typeof value === 'string' && GUID.test(value)
}

/** Substitutes `{tenantid}` with a GUID `tid`; null when the template needs a tid we don't have. */
export function bindTenant (issuerTemplate: string, tid: unknown): string | null {
  if (!issuerTemplate.includes(TENANT_TEMPLATE)) return issuerTemplate
  return isTenantId(tid) ? issuerTemplate.replace(TENANT_TEMPLATE, tid) : null
}

/**
 * The issuer a token of `version` must carry, given the discovery document's issuer (always the
 * v2.0 form in Entra's v2.0 metadata). Returns null when no issuer can be trusted for it, e.g. a
 * v1.0 token against a non-Entra issuer, or a multi-tenant issuer and a `tid` that is no GUID.
 */
export function expectedIssuer (discoveryIssuer: string, version: '1.0' | '2.0', tid: unknown): string | null {
  const v2 = bindTenant(discoveryIssuer, tid)
  if (v2 === null || version === '2.0') return v2
  const match = V2_ISSUER.exec(v2)
  const v1Host = match === null ? undefined : V1_HOST_OF[match[1] as string]
  return v1Host === undefined ? null : `https://${v1Host}/${(match as RegExpExecArray)[2]}/`
}

/** The tenant GUID an Entra issuer names, if it names one. */
export function issuerTenant (iss: string): string | undefined {
  return ISSUER_TENANT.exec(iss)?.[1]
}

/**
 * Entra's signing keys name the issuer they sign for. A key may only verify a token whose issuer
 * (in its v2.0 form) matches after `{tenantid}` substitution: this stops a key of one tenant (e.g. the consumer
 * tenant's) from vouching for another tenant's tokens.
 * https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-signing-key-issuer
 */
export function keyMaySign (keyIssuer: string | undefined, v2Issuer: string, tid: unknown): boolean {
  if (keyIssuer === undefined) return true
  const allowed = bindTenant(keyIssuer, tid)
  return allowed !== null && allowed === v2Issuer
}
