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

/** One Entra cloud instance: where its discovery documents live and how it writes issuers. */
interface Cloud {
  /** Hosts serving the cloud's discovery documents (MSAL's instance aliases). */
  readonly loginHosts: readonly string[]
  /** Host of v2.0 issuers (`https://{host}/{tid}/v2.0`). */
  readonly v2Host: string
  /** Hosts of v1.0 issuers (`https://{host}/{tid}/`): the cloud's Security Token Service. */
  readonly v1Hosts: readonly string[]
}

/*
 * Sources, as far as Microsoft publishes them:
 * - v2.0 issuer hosts and login-host aliases: MSAL.js's built-in cloud metadata
 *   (AzureAD/microsoft-authentication-library-for-js, lib/msal-common/src/authority/AuthorityMetadata.ts):
 *   public login.microsoftonline.com (aliases login.windows.net, login.microsoft.com, sts.windows.net);
 *   US Government login.microsoftonline.us (alias login.usgovcloudapi.net); China
 *   login.partner.microsoftonline.cn (alias login.chinacloudapi.cn, whose v2.0 metadata names the
 *   login.partner.microsoftonline.cn issuer).
 * - v1.0 issuer hosts: Microsoft's answer "What are the token issuers for the sovereign cloud?"
 *   (https://learn.microsoft.com/answers/questions/1190472) gives sts.windows.net for the public
 *   cloud and for US Government, and sts.chinacloudapi.cn for China; China's v1.0 host also appears
 *   in the Azure China documentation's sample tokens (`iss: https://sts.chinacloudapi.cn/{tid}/`).
 *   Microsoft's Bot Framework SDK instead validates US Government v1.0 tokens against
 *   `https://login.microsoftonline.us/{tid}/` (botframework-connector, auth/authenticationConstants.ts,
 *   ValidGovernmentTokenIssuerUrlTemplateV1). The two disagree and neither has been checked against
 *   a real US Government token, so both are accepted there; keys still come only from the US
 *   Government JWKS. docs/tenants.md says so.
 */
const PUBLIC: Cloud = { loginHosts: ['login.microsoftonline.com', 'login.windows.net', 'login.microsoft.com'], v2Host: 'login.microsoftonline.com', v1Hosts: ['sts.windows.net'] }
const US_GOVERNMENT: Cloud = { loginHosts: ['login.microsoftonline.us', 'login.usgovcloudapi.net'], v2Host: 'login.microsoftonline.us', v1Hosts: ['sts.windows.net', 'login.microsoftonline.us'] }
const CHINA: Cloud = { loginHosts: ['login.partner.microsoftonline.cn', 'login.chinacloudapi.cn'], v2Host: 'login.partner.microsoftonline.cn', v1Hosts: ['sts.chinacloudapi.cn'] }
const CLOUDS: readonly Cloud[] = [PUBLIC, US_GOVERNMENT, CHINA]

const V2_ISSUER = /^https:\/\/([^/]+)\/([0-9a-f-]{36})\/v2\.0$/
/** A v1.0 (STS) issuer, bound or still a template, as the v1.0 metadata documents publish it. */
const STS_ISSUER = /^https:\/\/([^/]+)\/([0-9a-f-]{36}|\{tenantid\})\/$/
/** The tenant segment of an Entra issuer, v1.0 (`https://sts.windows.net/{tid}/`) or v2.0. */
const ISSUER_TENANT = /^https:\/\/[^/]+\/([0-9a-f-]{36})\//
/** Azure AD B2C's issuer forms: `{t}.b2clogin.com` hosts, or the v2.0 path with a trailing slash. */
const B2C_ISSUER = /^https:\/\/([^/]+\.b2clogin\.com\/|[^/]+\/[0-9a-f-]{36}\/v2\.0\/$)/

export function isTenantId (value: unknown): value is string {
  return typeof value === 'string' && GUID.test(value)
}

/** Substitutes `{tenantid}` with a GUID `tid`; null when the template needs a tid we don't have. */
export function bindTenant (issuerTemplate: string, tid: unknown): string | null {
  if (!issuerTemplate.includes(TENANT_TEMPLATE)) return issuerTemplate
  return isTenantId(tid) ? issuerTemplate.replace(TENANT_TEMPLATE, tid) : null
}

