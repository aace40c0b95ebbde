/** Route requirements: a list of alternatives (OR), each a space-separated set of words (AND). */
import { EntraAuthError } from './problems.js'
import type { StepRecorder } from './steps.js'

/**
 * What a route needs: alternatives (`['A B', 'C']` = (A AND B) OR C) against `scp` ∪ `roles`, or the
 * object form that keeps delegated scopes and app roles apart.
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
  /** Admit only app-only tokens (client credentials), even against users assigned the app role. Goes with `roles`. */
  appOnly?: boolean
}

type Source = 'any' | 'scp' | 'roles'

interface Alternative {
  readonly words: readonly string[]
  readonly source: Source
}

export interface TokenPermissions {
  readonly delegated: ReadonlySet<string>
  readonly roles: ReadonlySet<string>
  readonly all: ReadonlySet<string>
  readonly isAppOnly: boolean
}

export interface CompiledRequirement {
  readonly empty: boolean
  readonly appOnly: boolean
  /** RFC 6750 §3: the `scope` words are all required, so it names the first alternative only. */
  readonly scopeAttribute: string
  readonly description: string
  readonly words: readonly string[]
  readonly alternatives: ReadonlyArray<{ readonly words: readonly string[], readonly source: 'any' | 'scp' | 'roles' }>
  isSatisfiedBy: (permissions: TokenPermissions) => boolean
}

/** RFC 6749 §3.3 scope-token. */
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

/** At least one: an empty list read from configuration must not open the route. */
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

function requested (alternative: Alternative, scopePrefix: string): string {
  return alternative.source === 'roles' ? `${scopePrefix}.default` : alternative.words.map(word => scopePrefix + word).join(' ')
}

function isApplication (permissions: TokenPermissions): boolean {
  return permissions.isAppOnly && permissions.delegated.size === 0
}

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
