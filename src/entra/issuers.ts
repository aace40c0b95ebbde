/** Entra issuer rules (learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-issuer). */

export const TENANT_TEMPLATE = '{tenantid}'

/** Anything but a GUID must never be substituted into an issuer. */
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export const CONSUMER_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad'

interface Cloud {
  readonly loginHosts: readonly string[]
  readonly v2Host: string
  readonly v1Hosts: readonly string[]
}

// Where these hosts come from: docs/architecture.md, "src/entra/issuers.ts".
const PUBLIC: Cloud = { loginHosts: ['login.microsoftonline.com', 'login.windows.net', 'login.microsoft.com'], v2Host: 'login.microsoftonline.com', v1Hosts: ['sts.windows.net'] }
const US_GOVERNMENT: Cloud = { loginHosts: ['login.microsoftonline.us', 'login.usgovcloudapi.net'], v2Host: 'login.microsoftonline.us', v1Hosts: ['sts.windows.net', 'login.microsoftonline.us'] }
const CHINA: Cloud = { loginHosts: ['login.partner.microsoftonline.cn', 'login.chinacloudapi.cn'], v2Host: 'login.partner.microsoftonline.cn', v1Hosts: ['sts.chinacloudapi.cn'] }
const CLOUDS: readonly Cloud[] = [PUBLIC, US_GOVERNMENT, CHINA]

const V2_ISSUER = /^https:\/\/([^/]+)\/([0-9a-f-]{36})\/v2\.0$/
const STS_ISSUER = /^https:\/\/([^/]+)\/([0-9a-f-]{36}|\{tenantid\})\/$/
const ISSUER_TENANT = /^https:\/\/[^/]+\/([0-9a-f-]{36})\//
const B2C_ISSUER = /^https:\/\/([^/]+\.b2clogin\.com\/|[^/]+\/[0-9a-f-]{36}\/v2\.0\/$)/

export function isTenantId (value: unknown): value is string {
  return typeof value === 'string' && GUID.test(value)
}

export function bindTenant (issuerTemplate: string, tid: unknown): string | null {
  if (!issuerTemplate.includes(TENANT_TEMPLATE)) return issuerTemplate
  return isTenantId(tid) ? issuerTemplate.replace(TENANT_TEMPLATE, tid) : null
}

function cloudOfV2Host (host: string): Cloud | undefined {
  return CLOUDS.find(cloud => cloud.v2Host === host || cloud.loginHosts.includes(host))
}

/** `sts.windows.net` serves public and US Government clouds: the discovery host decides. */
function stsCloud (discoveryIssuer: string, discoveryHost: string | undefined): Cloud | undefined {
  // Asked for every token about the same issuer: the last answer is kept (also below).
  const last = lastSts
  if (last !== undefined && last.issuer === discoveryIssuer && last.host === discoveryHost) return last.cloud
  const host = STS_ISSUER.exec(discoveryIssuer)?.[1]
  const candidates = host === undefined ? [] : CLOUDS.filter(cloud => cloud.v1Hosts.includes(host))
  const cloud = candidates.find(cloud => discoveryHost !== undefined && cloud.loginHosts.includes(discoveryHost)) ?? candidates[0]
  lastSts = { issuer: discoveryIssuer, host: discoveryHost, cloud }
  return cloud
}

let lastSts: { readonly issuer: string, readonly host: string | undefined, readonly cloud: Cloud | undefined } | undefined

export function isStsIssuer (discoveryIssuer: string, discoveryHost?: string): boolean {
  return stsCloud(discoveryIssuer, discoveryHost) !== undefined
}

export interface IssuerRule {
  readonly clientClaim: 'azp' | 'appid'
  readonly accepted: readonly string[]
  readonly v2Issuer: string
}