/** The cloud whose v2.0 issuers are on `host`. */
function cloudOfV2Host (host: string): Cloud | undefined {
  return CLOUDS.find(cloud => cloud.v2Host === host || cloud.loginHosts.includes(host))
}

/**
 * The cloud of a discovery issuer in the v1.0 (STS) form, or undefined when it is not one.
 * `sts.windows.net` serves the public cloud and (per Microsoft's answer above) US Government, so
 * the host the discovery document was fetched from decides between them.
 */
function stsCloud (discoveryIssuer: string, discoveryHost: string | undefined): Cloud | undefined {
  // Asked for every token, always about the same configured issuer: the last answer is kept.
  const last = lastSts
  if (last !== undefined && last.issuer === discoveryIssuer && last.host === discoveryHost) return last.cloud
  const host = STS_ISSUER.exec(discoveryIssuer)?.[1]
  const candidates = host === undefined ? [] : CLOUDS.filter(cloud => cloud.v1Hosts.includes(host))
  const cloud = candidates.find(cloud => discoveryHost !== undefined && cloud.loginHosts.includes(discoveryHost)) ?? candidates[0]
  lastSts = { issuer: discoveryIssuer, host: discoveryHost, cloud }
  return cloud
}

let lastSts: { readonly issuer: string, readonly host: string | undefined, readonly cloud: Cloud | undefined } | undefined

/** True when the discovery issuer is Entra's v1.0 (STS) form, as in the v1.0 metadata documents. */
export function isStsIssuer (discoveryIssuer: string, discoveryHost?: string): boolean {
  return stsCloud(discoveryIssuer, discoveryHost) !== undefined
}

/** How a token of one version is judged against the configured discovery issuer. */
export interface IssuerRule {
  /** The claim naming the client application: required, and the one `allowedApps` checks. */
  readonly clientClaim: 'azp' | 'appid'
  /** Issuers the token's `iss` must equal one of (exact comparison). */
  readonly accepted: readonly string[]
  /** The issuer in its v2.0 form, for the signing key's `issuer` member. */
  readonly v2Issuer: string
}

/**
 * The rule for a token of `version` with claims `iss` and `tid`, given the discovery document's
 * issuer (maybe a `{tenantid}` template) and the host it was fetched from. Null when no issuer can
 * be trusted, e.g. a multi-tenant issuer and a `tid` that is no GUID.
 *
 * - v2.0 metadata (`https://{host}/{tid}/v2.0`): v2.0 tokens carry it; v1.0 tokens carry the STS
 *   form of the same tenant and cloud, with the client in `appid`.
 * - v1.0 metadata (`https://sts.windows.net/{tid}/`): v1.0 tokens carry it, with `appid`; v2.0
 *   tokens carry the v2.0 issuer of the same tenant and cloud.
 * - Azure AD B2C issues `ver` 1.0 tokens under its discovery issuer with the client in `azp`: a
 *   1.0 token whose `iss` is exactly the (bound) discovery issuer, when that issuer is not the STS
 *   form, is validated with `azp`. Never both claims, never one as a fallback for the other.
 */
export function issuerRule (discoveryIssuer: string, version: '1.0' | '2.0', tid: unknown, iss: unknown, discoveryHost?: string): IssuerRule | null {
  // Asked for every token, nearly always with the same arguments: the last (frozen) answer is kept.
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

/** The tenant GUID an Entra issuer names, if it names one. */
export function issuerTenant (iss: string): string | undefined {
  // Asked for every token, nearly always about the same issuer: the last answer is kept.
  if (iss !== lastIssuer.iss) lastIssuer = { iss, tenant: ISSUER_TENANT.exec(iss)?.[1] }
  return lastIssuer.tenant
}

let lastIssuer: { readonly iss: string, readonly tenant: string | undefined } = { iss: '', tenant: undefined }

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

/**
 * Configurations that can't validate some tokens they are set up to accept, as log messages (said
 * once, when the discovery document first loads). Empty when everything configured can work.
 */
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
