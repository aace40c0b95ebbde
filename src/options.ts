import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import type { EntraAuthError } from './problems.js'
import type { EntraToken } from './token.js'

const StringList = Type.Array(Type.String({ minLength: 1 }))
const Millis = Type.Number({ exclusiveMinimum: 0 })

/** TypeBox schema of the options (see the README's Options table). Unknown keys are refused. */
export const EntraAuthOptionsSchema = Type.Object({
  clientId: Type.String({ minLength: 1, description: 'Application (client) ID of the protected API' }),
  oidcEndpoint: Type.Optional(Type.String({ minLength: 1, description: 'URL of the OpenID configuration document' })),
  tenant: Type.Optional(Type.String({ minLength: 1, description: 'Tenant ID, domain, organizations or common' })),
  authorityHost: Type.Optional(Type.String({ minLength: 1 })),
  audiences: Type.Optional(StringList),
  tokenVersions: Type.Optional(Type.Array(Type.Union([Type.Literal('1.0'), Type.Literal('2.0')]), { minItems: 1 })),
  allowedTenants: Type.Optional(StringList),
  allowedSubjects: Type.Optional(StringList),
  allowedApps: Type.Optional(StringList),
  contact: Type.Optional(Type.String({ minLength: 1 })),
  clockTolerance: Type.Optional(Type.Number({ minimum: 0 })),
  now: Type.Optional(Type.Any({ description: '() => number (milliseconds)' })),
  jwks: Type.Optional(Type.Object({
    ttl: Type.Optional(Millis),
    cooldown: Type.Optional(Type.Number({ minimum: 0 })),
    timeout: Type.Optional(Millis),
    maxStale: Type.Optional(Type.Number({ minimum: 0 })),
    maxBytes: Type.Optional(Type.Integer({ minimum: 1024 }))
  }, { additionalProperties: false })),
  tokenCache: Type.Optional(Type.Object({
    max: Type.Optional(Type.Integer({ minimum: 0 }))
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

type SchemaOptions = Static<typeof EntraAuthOptionsSchema>

/** Options of the plugin and of `createEntraVerifier`. All durations are milliseconds. */
export interface EntraAuthOptions extends Omit<SchemaOptions, 'now' | 'dispatcher' | 'tokenVersions' | 'rejectionLogLevel' | 'decorator' | 'tokenSources' | 'onAuthSuccess' | 'onAuthFailure' | 'openapi'> {
  /** Accepted Entra `ver` values. Default both. */
  tokenVersions?: Array<'1.0' | '2.0'>
  /** Clock for every token time check, in milliseconds. Default `Date.now`. */
  now?: () => number
  /** undici Dispatcher for discovery and JWKS fetches (the test kit's fake Entra passes one). */
  dispatcher?: Dispatcher
  /** Level rejections are logged at (plugin only). Default `info`. */
  rejectionLogLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /**
   * Name of the instance decorator (plugin only). Default `entraAuth`. Give each registration its
   * own name to protect two APIs in one context, and declare the name's type yourself.
   */
  decorator?: string
  /**
   * Where else to look for the access token, in order, when the request has no `Authorization`
   * header (plugin only). Default none: header only. `{ cookie: name }` reads `request.cookies`
   * (`@fastify/cookie`); `{ session: key }` reads `request.session` (`@fastify/session` or
   * `@fastify/secure-session`). Browsers send cookies by themselves: protect such routes against
   * CSRF. The query string is never read.
   */
  tokenSources?: EntraTokenSource[]
  /** Called once per admitted request (plugin only), for metrics. Must not throw; errors are logged. */
  onAuthSuccess?: (request: FastifyRequest, token: EntraToken) => void
  /** Called once per refused request or failed strategy (plugin only), for metrics. Must not throw. */
  onAuthFailure?: (request: FastifyRequest, error: EntraAuthError) => void
  /**
   * OpenAPI contribution when `@fastify/swagger` is registered (plugin only); `false` turns it off.
   * `securityScheme`: component name, default the decorator name; `scopePrefix`: prepended to each
   * scope, default `api://{clientId}/`; `description` of the security scheme.
   */
  openapi?: false | EntraOpenApiOptions
}

/** A place to read the access token from when there is no `Authorization` header. */
export type EntraTokenSource = { cookie: string } | { session: string }

/** Options of the OpenAPI contribution. */
export interface EntraOpenApiOptions {
  /** Name of the security scheme in `components.securitySchemes`. Default the decorator name. */
  securityScheme?: string
  /** Prepended to each scope word. Default `api://{clientId}/`. */
  scopePrefix?: string
  /** Description of the security scheme. */
  description?: string
}

export interface KeyTimings {
  /** How long fetched discovery and keys are fresh. */
  readonly ttl: number
  /** Minimum gap between refreshes caused by an unknown `kid`. */
  readonly cooldown: number
  /** Deadline of one discovery or JWKS fetch. */
  readonly timeout: number
  /** How long past `ttl` the last good copy keeps serving while the provider is failing. */
  readonly maxStale: number
  /** Largest discovery document we read. */
  readonly maxBytes: number
}

export interface ResolvedOptions {
  readonly clientId: string
  readonly discoveryUrl: URL
  readonly audiences: ReadonlySet<string>
  readonly tokenVersions: ReadonlySet<string>
  readonly allowedTenants: ReadonlySet<string> | null
  readonly allowedSubjects: ReadonlySet<string> | null
  readonly allowedApps: ReadonlySet<string> | null
  readonly contact: string | undefined
  readonly clockTolerance: number
  readonly now: () => number
  readonly jwks: KeyTimings
  readonly tokenCacheMax: number
  readonly dispatcher: Dispatcher | undefined
  readonly rejectionLogLevel: NonNullable<EntraAuthOptions['rejectionLogLevel']>
  readonly decorator: string
  readonly tokenSources: readonly EntraTokenSource[]
  readonly onAuthSuccess: EntraAuthOptions['onAuthSuccess']
  readonly onAuthFailure: EntraAuthOptions['onAuthFailure']
  readonly openapi: false | { readonly securityScheme: string, readonly scopePrefix: string, readonly description: string | undefined }
}

/**
 * Defaults follow Microsoft's key-rollover guidance: refresh keys about daily, on an unknown
 * `kid` refresh at once but at most every 5 minutes, keep the last good keys through an outage.
 * https://learn.microsoft.com/entra/identity-platform/signing-key-rollover
 */
export const DEFAULT_JWKS: KeyTimings = Object.freeze({
  ttl: 24 * 60 * 60 * 1000,
  cooldown: 5 * 60 * 1000,
  timeout: 5000,
  maxStale: 24 * 60 * 60 * 1000,
  maxBytes: 1024 * 1024
})

export const DEFAULT_TOKEN_CACHE_MAX = 4096

/** Register options Fastify itself passes to every plugin; they are not ours to refuse. */
const FASTIFY_REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers']

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9._-]+)?$/
const HOST = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:\d{1,5})?$/
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]'])

function fail (message: string): never {
  throw new TypeError(`fastify-entra-auth: ${message}`)
}

function describePath (path: string): string {
  return path === '' ? 'options' : `option '${path.slice(1).replaceAll('/', '.')}'`
}

/** Parses a discovery URL: https, or http on loopback only (for the embedded fake Entra). */
function discoveryUrlOf (value: string, name: string): URL {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    fail(`option '${name}' must be an absolute URL, got '${value}'`)
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
    fail(`option '${name}' must use https (http is allowed for localhost only), got '${value}'`)
  }
  if (url.username !== '' || url.password !== '') fail(`option '${name}' must not carry credentials`)
  url.hash = ''
  return url
}

