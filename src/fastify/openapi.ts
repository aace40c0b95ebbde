/**
 * OpenAPI contribution for `@fastify/swagger`: an OAuth2 security scheme for Entra, and each
 * protected operation's `security`, both derived from the route hooks — the user never repeats a
 * scope.
 *
 * @fastify/swagger 9 has no API for a plugin to add a security scheme (fastify/fastify-swagger#803),
 * and it throws when an operation names a scheme its options don't define. So a protected route's
 * schema gets an `x-entra-auth` marker (extensions are copied into the operation as they are), and
 * the `swagger()` decorator is wrapped to turn markers into `security` and to add the scheme.
 */
import type { RouteOptions } from 'fastify'
import type { CompiledRequirement } from '../entra/scopes.js'

/** Route-schema extension carrying `{ [scheme]: securityRequirements }` until the document is built. */
export const MARKER = 'x-entra-auth'

const kRouteHook = Symbol('fastify-entra-auth.routeHook')

/** What a route hook tells the OpenAPI contribution. */
export interface RouteHookInfo {
  /** The registration that made the hook. */
  readonly owner: symbol
  readonly requirement: CompiledRequirement
  readonly optional: boolean
}

type SecurityRequirement = Record<string, string[]>

/** Tags a hook function so `onRoute` can recognise it among a route's hooks. */
export function tagHook<T extends object> (hook: T, info: RouteHookInfo): T {
  Object.defineProperty(hook, kRouteHook, { value: info })
  return hook
}

/** Route hooks Fastify runs with `(request, reply)`; the first four run before the handler and can protect it. */
export const ROUTE_HOOKS = ['onRequest', 'preParsing', 'preValidation', 'preHandler', 'preSerialization', 'onSend', 'onResponse', 'onTimeout', 'onError'] as const

/** The first hook of `owner` among a route's own hooks. */
export function findHook (route: RouteOptions, owner: symbol): RouteHookInfo | undefined {
  for (const name of ROUTE_HOOKS.slice(0, 4)) {
    const value: unknown = route[name]
    for (const hook of Array.isArray(value) ? value : [value]) {
      const info = typeof hook === 'function' ? (hook as { [kRouteHook]?: RouteHookInfo })[kRouteHook] : undefined
      if (info !== undefined && info.owner === owner) return info
    }
  }
  return undefined
}

/** Settings of one registration's contribution. */
export interface OpenApiContribution {
  readonly scheme: string
  readonly scopePrefix: string
  readonly description: string | undefined
  /** Authorization and token endpoints, read when the document is built. */
  readonly endpoints: () => { authorizationUrl: string, tokenUrl: string }
}

/**
 * OpenAPI security requirements (alternatives, OR) for a route requirement. Each alternative of
 * the requirement becomes one requirement object whose scopes must all be granted (AND). App-role
 * alternatives are requested with `.default` (client credentials cannot ask for single roles).
 */
export function securityRequirements (contribution: OpenApiContribution, info: RouteHookInfo): SecurityRequirement[] {
  const { scheme, scopePrefix } = contribution
  const list: SecurityRequirement[] = []
  const seen = new Set<string>()
  const add = (scopes: string[]): void => {
    const key = scopes.join(' ')
    if (seen.has(key)) return
    seen.add(key)
    list.push({ [scheme]: scopes })
  }
  if (info.requirement.alternatives.length === 0) add([])
  for (const alternative of info.requirement.alternatives) {
    add(alternative.source === 'roles' ? [`${scopePrefix}.default`] : alternative.words.map(word => `${scopePrefix}${word}`))
  }
  // An empty requirement object makes the security optional (OpenAPI 3 §4.8.30).
  if (info.optional) list.push({})
  return list
}

/** Adds the marker to a route's schema (a copy: schema objects are often shared between routes). */
export function markRoute (route: RouteOptions, contribution: OpenApiContribution, info: RouteHookInfo): boolean {
  const schema = (route.schema ?? {}) as Record<string, unknown>
  if (schema.security !== undefined) return false
  const marker = (schema[MARKER] ?? {}) as Record<string, SecurityRequirement[]>
  const marked: Record<string, unknown> = { ...schema, [MARKER]: { ...marker, [contribution.scheme]: securityRequirements(contribution, info) } }
  route.schema = marked
  return true
}

type Doc = Record<string, unknown>

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/**
 * Turns this contribution's markers into operation `security` (unless the operation has its own)
 * and adds the security scheme with every scope the operations name. Never mutates the options
 * object @fastify/swagger was given.
 */
