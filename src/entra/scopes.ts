/**
 * Route requirements: a list of alternatives (OR), each a space-separated set of words (AND).
 * Pure, no Fastify.
 */
import { EntraAuthError } from './problems.js'
import type { StepRecorder } from './steps.js'

/**
 * What a route needs. Either the form of the Python flask-entra-auth — a string or a list of alternatives
 * (`['A B', 'C']` = (A AND B) OR C) matched against `scp` ∪ `roles` — or the object form that keeps
 * delegated scopes and app roles apart: `{ scopes: ['Files.Read'], roles: ['Files.Read.All'] }` is
 * satisfied by a user token with `Files.Read` in `scp` OR an app token with `Files.Read.All` in
 * `roles` (Microsoft.Identity.Web's "scope or app permission").
 *
 * @example
 * ```ts
 * app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'], appOnly: true }) }, handler)
 * ```
 */
export type ScopeRequirement = string | readonly string[] | {
  /** Alternatives satisfied by delegated permissions (`scp`). */
  scopes?: string | readonly string[]
  /** Alternatives satisfied by app roles / application permissions (`roles`). */
  roles?: string | readonly string[]
  /**
   * Admit only app-only tokens (daemons: client credentials, no `scp`): a user's token is refused
   * even when the user was assigned the app role. Goes with `roles`.
   */
  appOnly?: boolean
}

/** Where an alternative's words must be found. */
type Source = 'any' | 'scp' | 'roles'

interface Alternative {
  readonly words: readonly string[]
  readonly source: Source
}

/** The permissions a verified token carries, split by where they came from. */
export interface TokenPermissions {
  readonly delegated: ReadonlySet<string>
  readonly roles: ReadonlySet<string>
  readonly all: ReadonlySet<string>
  /** App-only (client credentials) token: see `EntraToken.isAppOnly`. */
  readonly isAppOnly: boolean
}

/** A requirement checked once at route definition, cheap to evaluate per request. */
export interface CompiledRequirement {
  /** True when any token passes (authentication only). */
  readonly empty: boolean
  /** Only app-only tokens pass. */
  readonly appOnly: boolean
  /**
   * The RFC 6750 `scope` challenge attribute: the first alternative, as a client requests it. Its
   * words are all required (RFC 6750 §3: space-delimited), so it names one alternative, never all.
   */
  readonly scopeAttribute: string
  /** Human-readable form for problem details and logs, e.g. `"A B" or "C"`. */
  readonly description: string
  /** All words, for documentation (OpenAPI). */
  readonly words: readonly string[]
  /** The alternatives (OR), each a set of words (AND) and where they must be found; for OpenAPI. */
  readonly alternatives: ReadonlyArray<{ readonly words: readonly string[], readonly source: 'any' | 'scp' | 'roles' }>
  isSatisfiedBy: (permissions: TokenPermissions) => boolean
}

/** Words allowed in a scope: RFC 6749 §3.3 scope-token (printable ASCII except space, `"` and `\`). */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/

function alternativesOf (value: string | readonly string[] | undefined, source: Source, name: string): Alternative[] {
  if (value === undefined) return []
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list)) throw new TypeError(`fastify-entra-auth: ${name} must be a string or an array of strings`)
  return list.map((alternative: unknown) => {
    if (typeof alternative !== 'string') throw new TypeError(`fastify-entra-auth: ${name} must contain only strings`)
    const words = alternative.split(' ').filter(word => word !== '')
    if (words.length === 0) throw new TypeError(`fastify-entra-auth: ${name} contains an empty alternative`)
    for (const word of words) {
      if (word.includes(',')) {
        // Entra's permission names have no commas; 'A,B' would be one name that no token carries.
        const parts = word.split(',').filter(part => part !== '')
        throw new TypeError(`fastify-entra-auth: ${name} contains '${word}', and scope names have no commas: write ${JSON.stringify(parts).replace(/"/g, "'").replace(/,/g, ', ')} for any one of them, or '${parts.join(' ')}' for all of them`)
      }
      if (!SCOPE_TOKEN.test(word)) throw new TypeError(`fastify-entra-auth: ${name} contains an invalid scope '${word}'`)
    }
    return { words, source }
  })
}

const OBJECT_FORM = '{ scopes?, roles?, appOnly? }'

