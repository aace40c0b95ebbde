import { Type, type Static } from '@sinclair/typebox'
import type { JoseHeader } from '../core/jws.js'

/** Claims of an Entra access token (v1.0 and v2.0) as a TypeBox schema; any other claim is kept. */
export const EntraClaimsSchema = Type.Object({
  iss: Type.String(),
  sub: Type.String(),
  aud: Type.Union([Type.String(), Type.Array(Type.String())]),
  exp: Type.Number(),
  nbf: Type.Number(),
  iat: Type.Optional(Type.Number()),
  ver: Type.Union([Type.Literal('1.0'), Type.Literal('2.0')]),
  tid: Type.Optional(Type.String()),
  oid: Type.Optional(Type.String()),
  azp: Type.Optional(Type.String()),
  azpacr: Type.Optional(Type.String()),
  appid: Type.Optional(Type.String()),
  appidacr: Type.Optional(Type.String()),
  idtyp: Type.Optional(Type.String()),
  scp: Type.Optional(Type.String()),
  roles: Type.Optional(Type.Array(Type.String())),
  groups: Type.Optional(Type.Array(Type.String())),
  name: Type.Optional(Type.String()),
  preferred_username: Type.Optional(Type.String()),
  upn: Type.Optional(Type.String()),
  unique_name: Type.Optional(Type.String()),
  xms_cc: Type.Optional(Type.Array(Type.String()))
}, { additionalProperties: true })

/** Typed known claims plus any extra claim; extend through {@link CustomEntraClaims}. */
export type EntraClaims = Static<typeof EntraClaimsSchema> & CustomEntraClaims & Record<string, unknown>

/**
 * Merge point for application-specific claims:
 * @example
 * ```ts
 * declare module 'fastify-entra-auth' {
 *   interface CustomEntraClaims { NAVident?: string }
 * }
 * ```
 */
export interface CustomEntraClaims {}

/** RFC 7662 §2.2 introspection response. */
export interface Rfc7662Introspection {
  active: boolean
  scope?: string
  client_id?: string
  username?: string
  token_type?: 'Bearer'
  exp?: number
  iat?: number
  nbf?: number
  sub?: string
  aud?: string | string[]
  iss?: string
}

// What kind of token this is: used to explain a refusal, never to admit anything.

const GRAPH_AUDIENCES = new Set(['00000003-0000-0000-c000-000000000000', 'https://graph.microsoft.com', 'https://graph.microsoft.com/'])

export function isGraphToken (header: Record<string, unknown>, payload: Record<string, unknown>): boolean {
  // Graph tokens carry a `nonce` JOSE header whose hash is what was signed.
  if (header.nonce !== undefined) return true
  const aud = payload.aud
  return typeof aud === 'string' ? GRAPH_AUDIENCES.has(aud) : Array.isArray(aud) && aud.some(a => GRAPH_AUDIENCES.has(a))
}

export function graphTokenDetail (scope?: string): string {
  const instead = scope === undefined ? 'one of its scopes, or its .default scope' : `scope ${scope} or one of its scopes`
  return `This token was issued for Microsoft Graph, and Graph tokens cannot be validated by any API but Graph. Request a token for this API instead (${instead}).`
}

export function looksLikeIdToken (payload: Record<string, unknown>): boolean {
  return payload.scp === undefined && payload.roles === undefined && payload.azp === undefined && payload.appid === undefined
}

export function defaultClientClaim (ver: unknown): 'azp' | 'appid' {
  return ver === '2.0' ? 'azp' : 'appid'
}

export function scopesOf (claims: Readonly<Record<string, unknown>>): string[] {
  const scopes = words(claims.scp)
  for (const role of strings(claims.roles)) if (!scopes.includes(role)) scopes.push(role)
  return scopes
}

export function isAppOnlyClaims (claims: Readonly<Record<string, unknown>>): boolean {
  if (claims.idtyp !== undefined) return claims.idtyp === 'app'
  return claims.scp === undefined && claims.oid !== undefined && claims.oid === claims.sub
}

function words (scp: unknown): string[] {
  // Entra's `scp` is one space-delimited string; anything else grants nothing.
  return typeof scp === 'string' ? scp.split(' ').filter(word => word !== '') : []
}

function strings (roles: unknown): string[] {
  // A `roles` string is not split: that would turn "A B" into two roles nobody granted.
  return Array.isArray(roles) ? roles.filter((role): role is string => typeof role === 'string') : []
}

export function deepFreeze<T extends object> (root: T): Readonly<T> {
  const pending: object[] = [root]
  for (let value = pending.pop(); value !== undefined; value = pending.pop()) {
    Object.freeze(value)
    // for…in allocates no key array; own members only (a polluted prototype is not ours to freeze).
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue
      const member: unknown = (value as Record<string, unknown>)[key]
      if (member !== null && typeof member === 'object' && !Object.isFrozen(member)) pending.push(member)
    }
  }
  return root
}

/** `Object.freeze` does not stop `Set.prototype.add`, and route requirements are checked against these sets. */
export class FrozenSet<T> implements ReadonlySet<T> {
  readonly #items: Set<T>

  constructor (items: Iterable<T>) {
    this.#items = new Set(items)
    Object.freeze(this)
  }

