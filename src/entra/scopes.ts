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
 */
export type ScopeRequirement = string | readonly string[] | {
  /** Alternatives satisfied by delegated permissions (`scp`). */
  scopes?: string | readonly string[]
  /** Alternatives satisfied by app roles / application permissions (`roles`). */
  roles?: string | readonly string[]
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
}

/** A requirement checked once at route definition, cheap to evaluate per request. */
export interface CompiledRequirement {
  /** True when any token passes (authentication only). */
  readonly empty: boolean
  /** Space-separated union of the words, for the RFC 6750 `scope` challenge attribute. */
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
      if (!SCOPE_TOKEN.test(word)) throw new TypeError(`fastify-entra-auth: ${name} contains an invalid scope '${word}'`)
    }
    return { words, source }
  })
}

/** Compiles a requirement; throws a `TypeError` for malformed ones (at route definition time). */
export function compileRequirement (requirement: ScopeRequirement | undefined | null): CompiledRequirement {
  let alternatives: Alternative[]
  if (requirement === undefined || requirement === null || typeof requirement === 'string' || Array.isArray(requirement)) {
    alternatives = alternativesOf(requirement ?? undefined, 'any', 'the scope requirement')
  } else if (typeof requirement === 'object') {
    const { scopes, roles, ...rest } = requirement as { scopes?: string | string[], roles?: string | string[] }
    const extra = Object.keys(rest)
    if (extra.length > 0) throw new TypeError(`fastify-entra-auth: unknown requirement key '${extra[0]}' (use 'scopes' and 'roles')`)
    alternatives = [...alternativesOf(scopes, 'scp', "the requirement's 'scopes'"), ...alternativesOf(roles, 'roles', "the requirement's 'roles'")]
  } else {
    throw new TypeError('fastify-entra-auth: a scope requirement must be a string, an array of strings, or { scopes, roles }')
  }
  const words = [...new Set(alternatives.flatMap(a => a.words))]
  return Object.freeze({
    empty: alternatives.length === 0,
    scopeAttribute: words.join(' '),
    description: alternatives.map(a => `"${a.words.join(' ')}"${a.source === 'any' ? '' : ` (${a.source === 'scp' ? 'delegated scope' : 'app role'})`}`).join(' or '),
    words,
    alternatives: Object.freeze(alternatives.map(a => Object.freeze({ words: Object.freeze([...a.words]), source: a.source }))),
    isSatisfiedBy (permissions: TokenPermissions): boolean {
      if (alternatives.length === 0) return true
      for (const { words, source } of alternatives) {
        const granted = source === 'any' ? permissions.all : source === 'scp' ? permissions.delegated : permissions.roles
        if (words.every(word => granted.has(word))) return true
      }
      return false
    }
  })
}

/**
 * Admits a verified token's permissions for a route, or throws `auth_token_insufficient_scopes`
 * naming what the route needs (RFC 6750 §3.1 `scope` attribute). The plugin's hooks and
 * `explain()` both call it.
 */
export function checkRequirement (required: CompiledRequirement, permissions: TokenPermissions, record?: StepRecorder): void {
  const ok = required.isSatisfiedBy(permissions)
  record?.('scopes', ok, { granted: [...permissions.all], needs: required.empty ? null : required.description })
  if (!ok) {
    throw new EntraAuthError('auth_token_insufficient_scopes', `This route needs ${required.description}. Request a token with them and try again.`, { requiredScope: required.scopeAttribute })
  }
}
