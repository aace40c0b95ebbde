/**
 * The token debugger behind `fastify-entra-auth inspect` (cli.ts is only its argv wrapper):
 * decoding (inspect/decode.ts), what a token is (inspect/describe.ts), validation with the
 * plugin's verifier (inspect/validate.ts, on `explain()`), terminal text (inspect/format.ts).
 */
export { decodeToken, normalizeToken } from './inspect/decode.js'
export { describeToken, relativeTime, type TokenDescription, type TokenIdentity, type TokenKind, type TokenTime } from './inspect/describe.js'
export { inspectToken, type InspectOptions, type InspectProblem, type InspectReport, type InspectStep, type StepName, type Validation } from './inspect/validate.js'
export { EXIT, exitCodeOf, formatReport } from './inspect/format.js'
