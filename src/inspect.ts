/**
 * The token debugger behind `fastify-entra-auth inspect` (cli.ts is only its argv wrapper).
 * Decodes a token and says what kind of Entra token it is; given the API's options, validates it
 * step by step with the plugin's own functions, in the plugin's order of checks, and asks the
 * plugin's verifier for the verdict.
 */
import { checkClaims, graphTokenDetail, isGraphToken, looksLikeIdToken } from './entra/claims.js'
import { clientClaimOf, expectedIssuer } from './entra/issuers.js'
import { compileRequirement, type ScopeRequirement } from './entra/scopes.js'
import { decodeJws, parseJsonObject, type DecodedJws, type JoseHeader } from './jws.js'
import { KeyStore, type SigningKey } from './keys.js'
import { resolveOptions, type EntraVerifierOptions, type ResolvedOptions } from './options.js'
import { EntraAuthError, type ProblemType } from './problems.js'
import { escapeControls } from './terminal.js'
import { EntraToken, type EntraClaims } from './token.js'
import { buildVerifier } from './verifier.js'
import { createSignatureVerifier } from './signature.js'

/** The token's shape by Entra's rules. */
export type TokenKind = 'delegated' | 'app-only' | 'id-token' | 'unknown'

/** Who and what a token names; read from the claims, not a proof of anything until validated. */
export interface TokenIdentity {
  tenantId: string | undefined
  objectId: string | undefined
  subject: string | undefined
  /** `azp` (v2.0) or `appid` (v1.0). */
  clientId: string | undefined
  version: '1.0' | '2.0' | undefined
  isAppOnly: boolean
  /** `scp` words ∪ `roles`, as routes see them. */
  scopes: string[]
  /** Display name or sign-in name, for humans only (never authorize on it). */
  name: string | undefined
}

export interface TokenTime {
  claim: 'iat' | 'nbf' | 'exp'
  /** The claim as sent. */
  value: unknown
  /** ISO 8601 time, when the value is a finite number. */
  iso: string | undefined
  /** e.g. `in 52 min`, `2 years ago`, relative to the inspection time. */
  relative: string | undefined
}

/** A decoded, unverified token and what it looks like. */
export interface TokenDescription {
  header: Record<string, unknown>
  claims: Record<string, unknown>
  /** Entra token version (`ver`), when it is one Entra issues. */
  version: '1.0' | '2.0' | undefined
  kind: TokenKind
  /** Issued for Microsoft Graph: only Graph can validate it. */
  graph: boolean
  /** One line, e.g. `Entra v2.0 delegated (user) access token`. */
  summary: string
  identity: TokenIdentity
  times: TokenTime[]
  /** Things worth knowing before validating (ID token, Graph token, expired, version mismatch, …). */
  notes: string[]
}

/** A problem as the plugin would answer it. */
export interface InspectProblem {
  type: ProblemType
  status: number
  title: string
  detail: string
}

/** The validation steps, in the plugin's order. */
export type StepName =
  | 'structure' | 'discovery' | 'keys' | 'key' | 'signature'
  | 'claims' | 'nbf' | 'exp' | 'ver' | 'iss' | 'aud' | 'sub' | 'client' | 'scopes'

export interface InspectStep {
  name: StepName
  /** What the step checks. */
  title: string
  /** `skip`: not run, because an earlier step failed (the plugin stops at the first failure). */
  status: 'pass' | 'fail' | 'skip'
  /** What was found, compared with what was expected. */
  detail: string
  /** The problem type of a failed step. */
  problem?: ProblemType
}

export interface Validation {
  /** The verdict: the plugin's verifier admits the token (and it meets `requirement`, if given). */
  valid: boolean
  /** The clock the token was judged at, in milliseconds. */
  at: number
  clientId: string
  discoveryUrl: string
  steps: InspectStep[]
  /** The first failure, as the plugin would report it; null when valid. */
  problem: InspectProblem | null
  /** The caller, from the validated token; null when invalid. */
  identity: TokenIdentity | null
  notes: string[]
}

