/** Claim checks, run only after the signature verified; each rule is written once, as a step. */
import { EntraAuthError } from './problems.js'
import { issuerRule, issuerTenant, keyMaySign, type IssuerRule } from './issuers.js'
import { graphTokenDetail, isGraphToken, looksLikeIdToken, type EntraClaims } from './token.js'
import { runSteps, type Step, type StepFacts, type StepRecorder } from './steps.js'

export interface ClaimRules {
  readonly clientId: string
  readonly audiences: ReadonlySet<string>
  readonly tokenVersions: ReadonlySet<string>
  readonly allowedTenants: ReadonlySet<string> | null
  readonly allowedSubjects: ReadonlySet<string> | null
  readonly allowedApps: ReadonlySet<string> | null
  readonly clockTolerance: number
  readonly now: () => number
  readonly discoveryHost?: string
}

export interface CheckedClaims {
  readonly payload: EntraClaims
  readonly clientClaim: 'azp' | 'appid'
}

export const TENANT_NOT_ALLOWED = 'The token was issued by a tenant this API does not allow. Sign in with an account of an allowed tenant.'

function idTokenDetail (clientClaim: 'azp' | 'appid'): string {
  return `The token has no '${clientClaim}' claim (the client application), so it looks like an ID token, which proves a sign-in to the client app and is not meant for APIs. Send an access token requested for this API instead.`
}

