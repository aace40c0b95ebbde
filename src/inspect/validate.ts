/** The token debugger's validation: the verifier's own `explain()`, put in words. */
import { compileRequirement, type ScopeRequirement } from '../entra/scopes.js'
import { STEP_TITLES, TOKEN_STEPS, type ExplainedStep } from '../entra/steps.js'
import { resolveOptions, type EntraVerifierOptions, type ResolvedOptions } from '../options.js'
import { asAuthError, type ProblemBody, type ProblemType, type ValidationStep } from '../entra/problems.js'
import { buildVerifier } from '../verifier.js'
import { describeToken, identityOf, normalizeToken, iso, relativeTime, type TokenDescription, type TokenIdentity } from './describe.js'

export type InspectProblem = Omit<ProblemBody, 'contact'>

export type StepName = Exclude<ValidationStep, 'request'>

export interface InspectStep {
  name: StepName
  title: string
  status: 'pass' | 'fail' | 'skip'
  detail: string
  problem?: ProblemType
}

export interface Validation {
  valid: boolean
  at: number
  clientId: string
  discoveryUrl: string
  steps: InspectStep[]
  problem: InspectProblem | null
  identity: TokenIdentity | null
}

export interface InspectReport {
  token: TokenDescription | null
  decodeError: InspectProblem | null
  validation: Validation | null
}

export type InspectOptions = EntraVerifierOptions & {
  /** Unix seconds (for expired test tokens). */
  at?: number
  requirement?: ScopeRequirement
}

function problemOf (err: unknown): InspectProblem {
  return asAuthError(err).toProblem()
}

function list (values: unknown): string {
  const all = Array.isArray(values) ? values.map(String) : []
  return all.length === 0 ? '(none)' : all.join(', ')
}

export function show (value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? 'absent'
}

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
  const skipped = TOKEN_STEPS.slice(reached + 1).filter(name => name !== 'tenant' && name !== 'permissions' && (name !== 'scopes' || requirement))
  for (const name of skipped) steps.push({ name: name as StepName, title: STEP_TITLES[name as ValidationStep], status: 'skip', detail: 'not checked: an earlier step failed' })
  return steps
}

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