export interface InspectReport {
  /** null when the token could not be decoded at all. */
  token: TokenDescription | null
  /** Why the token could not be decoded. */
  decodeError: InspectProblem | null
  /** null when only decoding was asked for. */
  validation: Validation | null
}

/** The verifier's options (`createEntraVerifier`), plus what the debugger needs. */
export type InspectOptions = EntraVerifierOptions & {
  /** Judge the token as of this time, in unix seconds (sets `now`; for expired test tokens). */
  at?: number
  /** Also check a route requirement, as `fastify.entraAuth(requirement)` would. */
  requirement?: ScopeRequirement
}

const STEP_TITLES: Readonly<Record<StepName, string>> = {
  structure: 'three base64url JSON parts, alg RS256, no crit, kid',
  discovery: 'OpenID configuration document',
  keys: 'signing keys (JWKS)',
  key: "a key with the token's kid",
  signature: 'RS256 signature',
  claims: 'required claims present and well-typed',
  nbf: 'not before (nbf)',
  exp: 'expiry (exp)',
  ver: 'token version (ver)',
  iss: 'issuer (iss), tenant and key issuer',
  aud: 'audience (aud)',
  sub: 'subject (sub) allowed',
  client: 'client application (azp / appid) allowed',
  scopes: 'route requirement (scp / roles)'
}

const CLAIM_STEPS = ['claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client'] as const

/** Which claim step `checkClaims` was at when it threw, by problem type (never by message). */
const CLAIM_STEP_OF: Partial<Record<ProblemType, typeof CLAIM_STEPS[number]>> = {
  auth_token_claim_missing: 'claims',
  auth_token_invalid: 'claims',
  auth_token_immature: 'nbf',
  auth_token_expired: 'exp',
  auth_token_ver_not_supported: 'ver',
  auth_token_issuer_untrusted: 'iss',
  auth_token_audience_invalid: 'aud',
  auth_token_subject_not_trusted: 'sub',
  auth_token_azp_not_trusted: 'client'
}

function problemOf (err: EntraAuthError): InspectProblem {
  return { type: err.type, status: err.status, title: err.title, detail: err.detail }
}

/** Anything but an `EntraAuthError` is what the plugin answers `auth_token_invalid` for. */
function asAuthError (err: unknown): EntraAuthError {
  return err instanceof EntraAuthError ? err : new EntraAuthError('auth_token_invalid')
}

/** Accepts a pasted token with surrounding whitespace or a `Bearer ` prefix. */
export function normalizeToken (input: string): string {
  return input.trim().replace(/^bearer\s+/i, '').trim()
}

