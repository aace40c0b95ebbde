import { Type, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { isLoopbackHost } from './core/http.js'
import { EntraAuthError } from './entra/problems.js'
import { FrozenSet, type EntraToken } from './entra/token.js'

const StringList = Type.Array(Type.String({ minLength: 1 }))
/** Node's timers overflow past 2^31-1 ms (~24.8 days) and then fire at once. */
export const MAX_DURATION = 2 ** 31 - 1
const Millis = (minimum: 0 | 1): ReturnType<typeof Type.Integer> => Type.Integer({ minimum, maximum: MAX_DURATION })
const TENANT_ID = '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$'

const EntraAuthOptionsSchema = Type.Object({
  clientId: Type.String({ minLength: 1, description: 'Application (client) ID of the protected API' }),
  oidcEndpoint: Type.Optional(Type.String({ minLength: 1, description: 'URL of the OpenID configuration document' })),
  tenant: Type.Optional(Type.String({ minLength: 1, description: 'Tenant ID, domain, organizations or common' })),
  authorityHost: Type.Optional(Type.String({ minLength: 1 })),
  audiences: Type.Optional(StringList),
  tokenVersions: Type.Optional(Type.Array(Type.Union([Type.Literal('1.0'), Type.Literal('2.0')]), { minItems: 1 })),
  allowedTenants: Type.Optional(Type.Array(Type.String({ pattern: TENANT_ID }))),
  requirePermissions: Type.Optional(Type.Boolean({ description: 'Refuse tokens with neither scp nor roles (default: on for multi-tenant discovery issuers)' })),
  allowedSubjects: Type.Optional(StringList),
  allowedApps: Type.Optional(StringList),
  contact: Type.Optional(Type.String({ minLength: 1 })),
  clockTolerance: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_DURATION })),
  now: Type.Optional(Type.Any({ description: '() => number (milliseconds)' })),
  jwks: Type.Optional(Type.Object({
    ttl: Type.Optional(Millis(1)),
    cooldown: Type.Optional(Millis(0)),
    timeout: Type.Optional(Millis(1)),
    maxStale: Type.Optional(Millis(0)),
    maxBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: MAX_DURATION }))
  }, { additionalProperties: false })),
  tokenCache: Type.Optional(Type.Object({
    max: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_DURATION })),
    maxBytes: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }))
  }, { additionalProperties: false })),
  dispatcher: Type.Optional(Type.Any({ description: 'undici Dispatcher used for discovery and JWKS fetches' })),
  rejectionLogLevel: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l)))),
  decorator: Type.Optional(Type.String({ pattern: '^[A-Za-z_$][A-Za-z0-9_$]*$', description: 'Name of the instance decorator (default entraAuth)' })),
  tokenSources: Type.Optional(Type.Array(Type.Union([
    Type.Object({ cookie: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
    Type.Object({ session: Type.String({ minLength: 1 }) }, { additionalProperties: false })
  ]), { description: 'Where to look for the token when there is no Authorization header' })),
  onAuthSuccess: Type.Optional(Type.Any({ description: '(request, token) => void' })),
  onAuthFailure: Type.Optional(Type.Any({ description: '(request, error) => void' })),
  openapi: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    securityScheme: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]+$' })),
    scopePrefix: Type.Optional(Type.String({ minLength: 1 })),
    description: Type.Optional(Type.String())
  }, { additionalProperties: false })]))
}, { additionalProperties: false })

export const PLUGIN_ONLY_OPTIONS = ['decorator', 'tokenSources', 'onAuthSuccess', 'onAuthFailure', 'rejectionLogLevel', 'openapi'] as const

