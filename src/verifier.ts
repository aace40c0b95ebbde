import { createAdmission, type AdmissionLogger } from './admission.js'
import { kCheckUncached, kFromCache, keyStoreClockOf } from './core/internal.js'
import { checkClaims, checkTime, type ClaimRules } from './entra/claims.js'
import { checkRequirement, compileRequirement, type ScopeRequirement } from './entra/scopes.js'
import { STEP_TITLES, type ExplainedStep, type StepFacts, type StepRecorder } from './entra/steps.js'
import { checkDecodedPayload, checkJoseHeader, checkShape, decodeJws, passesKnownHeaderChecks, precheckJws, type DecodedJws, type JoseHeader } from './core/jws.js'
import { KeyStore, type Discovery, type KeyStoreLogger, type KeyStoreState, type SigningKey } from './core/keys.js'
import { resolveOptions, type EntraVerifierOptions, type ResolvedOptions } from './options.js'
import { asAuthError, EntraAuthError, type ProblemBody, type ValidationStep } from './entra/problems.js'
import { verifySignature } from './core/signature.js'
import { deepFreeze, graphTokenDetail, isGraphToken, type EntraToken, type Rfc7662Introspection } from './entra/token.js'
import { TokenCache } from './core/token-cache.js'
import { untrustedFact, untrustedText } from './core/untrusted.js'
import { tokenCacheChannel, verifyTracing, type VerifyTraceContext } from './core/tracing.js'

/** The failure of an explained validation, as `verify` would have rejected: the problem body, the failed step and claim. */
export type ExplainedProblem = Omit<ProblemBody, 'contact'> & { step: ValidationStep, claim: string | undefined }

/** What `explain()` resolves with: the steps validation ran, in order, and the verdict. */
export interface Explanation {
  /** The verdict: `verify` admits the token (and it meets the requirement, if one was given). */
  valid: boolean
  /** The first failure, as `verify` rejects with it; null when valid. */
  problem: ExplainedProblem | null
  /** The steps that ran, in order; validation stops at the first failed one. */
  steps: ExplainedStep[]
  /** The validated token; null when refused. */
  token: EntraToken | null
  /** The clock the token was judged at, in milliseconds since the epoch. */
  at: number
}

/** Health-check view of a verifier. */
export interface EntraVerifierState {
  keys: KeyStoreState
  /** Verified tokens held (`bytes`: estimated size of the main segment). */
  tokenCache: { size: number, max: number, bytes: number }
}

/** Validates Entra access tokens outside of (or shared with) a Fastify route. */
export interface EntraVerifier {
  /** Resolves with the validated token; rejects with `EntraAuthError`. */
  verify: (token: string) => Promise<EntraToken>
  /** Says step by step why a token is admitted or refused (bypassing the cache); never rejects for a bad token or an outage. */
  explain: (token: string, requirement?: ScopeRequirement) => Promise<Explanation>
  /** RFC 7662 introspection: `{ active: false }` for any bad token; rejects only with `auth_oidc_error`. */
  introspect: (token: string) => Promise<Rfc7662Introspection>
  /** Loads discovery and keys now, waiting at most one `jwks.timeout`; never rejects. */
  warm: () => Promise<boolean>
  state: () => EntraVerifierState
  /** Releases the connection pool. */
  close: () => Promise<void>
}

export interface InternalVerifier extends EntraVerifier {
  readonly [kFromCache]: (raw: string) => EntraToken | undefined
  readonly [kCheckUncached]: (raw: string) => EntraToken | Promise<EntraToken>
  discovery: () => Discovery | undefined
  readonly options: ResolvedOptions
}

export interface VerifierInternals {
  logger?: KeyStoreLogger & AdmissionLogger
  clock?: () => number
}

function untrustedDetail (raw: string): string | undefined {
  try {
    const { header, payload } = decodeJws(raw)
    return isGraphToken(header, payload) ? graphTokenDetail() : undefined
  } catch {
    return undefined
  }
}

