import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { bearerToken } from './bearer.js'
import { compileRequirement, type ScopeRequirement } from './entra/scopes.js'
import { resolveOptions, type EntraAuthOptions } from './options.js'
import { EntraAuthError } from './problems.js'
import type { EntraToken, Rfc7662Introspection } from './token.js'
import { buildVerifier, type EntraVerifier, type EntraVerifierState } from './verifier.js'

/** `fastify.entraAuth`: makes route hooks, and shares the plugin's verifier. */
export interface EntraAuthDecorator {
  /**
   * A hook for `onRequest` or `preHandler` that admits only requests with a valid Entra access
   * token meeting `requirement`, and answers every other request with a problem reply.
   *
   * @example
   * ```ts
   * app.get('/files', { onRequest: app.entraAuth(['Files.Read', 'Files.ReadWrite']) }, handler)
   * ```
   */
  (requirement?: ScopeRequirement): onRequestAsyncHookHandler
  /** Validates a token with the plugin's verifier (caches are shared). */
  verify: (token: string) => Promise<EntraToken>
  /** RFC 7662 introspection with the plugin's verifier. */
  introspect: (token: string) => Promise<Rfc7662Introspection>
  /** Key-store and token-cache state, for health checks. */
  state: () => EntraVerifierState
  /** The underlying verifier. */
  verifier: EntraVerifier
}

declare module 'fastify' {
  interface FastifyInstance {
    entraAuth: EntraAuthDecorator
  }
  interface FastifyRequest {
    /** The validated Entra access token; `null` unless a fastify-entra-auth hook admitted the request. */
    entraToken: EntraToken | null
  }
}

/** Sends `error` as an RFC 9457 problem with its RFC 6750 challenge (contract §6). */
function sendProblem (reply: FastifyReply, error: EntraAuthError, contact: string | undefined): FastifyReply {
  return reply
    .code(error.status)
    .header('www-authenticate', error.challenge())
    .header('cache-control', 'no-store')
    .type('application/problem+json')
    // A Buffer, so Fastify sends the media type exactly as RFC 9457 §3 registers it (no charset).
    .send(Buffer.from(JSON.stringify(error.toProblem(contact))))
}

async function entraAuthPlugin (fastify: FastifyInstance, opts: EntraAuthOptions): Promise<void> {
  const options = resolveOptions(opts)
  const verifier = buildVerifier(options, { logger: fastify.log })
  const level = options.rejectionLogLevel

  /** Any failure becomes a problem: client-caused ones never surface as 5xx. */
  function asProblem (request: FastifyRequest, err: unknown): EntraAuthError {
    if (err instanceof EntraAuthError) return err
    // An input we did not foresee made something throw: refuse the token, and say so in the log.
    request.log.error({ err }, 'fastify-entra-auth: unexpected error while validating a token')
    return new EntraAuthError('auth_token_invalid')
  }

  function entraAuth (requirement?: ScopeRequirement): onRequestAsyncHookHandler {
    const required = compileRequirement(requirement)
    return async function entraAuthHook (request: FastifyRequest, reply: FastifyReply) {
      try {
        const token = await verifier.verify(bearerToken(request.headers.authorization))
        if (!required.isSatisfiedBy(token)) {
          throw new EntraAuthError('auth_token_insufficient_scopes', `This route needs ${required.description}. Request a token with them and try again.`, { requiredScope: required.scopeAttribute })
        }
        request.entraToken = token
      } catch (err) {
        const problem = asProblem(request, err)
        if (level !== 'silent') request.log[level]({ problem: problem.type, status: problem.status }, 'fastify-entra-auth: request rejected')
        return sendProblem(reply, problem, options.contact)
      }
    }
  }

  const decorator: EntraAuthDecorator = Object.assign(entraAuth, {
    verify: verifier.verify,
    introspect: verifier.introspect,
    state: verifier.state,
    verifier
  })

  fastify.decorate('entraAuth', decorator)
  if (!fastify.hasRequestDecorator('entraToken')) fastify.decorateRequest('entraToken', null)

  fastify.addHook('onReady', async () => {
    // Fetch keys before the first request, but never fail or stall start-up on the provider.
    if (!await verifier.warm()) {
      fastify.log.warn({ discoveryUrl: options.discoveryUrl.href }, 'fastify-entra-auth: identity provider not reachable at start-up; protected routes answer 503 until it is')
    }
  })
  fastify.addHook('onClose', async () => { await verifier.close() })
}

/**
 * The Fastify plugin. Register once per protected API; then protect routes with
 * `fastify.entraAuth(requirement)`.
 *
 * @example
 * ```ts
 * await app.register(entraAuth, { clientId: '…', tenant: 'contoso.onmicrosoft.com' })
 * app.get('/me', { onRequest: app.entraAuth() }, async (request) => request.entraToken!.claims)
 * ```
 */
export const entraAuth = fp(entraAuthPlugin, { name: 'fastify-entra-auth', fastify: '5.x' })