const EXPECTED: Readonly<Record<string, string>> = {
  clientId: 'the application (client) ID of your API, a non-empty string',
  oidcEndpoint: 'the URL of an OpenID configuration document',
  tenant: "a tenant ID, a domain such as 'contoso.onmicrosoft.com', 'organizations' or 'common'",
  authorityHost: "a host name such as 'login.microsoftonline.us'",
  audiences: 'an array of non-empty strings (extra accepted audiences)',
  tokenVersions: "a non-empty array of '1.0' and/or '2.0'",
  allowedTenants: "an array of tenant IDs (GUIDs such as '72f988bf-86f1-41af-91ab-2d7cd011db47'), not domain names: tokens name their tenant by ID; or a function (tenantId, token) => boolean | Promise<boolean>",
  requirePermissions: 'true or false',
  allowedSubjects: "an array of non-empty strings ('sub' values)",
  allowedApps: "an array of non-empty strings (client application IDs: 'azp' or 'appid')",
  contact: 'a non-empty string (a URI added to every problem reply)',
  clockTolerance: `a number of milliseconds from 0 to ${MAX_DURATION}`,
  now: 'a function returning the time in milliseconds',
  jwks: 'an object with any of ttl, cooldown, timeout, maxStale (milliseconds) and maxBytes',
  'jwks.ttl': `a whole number of milliseconds from 1 to ${MAX_DURATION}`,
  'jwks.cooldown': `a whole number of milliseconds from 0 to ${MAX_DURATION}`,
  'jwks.timeout': `a whole number of milliseconds from 1 to ${MAX_DURATION}`,
  'jwks.maxStale': `a whole number of milliseconds from 0 to ${MAX_DURATION}`,
  'jwks.maxBytes': `a whole number of bytes from 1024 to ${MAX_DURATION}`,
  tokenCache: 'an object { max, maxBytes }',
  'tokenCache.maxBytes': 'a whole number of bytes',
  'tokenCache.max': 'a whole number (0 turns the cache off)',
  dispatcher: 'an undici Dispatcher',
  rejectionLogLevel: "one of 'fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'",
  decorator: 'a JavaScript identifier such as entraAuth',
  tokenSources: "an array of { cookie: 'name' } and { session: 'key' }",
  onAuthSuccess: 'a function',
  onAuthFailure: 'a function',
  openapi: 'false or an object with any of securityScheme (letters, digits, . _ -), scopePrefix and description'
}

/** Options of the plugin and of `createEntraVerifier` that don't depend on where the keys come from. All durations are milliseconds. */
export interface EntraCommonOptions {
  /** Application (client) ID of the protected API; `aud` may be it or `api://{clientId}`. */
  clientId: string
  /** Extra accepted `aud` values (custom App ID URIs). */
  audiences?: string[]
  /** Accepted Entra `ver` values. Default both. */
  tokenVersions?: Array<'1.0' | '2.0'>
  /** Allowed tenant IDs (`tid`), or a predicate run once per new token. Default: all. */
  allowedTenants?: string[] | EntraTenantPredicate
  /** Allowed `sub` values. Default: all. */
  allowedSubjects?: string[]
  /** Allowed client applications: `azp` (v2.0, and Azure AD B2C's 1.0 tokens) or `appid` (v1.0). Default: all. */
  allowedApps?: string[]
  /** Refuse tokens with neither `scp` nor `roles`. Default: on for a multi-tenant discovery issuer. */
  requirePermissions?: boolean
  /** URI added as `contact` to every problem reply. */
  contact?: string
  /** Leeway for `exp`/`nbf`, in milliseconds. Default 0. */
  clockTolerance?: number
  /** Clock for every token time check, in milliseconds. Default `Date.now`. */
  now?: () => number
  /** Key fetching: `ttl`, `cooldown`, `timeout`, `maxStale` (ms) and `maxBytes` (see docs/options.md). */
  jwks?: { ttl?: number, cooldown?: number, timeout?: number, maxStale?: number, maxBytes?: number }
  /** Verified-token cache: `max` entries (default 4096; 0 turns it off) and estimated `maxBytes`. */
  tokenCache?: { max?: number, maxBytes?: number }
  /** undici Dispatcher for discovery and JWKS fetches (the test kit's fake Entra passes one). */
  dispatcher?: Dispatcher
}

/** Where the keys come from: a tenant (on an authority host), or a discovery URL — exactly one. */
export type EntraEndpointOptions =
  | {
    /** Tenant ID, domain, `organizations` or `common`: derives the v2.0 discovery URL on `authorityHost`. */
    tenant: string
    /** For sovereign clouds (`login.microsoftonline.us`, `login.chinacloudapi.cn`, …). Default `login.microsoftonline.com`. */
    authorityHost?: string
    oidcEndpoint?: never
  }
  | {
    /** URL of the OpenID configuration document (`…/.well-known/openid-configuration`). */
    oidcEndpoint: string
    tenant?: never
    authorityHost?: never
  }