function decodePart (segment: string, what: string): Record<string, unknown> {
  let value: Record<string, unknown> | undefined
  try {
    value = parseJsonObject(Buffer.from(segment, 'base64url').toString('utf8'))
  } catch {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not base64url-encoded JSON.`)
  }
  if (value === undefined) {
    throw new EntraAuthError('auth_token_invalid', `The token ${what} is not a JSON object.`)
  }
  return value
}

/**
 * Splits and decodes a JWT without judging it (the validation steps are strict; this is not, so
 * a broken token can still be looked at). Throws `EntraAuthError` (`auth_token_invalid`).
 */
export function decodeToken (input: string): { header: Record<string, unknown>, claims: Record<string, unknown> } {
  const parts = normalizeToken(input).split('.')
  if (parts.length === 5) {
    throw new EntraAuthError('auth_token_invalid', 'The token has five parts: it is encrypted (JWE) and only its recipient can read it.')
  }
  if (parts.length !== 3) {
    throw new EntraAuthError('auth_token_invalid', `The token is not a JWT: it has ${parts.length} dot-separated part(s), not three.`)
  }
  return { header: decodePart(parts[0] as string, 'header'), claims: decodePart(parts[1] as string, 'payload') }
}

function iso (seconds: unknown): string | undefined {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return undefined
  const date = new Date(seconds * 1000)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** `in 52 min` / `3 h ago`, for humans. */
export function relativeTime (seconds: number, nowMs: number): string {
  const diff = seconds - nowMs / 1000
  const abs = Math.abs(diff)
  const amount = abs < 120
    ? `${Math.round(abs)} s`
    : abs < 2 * 3600
      ? `${Math.round(abs / 60)} min`
      : abs < 2 * 86400
        ? `${Math.round(abs / 3600)} h`
        : abs < 2 * 365 * 86400
          ? `${Math.round(abs / 86400)} days`
          : `${Math.round(abs / (365.25 * 86400))} years`
  return diff >= 0 ? `in ${amount}` : `${amount} ago`
}

function stringOf (value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

/** ID tokens carry neither delegated scopes, app roles nor a client claim (as entra/claims.ts judges). */
function identityOf (token: EntraToken, claims: Record<string, unknown>): TokenIdentity {
  const ver = claims.ver
  return {
    tenantId: token.tenantId,
    objectId: token.objectId,
    subject: stringOf(claims.sub),
    // For a token without a valid `ver`, show whichever client claim it has.
    clientId: ver === '2.0' || ver === '1.0' ? token.clientId : stringOf(claims.azp) ?? stringOf(claims.appid),
    version: ver === '2.0' || ver === '1.0' ? ver : undefined,
    isAppOnly: token.isAppOnly,
    scopes: token.scopes,
    name: [claims.name, claims.preferred_username, claims.upn, claims.unique_name].map(stringOf).find(v => v !== undefined)
  }
}

const KIND_WORDS: Readonly<Record<TokenKind, string>> = {
  delegated: 'delegated (user) access token',
  'app-only': 'app-only (client credentials) access token',
  'id-token': 'ID token',
  unknown: 'token of unknown shape'
}

/**
 * Decodes `token` (not verified) and says what it is: Entra version, delegated / app-only / ID
 * token, Graph token, who it names, and its times relative to `now` (ms). Throws `EntraAuthError`
 * (`auth_token_invalid`) when it is not a decodable JWT.
 */
export function describeToken (token: string, options: { now?: number } = {}): TokenDescription {
  const now = options.now ?? Date.now()
  const { header, claims } = decodeToken(token)
  const entraToken = new EntraToken(normalizeToken(token), header as JoseHeader, claims as EntraClaims)
  const identity = identityOf(entraToken, claims)
  const version = identity.version
  const graph = isGraphToken(header, claims)
  const kind: TokenKind = looksLikeIdToken(claims)
    ? 'id-token'
    : entraToken.isAppOnly
      ? 'app-only'
      : typeof claims.scp === 'string' || claims.idtyp === 'user' ? 'delegated' : 'unknown'

  const notes: string[] = []
  if (kind === 'id-token') {
    notes.push('This is an ID token: it proves a sign-in to the client app named in aud and is not meant for APIs. Send an access token requested for the API.')
  }
  if (graph) notes.push(graphTokenDetail())
  if (kind === 'unknown') notes.push("Neither delegated (no 'scp') nor app-only ('oid' differs from 'sub', no idtyp 'app') by Entra's rules.")
  if (version === undefined) {
    notes.push(`'ver' is ${JSON.stringify(claims.ver) ?? 'absent'}: Entra access tokens carry "1.0" or "2.0".`)
  } else {
    const iss = stringOf(claims.iss) ?? ''
    if (version === '2.0' && !iss.endsWith('/v2.0')) notes.push(`'ver' is 2.0 but the issuer ${JSON.stringify(iss)} is not in the v2.0 form (…/{tenant}/v2.0).`)
    if (version === '1.0' && iss.endsWith('/v2.0')) notes.push(`'ver' is 1.0 but the issuer ${JSON.stringify(iss)} is in the v2.0 form.`)
    const clientClaim = version === '2.0' ? 'azp' : 'appid'
    if (kind !== 'id-token' && claims[clientClaim] === undefined) notes.push(`A v${version} access token names its client app in '${clientClaim}', which is missing.`)
  }
  if (claims._claim_names !== undefined) notes.push("Group overage: the user has too many groups for the 'groups' claim; query Microsoft Graph for them.")

  const times: TokenTime[] = (['iat', 'nbf', 'exp'] as const).filter(claim => claims[claim] !== undefined).map(claim => {
    const value = claims[claim]
    const at = iso(value)
    return { claim, value, iso: at, relative: at === undefined ? undefined : relativeTime(value as number, now) }
  })
  if (typeof claims.exp === 'number' && claims.exp * 1000 <= now) notes.push(`Expired ${relativeTime(claims.exp, now)}.`)
  if (typeof claims.nbf === 'number' && claims.nbf * 1000 > now) notes.push(`Not valid before ${iso(claims.nbf)} (${relativeTime(claims.nbf, now)}).`)

  const summary = `${version === undefined ? 'Not an Entra v1.0/v2.0' : `Entra v${version}`} ${KIND_WORDS[kind]}${graph ? ' for Microsoft Graph' : ''}`
  return { header, claims, version, kind, graph, summary, identity, times, notes }
}

/** Raised by a step to stop the sequence, as the plugin stops at the first failure. */
class StepFailure extends Error {
  constructor (readonly step: StepName, readonly error: EntraAuthError) {
    super(error.message)
  }
}

function list (values: Iterable<string>): string {
  const all = [...values]
  return all.length === 0 ? '(none)' : all.join(', ')
}

function show (value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? 'absent'
}

function timeFacts (claim: 'nbf' | 'exp', payload: Record<string, unknown>, options: ResolvedOptions, at: number): string {
  const value = payload[claim] as number
  const tolerance = options.clockTolerance > 0 ? ` (tolerance ${options.clockTolerance} ms)` : ''
  return `${claim} ${iso(value) ?? show(value)} is ${relativeTime(value, at)}, now ${iso(at / 1000)}${tolerance}`
}

/** What each claim step compared, for both passes and failures. */
function claimFacts (step: typeof CLAIM_STEPS[number], payload: Record<string, unknown>, options: ResolvedOptions, discoveryIssuer: string, key: SigningKey, at: number): string {
  const ver = payload.ver
  switch (step) {
    case 'claims':
      return `present: iss, sub, aud, exp, nbf, ${clientClaimOf(payload, discoveryIssuer, options.discoveryUrl.hostname) ?? 'azp'}, ver`
    case 'nbf':
    case 'exp':
      return timeFacts(step, payload, options, at)
    case 'ver':
      return `ver ${show(ver)}; accepted: ${list(options.tokenVersions)}`
    case 'iss': {
      const expected = ver === '1.0' || ver === '2.0' ? expectedIssuer(discoveryIssuer, ver, payload.tid, payload.iss, options.discoveryUrl.hostname) : null
      let facts = `iss ${show(payload.iss)}; expected ${expected ?? `none (discovery issuer ${discoveryIssuer}, tid ${show(payload.tid)})`}`
      if (options.allowedTenants !== null) facts += `; tid ${show(payload.tid)}, allowed tenants: ${list(options.allowedTenants)}`
      if (key.issuer !== undefined) facts += `; key issuer ${key.issuer}`
      return facts
    }
    case 'aud':
      return `aud ${show(payload.aud)}; accepted: ${list(options.audiences)}`
    case 'sub':
      return options.allowedSubjects === null ? 'any subject (allowedSubjects not set)' : `sub ${show(payload.sub)}; allowed: ${list(options.allowedSubjects)}`
    case 'client': {
      const claim = clientClaimOf(payload, discoveryIssuer, options.discoveryUrl.hostname) ?? 'azp'
      return options.allowedApps === null ? `any client app (allowedApps not set); ${claim} ${show(payload[claim])}` : `${claim} ${show(payload[claim])}; allowed: ${list(options.allowedApps)}`
    }
  }
}

interface StepOutcome {
  steps: InspectStep[]
  failure: StepFailure | null
  token: EntraToken | null
}

/**
 * The verifier's pipeline (verifier.ts) unrolled into reportable steps, with the same functions:
 * decodeJws → KeyStore → @fastify/jwt signature check → checkClaims → the route requirement.
 */
async function runSteps (raw: string, options: ResolvedOptions, requirement: ScopeRequirement | undefined, at: number): Promise<StepOutcome> {
  const steps: InspectStep[] = []
  const pass = (name: StepName, detail: string): void => { steps.push({ name, title: STEP_TITLES[name], status: 'pass', detail }) }
  const fail = (name: StepName, error: EntraAuthError, detail: string = error.detail): never => {
    steps.push({ name, title: STEP_TITLES[name], status: 'fail', detail, problem: error.type })
    throw new StepFailure(name, error)
  }
  const keys = new KeyStore({ discoveryUrl: options.discoveryUrl, timings: options.jwks, dispatcher: options.dispatcher })
  const names: StepName[] = ['structure', 'discovery', 'keys', 'key', 'signature', ...CLAIM_STEPS, ...(requirement === undefined ? [] : ['scopes' as const])]
  try {
    let decoded: DecodedJws
    try {
      decoded = decodeJws(raw)
    } catch (err) {
      return fail('structure', asAuthError(err))
    }
    const { header, payload } = decoded
    pass('structure', `alg ${header.alg}, kid ${header.kid}`)

    try {
      await keys.refresh()
    } catch (err) {
      const state = keys.state()
      if (state.issuer === undefined) fail('discovery', asAuthError(err), `${options.discoveryUrl.href}: ${state.lastError ?? 'failed'}`)
      pass('discovery', `issuer ${state.issuer}`)
      fail('keys', asAuthError(err), `${state.jwksUri}: ${state.lastError ?? 'failed'}`)
    }
    const discovery = await keys.discovery()
    pass('discovery', `issuer ${discovery.issuer}, jwks_uri ${discovery.jwksUri.href}`)
    const kids = keys.state().kids
    pass('keys', `${kids.length} RS256 signing key(s) from ${discovery.jwksUri.href}`)

    let key: SigningKey
    try {
      key = await keys.getKey(header.kid)
    } catch (err) {
      return fail('key', asAuthError(err), `kid ${header.kid} is not among the provider's keys: ${list(keys.state().kids)}`)
    }
    pass('key', `kid ${key.kid}${key.issuer === undefined ? '' : `, key issuer ${key.issuer}`}`)

    try {
      await createSignatureVerifier(() => key, (h, p) => isGraphToken(h, p) ? graphTokenDetail() : undefined)(raw)
    } catch (err) {
      fail('signature', asAuthError(err))
    }
    pass('signature', `verifies with key ${key.kid}`)

    let claims: EntraClaims
    try {
      claims = checkClaims(payload, options, discovery.issuer, key.issuer)
    } catch (err) {
      const error = asAuthError(err)
      const failed = CLAIM_STEP_OF[error.type] ?? 'claims'
      for (const step of CLAIM_STEPS) {
        if (step === failed) break
        pass(step, claimFacts(step, payload, options, discovery.issuer, key, at))
      }
      // Missing or mistyped claims: the problem detail names the claim; the facts would not.
      return fail(failed, error, failed === 'claims' ? error.detail : claimFacts(failed, payload, options, discovery.issuer, key, at))
    }
    for (const step of CLAIM_STEPS) pass(step, claimFacts(step, payload, options, discovery.issuer, key, at))
    const token = new EntraToken(raw, header, claims, clientClaimOf(claims, discovery.issuer, options.discoveryUrl.hostname))

    if (requirement !== undefined) {
      const required = compileRequirement(requirement)
      const facts = `token grants ${list(token.scopes)}; needs ${required.empty ? 'nothing' : required.description}`
      if (!required.isSatisfiedBy(token)) {
        fail('scopes', new EntraAuthError('auth_token_insufficient_scopes', `This route needs ${required.description}. Request a token with them and try again.`, { requiredScope: required.scopeAttribute }), facts)
      }
      pass('scopes', facts)
    }
    return { steps, failure: null, token }
  } catch (err) {
    if (!(err instanceof StepFailure)) throw err
    for (const name of names.slice(steps.length)) steps.push({ name, title: STEP_TITLES[name], status: 'skip', detail: 'not checked: an earlier step failed' })
    return { steps, failure: err, token: null }
  } finally {
    await keys.close()
  }
}

