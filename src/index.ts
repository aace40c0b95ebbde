/**
 * fastify-entra-auth: protect Fastify routes with Microsoft Entra ID access tokens.
 * @packageDocumentation
 */
import { entraAuth } from './fastify/plugin.js'

export default entraAuth
export { entraAuth, type EntraAuthDecorator, type EntraAuthHookOptions } from './fastify/plugin.js'
export { EntraAuthError, problems, type ProblemType, type ProblemBody, type ProblemDefinition, type ChallengeError, type ValidationStep, type EntraAuthErrorOptions } from './entra/problems.js'
export { createEntraVerifier, type EntraVerifier, type EntraVerifierState, type Explanation, type ExplainedProblem } from './verifier.js'
export type { ExplainedStep, StepFacts } from './entra/steps.js'
export { CHANNELS, type VerifyTraceContext, type KeyFetchMessage, type KeyRefreshMessage, type TokenCacheMessage } from './core/tracing.js'
export { EntraToken, EntraClaimsSchema, type EntraClaims, type CustomEntraClaims, type Rfc7662Introspection } from './entra/token.js'
export { EntraAuthOptionsError, type EntraAuthOptions, type EntraVerifierOptions, type EntraCommonOptions, type EntraEndpointOptions, type EntraPluginOnlyOptions, type EntraTenantPredicate, type EntraTokenSource, type EntraOpenApiOptions } from './options.js'
export type { ScopeRequirement } from './entra/scopes.js'
export { withEntraSecurity } from './fastify/openapi.js'
export { claimsChallenge, buildClaimsChallenge, supportsClaimsChallenge, INSUFFICIENT_CLAIMS, type ClaimsChallengeOptions, type ClaimsRequest } from './fastify/claims-challenge.js'
export type { KeyStoreState } from './core/keys.js'
export type { JoseHeader } from './core/jws.js'