/** Options of `createEntraVerifier`: the plugin's options without the plugin-only ones. */
export type EntraVerifierOptions = EntraCommonOptions & EntraEndpointOptions

/** Options only the plugin has (`createEntraVerifier` refuses them). */
export interface EntraPluginOnlyOptions {
  /** Level rejections are logged at. Default `info`. */
  rejectionLogLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Name of the instance decorator. Default `entraAuth`. */
  decorator?: string
  /** Where else to look for the token when there is no `Authorization` header (protect cookies against CSRF). */
  tokenSources?: EntraTokenSource[]
  /** Called once per admitted request, for metrics. Must not throw; errors are logged. */
  onAuthSuccess?: (request: FastifyRequest, token: EntraToken) => void
  /** Called once per refused request or failed strategy, for metrics. Must not throw. */
  onAuthFailure?: (request: FastifyRequest, error: EntraAuthError) => void
  /** OpenAPI contribution when `@fastify/swagger` is registered; `false` turns it off. */
  openapi?: false | EntraOpenApiOptions
}

/** Options of the plugin: the verifier's options plus the plugin-only ones. All durations are milliseconds. */
export type EntraAuthOptions = EntraVerifierOptions & EntraPluginOnlyOptions

/**
 * Decides whether a tenant may use the API; `tenantId` is the token's `tid`.
 * @example
 * ```ts
 * const subscribers = new Map<string, { active: boolean }>() // in a real app, a database lookup
 * await app.register(entraAuth, { clientId, tenant: 'organizations', allowedTenants: async (tenantId) => subscribers.get(tenantId)?.active === true })
 * ```
 */
export type EntraTenantPredicate = (tenantId: string, token: EntraToken) => boolean | Promise<boolean>

/** A place to read the access token from when there is no `Authorization` header. */
export type EntraTokenSource = { cookie: string } | { session: string }

/** Options of the OpenAPI contribution. */
export interface EntraOpenApiOptions {
  /** Name of the security scheme in `components.securitySchemes`. Default the decorator name. */
  securityScheme?: string
  /** Prepended to each scope word. Default `api://{clientId}/`. */
  scopePrefix?: string
  /** Description of the security scheme (written by `withEntraSecurity`). */
  description?: string
}

/**
 * Thrown at register time (or by `createEntraVerifier`) for bad options: a `TypeError` listing every problem.
 * @example
 * ```ts
 * import { createEntraVerifier, EntraAuthOptionsError } from 'fastify-entra-auth'
 * try { createEntraVerifier(options) } catch (err) {
 *   if (err instanceof EntraAuthOptionsError) console.error(err.code, err.issues)
 * }
 * ```
 */
export class EntraAuthOptionsError extends TypeError {
  /** Stable code of every option error: switch on this, not on the message. */
  readonly code = 'FST_ENTRA_AUTH_INVALID_OPTIONS'
  /** Every problem found, e.g. `option 'jwks.timeout' must be a whole number of milliseconds …`. */
  readonly issues: readonly string[]

  constructor (problems: readonly string[]) {
    super(problems.length === 1
      ? `fastify-entra-auth: ${problems[0] as string}`
      : `fastify-entra-auth: ${problems.length} problems with the options:\n- ${problems.join('\n- ')}`)
    this.issues = Object.freeze([...problems])
  }
}

export interface KeyTimings {
  readonly ttl: number
  readonly cooldown: number
  readonly timeout: number
  readonly maxStale: number
  readonly maxBytes: number
}

export interface ResolvedOptions {
  readonly clientId: string
  readonly discoveryUrl: URL
  readonly audiences: ReadonlySet<string>
  readonly tokenVersions: ReadonlySet<string>
  readonly allowedTenants: ReadonlySet<string> | null
  readonly tenantPredicate: EntraTenantPredicate | null
  readonly allowedSubjects: ReadonlySet<string> | null
  readonly allowedApps: ReadonlySet<string> | null
  readonly requirePermissions: boolean | undefined
  readonly contact: string | undefined
  readonly clockTolerance: number
  readonly now: () => number
  readonly jwks: KeyTimings
  readonly tokenCacheMax: number
  readonly tokenCacheMaxBytes: number
  readonly dispatcher: Dispatcher | undefined
  readonly rejectionLogLevel: NonNullable<EntraAuthOptions['rejectionLogLevel']>
  readonly decorator: string
  readonly tokenSources: readonly EntraTokenSource[]
  readonly onAuthSuccess: EntraAuthOptions['onAuthSuccess']
  readonly onAuthFailure: EntraAuthOptions['onAuthFailure']
  readonly openapi: false | { readonly securityScheme: string, readonly scopePrefix: string, readonly description: string | undefined }
}

