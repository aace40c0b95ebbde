/** Claim checks of an Entra access token, run only after the signature verified. */
import { EntraAuthError } from './problems.js'
import type { EntraClaims } from './token.js'
import { clientClaimOf, issuerRule, issuerTenant, keyMaySign } from './issuers.js'
import { graphTokenDetail, isGraphToken, looksLikeIdToken } from './kinds.js'
import type { StepRecorder } from './steps.js'

export interface ClaimRules {
  readonly audiences: ReadonlySet<string>
  readonly tokenVersions: ReadonlySet<string>
  readonly allowedTenants: ReadonlySet<string> | null
  readonly allowedSubjects: ReadonlySet<string> | null
  readonly allowedApps: ReadonlySet<string> | null
  readonly clockTolerance: number
  readonly now: () => number
  /** Where the discovery document comes from; its host tells the cloud of a v1.0 (STS) issuer. */
  readonly discoveryUrl?: URL
}

/** Names the missing client claim, so the caller sees both what is wrong and why. */
function idTokenDetail (clientClaim: 'azp' | 'appid'): string {
  return `The token has no '${clientClaim}' claim (the client application), so it looks like an ID token, which proves a sign-in to the client app and is not meant for APIs. Send an access token requested for this API instead.`
}

/** Detail of `auth_token_issuer_untrusted` for a tenant `allowedTenants` does not admit. */
export const TENANT_NOT_ALLOWED = 'The token was issued by a tenant this API does not allow. Sign in with an account of an allowed tenant.'

