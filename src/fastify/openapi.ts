/** OpenAPI through @fastify/swagger's public options: it has no plugin API for schemes (fastify/fastify-swagger#803). */
import type { RouteOptions } from 'fastify'
import type { CompiledRequirement } from '../entra/scopes.js'
import { resolveOptions, type EntraAuthOptions } from '../options.js'

const kRouteHook = Symbol('fastify-entra-auth.routeHook')

export interface RouteHookInfo {
  readonly owner: symbol
  readonly requirement: CompiledRequirement
  readonly optional: boolean
}

type SecurityRequirement = Record<string, string[]>

export function tagHook<T extends object> (hook: T, info: RouteHookInfo): T {
  Object.defineProperty(hook, kRouteHook, { value: info })
  return hook
}

export const ROUTE_HOOKS = ['onRequest', 'preParsing', 'preValidation', 'preHandler', 'preSerialization', 'onSend', 'onResponse', 'onTimeout', 'onError'] as const

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

/** App-role alternatives are requested with `.default`: client credentials cannot ask for single roles. */
export function securityRequirements (scheme: string, scopePrefix: string, info: RouteHookInfo): SecurityRequirement[] {
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

export function documentRoute (route: RouteOptions, security: SecurityRequirement[]): void {
  const schema = (route.schema ?? {}) as Record<string, unknown>
  if (schema.security !== undefined) return
  const documented: Record<string, unknown> = { ...schema, security }
  route.schema = documented
}

export function endpointsFromDiscoveryUrl (discoveryUrl: URL): { authorizationUrl: string, tokenUrl: string } {
  const authority = discoveryUrl.href.replace(/[?#].*$/, '').replace(/\/\.well-known\/openid-configuration$/, '').replace(/\/v2\.0$/, '')
  return { authorizationUrl: `${authority}/oauth2/v2.0/authorize`, tokenUrl: `${authority}/oauth2/v2.0/token` }
}

type Doc = Record<string, unknown>

function isObject (value: unknown): value is Doc {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

const ALL_CONSENTED = 'All permissions of this API consented for the client'
const APPLICATION = 'Application permissions (app roles) granted to the client'

interface Scheme {
  readonly name: string
  readonly scopePrefix: string
  readonly description: string | undefined
  readonly authorizationUrl: string
  readonly tokenUrl: string
}

function definitionOf (scheme: Scheme, scopes: ReadonlyMap<string, string>, appOnly: boolean, swagger2: boolean): Doc {
  const { authorizationUrl, tokenUrl, description } = scheme
  const definition: Doc = swagger2
    ? { type: 'oauth2', flow: 'accessCode', authorizationUrl, tokenUrl, scopes: Object.fromEntries(scopes) }
    : {
        type: 'oauth2',
        flows: {
          authorizationCode: { authorizationUrl, tokenUrl, scopes: Object.fromEntries(scopes) },
          ...(appOnly ? { clientCredentials: { tokenUrl, scopes: { [`${scheme.scopePrefix}.default`]: APPLICATION } } } : {})
        }
      }
  if (description !== undefined) definition.description = description
  return definition
}

function completeDocument (doc: Doc, scheme: Scheme): Doc {
  const appScope = `${scheme.scopePrefix}.default`
  const scopes = new Map<string, string>([[appScope, ALL_CONSENTED]])
  let appOnly = false
  for (const item of Object.values(isObject(doc.paths) ? doc.paths : {})) {
    for (const operation of Object.values(isObject(item) ? item : {})) {
      const security: unknown = isObject(operation) ? operation.security : undefined
      for (const requirement of Array.isArray(security) ? security : []) {
        const named: unknown = isObject(requirement) ? requirement[scheme.name] : undefined
        for (const scope of Array.isArray(named) ? named : []) {
          if (typeof scope !== 'string') continue
          if (!scope.startsWith(scheme.scopePrefix)) {
            throw new TypeError(`fastify-entra-auth: an operation names the scope '${scope}' under the OpenAPI security scheme '${scheme.name}', whose scopes start with '${scheme.scopePrefix}'; give each registration of the plugin its own option 'openapi.securityScheme' (or 'decorator'), and add each with withEntraSecurity`)
          }
          if (scope === appScope) appOnly = true
          else scopes.set(scope, `Delegated permission ${scope.slice(scheme.scopePrefix.length)}`)
        }
      }
    }
  }
  const swagger2 = doc.swagger === '2.0'
  const definition = definitionOf(scheme, scopes, appOnly, swagger2)
  if (swagger2) {
    return { ...doc, securityDefinitions: { ...(isObject(doc.securityDefinitions) ? doc.securityDefinitions : {}), [scheme.name]: definition } }
  }
  const components = isObject(doc.components) ? doc.components : {}
  const schemes = isObject(components.securitySchemes) ? components.securitySchemes : {}
  return { ...doc, components: { ...components, securitySchemes: { ...schemes, [scheme.name]: definition } } }
}

type TransformObject = (documentObject: { openapiObject?: Doc, swaggerObject?: Doc }) => unknown

/**
 * @fastify/swagger's options with the plugin's OAuth2 security scheme added (a new object).
 * @example
 * ```ts
 * import { withEntraSecurity } from 'fastify-entra-auth'
 * await app.register(swagger, withEntraSecurity({ openapi: { info: { title: 'Files API', version: '1.0.0' } } }, options))
 * await app.register(entraAuth, options)
 * ```
 */
export function withEntraSecurity<T extends object> (swaggerOptions: T, options: EntraAuthOptions): T {
  if (swaggerOptions === null || typeof swaggerOptions !== 'object') throw new TypeError('fastify-entra-auth: withEntraSecurity takes the options of @fastify/swagger, then the options of the plugin')
  const resolved = resolveOptions(options)
  if (resolved.openapi === false) throw new TypeError("fastify-entra-auth: withEntraSecurity was given options with 'openapi: false'; leave it out to document the routes")
  const scheme: Scheme = {
    name: resolved.openapi.securityScheme,
    scopePrefix: resolved.openapi.scopePrefix,
    description: resolved.openapi.description,
    ...endpointsFromDiscoveryUrl(resolved.discoveryUrl)
  }
  const input = swaggerOptions as Doc & { transformObject?: TransformObject }
  const previous = input.transformObject
  if (previous !== undefined && previous !== null && typeof previous !== 'function') throw new TypeError("fastify-entra-auth: the swagger option 'transformObject' must be a function")

  const swagger2 = !isObject(input.openapi)
  const section = (swagger2 ? input.swagger ?? {} : input.openapi) as Doc
  if (!isObject(section)) throw new TypeError("fastify-entra-auth: the swagger option 'swagger' must be an object")
  const placeholder = definitionOf(scheme, new Map([[`${scheme.scopePrefix}.default`, ALL_CONSENTED]]), false, swagger2)
  let withScheme: Doc
  if (swagger2) {
    const definitions = isObject(section.securityDefinitions) ? section.securityDefinitions : {}
    if (definitions[scheme.name] !== undefined) throw clash(scheme.name)
    withScheme = { ...section, securityDefinitions: { ...definitions, [scheme.name]: placeholder } }
  } else {
    const components = isObject(section.components) ? section.components : {}
    const schemes = isObject(components.securitySchemes) ? components.securitySchemes : {}
    if (schemes[scheme.name] !== undefined) throw clash(scheme.name)
    withScheme = { ...section, components: { ...components, securitySchemes: { ...schemes, [scheme.name]: placeholder } } }
  }

  const transformObject: TransformObject = (documentObject) => {
    const key = documentObject.openapiObject !== undefined ? 'openapiObject' : 'swaggerObject'
    const doc = documentObject[key]
    const completed = isObject(doc) ? completeDocument(doc, scheme) : doc
    return previous === undefined || previous === null ? completed : previous({ ...documentObject, [key]: completed })
  }
  return { ...swaggerOptions, [swagger2 ? 'swagger' : 'openapi']: withScheme, transformObject }
}

function clash (name: string): TypeError {
  return new TypeError(`fastify-entra-auth: the swagger options already define the security scheme '${name}'; give this registration its own option 'openapi.securityScheme' (or 'decorator')`)
}