/** Every option's default; a test keeps docs/options.md's table equal to it. */
export const OPTION_DEFAULTS = Object.freeze({
  authorityHost: 'login.microsoftonline.com',
  audiences: Object.freeze([]) as readonly string[],
  tokenVersions: Object.freeze(['1.0', '2.0']) as ReadonlyArray<'1.0' | '2.0'>,
  allowedTenants: Object.freeze([]) as readonly string[],
  allowedSubjects: Object.freeze([]) as readonly string[],
  allowedApps: Object.freeze([]) as readonly string[],
  clockTolerance: 0,
  'jwks.ttl': 24 * 60 * 60 * 1000,
  'jwks.cooldown': 5 * 60 * 1000,
  'jwks.timeout': 5000,
  'jwks.maxStale': 24 * 60 * 60 * 1000,
  'jwks.maxBytes': 1024 * 1024,
  'tokenCache.max': 4096,
  'tokenCache.maxBytes': 32 * 1024 * 1024,
  rejectionLogLevel: 'info' as const,
  decorator: 'entraAuth',
  tokenSources: Object.freeze([]) as readonly EntraTokenSource[]
})

export const DEFAULT_JWKS: KeyTimings = Object.freeze({
  ttl: OPTION_DEFAULTS['jwks.ttl'],
  cooldown: OPTION_DEFAULTS['jwks.cooldown'],
  timeout: OPTION_DEFAULTS['jwks.timeout'],
  maxStale: OPTION_DEFAULTS['jwks.maxStale'],
  maxBytes: OPTION_DEFAULTS['jwks.maxBytes']
})

export const DEFAULT_TOKEN_CACHE_MAX = OPTION_DEFAULTS['tokenCache.max']
export const DEFAULT_TOKEN_CACHE_MAX_BYTES = OPTION_DEFAULTS['tokenCache.maxBytes']

/** Fastify passes these to every plugin; they are not ours to refuse. */
const FASTIFY_REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers']

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9._-]+)?$/
const HOST = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:\d{1,5})?$/

function shown (value: unknown): string {
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return `[${value.slice(0, 3).map(shown).join(', ')}${value.length > 3 ? ', …' : ''}]`
  if (value !== null && typeof value === 'object') return 'an object'
  const text = typeof value === 'string' ? `'${value}'` : String(value)
  return text.length > 80 ? `${text.slice(0, 77)}…` : text
}

function invalid (path: string, value: unknown): string {
  return `option '${path}' must be ${EXPECTED[path] ?? 'valid'}, got ${shown(value)}`
}

const OPTION_HINTS: Readonly<Record<string, string>> = {
  tenantId: "did you mean 'tenant'? It takes a tenant ID, a domain such as 'contoso.onmicrosoft.com', 'organizations' or 'common'",
  issuer: "the issuer comes from the discovery document: give 'tenant' (e.g. 'contoso.onmicrosoft.com'), or 'oidcEndpoint' with the issuer's '/.well-known/openid-configuration' URL",
  jwksUrl: "the keys' URL comes from the discovery document: give 'tenant' (e.g. 'contoso.onmicrosoft.com'), or 'oidcEndpoint' with the '/.well-known/openid-configuration' URL"
}

function suggestion (path: string, key: string, known: readonly string[]): string {
  const hint = Object.hasOwn(OPTION_HINTS, path) ? OPTION_HINTS[path] : undefined
  if (hint !== undefined) return ` (${hint})`
  const lower = key.toLowerCase().replace(/s$/, '')
  const match = known.find(name => name.toLowerCase().replace(/s$/, '') === lower)
  return match === undefined ? '' : ` (did you mean '${match}'?)`
}