/**
 * Inspects a token. Without options it only decodes (see {@link describeToken}). With the
 * plugin's options it also validates: every step in the plugin's order with pass/fail, and the
 * verdict of the plugin's own verifier. `at` (unix seconds) pins the clock. The steps and the
 * verifier each load discovery and keys once (two fetches of each): the verdict never depends on
 * the step-by-step copy. Throws a `TypeError` for bad options; never for a bad token.
 *
 * @example
 * ```ts
 * const report = await inspectToken(token, { clientId, tenant: 'contoso.onmicrosoft.com' })
 * if (report.validation?.valid === false) console.log(report.validation.problem?.type)
 * ```
 */
export async function inspectToken (token: string, options?: InspectOptions): Promise<InspectReport> {
  let resolved: ResolvedOptions | undefined
  let requirement: ScopeRequirement | undefined
  if (options !== undefined) {
    const { at, requirement: routeRequirement, ...pluginOptions } = options
    if (at !== undefined && (typeof at !== 'number' || !Number.isFinite(at))) throw new TypeError('fastify-entra-auth inspect: `at` must be a time in unix seconds')
    resolved = resolveOptions(at === undefined ? pluginOptions : { ...pluginOptions, now: () => at * 1000 }, 'verifier')
    requirement = routeRequirement
    if (requirement !== undefined) compileRequirement(requirement)
  }
  const at = resolved?.now() ?? Date.now()

  const raw = normalizeToken(token)
  let description: TokenDescription | null = null
  let decodeError: InspectProblem | null = null
  try {
    description = describeToken(raw, { now: at })
  } catch (err) {
    decodeError = problemOf(asAuthError(err))
  }
  if (resolved === undefined) return { token: description, decodeError, validation: null }

  const outcome = await runSteps(raw, resolved, requirement, at)

  // The verdict is the plugin's own verifier's: the steps above explain it.
  const verifier = buildVerifier(resolved)
  let verified: EntraToken | null = null
  let verdict: EntraAuthError | null = null
  try {
    verified = await verifier.verify(raw)
  } catch (err) {
    verdict = asAuthError(err)
  } finally {
    await verifier.close()
  }
  const notes: string[] = []
  const stepError = outcome.failure?.step === 'scopes' ? null : outcome.failure?.error ?? null
  if (stepError?.type !== verdict?.type) {
    notes.push(`The step-by-step check says ${stepError?.type ?? 'valid'} but the plugin's verifier says ${verdict?.type ?? 'valid'} (did the provider's keys change in between?). The verifier's verdict is reported.`)
  }
  const problem = verdict ?? (outcome.failure?.step === 'scopes' ? outcome.failure.error : null)
  return {
    token: description,
    decodeError,
    validation: {
      valid: problem === null,
      at,
      clientId: resolved.clientId,
      discoveryUrl: resolved.discoveryUrl.href,
      steps: outcome.steps,
      problem: problem === null ? null : problemOf(problem),
      identity: problem === null && verified !== null ? identityOf(verified, verified.claims) : null,
      notes
    }
  }
}

