/**
 * Validation for the token debugger: the plugin's own verifier explains the token (`explain()`:
 * one pipeline, one fetch of the discovery document and one of the key set), and each step's facts
 * are put in words. Steps after the first failure are listed as skipped.
 */
import { compileRequirement, type ScopeRequirement } from '../entra/scopes.js'
import { STEP_TITLES, TOKEN_STEPS, type ExplainedStep } from '../entra/steps.js'
import { resolveOptions, type EntraVerifierOptions, type ResolvedOptions } from '../options.js'
import { asAuthError, type ProblemBody, type ProblemType, type ValidationStep } from '../entra/problems.js'
import { buildVerifier } from '../verifier.js'
import { normalizeToken } from './decode.js'
import { describeToken, identityOf, iso, relativeTime, type TokenDescription, type TokenIdentity } from './describe.js'

/** A problem as the plugin would answer it. */
export type InspectProblem = Omit<ProblemBody, 'contact'>

/** The validation steps, in the plugin's order (see `explain()`). */
export type StepName = Exclude<ValidationStep, 'request'>

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
  /** The verdict of the plugin's verifier (`explain`): it admits the token (and it meets `requirement`, if given). */
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

function problemOf (err: unknown): InspectProblem {
  return asAuthError(err).toProblem()
}

function list (values: unknown): string {
  const all = Array.isArray(values) ? values.map(String) : []
  return all.length === 0 ? '(none)' : all.join(', ')
}

/** A claim value as text. */
export function show (value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? 'absent'
}

/** One line of what a step compared, from its facts. */
function describeStep (step: ExplainedStep): string {
  const f = step.facts as Record<string, unknown>
  switch (step.step) {
    case 'structure':
      return step.ok ? `alg ${show(f.alg)}, kid ${show(f.kid)}` : step.detail
    case 'discovery':
      return step.ok ? `issuer ${show(f.issuer)}, jwks_uri ${show(f.jwksUri)}` : `${show(f.discoveryUrl)}: ${show(f.lastError ?? 'failed')}`
    case 'keys':
      return step.ok ? `${list(f.kids).split(', ').length} RS256 signing key(s) from ${show(f.jwksUri)}` : `${show(f.jwksUri)}: ${show(f.lastError ?? 'failed')}`
    case 'key':
      if (!step.ok) return f.kids === undefined ? step.detail : `kid ${show(f.kid)} is not among the provider's keys: ${list(f.kids)}`
      return `kid ${show(f.kid)}${f.keyIssuer === undefined ? '' : `, key issuer ${show(f.keyIssuer)}`}`
    case 'signature':
      return step.ok ? `verifies with key ${show(f.kid)}` : step.detail
    case 'claims':
      return step.ok ? `present: ${list(f.required)}` : step.detail
    case 'nbf':
    case 'exp': {
      const value = f[step.step] as number
      const tolerance = (f.clockTolerance as number) > 0 ? ` (tolerance ${show(f.clockTolerance)} ms)` : ''
      return `${step.step} ${iso(value) ?? show(value)} is ${relativeTime(value, (f.now as number) * 1000)}, now ${iso(f.now)}${tolerance}`
    }
    case 'ver':
      return `ver ${show(f.ver)}; accepted: ${list(f.accepted)}`
    case 'iss': {
      let text = `iss ${show(f.iss)}; expected ${f.expected === null ? `none (discovery issuer ${show(f.discoveryIssuer)}, tid ${show(f.tid)})` : list(f.expected).replaceAll(', ', ' or ')}`
      if (f.issuerTenant !== undefined) text += `; tid ${show(f.tid)} but the issuer's tenant is ${show(f.issuerTenant)}`
      if (f.allowedTenants !== undefined) text += `; tid ${show(f.tid)}, allowed tenants: ${list(f.allowedTenants)}`
      if (f.keyIssuer !== undefined) text += `; key issuer ${show(f.keyIssuer)}`
      return text
    }
    case 'aud':
      return `aud ${show(f.aud)}; accepted: ${list(f.accepted)}`
    case 'sub':
      return f.allowed === null ? 'any subject (allowedSubjects not set)' : `sub ${show(f.sub)}; allowed: ${list(f.allowed)}`
    case 'client': {
      const claim = f.claim as string
      return f.allowed === null ? `any client app (allowedApps not set); ${claim} ${show(f[claim])}` : `${claim} ${show(f[claim])}; allowed: ${list(f.allowed)}`
    }
    case 'tenant':
      return step.ok ? `tid ${show(f.tid)} admitted by the allowedTenants predicate` : step.detail
    case 'permissions':
      return `scp ${list(f.scp)}; roles ${list(f.roles)}`
    case 'scopes':
      return `token grants ${list(f.granted)}; needs ${f.needs === null ? 'nothing' : show(f.needs)}`
    case 'request':
      return step.detail
  }
}

/** The explained steps in words, then the ones never reached (the plugin stops at the first failure). */
function stepsOf (explained: ExplainedStep[], requirement: boolean): InspectStep[] {
  const steps: InspectStep[] = explained.map(step => ({
    name: step.step as StepName,
    title: STEP_TITLES[step.step],
    status: step.ok ? 'pass' : 'fail',
    detail: describeStep(step),
    ...(step.problem === undefined ? {} : { problem: step.problem })
  }))
  const last = explained.at(-1)?.step
  const reached = last === undefined ? -1 : TOKEN_STEPS.indexOf(last)
  // The predicate and permission steps are not listed when not reached: they may not be configured.
  const skipped = TOKEN_STEPS.slice(reached + 1).filter(name => name !== 'tenant' && name !== 'permissions' && (name !== 'scopes' || requirement))
  for (const name of skipped) steps.push({ name: name as StepName, title: STEP_TITLES[name as ValidationStep], status: 'skip', detail: 'not checked: an earlier step failed' })
  return steps
}

/**
 * Inspects a token. Without options it only decodes (see {@link describeToken}). With the
 * plugin's options it also validates with the plugin's verifier (`explain()`): every step in the
 * plugin's order with pass/fail, and the verdict. `at` (unix seconds) pins the clock. Discovery
 * and keys are fetched once each. Throws a `TypeError` for bad options; never for a bad token.
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
    decodeError = problemOf(err)
  }
  if (resolved === undefined) return { token: description, decodeError, validation: null }

  // One verifier: the steps and the verdict are the same validation (`explain`).
  const verifier = buildVerifier(resolved)
  let explanation
  try {
    explanation = await verifier.explain(raw, requirement)
  } finally {
    await verifier.close()
  }
  const { problem, token: verified } = explanation
  return {
    token: description,
    decodeError,
    validation: {
      valid: explanation.valid,
      at: explanation.at,
      clientId: resolved.clientId,
      discoveryUrl: resolved.discoveryUrl.href,
      steps: stepsOf(explanation.steps, requirement !== undefined),
      problem: problem === null ? null : { type: problem.type, status: problem.status, title: problem.title, detail: problem.detail },
      identity: verified === null ? null : identityOf(verified.claims, verified)
    }
  }
}