function checkObject (properties: Record<string, TSchema>, value: Record<string, unknown>, prefix: string, issues: string[]): void {
  const known = Object.keys(properties)
  for (const [key, member] of Object.entries(value)) {
    const path = prefix + key
    const schema = properties[key]
    if (schema === undefined) {
      issues.push(`unknown option '${path}'${suggestion(path, key, known)}`)
    } else if (member !== undefined) {
      const nested = (schema as { properties?: Record<string, TSchema> }).properties
      if (nested !== undefined && member !== null && typeof member === 'object' && !Array.isArray(member)) {
        checkObject(nested, member as Record<string, unknown>, `${path}.`, issues)
      } else if (!Value.Check(schema, member)) {
        issues.push(invalid(path, member))
      }
    }
  }
}

function discoveryUrlOf (value: string, name: string, issues: string[]): URL | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    issues.push(`option '${name}' must be an absolute URL, got '${value}'`)
    return undefined
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    issues.push(`option '${name}' must use https (http is allowed for localhost only), got '${value}'`)
  }
  if (url.username !== '' || url.password !== '') issues.push(`option '${name}' must not carry credentials`)
  if (name === 'oidcEndpoint' && !url.pathname.includes('/.well-known/')) {
    const document = `${url.origin}${url.pathname.replace(/\/+$/, '')}/.well-known/openid-configuration${url.search}`
    issues.push(`option 'oidcEndpoint' must be the URL of the OpenID configuration document, not the issuer: try '${document}'`)
  }
  url.hash = ''
  return url
}