export function patchDocument (doc: Doc, contribution: OpenApiContribution): void {
  const { scheme, scopePrefix } = contribution
  const appScope = `${scopePrefix}.default`
  const delegated = new Map<string, string>([[appScope, 'All permissions of this API consented for the client']])
  let appOnly = false
  const paths = isObject(doc.paths) ? doc.paths : {}
  for (const item of Object.values(paths)) {
    if (!isObject(item)) continue
    for (const operation of Object.values(item)) {
      if (!isObject(operation) || !isObject(operation[MARKER])) continue
      const { [scheme]: security, ...others } = operation[MARKER] as Record<string, SecurityRequirement[] | undefined>
      if (security === undefined) continue
      if (Object.keys(others).length === 0) delete operation[MARKER]
      else operation[MARKER] = others
      if (operation.security === undefined) operation.security = security
      for (const requirement of security) {
        for (const scope of requirement[scheme] ?? []) {
          if (scope === appScope) appOnly = true
          else delegated.set(scope, `Delegated permission ${scope.slice(scopePrefix.length)}`)
        }
      }
    }
  }

  const { authorizationUrl, tokenUrl } = contribution.endpoints()
  const scopes = Object.fromEntries(delegated)
  if (doc.swagger === '2.0') {
    const definitions = isObject(doc.securityDefinitions) ? doc.securityDefinitions : {}
    if (definitions[scheme] !== undefined) return
    const definition: Doc = { type: 'oauth2', flow: 'accessCode', authorizationUrl, tokenUrl, scopes }
    if (contribution.description !== undefined) definition.description = contribution.description
    doc.securityDefinitions = { ...definitions, [scheme]: definition }
    return
  }
  const components = isObject(doc.components) ? doc.components : {}
  const schemes = isObject(components.securitySchemes) ? components.securitySchemes : {}
  if (schemes[scheme] !== undefined) return
  const flows: Doc = { authorizationCode: { authorizationUrl, tokenUrl, scopes } }
  if (appOnly) flows.clientCredentials = { tokenUrl, scopes: { [appScope]: 'Application permissions (app roles) granted to the client' } }
  const definition: Doc = { type: 'oauth2', flows }
  if (contribution.description !== undefined) definition.description = contribution.description
  doc.components = { ...components, securitySchemes: { ...schemes, [scheme]: definition } }
}

/** Entra's OAuth 2.0 endpoints next to a discovery URL: `{authority}/oauth2/v2.0/{authorize,token}`. */
export function endpointsFromDiscoveryUrl (discoveryUrl: URL): { authorizationUrl: string, tokenUrl: string } {
  const authority = discoveryUrl.href.replace(/[?#].*$/, '').replace(/\/\.well-known\/openid-configuration$/, '').replace(/\/v2\.0$/, '')
  return { authorizationUrl: `${authority}/oauth2/v2.0/authorize`, tokenUrl: `${authority}/oauth2/v2.0/token` }
}

type SwaggerFn = (opts?: { yaml?: boolean }) => unknown

const schemesByOwner = new WeakMap<object, Set<string>>()

/**
 * Wraps the `swagger()` decorator on the instance that owns it (an ancestor of `instance`, when
 * @fastify/swagger is registered higher up), so every caller — the app, @fastify/swagger-ui,
 * Scalar — gets the patched document. Returns false when there is no `swagger` decorator.
 *
 * @throws TypeError when another registration already contributes a scheme of the same name
 */
export function wrapSwagger (instance: object, contribution: OpenApiContribution): boolean {
  let owner: object | null = instance
  while (owner !== null && !Object.hasOwn(owner, 'swagger')) owner = Object.getPrototypeOf(owner) as object | null
  if (owner === null) return false
  const host = owner as { swagger: unknown }
  if (typeof host.swagger !== 'function') return false
  const names = schemesByOwner.get(owner) ?? new Set<string>()
  if (names.has(contribution.scheme)) {
    throw new TypeError(`fastify-entra-auth: two registrations contribute the OpenAPI security scheme '${contribution.scheme}'; give each its own option 'openapi.securityScheme' (or 'decorator')`)
  }
  names.add(contribution.scheme)
  schemesByOwner.set(owner, names)

  const original = host.swagger as SwaggerFn
  const patched = new WeakSet<object>()
  host.swagger = function swagger (opts?: { yaml?: boolean }): unknown {
    // Outer wrappers ask for the object; YAML is made once, from the fully patched object.
    const doc = original.call(this)
    if (isObject(doc) && !patched.has(doc)) {
      patchDocument(doc, contribution)
      patched.add(doc)
    }
    return opts?.yaml === true ? toYaml(doc) : doc
  }
  return true
}

function yamlString (value: string): string {
  // JSON's escapes are a subset of YAML's double-quoted ones; U+2028/9 are escaped for older parsers.
  return JSON.stringify(value).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')
}

function yamlLines (value: unknown): string[] {
  if (Array.isArray(value)) {
    if (value.length === 0) return ['[]']
    return value.flatMap(item => {
      const [first, ...rest] = yamlLines(item)
      return [`- ${first ?? ''}`, ...rest.map(line => `  ${line}`)]
    })
  }
  if (isObject(value)) {
    const entries = Object.entries(value)
    if (entries.length === 0) return ['{}']
    return entries.flatMap(([key, item]) => {
      const lines = yamlLines(item)
      const nested = (Array.isArray(item) && item.length > 0) || (isObject(item) && Object.keys(item).length > 0)
      return nested ? [`${yamlString(key)}:`, ...lines.map(line => `  ${line}`)] : [`${yamlString(key)}: ${lines[0] ?? 'null'}`]
    })
  }
  if (typeof value === 'string') return [yamlString(value)]
  if (typeof value === 'number' || typeof value === 'boolean') return [String(value)]
  return ['null']
}

/** Block-style YAML of a JSON value (the document is JSON data: parsed back, it is equal). */
export function toYaml (value: unknown): string {
  return `${yamlLines(JSON.parse(JSON.stringify(value) ?? 'null')).join('\n')}\n`
}
