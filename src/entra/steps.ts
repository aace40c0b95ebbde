/** What a validation reports about each step, for `explain()`, tracing and the token debugger. */
import type { ProblemType, ValidationStep } from './problems.js'

/** What a step compared (never the token). */
export type StepFacts = Readonly<Record<string, unknown>>

/** One step of a validation, as `explain()` reports it. */
export interface ExplainedStep {
  step: ValidationStep
  /** Whether the token passed this step. */
  ok: boolean
  /** The problem type of a failed step. */
  problem?: ProblemType
  /** What the step checked, or what went wrong and what to do. */
  detail: string
  facts: StepFacts
}

/** `undefined` on the request path: nothing is recorded. */
export type StepRecorder = (step: ValidationStep, ok: boolean, facts: StepFacts) => void

export const STEP_TITLES: Readonly<Record<ValidationStep, string>> = Object.freeze({
  request: "an 'Authorization: Bearer <token>' header",
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
  tenant: 'tenant admitted by the allowedTenants predicate',
  permissions: 'some delegated scope or app role (requirePermissions)',
  scopes: 'route requirement (scp / roles)'
})

export const TOKEN_STEPS: readonly ValidationStep[] = Object.freeze([
  'structure', 'discovery', 'keys', 'key', 'signature', 'claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client', 'tenant', 'permissions', 'scopes'
] as const)

export interface Step<C> {
  readonly step: ValidationStep
  readonly rule: (context: C) => void
  readonly facts: (context: C, ok: boolean) => StepFacts
}

export function runSteps<C> (steps: readonly Step<C>[], context: C, record: StepRecorder | undefined): void {
  // Indexed loops: for…of over these (frozen) arrays allocated an iterator result per step.
  if (record === undefined) {
    for (let i = 0; i < steps.length; i++) (steps[i] as Step<C>).rule(context)
    return
  }
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i] as Step<C>
    try {
      step.rule(context)
    } catch (err) {
      record(step.step, false, step.facts(context, false))
      throw err
    }
    record(step.step, true, step.facts(context, true))
  }
}