/** Null when no issuer can be trusted. The rules per version and B2C: docs/tenants.md. */
export function issuerRule (discoveryIssuer: string, version: '1.0' | '2.0', tid: unknown, iss: unknown, discoveryHost?: string): IssuerRule | null {
  const last = lastRule
  if (last !== undefined && last.discoveryIssuer === discoveryIssuer && last.version === version && last.tid === tid && last.iss === iss && last.discoveryHost === discoveryHost) return last.rule
  const rule = ruleOf(discoveryIssuer, version, tid, iss, discoveryHost)
  if (rule !== null) Object.freeze(rule.accepted)
  lastRule = { discoveryIssuer, version, tid, iss, discoveryHost, rule: rule === null ? null : Object.freeze(rule) }
  return lastRule.rule
}

let lastRule: { readonly discoveryIssuer: string, readonly version: string, readonly tid: unknown, readonly iss: unknown, readonly discoveryHost: string | undefined, readonly rule: IssuerRule | null } | undefined

function ruleOf (discoveryIssuer: string, version: '1.0' | '2.0', tid: unknown, iss: unknown, discoveryHost?: string): IssuerRule | null {
  const bound = bindTenant(discoveryIssuer, tid)
  if (bound === null) return null
  const sts = stsCloud(discoveryIssuer, discoveryHost)
  if (sts !== undefined) {
    const tenant = (STS_ISSUER.exec(bound) as RegExpExecArray)[2] as string
    const v2Issuer = `https://${sts.v2Host}/${tenant}/v2.0`
    return version === '1.0'
      ? { clientClaim: 'appid', accepted: [bound], v2Issuer }
      : { clientClaim: 'azp', accepted: [v2Issuer], v2Issuer }
  }
  if (version === '2.0' || iss === bound) return { clientClaim: 'azp', accepted: [bound], v2Issuer: bound }
  const match = V2_ISSUER.exec(bound)
  const cloud = match === null ? undefined : cloudOfV2Host(match[1] as string)
  if (match === null || cloud === undefined) return null
  return { clientClaim: 'appid', accepted: cloud.v1Hosts.map(host => `https://${host}/${match[2] as string}/`), v2Issuer: bound }
}

export function issuerTenant (iss: string): string | undefined {
  if (iss !== lastIssuer.iss) lastIssuer = { iss, tenant: ISSUER_TENANT.exec(iss)?.[1] }
  return lastIssuer.tenant
}

let lastIssuer: { readonly iss: string, readonly tenant: string | undefined } = { iss: '', tenant: undefined }

/** A key of one tenant must not vouch for another's tokens (access-tokens#validate-the-signing-key-issuer). */
export function keyMaySign (keyIssuer: string | undefined, v2Issuer: string, tid: unknown): boolean {
  if (keyIssuer === undefined) return true
  const allowed = bindTenant(keyIssuer, tid)
  return allowed !== null && allowed === v2Issuer
}

export function issuerWarnings (discoveryIssuer: string, tokenVersions: ReadonlySet<string>, discoveryHost?: string): string[] {
  if (!tokenVersions.has('1.0') || isStsIssuer(discoveryIssuer, discoveryHost) || B2C_ISSUER.test(discoveryIssuer)) return []
  const match = V2_ISSUER.exec(discoveryIssuer.replace(TENANT_TEMPLATE, '00000000-0000-0000-0000-000000000000'))
  if (match !== null && cloudOfV2Host(match[1] as string) !== undefined) return []
  return [
    `fastify-entra-auth: the discovery issuer ${discoveryIssuer} is not a Microsoft Entra issuer this package knows the v1.0 (STS) form of, ` +
    "so Entra v1.0 access tokens (ver 1.0 with appid) can't be validated against it; only 1.0 tokens whose iss is exactly this issuer " +
    "(Azure AD B2C's shape, client in azp) can. Set tokenVersions: ['2.0'] if the API only receives v2.0 tokens, or use the tenant's " +
    'v1.0 metadata document (https://{authority host}/{tenant}/.well-known/openid-configuration) as oidcEndpoint.'
  ]
}