/** Exit codes of `fastify-entra-auth inspect`. */
export const EXIT = Object.freeze({
  /** The token is valid (or, decoding only, decodable). */
  valid: 0,
  /** The token is invalid (or not decodable). */
  invalid: 1,
  /** Bad arguments or options. */
  usage: 2,
  /** The identity provider's discovery document or keys could not be had: no verdict. */
  unreachable: 3
} as const)

/** The exit code for a report: see {@link EXIT}. */
export function exitCodeOf (report: InspectReport): 0 | 1 | 3 {
  if (report.validation !== null) {
    if (report.validation.valid) return EXIT.valid
    return report.validation.problem?.type === 'auth_oidc_error' ? EXIT.unreachable : EXIT.invalid
  }
  return report.token === null ? EXIT.invalid : EXIT.valid
}

function indent (text: string, by = '  '): string {
  return text.split('\n').map(line => by + line).join('\n')
}

const MARK: Readonly<Record<InspectStep['status'], string>> = { pass: 'pass', fail: 'FAIL', skip: 'skip' }

/**
 * The report as text for a terminal. Every line is escaped (control characters as `\uXXXX`): a
 * value can neither drive the terminal nor start a line of its own.
 */
export function formatReport (report: InspectReport): string {
  const out: string[] = []
  const { token, decodeError, validation } = report
  if (token === null) {
    out.push(`Not a decodable JWT: ${decodeError?.detail ?? 'unknown error'}`)
  } else {
    // JSON.stringify escapes line breaks inside strings, so its own newlines are the only ones.
    out.push('Header', ...indent(JSON.stringify(token.header, null, 2)).split('\n'), '')
    out.push('Claims', ...indent(JSON.stringify(token.claims, null, 2)).split('\n'), '')
    out.push(token.summary)
    const id = token.identity
    const who: Array<[string, string | undefined]> = [
      ['tenant (tid)', id.tenantId],
      [`${id.isAppOnly ? 'service principal' : 'user'} (oid)`, id.objectId],
      ['subject (sub)', id.subject],
      [`client app (${id.version === '1.0' ? 'appid' : 'azp'})`, id.clientId],
      ['name', id.name],
      ['scopes and roles', id.scopes.length === 0 ? undefined : id.scopes.join(' ')]
    ]
    for (const [label, value] of who) if (value !== undefined) out.push(`  ${label.padEnd(26)}${value}`)
    for (const time of token.times) {
      out.push(`  ${time.claim.padEnd(26)}${time.iso === undefined ? show(time.value) : `${time.iso} (${time.relative})`}`)
    }
    for (const note of token.notes) out.push(`  note: ${note}`)
  }
  if (validation === null) {
    if (token !== null) out.push('', 'Decoded only, not validated: pass --client-id with --tenant or --oidc-endpoint to validate.')
    return out.map(escapeControls).join('\n') + '\n'
  }
  out.push('', `Validation for client ID ${validation.clientId} at ${iso(validation.at / 1000) ?? validation.at}`, `  discovery ${validation.discoveryUrl}`)
  const width = Math.max(...validation.steps.map(step => step.name.length))
  for (const step of validation.steps) {
    const problem = step.problem === undefined ? '' : `  [${step.problem}]`
    out.push(`  ${MARK[step.status]}  ${step.name.padEnd(width)}  ${step.status === 'skip' ? step.title : step.detail}${problem}`)
  }
  for (const note of validation.notes) out.push(`  note: ${note}`)
  out.push('')
  if (validation.valid) {
    const id = validation.identity
    out.push(`VALID${id === null ? '' : `: ${id.isAppOnly ? 'app' : 'user'} ${id.objectId ?? id.subject ?? '?'} of tenant ${id.tenantId ?? '?'} via client ${id.clientId ?? '?'}`}`)
  } else if (validation.problem !== null) {
    const p = validation.problem
    out.push(`INVALID: ${p.type} (${p.status} ${p.title})`, `  ${p.detail}`)
  }
  return out.map(escapeControls).join('\n') + '\n'
}
