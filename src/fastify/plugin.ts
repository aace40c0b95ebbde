import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { keyStoreClockOf, kCheckUncached, kFromCache, kVerifier } from '../core/internal.js'
import { checkRequirement, compileRequirement, type CompiledRequirement, type ScopeRequirement } from '../entra/scopes.js'
import { verifyTracing } from '../core/tracing.js'
import { documentRoute, findHook, ROUTE_HOOKS, securityRequirements, tagHook } from './openapi.js'
import { EntraAuthOptionsError, resolveOptions, type EntraAuthOptions } from '../options.js'
import { asAuthError, EntraAuthError } from '../entra/problems.js'
import { sendProblemReply } from './problem-reply.js'
import { checkBearerCharset, findToken, isFromHeader } from './credentials.js'
import type { EntraToken, Rfc7662Introspection } from '../entra/token.js'
import { buildVerifier, type EntraVerifier, type EntraVerifierState } from '../verifier.js'

/** `fastify.entraAuth`: makes route hooks, and shares the plugin's verifier. */
export interface EntraAuthDecorator {
  /**
   * A hook that admits only requests with a valid token meeting `requirement`; others get a problem reply.
   * @example
   * ```ts
   * app.get('/files', { onRequest: app.entraAuth(['Files.Read', 'Files.ReadWrite']) }, handler)
   * ```
   */
  (requirement?: ScopeRequirement, options?: EntraAuthHookOptions): onRequestAsyncHookHandler
  /**
   * The same check as a `@fastify/auth` strategy: it throws the `EntraAuthError` instead of replying.
   * @example
   * ```ts
   * // Last: when every strategy fails, @fastify/auth passes on the last one's error.
   * app.get('/data', { onRequest: app.auth([app.verifyApiKey, app.entraAuth.strategy(['Data.Read'])]) }, handler)
   * ```
   */
  strategy: (requirement?: ScopeRequirement, options?: EntraAuthHookOptions) => onRequestAsyncHookHandler
  /** Sends `error` the way the route hooks do (problem JSON + challenge), e.g. from an error handler. */
  sendProblem: (reply: FastifyReply, error: EntraAuthError) => FastifyReply
  /** Validates a token with the plugin's verifier (caches are shared). */
  verify: (token: string) => Promise<EntraToken>
  /** Says step by step why the plugin's verifier admits or refuses a token; never rejects for a bad token. */
  explain: EntraVerifier['explain']
  /** RFC 7662 introspection with the plugin's verifier. */
  introspect: (token: string) => Promise<Rfc7662Introspection>
  /** Key-store and token-cache state, for health checks. */
  state: () => EntraVerifierState
  /** The underlying verifier. */
  verifier: EntraVerifier
}

/** Options of one route hook. */
export interface EntraAuthHookOptions {
  /** Admit requests without credentials (`request.entraToken === null`); bad credentials are still refused. Default `false`. */
  optional?: boolean
}

function hookOptionsOf (value: unknown): { optional: boolean } {
  if (value === undefined) return { optional: false }
  if (value === null || typeof value !== 'object') throw new TypeError('fastify-entra-auth: route hook options must be an object such as { optional: true }')
  const { optional, ...rest } = value as EntraAuthHookOptions
  const extra = Object.keys(rest)[0]
  if (extra !== undefined) throw new TypeError(`fastify-entra-auth: unknown route hook option '${extra}'`)
  if (optional !== undefined && typeof optional !== 'boolean') throw new TypeError("fastify-entra-auth: route hook option 'optional' must be a boolean")
  return { optional: optional ?? false }
}

function notify<T> (callback: ((request: FastifyRequest, value: T) => unknown) | undefined, request: FastifyRequest, value: T): void {
  if (callback === undefined) return
  const report = (err: unknown): void => { request.log.error({ err }, `fastify-entra-auth: ${callback.name || 'callback'} failed`) }
  try {
    const result = callback(request, value)
    if (result instanceof Promise) result.catch(report)
  } catch (err) {
    report(err)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    entraAuth: EntraAuthDecorator
  }
  interface FastifyRequest {
    /** The validated token once a fastify-entra-auth hook admitted the request; test it with `== null`. */
    entraToken: EntraToken | null
  }
}

export const HOOK_NOT_CALLED = 'FST_ENTRA_AUTH_HOOK_NOT_CALLED'