function authorityHostOf (value: string | undefined): string {
  if (value === undefined) return 'login.microsoftonline.com'
  const host = value.replace(/^https:\/\//i, '').replace(/\/+$/, '')
  if (!HOST.test(host)) fail(`option 'authorityHost' must be a host name such as 'login.microsoftonline.us', got '${value}'`)
  return host.toLowerCase()
}

function setOrNull (list: string[] | undefined): ReadonlySet<string> | null {
  return list === undefined || list.length === 0 ? null : new Set(list)
}

/**
 * Checks options against the schema and cross-field rules, fills defaults and freezes the result.
 * Throws a `TypeError` naming the offending option: misconfiguration must fail at register time.
 */
export function resolveOptions (input: unknown): ResolvedOptions {
  if (input === null || typeof input !== 'object') fail('options must be an object with at least clientId and tenant or oidcEndpoint')
  const candidate: Record<string, unknown> = { ...(input as Record<string, unknown>) }
  for (const key of FASTIFY_REGISTER_KEYS) delete candidate[key]

  const unknown = Object.keys(candidate).find(key => !(key in EntraAuthOptionsSchema.properties))
  if (unknown !== undefined) fail(`unknown option '${unknown}'`)
  const firstError = Value.Errors(EntraAuthOptionsSchema, candidate).First()
  if (firstError !== undefined) {
    if (firstError.path.startsWith('/tokenVersions')) fail("option 'tokenVersions' must be a non-empty list of '1.0' and/or '2.0'")
    fail(`${describePath(firstError.path)} is invalid: ${firstError.message}`)
  }
  const options = candidate as unknown as EntraAuthOptions

  if (options.now !== undefined && typeof options.now !== 'function') fail("option 'now' must be a function returning milliseconds")
  for (const hook of ['onAuthSuccess', 'onAuthFailure'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') fail(`option '${hook}' must be a function`)
  }
  if (options.dispatcher !== undefined && typeof (options.dispatcher as { dispatch?: unknown }).dispatch !== 'function') {
    fail("option 'dispatcher' must be an undici Dispatcher")
  }
  if ((options.oidcEndpoint === undefined) === (options.tenant === undefined)) {
    fail("exactly one of the options 'oidcEndpoint' and 'tenant' is required")
  }
  if (options.authorityHost !== undefined && options.tenant === undefined) {
    fail("option 'authorityHost' only applies with 'tenant'; put the host into 'oidcEndpoint' instead")
  }

  let discoveryUrl: URL
  if (options.tenant !== undefined) {
    if (!TENANT.test(options.tenant)) fail(`option 'tenant' must be a tenant ID, domain, 'organizations' or 'common', got '${options.tenant}'`)
    const host = authorityHostOf(options.authorityHost)
    discoveryUrl = discoveryUrlOf(`https://${host}/${options.tenant}/v2.0/.well-known/openid-configuration`, 'tenant')
  } else {
    discoveryUrl = discoveryUrlOf(options.oidcEndpoint as string, 'oidcEndpoint')
  }

  const clientId = options.clientId
  const decorator = options.decorator ?? 'entraAuth'
  const jwks = Object.freeze({ ...DEFAULT_JWKS, ...options.jwks })

  return Object.freeze({
    clientId,
    discoveryUrl,
    // Entra puts the client ID (v2, and v1 when so requested) or the App ID URI (v1) into `aud`.
    audiences: new Set([clientId, `api://${clientId}`, ...(options.audiences ?? [])]),
    tokenVersions: new Set(options.tokenVersions ?? ['1.0', '2.0']),
    allowedTenants: setOrNull(options.allowedTenants),
    allowedSubjects: setOrNull(options.allowedSubjects),
    allowedApps: setOrNull(options.allowedApps),
    contact: options.contact,
    clockTolerance: options.clockTolerance ?? 0,
    now: options.now ?? Date.now,
    jwks,
    tokenCacheMax: options.tokenCache?.max ?? DEFAULT_TOKEN_CACHE_MAX,
    dispatcher: options.dispatcher,
    rejectionLogLevel: options.rejectionLogLevel ?? 'info',
    decorator,
    tokenSources: Object.freeze((options.tokenSources ?? []).map(source => Object.freeze({ ...source }))),
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