function isFiniteNumber (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

/** In the order the Python flask-entra-auth checks them; the client claim depends on version and issuer. */
const REQUIRED = Object.freeze({
  azp: Object.freeze(['iss', 'sub', 'aud', 'exp', 'nbf', 'azp', 'ver']),
  appid: Object.freeze(['iss', 'sub', 'aud', 'exp', 'nbf', 'appid', 'ver']),
  unknown: Object.freeze(['iss', 'sub', 'aud', 'exp', 'nbf', 'ver'])
})

interface ClaimCheck {
  readonly payload: Record<string, unknown>
  readonly rules: ClaimRules
  readonly discoveryIssuer: string
  readonly keyIssuer: string | undefined
  readonly issuer: IssuerRule | null
  readonly clientClaim: 'azp' | 'appid' | undefined
  readonly required: readonly string[]
  missing?: string
  idToken?: boolean
  invalid?: string
  expected?: string
  issRefusal?: 'issuer' | 'tid' | 'tenant' | 'key'
  issuedBy?: string | undefined
}

function invalidClaim (c: ClaimCheck, name: string, expected: string): never {
  c.invalid = name
  c.expected = expected
  throw new EntraAuthError('auth_token_invalid', `The token '${name}' claim must be ${expected}.`, { step: 'claims', claim: name })
}

/** A wrong type is a malformed token, never "no limit" (e.g. `exp: 1e400`). */
function wellFormed (c: ClaimCheck): void {
  const { payload } = c
  const required = c.required
  for (let i = 0; i < required.length; i++) {
    const claim = required[i] as string
    if (payload[claim] === undefined || payload[claim] === null) {
      const idToken = claim === c.clientClaim && looksLikeIdToken(payload)
      c.missing = claim
      c.idToken = idToken
      const detail = idToken
        ? idTokenDetail(claim)
        : `The token has no '${claim}' claim, which every Microsoft Entra access token carries. Request a new access token for this API.`
      throw new EntraAuthError('auth_token_claim_missing', detail, { claim })
    }
  }
  if (!isFiniteNumber(payload.exp)) invalidClaim(c, 'exp', 'a finite number')
  if (!isFiniteNumber(payload.nbf)) invalidClaim(c, 'nbf', 'a finite number')
  if (payload.iat !== undefined && !isFiniteNumber(payload.iat)) invalidClaim(c, 'iat', 'a finite number')
  if (typeof payload.iss !== 'string') invalidClaim(c, 'iss', 'a string')
  if (typeof payload.sub !== 'string') invalidClaim(c, 'sub', 'a string')
  const aud = payload.aud
  if (typeof aud !== 'string' && !(Array.isArray(aud) && aud.length > 0 && aud.every(a => typeof a === 'string'))) {
    invalidClaim(c, 'aud', 'a string or an array of strings')
  }
}

function version (c: ClaimCheck): void {
  const ver = c.payload.ver
  const accepted = c.rules.tokenVersions
  if ((ver !== '1.0' && ver !== '2.0') || !accepted.has(ver)) {
    throw new EntraAuthError('auth_token_ver_not_supported', `The token version ${JSON.stringify(ver)} is not accepted; this API accepts ${[...accepted].join(' and ')}. Set accessTokenAcceptedVersion in the API's app manifest, or change the tokenVersions option.`)
  }
}

function issuer (c: ClaimCheck): void {
  const { payload, rules, issuer: rule } = c
  const iss = payload.iss as string
  const tid = payload.tid
  if (rule === null || !rule.accepted.includes(iss)) {
    c.issRefusal = 'issuer'
    throw new EntraAuthError('auth_token_issuer_untrusted')
  }
  // Entra issues `iss` and `tid` for the same tenant; otherwise `tid` can't be trusted for allowedTenants.
  const issuedBy = c.issuedBy = issuerTenant(iss)
  if (tid !== undefined && issuedBy !== undefined && tid !== issuedBy) {
    c.issRefusal = 'tid'
    throw new EntraAuthError('auth_token_issuer_untrusted', "The token's 'tid' names another tenant than its issuer. Request a new token from Microsoft Entra ID.", { claim: 'tid' })
  }
  if (rules.allowedTenants !== null && !(typeof tid === 'string' && rules.allowedTenants.has(tid))) {
    c.issRefusal = 'tenant'
    throw new EntraAuthError('auth_token_issuer_untrusted', TENANT_NOT_ALLOWED, { claim: 'tid' })
  }
  // Key issuers are written in v2.0 form, whatever the cloud's v1.0 host.
  if (!keyMaySign(c.keyIssuer, rule.v2Issuer, tid)) {
    c.issRefusal = 'key'
    throw new EntraAuthError('auth_token_issuer_untrusted', "The token's signing key belongs to another issuer or tenant than the token claims. Request a token from the tenant this API trusts.")
  }
}

function issuerFacts (c: ClaimCheck): StepFacts {
  const { payload, rules } = c
  const iss = payload.iss
  const tid = payload.tid
  const expected = c.issuer === null ? null : [...c.issuer.accepted]
  switch (c.issRefusal) {
    case 'issuer': return { iss, expected, discoveryIssuer: c.discoveryIssuer, tid }
    case 'tid': return { iss, expected, tid, issuerTenant: c.issuedBy }
    case 'tenant': return { iss, expected, tid, allowedTenants: [...rules.allowedTenants as ReadonlySet<string>] }
    default: return { iss, expected, tid, ...(rules.allowedTenants === null ? {} : { allowedTenants: [...rules.allowedTenants] }), keyIssuer: c.keyIssuer }
  }
}

function audience (c: ClaimCheck): void {
  const aud = c.payload.aud as string | string[]
  const audiences = c.rules.audiences
  if (typeof aud === 'string' ? audiences.has(aud) : aud.some(a => audiences.has(a))) return
  const scope = `api://${c.rules.clientId}/.default`
  throw new EntraAuthError('auth_token_audience_invalid', isGraphToken({}, c.payload)
    ? graphTokenDetail(scope)
    : `The token was issued for another resource. Request a token with a scope of this API (e.g. ${scope}).`)
}

function subject (c: ClaimCheck): void {
  const allowed = c.rules.allowedSubjects
  if (allowed !== null && !allowed.has(c.payload.sub as string)) throw new EntraAuthError('auth_token_subject_not_trusted')
}

function clientApp (c: ClaimCheck): void {
  const allowed = c.rules.allowedApps
  if (allowed === null) return
  // Never fall back from one client claim to the other: a v2 token's `appid` is not checked.
  const claim = (c.issuer as IssuerRule).clientClaim
  const client = c.payload[claim]
  if (typeof client !== 'string' || !allowed.has(client)) throw new EntraAuthError('auth_token_azp_not_trusted', undefined, { claim })
}

const listed = (set: ReadonlySet<string> | null): string[] | null => set === null ? null : [...set]

const SHAPE_STEPS: ReadonlyArray<Step<ClaimCheck>> = [
  {
    step: 'claims',
    rule: wellFormed,
    facts: (c, ok) => ok
      ? { required: [...c.required] }
      : c.missing !== undefined ? { required: [...c.required], missing: c.missing, idToken: c.idToken } : { claim: c.invalid, expected: c.expected }
  }
]

const ISSUER_STEPS: ReadonlyArray<Step<ClaimCheck>> = [
  { step: 'ver', rule: version, facts: c => ({ ver: c.payload.ver, accepted: [...c.rules.tokenVersions] }) },
  { step: 'iss', rule: issuer, facts: issuerFacts },
  { step: 'aud', rule: audience, facts: c => ({ aud: c.payload.aud, accepted: [...c.rules.audiences] }) },
  { step: 'sub', rule: subject, facts: c => ({ sub: c.payload.sub, allowed: listed(c.rules.allowedSubjects) }) },
  {
    step: 'client',
    rule: clientApp,
    facts: c => {
      const claim = (c.issuer as IssuerRule).clientClaim
      return { claim, [claim]: c.payload[claim], allowed: listed(c.rules.allowedApps) }
    }
  }
]

interface TimeCheck {
  readonly nbf: number
  readonly exp: number
  readonly now: number
  readonly clockTolerance: number
}

function timeFacts (claim: 'nbf' | 'exp', value: number, c: TimeCheck): Record<string, unknown> {
  return { [claim]: value, now: c.now / 1000, inSeconds: value - c.now / 1000, clockTolerance: c.clockTolerance }
}

const TIME_STEPS: ReadonlyArray<Step<TimeCheck>> = [
  {
    step: 'nbf',
    rule: c => { if (c.nbf * 1000 > c.now + c.clockTolerance) throw new EntraAuthError('auth_token_immature') },
    facts: c => timeFacts('nbf', c.nbf, c)
  },
  {
    step: 'exp',
    // RFC 7519 §4.1.4: the token must not be accepted "on or after" exp.
    rule: c => { if (c.exp * 1000 <= c.now - c.clockTolerance) throw new EntraAuthError('auth_token_expired') },
    facts: c => timeFacts('exp', c.exp, c)
  }
]

/** Also run on every cache hit: a cached token may have expired since. */
export function checkTime (nbf: number, exp: number, rules: Pick<ClaimRules, 'now' | 'clockTolerance'>, record?: StepRecorder): void {
  runSteps(TIME_STEPS, { nbf, exp, now: rules.now(), clockTolerance: rules.clockTolerance }, record)
}

export function checkClaims (
  payload: Record<string, unknown>,
  rules: ClaimRules,
  discoveryIssuer: string,
  keyIssuer: string | undefined,
  record?: StepRecorder
): CheckedClaims {
  const ver = payload.ver
  const rule = ver === '1.0' || ver === '2.0' ? issuerRule(discoveryIssuer, ver, payload.tid, payload.iss, rules.discoveryHost) : null
  const clientClaim = ver === '1.0' || ver === '2.0' ? rule?.clientClaim ?? (ver === '2.0' ? 'azp' : 'appid') : undefined
  const c: ClaimCheck = { payload, rules, discoveryIssuer, keyIssuer, issuer: rule, clientClaim, required: REQUIRED[clientClaim ?? 'unknown'] }
  runSteps(SHAPE_STEPS, c, record)
  checkTime(payload.nbf as number, payload.exp as number, rules, record)
  runSteps(ISSUER_STEPS, c, record)
  return { payload: payload as EntraClaims, clientClaim: (rule as IssuerRule).clientClaim }
}