function authorityHostOf (value: string | undefined, issues: string[]): string {
  if (value === undefined) return OPTION_DEFAULTS.authorityHost
  const host = value.replace(/^https:\/\//i, '').replace(/\/+$/, '')
  if (!HOST.test(host)) issues.push(`option 'authorityHost' must be ${EXPECTED.authorityHost as string}, got '${value}'`)
  return host.toLowerCase()
}

export function appIdUriHint (subject: string, value: string): { message: string, clientId: string | undefined } | undefined {
  if (!value.includes('://')) return undefined
  const clientId = /^api:\/\/([^/]+)\/?$/.exec(value)?.[1]
  return clientId === undefined
    ? { message: `${subject} must be the application (client) ID, not an App ID URI: give the client ID (a GUID)`, clientId }
    : { message: `${subject} must be the application (client) ID, not the App ID URI: use '${clientId}'`, clientId }
}

function checkClientId (clientId: string, issues: string[]): void {
  const hint = appIdUriHint("option 'clientId'", clientId)
  if (hint === undefined) return
  issues.push(hint.clientId === undefined
    ? `${hint.message} and put '${clientId}' into 'audiences'`
    : `${hint.message} (tokens for '${clientId}' are accepted with it)`)
}

function setOrNull (list: readonly string[] | undefined): ReadonlySet<string> | null {
  return list === undefined || list.length === 0 ? null : new FrozenSet(list)
}

const CLOCK_DETAIL = "The token's lifetime could not be checked: this API's clock gave no time. This is not a problem with the token; tell the API's owner."

/** A clock answering NaN would make every time comparison false and admit expired tokens. */
function checkedClock (now: () => number): () => number {
  return () => {
    const value = now()
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new EntraAuthError('auth_token_expired', CLOCK_DETAIL)
    return value
  }
}

export function resolveOptions (input: unknown, use: 'plugin' | 'verifier' = 'plugin'): ResolvedOptions {
  if (input === null || typeof input !== 'object') {
    throw new EntraAuthOptionsError(['options must be an object with at least clientId and tenant or oidcEndpoint'])
  }
  const candidate: Record<string, unknown> = { ...(input as Record<string, unknown>) }
  for (const key of FASTIFY_REGISTER_KEYS) delete candidate[key]

  const issues: string[] = []
  if (use === 'verifier') {
    for (const key of PLUGIN_ONLY_OPTIONS) {
      if (key in candidate) {
        issues.push(`option '${key}' belongs to the plugin: createEntraVerifier does not take it (leave it out, or register the plugin and use fastify.entraAuth.verify)`)
        delete candidate[key]
      }
    }
  }
  const tenantPredicate = typeof candidate.allowedTenants === 'function' ? candidate.allowedTenants as EntraTenantPredicate : null
  if (tenantPredicate !== null) delete candidate.allowedTenants
  checkObject(EntraAuthOptionsSchema.properties, candidate, '', issues)
  if (candidate.clientId === undefined) issues.push(`option 'clientId' is required: ${EXPECTED.clientId as string}`)
  const options = candidate as unknown as EntraAuthOptions & { tenant?: string, oidcEndpoint?: string, authorityHost?: string }

  if (options.now !== undefined && typeof options.now !== 'function') issues.push(invalid('now', options.now))
  for (const hook of ['onAuthSuccess', 'onAuthFailure'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') issues.push(invalid(hook, options[hook]))
  }
  if (options.dispatcher !== undefined && typeof (options.dispatcher as { dispatch?: unknown } | null)?.dispatch !== 'function') {
    issues.push(invalid('dispatcher', options.dispatcher))
  }
  if (typeof options.clientId === 'string') checkClientId(options.clientId, issues)
  if ((options.oidcEndpoint === undefined) === (options.tenant === undefined)) {
    issues.push("exactly one of the options 'oidcEndpoint' and 'tenant' is required")
  }
  if (options.authorityHost !== undefined && options.tenant === undefined) {
    issues.push("option 'authorityHost' only applies with 'tenant'; put the host into 'oidcEndpoint' instead")
  }

  let discoveryUrl: URL | undefined
  if (typeof options.tenant === 'string' && options.oidcEndpoint === undefined) {
    if (!TENANT.test(options.tenant)) {
      issues.push(`option 'tenant' must be ${EXPECTED.tenant as string}, got '${options.tenant}'`)
    } else {
      const host = authorityHostOf(typeof options.authorityHost === 'string' ? options.authorityHost : undefined, issues)
      discoveryUrl = discoveryUrlOf(`https://${host}/${options.tenant}/v2.0/.well-known/openid-configuration`, 'tenant', issues)
    }
  } else if (typeof options.oidcEndpoint === 'string' && options.oidcEndpoint !== '' && options.tenant === undefined) {
    discoveryUrl = discoveryUrlOf(options.oidcEndpoint, 'oidcEndpoint', issues)
  }
  if (issues.length > 0 || discoveryUrl === undefined) throw new EntraAuthOptionsError(issues)

  const clientId = options.clientId
  const decorator = options.decorator ?? OPTION_DEFAULTS.decorator
  const jwks = Object.freeze({ ...DEFAULT_JWKS, ...options.jwks })

  return Object.freeze({
    clientId,
    discoveryUrl,
    // Entra puts the client ID (v2, and v1 when so requested) or the App ID URI (v1) into `aud`.
    audiences: new FrozenSet([clientId, `api://${clientId}`, ...(options.audiences ?? OPTION_DEFAULTS.audiences)]),
    tokenVersions: new FrozenSet<string>(options.tokenVersions ?? OPTION_DEFAULTS.tokenVersions),
    allowedTenants: setOrNull((options.allowedTenants as string[] | undefined)?.map(tid => tid.toLowerCase())),
    tenantPredicate,
    allowedSubjects: setOrNull(options.allowedSubjects),
    allowedApps: setOrNull(options.allowedApps),
    requirePermissions: options.requirePermissions,
    contact: options.contact,
    clockTolerance: options.clockTolerance ?? OPTION_DEFAULTS.clockTolerance,
    now: options.now === undefined ? Date.now : checkedClock(options.now),
    jwks,
    tokenCacheMax: options.tokenCache?.max ?? DEFAULT_TOKEN_CACHE_MAX,
    tokenCacheMaxBytes: options.tokenCache?.maxBytes ?? DEFAULT_TOKEN_CACHE_MAX_BYTES,
    dispatcher: options.dispatcher,
    rejectionLogLevel: options.rejectionLogLevel ?? OPTION_DEFAULTS.rejectionLogLevel,
    decorator,
    tokenSources: Object.freeze((options.tokenSources ?? OPTION_DEFAULTS.tokenSources).map(source => Object.freeze({ ...source }))),
    onAuthSuccess: options.onAuthSuccess,
    onAuthFailure: options.onAuthFailure,
    openapi: options.openapi === false
      ? false
      : Object.freeze({
        securityScheme: options.openapi?.securityScheme ?? decorator,
        scopePrefix: options.openapi?.scopePrefix ?? `api://${clientId}/`,
        description: options.openapi?.description
      })
  })
}