function isFiniteNumber (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

function invalidClaim (name: string, expected: string, record: StepRecorder | undefined): never {
  record?.('claims', false, { claim: name, expected })
  throw new EntraAuthError('auth_token_invalid', `The token '${name}' claim must be ${expected}.`, { step: 'claims', claim: name })
}

/**
 * Required claims, present and non-null, in the order the Python flask-entra-auth checks them. The
 * client claim depends on the version and issuer (see `clientClaimOf`); an unknown version is left
 * to the `ver` check.
 */
function checkRequired (payload: Record<string, unknown>, clientClaim: 'azp' | 'appid' | undefined, record: StepRecorder | undefined): readonly string[] {
  const required = ['iss', 'sub', 'aud', 'exp', 'nbf', ...(clientClaim === undefined ? [] : [clientClaim]), 'ver']
  for (const claim of required) {
    if (payload[claim] === undefined || payload[claim] === null) {
      const idToken = claim === clientClaim && looksLikeIdToken(payload)
      record?.('claims', false, { required, missing: claim, idToken })
      const detail = idToken
        ? idTokenDetail(claim)
        : `The token has no '${claim}' claim, which every Microsoft Entra access token carries. Request a new access token for this API.`
      throw new EntraAuthError('auth_token_claim_missing', detail, { claim })
    }
  }
  return required
}

/** Claim types: anything else is a malformed token, never "no limit" (e.g. `exp: 1e400`). */
function checkTypes (payload: Record<string, unknown>, record: StepRecorder | undefined): void {
  if (!isFiniteNumber(payload.exp)) invalidClaim('exp', 'a finite number', record)
  if (!isFiniteNumber(payload.nbf)) invalidClaim('nbf', 'a finite number', record)
  if (payload.iat !== undefined && !isFiniteNumber(payload.iat)) invalidClaim('iat', 'a finite number', record)
  if (typeof payload.iss !== 'string') invalidClaim('iss', 'a string', record)
  if (typeof payload.sub !== 'string') invalidClaim('sub', 'a string', record)
  const aud = payload.aud
  if (typeof aud !== 'string' && !(Array.isArray(aud) && aud.length > 0 && aud.every(a => typeof a === 'string'))) {
    invalidClaim('aud', 'a string or an array of strings', record)
  }
}

/**
 * `nbf` and `exp` (seconds) against the configured clock, with tolerance. Also run on every hit of
 * the verified-token cache, since a cached token may have expired since.
 */
export function checkTime (nbf: number, exp: number, rules: Pick<ClaimRules, 'now' | 'clockTolerance'>, record?: StepRecorder): void {
  const now = rules.now()
  if (record !== undefined) {
    record('nbf', !(nbf * 1000 > now + rules.clockTolerance), timeFacts('nbf', nbf, now, rules.clockTolerance))
  }
  if (nbf * 1000 > now + rules.clockTolerance) {
    throw new EntraAuthError('auth_token_immature')
  }
  if (record !== undefined) {
    record('exp', !(exp * 1000 <= now - rules.clockTolerance), timeFacts('exp', exp, now, rules.clockTolerance))
  }
  // RFC 7519 §4.1.4: the token must not be accepted "on or after" exp.
  if (exp * 1000 <= now - rules.clockTolerance) {
    throw new EntraAuthError('auth_token_expired')
  }
}

/** A time claim against the clock: `inSeconds` is negative for a time in the past. */
function timeFacts (claim: 'nbf' | 'exp', value: number, nowMs: number, clockTolerance: number): Record<string, unknown> {
  return { [claim]: value, now: nowMs / 1000, inSeconds: value - nowMs / 1000, clockTolerance }
}

/**
 * Runs every claim check and returns the claims typed. `discoveryIssuer` is the configured
 * provider's issuer (maybe a `{tenantid}` template); `keyIssuer` the signing key's `issuer` member.
 */
export function checkClaims (
  payload: Record<string, unknown>,
  rules: ClaimRules,
  discoveryIssuer: string,
  keyIssuer: string | undefined,
  record?: StepRecorder
): EntraClaims {
  const discoveryHost = rules.discoveryUrl?.hostname
  const required = checkRequired(payload, clientClaimOf(payload, discoveryIssuer, discoveryHost), record)
  checkTypes(payload, record)
  record?.('claims', true, { required })

  checkTime(payload.nbf as number, payload.exp as number, rules, record)

  const ver = payload.ver
  if (record !== undefined) record('ver', (ver === '1.0' || ver === '2.0') && rules.tokenVersions.has(ver), { ver, accepted: [...rules.tokenVersions] })
  if ((ver !== '1.0' && ver !== '2.0') || !rules.tokenVersions.has(ver)) {
    throw new EntraAuthError('auth_token_ver_not_supported', `The token version ${JSON.stringify(ver)} is not accepted; this API accepts ${[...rules.tokenVersions].join(' and ')}. Set accessTokenAcceptedVersion in the API's app manifest, or change the tokenVersions option.`)
  }

  const iss = payload.iss as string
  const tid = payload.tid
  const rule = issuerRule(discoveryIssuer, ver, tid, iss, discoveryHost)
  if (rule === null || !rule.accepted.includes(iss)) {
    record?.('iss', false, { iss, expected: rule?.accepted ?? null, discoveryIssuer, tid })
    throw new EntraAuthError('auth_token_issuer_untrusted')
  }
  // With a fixed issuer nothing binds `tid`; Entra always issues both for the same tenant, so a
  // token where they differ is not one of Entra's, and `tid` must not be trusted for allowedTenants.
  const issuedBy = issuerTenant(iss)
  if (tid !== undefined && issuedBy !== undefined && tid !== issuedBy) {
    record?.('iss', false, { iss, expected: rule.accepted, tid, issuerTenant: issuedBy })
    throw new EntraAuthError('auth_token_issuer_untrusted', "The token's 'tid' names another tenant than its issuer. Request a new token from Microsoft Entra ID.", { claim: 'tid' })
  }
  if (rules.allowedTenants !== null && !(typeof tid === 'string' && rules.allowedTenants.has(tid))) {
    record?.('iss', false, { iss, expected: rule.accepted, tid, allowedTenants: [...rules.allowedTenants] })
    throw new EntraAuthError('auth_token_issuer_untrusted', TENANT_NOT_ALLOWED, { claim: 'tid' })
  }
  // Key issuers are written in v2.0 form; the rule gives the token's issuer in that form, whatever
  // the cloud's host pairing (China: sts.chinacloudapi.cn ↔ login.partner.microsoftonline.cn).
  if (record !== undefined) {
    record('iss', keyMaySign(keyIssuer, rule.v2Issuer, tid), {
      iss,
      expected: rule.accepted,
      tid,
      ...(rules.allowedTenants === null ? {} : { allowedTenants: [...rules.allowedTenants] }),
      keyIssuer
    })
  }
  if (!keyMaySign(keyIssuer, rule.v2Issuer, tid)) {
    throw new EntraAuthError('auth_token_issuer_untrusted', "The token's signing key belongs to another issuer or tenant than the token claims. Request a token from the tenant this API trusts.")
  }

  const aud = payload.aud as string | string[]
  const audienceOk = typeof aud === 'string' ? rules.audiences.has(aud) : aud.some(a => rules.audiences.has(a))
  record?.('aud', audienceOk, { aud, accepted: [...rules.audiences] })
  if (!audienceOk) {
    throw new EntraAuthError('auth_token_audience_invalid', isGraphToken({}, payload) ? graphTokenDetail() : undefined)
  }

  if (record !== undefined) {
    record('sub', rules.allowedSubjects === null || rules.allowedSubjects.has(payload.sub as string), { sub: payload.sub, allowed: rules.allowedSubjects === null ? null : [...rules.allowedSubjects] })
  }
  if (rules.allowedSubjects !== null && !rules.allowedSubjects.has(payload.sub as string)) {
    throw new EntraAuthError('auth_token_subject_not_trusted')
  }
  if (record !== undefined) {
    const client = payload[rule.clientClaim]
    record('client', rules.allowedApps === null || (typeof client === 'string' && rules.allowedApps.has(client)), {
      claim: rule.clientClaim,
      [rule.clientClaim]: client,
      allowed: rules.allowedApps === null ? null : [...rules.allowedApps]
    })
  }
  if (rules.allowedApps !== null) {
    // Never fall back from one client claim to the other: a v2 token's `appid` is not checked.
    const client = payload[rule.clientClaim]
    if (typeof client !== 'string' || !rules.allowedApps.has(client)) {
      throw new EntraAuthError('auth_token_azp_not_trusted', undefined, { claim: rule.clientClaim })
    }
  }
  return payload as EntraClaims
}