/** The object form's alternatives: at least one, since an empty list read from configuration must not open the route. */
function objectAlternatives (requirement: object): { alternatives: Alternative[], appOnly: boolean } {
  const { scopes, roles, appOnly, ...rest } = requirement as { scopes?: string | string[], roles?: string | string[], appOnly?: unknown }
  const extra = Object.keys(rest)
  if (extra.length > 0) throw new TypeError(`fastify-entra-auth: unknown requirement key '${extra[0]}' (the object form is ${OBJECT_FORM})`)
  if (appOnly !== undefined && typeof appOnly !== 'boolean') throw new TypeError("fastify-entra-auth: the requirement's 'appOnly' must be true or false")
  const delegated = alternativesOf(scopes, 'scp', "the requirement's 'scopes'")
  const application = alternativesOf(roles, 'roles', "the requirement's 'roles'")
  if (appOnly === true && delegated.length > 0) {
    throw new TypeError("fastify-entra-auth: an appOnly requirement admits only app-only tokens, which carry no delegated scopes ('scp'): put the app roles the route needs into 'roles', e.g. { roles: ['Reports.Read.All'], appOnly: true }")
  }
  if (delegated.length === 0 && application.length === 0) {
    throw new TypeError(`fastify-entra-auth: the requirement ${OBJECT_FORM} names no scope and no app role, so any token of this API would pass: ` +
      "give at least one, e.g. { roles: ['Admin'] } (a list read from configuration may have come out empty); for authentication only, call it without a requirement")
  }
  return { alternatives: [...delegated, ...application], appOnly: appOnly === true }
}

/** An alternative as a client requests it: `{prefix}{scope}`; app roles come with `{prefix}.default` (client credentials can't ask for single roles). */
function requested (alternative: Alternative, scopePrefix: string): string {
  return alternative.source === 'roles' ? `${scopePrefix}.default` : alternative.words.map(word => scopePrefix + word).join(' ')
}

/** Client credentials tokens carry no `scp`; Entra's `idtyp: app` decides where present (`EntraToken.isAppOnly`). */
function isApplication (permissions: TokenPermissions): boolean {
  return permissions.isAppOnly && permissions.delegated.size === 0
}

/**
 * Compiles a requirement; throws a `TypeError` for malformed ones (at route definition time).
 * `scopePrefix` (e.g. `api://{clientId}/`) turns scopes into the form clients request them in, for
 * the challenge.
 */
export function compileRequirement (requirement: ScopeRequirement | undefined | null, scopePrefix = ''): CompiledRequirement {
  let alternatives: Alternative[]
  let appOnly = false
  if (requirement === undefined || typeof requirement === 'string' || Array.isArray(requirement)) {
    alternatives = alternativesOf(requirement, 'any', 'the scope requirement')
  } else if (requirement !== null && typeof requirement === 'object') {
    ({ alternatives, appOnly } = objectAlternatives(requirement))
  } else {
    throw new TypeError(`fastify-entra-auth: a scope requirement must be a string, an array of strings, or ${OBJECT_FORM}; leave it out for authentication only`)
  }
  const words = [...new Set(alternatives.flatMap(a => a.words))]
  const first = alternatives[0]
  return Object.freeze({
    empty: alternatives.length === 0,
    appOnly,
    scopeAttribute: first === undefined ? '' : requested(first, scopePrefix),
    description: alternatives.map(a => `"${a.words.join(' ')}"${a.source === 'any' ? '' : ` (${a.source === 'scp' ? 'delegated scope' : 'app role'})`}`).join(' or '),
    words,
    alternatives: Object.freeze(alternatives.map(a => Object.freeze({ words: Object.freeze([...a.words]), source: a.source }))),
    isSatisfiedBy (permissions: TokenPermissions): boolean {
      if (appOnly && !isApplication(permissions)) return false
      if (alternatives.length === 0) return true
      for (const { words, source } of alternatives) {
        const granted = source === 'any' ? permissions.all : source === 'scp' ? permissions.delegated : permissions.roles
        if (words.every(word => granted.has(word))) return true
      }
      return false
    }
  })
}

const FOR_APPLICATIONS = "This route is for applications: it admits only app-only tokens (client credentials), not a user's token, even one whose user was assigned the app role."

/**
 * Admits a verified token's permissions for a route, or throws `auth_token_insufficient_scopes`
 * naming what the route needs (RFC 6750 §3.1 `scope` attribute). The plugin's hooks and
 * `explain()` both call it.
 */
export function checkRequirement (required: CompiledRequirement, permissions: TokenPermissions, record?: StepRecorder): void {
  const ok = required.isSatisfiedBy(permissions)
  const userOnAppRoute = required.appOnly && !isApplication(permissions)
  record?.('scopes', ok, {
    granted: [...permissions.all],
    needs: required.empty ? null : required.description,
    ...(required.appOnly ? { appOnly: true, isAppOnly: isApplication(permissions) } : {})
  })
  if (!ok) {
    const needs = `This route needs ${required.description}.`
    const detail = userOnAppRoute
      ? `${FOR_APPLICATIONS} ${needs} Request a token for the application (client credentials) with that app role.`
      : `${needs} Request a token with ${required.alternatives.length > 1 ? 'one of them' : 'them'} and try again.`
    throw new EntraAuthError('auth_token_insufficient_scopes', detail, { requiredScope: required.scopeAttribute })
  }
}