  get size (): number { return this.#items.size }
  has (value: T): boolean { return this.#items.has(value) }
  forEach (callback: (value: T, key: T, set: ReadonlySet<T>) => void, thisArg?: unknown): void {
    for (const value of this.#items) callback.call(thisArg, value, value, this)
  }

  entries (): SetIterator<[T, T]> { return this.#items.entries() }
  keys (): SetIterator<T> { return this.#items.keys() }
  values (): SetIterator<T> { return this.#items.values() }
  [Symbol.iterator] (): SetIterator<T> { return this.#items.values() }
}

const REDACTED = '[redacted]'

let minting = false

export function mintEntraToken (raw: string, header: JoseHeader, claims: EntraClaims, clientClaim?: 'azp' | 'appid'): EntraToken {
  minting = true
  try {
    return new (EntraToken as unknown as new (...args: unknown[]) => EntraToken)(raw, header, claims, clientClaim)
  } finally {
    minting = false
  }
}

/**
 * A validated Entra access token; deeply immutable, as the token cache shares it between requests.
 * @example
 * ```ts
 * app.get('/me', { onRequest: app.entraAuth() }, async (request) => {
 *   const token = request.entraToken!
 *   return { user: token.objectId, tenant: token.tenantId, scopes: token.scopes }
 * })
 * ```
 */
export class EntraToken {
  // Private fields: invisible to spread, JSON and `util.inspect`, and fillable once despite `Object.freeze`.
  readonly #raw: string
  #delegated: ReadonlySet<string> | undefined
  #roles: ReadonlySet<string> | undefined
  #all: ReadonlySet<string> | undefined
  readonly #clientClaim: 'azp' | 'appid'
  readonly #claims: EntraClaims
  #frozen = false
  #scopes: string[] | undefined
  /** Decoded JOSE header (frozen). */
  readonly header: JoseHeader
  /** Entra token version. */
  readonly version: '1.0' | '2.0'

  /** Freezes `header` (and `claims` on first read): pass objects nothing else holds on to. */
  private constructor (raw: string, header: JoseHeader, claims: EntraClaims, clientClaim?: 'azp' | 'appid') {
    if (!minting) throw new TypeError('fastify-entra-auth: an EntraToken is made only by the verifier, after every check passed: use verify()')
    this.#raw = raw
    this.#clientClaim = clientClaim ?? defaultClientClaim(claims.ver)
    this.header = Object.isFrozen(header) ? header : deepFreeze(header)
    this.#claims = claims
    this.version = claims.ver
    if (new.target === EntraToken) Object.freeze(this)
  }

  /** All decoded claims, deeply frozen (on first read: see docs/performance.md). */
  get claims (): EntraClaims {
    if (!this.#frozen) {
      deepFreeze(this.#claims)
      this.#frozen = true
    }
    return this.#claims
  }

  /** `scp` words ∪ `roles`, in that order, without duplicates (frozen; made on first read). */
  get scopes (): string[] {
    this.#scopes ??= Object.freeze(scopesOf(this.#claims)) as string[]
    return this.#scopes
  }

  /** The token string as received. Not enumerable: spread, JSON and `util.inspect` leave it out. */
  get raw (): string {
    return this.#raw
  }

  /** Delegated permissions (`scp` words). */
  get delegated (): ReadonlySet<string> {
    this.#delegated ??= new FrozenSet(words(this.#claims.scp))
    return this.#delegated
  }

  /** App roles / application permissions (`roles`). */
  get roles (): ReadonlySet<string> {
    this.#roles ??= new FrozenSet(strings(this.#claims.roles))
    return this.#roles
  }

  /** `scp` ∪ `roles`. */
  get all (): ReadonlySet<string> {
    this.#all ??= new FrozenSet(this.scopes)
    return this.#all
  }

  /** Tenant ID (`tid`). */
  get tenantId (): string | undefined {
    return typeof this.#claims.tid === 'string' ? this.#claims.tid : undefined
  }

  /** Object ID of the user or service principal (`oid`); with `tenantId` it identifies the caller. */
  get objectId (): string | undefined {
    return typeof this.#claims.oid === 'string' ? this.#claims.oid : undefined
  }

  /** Client application ID: `azp` (v2.0, and Azure AD B2C's 1.0 tokens) or `appid` (v1.0). */
  get clientId (): string | undefined {
    const value = this.#claims[this.#clientClaim]
    return typeof value === 'string' ? value : undefined
  }

  /** True for app-only (client-credentials) tokens: `idtyp` `app` when present, else no `scp` and `oid == sub`. */
  get isAppOnly (): boolean {
    return isAppOnlyClaims(this.#claims)
  }

  /** RFC 7662 introspection response for this (valid) token. */
  introspect (): Rfc7662Introspection {
    const c = this.claims
    const response: Rfc7662Introspection = {
      active: true,
      scope: this.scopes.join(' '),
      client_id: this.clientId,
      username: [c.preferred_username, c.upn, c.unique_name].find(v => typeof v === 'string'),
      token_type: 'Bearer',
      exp: c.exp,
      iat: typeof c.iat === 'number' ? c.iat : undefined,
      nbf: c.nbf,
      sub: c.sub,
      aud: c.aud,
      iss: c.iss
    }
    for (const key of Object.keys(response) as Array<keyof Rfc7662Introspection>) {
      if (response[key] === undefined) delete response[key]
    }
    return response
  }

  /** Serialises as the claims, so `reply.send(request.entraToken)` never leaks the raw token. */
  toJSON (): { header: JoseHeader, claims: EntraClaims, scopes: string[], version: '1.0' | '2.0' } {
    return { header: this.header, claims: this.claims, scopes: this.scopes, version: this.version }
  }

  /** `util.inspect` (and so `console.log`) shows the token with its string redacted. */
  [Symbol.for('nodejs.util.inspect.custom')] (_depth: number, options: { depth?: number | null }, inspect: (value: unknown, options: object) => string): string {
    const shown = { version: this.version, scopes: this.scopes, header: this.header, claims: this.claims, raw: REDACTED }
    const depth = options.depth === null || options.depth === undefined ? options.depth : options.depth - 1
    return `EntraToken ${inspect(shown, { ...options, depth })}`
  }
}