function hookNotCalled (name: string, where: string): TypeError {
  const error = new TypeError(`fastify-entra-auth: ${where} uses fastify.${name} as a hook without calling it; call it to get the hook: { onRequest: fastify.${name}() }, or fastify.${name}(['Scope']) to require scopes`)
  return Object.assign(error, { code: HOOK_NOT_CALLED })
}

function isRequest (value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'raw' in value && 'routeOptions' in value
}

function sendProblem (reply: FastifyReply, error: EntraAuthError, contact: string | undefined): FastifyReply {
  return sendProblemReply(reply, error.status, error.challenge(), error.toProblem(contact))
}

/** For `auth_oidc_error`, `reason` (the fetch failure's message, never a token) shows the cause next to the 503. */
function rejectionLog (problem: EntraAuthError): { problem: string, status: number, reason?: string } {
  const fields: { problem: string, status: number, reason?: string } = { problem: problem.type, status: problem.status }
  if (problem.type === 'auth_oidc_error' && problem.cause !== undefined) {
    fields.reason = problem.cause instanceof Error ? problem.cause.message : String(problem.cause)
  }
  return fields
}

async function entraAuthPlugin (fastify: FastifyInstance, opts: EntraAuthOptions): Promise<void> {
  const options = resolveOptions(opts)
  if (fastify.hasDecorator(options.decorator)) {
    throw new EntraAuthOptionsError([`option 'decorator': this context already has a decorator '${options.decorator}' (another registration of this plugin, here or in a parent context, or another plugin's); give each registration its own name, e.g. { decorator: 'filesAuth' }`])
  }
  const scopePrefix = options.openapi === false ? `api://${options.clientId}/` : options.openapi.scopePrefix
  const verifier = buildVerifier(options, { logger: fastify.log, clock: keyStoreClockOf(opts) })
  const fromCache = verifier[kFromCache]
  const checkUncached = verifier[kCheckUncached]
  const level = options.rejectionLogLevel

  function asProblem (request: FastifyRequest, err: unknown): EntraAuthError {
    if (!(err instanceof EntraAuthError)) request.log.error({ err }, 'fastify-entra-auth: unexpected error while validating a token')
    return asAuthError(err)
  }

  function refused (request: FastifyRequest, err: unknown): EntraAuthError {
    const problem = asProblem(request, err)
    notify(options.onAuthFailure, request, problem)
    return problem
  }

  function admitted (request: FastifyRequest, required: CompiledRequirement, token: EntraToken): EntraToken {
    try {
      checkRequirement(required, token)
    } catch (err) {
      throw refused(request, err)
    }
    request.entraToken = token
    notify(options.onAuthSuccess, request, token)
    return token
  }

  function authenticate (request: FastifyRequest, required: CompiledRequirement, optional: boolean): EntraToken | null | Promise<EntraToken | null> {
    const carrier = request as FastifyRequest & { cookies?: Record<string, string | undefined>, session?: unknown }
    let raw: string | null = null
    let result: EntraToken | Promise<EntraToken> | undefined
    try {
      raw = findToken(carrier, options.tokenSources)
      if (raw === null) {
        if (optional) return null
        throw new EntraAuthError('auth_header_missing')
      }
      if (verifyTracing.hasSubscribers) {
        if (isFromHeader(carrier)) checkBearerCharset(raw)
        result = verifier.verify(raw)
      } else {
        result = fromCache(raw) ?? checkUncached(raw)
      }
    } catch (err) {
      throw refused(request, charsetFirst(carrier, raw, err))
    }
    if (result instanceof Promise) {
      const token = raw
      return result.then(admit => admitted(request, required, admit), (err: unknown) => { throw refused(request, charsetFirst(carrier, token, err)) })
    }
    return admitted(request, required, result)
  }

  /** RFC 6750 §2.1 alphabet first, checked only for a refused token: a verified one passes it anyway. */
  function charsetFirst (carrier: FastifyRequest, raw: string | null, err: unknown): unknown {
    if (raw === null || !isFromHeader(carrier)) return err
    try {
      checkBearerCharset(raw)
    } catch (charset) {
      return charset
    }
    return err
  }

  const owner = Symbol(options.decorator)

  function entraAuth (requirement?: ScopeRequirement, hookOptions?: EntraAuthHookOptions): onRequestAsyncHookHandler {
    if (isRequest(requirement)) throw hookNotCalled(options.decorator, 'a hook')
    const required = compileRequirement(requirement, scopePrefix)
    const { optional } = hookOptionsOf(hookOptions)
    // Not async: an admitted request goes on through `done`, without a promise; called without `done`, it returns one.
    const hook = function entraAuthHook (request: FastifyRequest, reply: FastifyReply, done?: HookHandlerDoneFunction): Promise<unknown> | undefined {
      let result: EntraToken | null | Promise<EntraToken | null>
      try {
        result = authenticate(request, required, optional)
      } catch (err) {
        reject(request, reply, err as EntraAuthError)
        return done === undefined ? Promise.resolve(reply) : undefined
      }
      if (result instanceof Promise) return result.then(() => undefined, (err: unknown) => reject(request, reply, err as EntraAuthError))
      if (done === undefined) return Promise.resolve()
      done()
      return undefined
    }
    return tagHook(hook as onRequestAsyncHookHandler, { owner, requirement: required, optional })
  }

  function reject (request: FastifyRequest, reply: FastifyReply, problem: EntraAuthError): FastifyReply {
    if (level !== 'silent') request.log[level](rejectionLog(problem), 'fastify-entra-auth: request rejected')
    return sendProblem(reply, problem, options.contact)
  }

  function strategy (requirement?: ScopeRequirement, hookOptions?: EntraAuthHookOptions): onRequestAsyncHookHandler {
    if (isRequest(requirement)) throw hookNotCalled(`${options.decorator}.strategy`, 'a hook')
    const required = compileRequirement(requirement, scopePrefix)
    const { optional } = hookOptionsOf(hookOptions)
    return tagHook(async function entraAuthStrategy (request: FastifyRequest) {
      await authenticate(request, required, optional)
    }, { owner, requirement: required, optional })
  }

  const decorator: EntraAuthDecorator = Object.assign(entraAuth, {
    strategy,
    sendProblem: (reply: FastifyReply, error: EntraAuthError) => sendProblem(reply, error, options.contact),
    verify: verifier.verify,
    explain: verifier.explain,
    introspect: verifier.introspect,
    state: verifier.state,
    verifier
  })

  fastify.decorate(options.decorator, decorator)
  if (!fastify.hasDecorator(kVerifier)) fastify.decorate(kVerifier, verifier)
  if (!fastify.hasRequestDecorator('entraToken')) fastify.decorateRequest('entraToken', null)

  // `onRequest: app.entraAuth` (uncalled) would answer every request with a 500.
  fastify.addHook('onRoute', (route) => {
    for (const name of ROUTE_HOOKS) {
      const hooks: unknown = route[name]
      for (const hook of Array.isArray(hooks) ? hooks : [hooks]) {
        if (hook === decorator || hook === strategy) {
          throw hookNotCalled(hook === decorator ? options.decorator : `${options.decorator}.strategy`, `route ${String(route.method)} ${route.url}`)
        }
      }
    }
  })

  if (options.openapi !== false) {
    const { securityScheme, scopePrefix: prefix } = options.openapi
    fastify.addHook('onRoute', function (route) {
      if (!this.hasDecorator('swagger')) return
      const info = findHook(route, owner)
      if (info !== undefined) documentRoute(route, securityRequirements(securityScheme, prefix, info))
    })
  }

  fastify.addHook('onReady', async () => {
    if (!await verifier.warm()) {
      fastify.log.warn({ discoveryUrl: options.discoveryUrl.href }, 'fastify-entra-auth: identity provider not reachable at start-up; protected routes answer 503 until it is')
    }
  })
  fastify.addHook('onClose', async () => { await verifier.close() })
}

/**
 * The Fastify plugin; protect routes with `fastify.entraAuth(requirement)`.
 * @example
 * ```ts
 * await app.register(entraAuth, { clientId: '…', tenant: 'contoso.onmicrosoft.com' })
 * app.get('/me', { onRequest: app.entraAuth() }, async (request) => request.entraToken!.claims)
 * ```
 */
export const entraAuth: FastifyPluginAsync<EntraAuthOptions> = fp(entraAuthPlugin, { name: 'fastify-entra-auth', fastify: '5.x' })