export function buildVerifier (options: ResolvedOptions, internals: VerifierInternals = {}): InternalVerifier {
  const keys = new KeyStore({ discoveryUrl: options.discoveryUrl, timings: options.jwks, dispatcher: options.dispatcher, logger: internals.logger, clock: internals.clock })
  const cache = new TokenCache({ max: options.tokenCacheMax, maxBytes: options.tokenCacheMaxBytes })
  // Read for every token: native sets and the discovery host, in an object of their own (docs/performance.md).
  const rules: ClaimRules = Object.freeze({
    clientId: options.clientId,
    audiences: new Set(options.audiences),
    tokenVersions: new Set(options.tokenVersions),
    allowedTenants: options.allowedTenants === null ? null : new Set(options.allowedTenants),
    allowedSubjects: options.allowedSubjects === null ? null : new Set(options.allowedSubjects),
    allowedApps: options.allowedApps === null ? null : new Set(options.allowedApps),
    clockTolerance: options.clockTolerance,
    now: options.now,
    discoveryHost: options.discoveryUrl.hostname
  })
  const admission = createAdmission(options, internals.logger)
  const { now, clockTolerance } = options
  const inFlight = new Map<string, Promise<EntraToken>>()
  // Verified header segments → frozen header: every token of one Entra key has the same header (docs/performance.md).
  const headers = new Map<string, JoseHeader>()
  let lastHeader: { segment: string, header: JoseHeader | undefined } = { segment: '', header: undefined }

  function fromCache (raw: string, record?: StepRecorder, trace?: VerifyTraceContext): EntraToken | undefined {
    const hit = cache.get(raw)
    if (tokenCacheChannel.hasSubscribers) tokenCacheChannel.publish(hit === undefined ? { event: 'miss' } : { event: 'hit', kid: hit.key.kid })
    if (hit === undefined) return undefined
    if (!keys.isCurrent(hit.key)) {
      cache.delete(raw)
      return undefined
    }
    if (trace !== undefined) trace.cached = true
    try {
      checkTime(hit.nbf, hit.exp, rules, record)
    } catch (err) {
      cache.delete(raw)
      throw err
    }
    return hit.token
  }

  function check (raw: string, record?: StepRecorder, trace?: VerifyTraceContext): EntraToken | Promise<EntraToken> {
    if (typeof raw !== 'string' || raw === '') throw new EntraAuthError('auth_token_invalid')
    return fromCache(raw, record, trace) ?? checkUncached(raw, record)
  }

  function checkUncached (raw: string, record?: StepRecorder): EntraToken | Promise<EntraToken> {
    // Concurrent validations of one token share one signature check and one tenant predicate call.
    if (inFlight.size !== 0) {
      const pending = inFlight.get(raw)
      if (pending !== undefined) return pending
    }
    let validation: EntraToken | Promise<EntraToken>
    try {
      validation = validate(raw, record, true)
    } catch (err) {
      // Shared with this tick's validations of the token (a success is shared through the cache).
      const refusal = Promise.reject(err)
      refusal.catch(() => {})
      inFlight.set(raw, refusal)
      queueMicrotask(() => { if (inFlight.get(raw) === refusal) inFlight.delete(raw) })
      throw err
    }
    if (!(validation instanceof Promise)) return validation
    inFlight.set(raw, validation)
    const settled = (): void => { inFlight.delete(raw) }
    validation.then(settled, settled)
    return validation
  }

  async function run (raw: string, record: StepRecorder, useCache: boolean, trace: VerifyTraceContext | undefined): Promise<EntraToken> {
    if (useCache) return await check(raw, record, trace)
    if (typeof raw !== 'string' || raw === '') throw new EntraAuthError('auth_token_invalid')
    return await validate(raw, record, false)
  }

  function validate (raw: string, record: StepRecorder | undefined, useCache: boolean): EntraToken | Promise<EntraToken> {
    const verified = verifyKnownHeader(raw)
    const discovery = keys.peekDiscovery()
    if (verified === undefined || 'refused' in verified || discovery === undefined) return validateFetching(raw, verified, record, useCache)
    return admitVerified(raw, verified, discovery.issuer, record, useCache)
  }

  async function validateFetching (raw: string, known: KnownHeader, record: StepRecorder | undefined, useCache: boolean): Promise<EntraToken> {
    const verified = known === undefined ? await verifyJws(raw) : 'refused' in known ? await verifyRefreshed(raw, known) : known
    const discovery = keys.peekDiscovery() ?? await keys.discovery()
    return await admitVerified(raw, verified, discovery.issuer, record, useCache)
  }

  function admitVerified (raw: string, { header, payload, key }: Verified, discoveryIssuer: string, record: StepRecorder | undefined, useCache: boolean): EntraToken | Promise<EntraToken> {
    if (record !== undefined) recordKeyed(record, header, key)
    const checked = checkClaims(payload, rules, discoveryIssuer, key.issuer, record)
    const admitted = admission.admit(raw, header, checked, discoveryIssuer, record)
    if (!useCache) return admitted
    const { nbf, exp } = checked.payload
    if (admitted instanceof Promise) return admitted.then(token => { cache.set(raw, token, key, exp * 1000 - now() + clockTolerance, nbf, exp); return token })
    cache.set(raw, admitted, key, exp * 1000 - now() + clockTolerance, nbf, exp)
    return admitted
  }

  /** The hot path: a header segment a verified token had, its key at hand; undefined when {@link verifyJws} must run. */
  function verifyKnownHeader (raw: string): KnownHeader {
    const first = raw.indexOf('.')
    let header: JoseHeader | undefined
    if (first === lastHeader.segment.length && raw.startsWith(lastHeader.segment)) {
      header = lastHeader.header
    } else {
      const segment = raw.slice(0, first)
      header = first > 0 ? headers.get(segment) : undefined
      if (header !== undefined) lastHeader = { segment, header }
    }
    if (header === undefined || !passesKnownHeaderChecks(raw, first)) return undefined
    const key = keys.currentKey(header.kid)
    if (key === undefined) return undefined
    try {
      const payload = verifySignature(raw, key, () => untrustedDetail(raw))
      checkDecodedPayload(raw, payload)
      return { header, payload, key }
    } catch (err) {
      // A refusal names the first rule the token breaks, in verifyJws' order.
      precheckJws(raw)
      if (err instanceof EntraAuthError && err.type === 'auth_token_signature_untrusted') return { refused: err, header, key }
      throw err
    }
  }

  async function verifyJws (raw: string): Promise<Verified> {
    const header = checkJoseHeader(precheckJws(raw), raw)
    let key = keys.currentKey(header.kid)
    if (key === undefined) {
      // No network before the whole shape passes.
      checkShape(raw)
      key = await keys.getKey(header.kid)
    }
    let payload: Record<string, unknown>
    try {
      payload = verifySignature(raw, key, () => untrustedDetail(raw))
    } catch (err) {
      if (!(err instanceof EntraAuthError)) throw err
      return await verifyRefreshed(raw, { refused: err, header: deepFreeze(header), key })
    }
    if (headers.size >= MAX_HEADERS) {
      headers.clear()
      lastHeader = { segment: '', header: undefined }
    }
    const frozen = deepFreeze(header)
    headers.set(raw.slice(0, raw.indexOf('.')), frozen)
    return { header: frozen, payload, key }
  }

  async function verifyRefreshed (raw: string, { refused, header, key }: SignatureRefused): Promise<Verified> {
    const refreshed = await keys.keyAfterSignatureFailure(header.kid, key, refused)
    return { header, payload: verifySignature(raw, refreshed, () => untrustedDetail(raw)), key: refreshed }
  }

  function recordKeyed (record: StepRecorder, header: Record<string, unknown>, key: SigningKey): void {
    for (const step of PRE_CLAIM_STEPS) record(step, true, preClaimFacts(step, header, key))
  }

  function preClaimFacts (step: typeof PRE_CLAIM_STEPS[number], header: Record<string, unknown> | undefined, key: SigningKey | undefined): StepFacts {
    const state = keys.state()
    switch (step) {
      case 'structure':
        return header === undefined ? {} : { alg: header.alg, kid: header.kid, typ: header.typ }
      case 'discovery':
        return { discoveryUrl: options.discoveryUrl.href, issuer: state.issuer, jwksUri: state.jwksUri, ...(state.lastError === undefined ? {} : { lastError: state.lastError }) }
      case 'keys':
        return { jwksUri: state.jwksUri, kids: state.kids, ...(state.lastError === undefined ? {} : { lastError: state.lastError }) }
      case 'key':
        return key === undefined ? { kid: header?.kid, kids: state.kids } : { kid: key.kid, keyIssuer: key.issuer }
      case 'signature':
        return { alg: 'RS256', kid: header?.kid }
    }
  }

  function completeSteps (raw: string, error: EntraAuthError, steps: ExplainedStep[]): DecodedJws | undefined {
    let decoded: DecodedJws | undefined
    try {
      decoded = decodeJws(raw)
    } catch {}
    const failed = steps.findLast(step => !step.ok)
    if (failed !== undefined) {
      failed.problem = error.type
      failed.detail = error.detail
      return decoded
    }
    if (signatureVerified(error) && steps.length === 0) {
      // It shared an in-flight validation: only the outcome is its own.
      steps.push({ step: error.step, ok: false, problem: error.type, detail: error.detail, facts: {} })
      return decoded
    }
    const at = (PRE_CLAIM_STEPS as readonly ValidationStep[]).includes(error.step) ? error.step : 'structure'
    // Nobody vouched for this header: its facts are cut and escaped.
    const header = decoded === undefined ? undefined : { alg: untrustedFact(decoded.header.alg), kid: untrustedFact(decoded.header.kid), typ: untrustedFact(decoded.header.typ) }
    if (steps.length === 0) {
      for (const step of PRE_CLAIM_STEPS) {
        if (step === at) break
        steps.push({ step, ok: true, detail: STEP_TITLES[step], facts: preClaimFacts(step, header, undefined) })
      }
    }
    let key: SigningKey | undefined
    if (at === 'signature' && decoded !== undefined) {
      key = keys.currentKey(decoded.header.kid)
    }
    const facts = at === 'signature' ? { alg: 'RS256', kid: header?.kid, keyIssuer: key?.issuer } : preClaimFacts(at as typeof PRE_CLAIM_STEPS[number], header, undefined)
    steps.push({ step: at, ok: false, problem: error.type, detail: error.detail, facts })
    return decoded
  }

  function traced (operation: VerifyTraceContext['operation'], raw: string, steps: ExplainedStep[], useCache: boolean, after?: (token: EntraToken, record: StepRecorder) => void): Promise<EntraToken> {
    const context: VerifyTraceContext = { operation, steps, cached: false }
    const record = recorderInto(steps)
    const channels = verifyTracing
    channels.start.publish(context)
    const promise = run(raw, record, useCache, context).then(token => {
      after?.(token, record)
      return token
    })
    channels.end.publish(context)
    return promise.then(token => {
      Object.assign(context, { verdict: 'valid', kid: token.header.kid, version: token.version, tenantId: token.tenantId, clientId: token.clientId })
      channels.asyncStart.publish(context)
      channels.asyncEnd.publish(context)
      return token
    }, (err: unknown) => {
      const error = asAuthError(err)
      const decoded = completeSteps(raw, error, steps)
      Object.assign(context, { verdict: 'invalid', problem: error.type, step: error.step, claim: error.claim, error }, identityFacts(decoded, signatureVerified(error)))
      channels.error.publish(context)
      channels.asyncStart.publish(context)
      channels.asyncEnd.publish(context)
      throw error
    })
  }

  function verify (raw: string): Promise<EntraToken> {
    if (verifyTracing.hasSubscribers) return traced('verify', raw, [], true)
    try {
      return Promise.resolve(check(raw))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  async function explain (raw: string, requirement?: ScopeRequirement): Promise<Explanation> {
    const required = requirement === undefined ? undefined : compileRequirement(requirement)
    const at = now()
    const steps: ExplainedStep[] = []
    const check = required === undefined ? undefined : (token: EntraToken, record: StepRecorder) => checkRequirement(required, token, record)
    try {
      let token: EntraToken
      if (verifyTracing.hasSubscribers) {
        token = await traced('explain', raw, steps, false, check)
      } else {
        const record = recorderInto(steps)
        token = await run(raw, record, false, undefined)
        check?.(token, record)
      }
      return { valid: true, problem: null, steps, token, at }
    } catch (err) {
      const error = asAuthError(err)
      completeSteps(raw, error, steps)
      return { valid: false, problem: { ...error.toProblem(), step: error.step, claim: error.claim }, steps, token: null, at }
    }
  }

  async function introspect (raw: string): Promise<Rfc7662Introspection> {
    try {
      return (await verify(raw)).introspect()
    } catch (err) {
      if (err instanceof EntraAuthError && err.type !== 'auth_oidc_error') return { active: false }
      throw err
    }
  }

  async function warm (): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<boolean>(resolve => { timer = setTimeout(resolve, options.jwks.timeout, false) })
    try {
      const ready = await Promise.race([keys.refresh().then(() => true, () => false), deadline])
      const discovery = keys.peekDiscovery()
      if (discovery !== undefined) admission.discovered(discovery.issuer)
      return ready
    } finally {
      clearTimeout(timer)
    }
  }

  return Object.freeze({
    [kFromCache]: fromCache,
    [kCheckUncached]: checkUncached,
    verify,
    explain,
    introspect,
    warm,
    discovery: () => keys.peekDiscovery(),
    state: () => ({ keys: keys.state(), tokenCache: { size: cache.size, max: cache.max, bytes: cache.bytes } }),
    close: () => keys.close(),
    options
  })
}

const MAX_HEADERS = 64

interface Verified { header: JoseHeader, payload: Record<string, unknown>, key: SigningKey }
interface SignatureRefused { refused: EntraAuthError, header: JoseHeader, key: SigningKey }
type KnownHeader = Verified | SignatureRefused | undefined

const PRE_CLAIM_STEPS = ['structure', 'discovery', 'keys', 'key', 'signature'] as const

function recorderInto (steps: ExplainedStep[]): StepRecorder {
  return (step, ok, facts) => { steps.push({ step, ok, detail: ok ? STEP_TITLES[step] : '', facts }) }
}

function signatureVerified (error: EntraAuthError): boolean {
  return error.step !== 'request' && !(PRE_CLAIM_STEPS as readonly ValidationStep[]).includes(error.step)
}

/** Identity fields only once the signature verified; before, anyone could have written them. */
function identityFacts (decoded: DecodedJws | undefined, verified: boolean): Partial<VerifyTraceContext> {
  if (decoded === undefined) return {}
  const { header, payload } = decoded
  if (!verified) return typeof header.kid === 'string' ? { kid: untrustedText(header.kid) } : {}
  const ver = payload.ver
  const client = ver === '1.0' ? payload.appid : payload.azp
  return {
    kid: header.kid,
    ...(typeof ver === 'string' ? { version: ver } : {}),
    ...(typeof payload.tid === 'string' ? { tenantId: payload.tid } : {}),
    ...(typeof client === 'string' ? { clientId: client } : {})
  }
}

/**
 * Creates a standalone verifier; plugin-only options are refused with an `EntraAuthOptionsError`.
 * @example
 * ```ts
 * import { createEntraVerifier } from 'fastify-entra-auth'
 * const verifier = createEntraVerifier({ clientId, tenant: 'contoso.onmicrosoft.com' })
 * const token = await verifier.verify(accessToken)   // rejects with EntraAuthError
 * const info = await verifier.introspect(accessToken) // { active: false } for bad tokens
 * // Both reject with `auth_oidc_error` (503) while the signing keys can't be had.
 * await verifier.close()
 * ```
 */
export function createEntraVerifier (options: EntraVerifierOptions): EntraVerifier {
  return buildVerifier(resolveOptions(options, 'verifier'), { clock: keyStoreClockOf(options) })
}
