/**
 * The example API: one open route and four protected ones. `npm start` runs it (see start.js);
 * test/e2e/example.test.ts tests it through `app.inject` with the test kit's fake Entra.
 *
 * Published code imports from 'fastify-entra-auth'; the example imports the build of this checkout.
 */
import Fastify from 'fastify'
import entraAuth from '../dist/index.js'
import { onBehalfOf } from './downstream.js'

/** The example's routes and what each one needs (printed by start.js and served by `/`). */
export const routes = [
  { path: '/', needs: 'nothing (open)' },
  { path: '/me', needs: 'any valid access token for this API' },
  { path: '/files', needs: "delegated scope 'Files.Read' (a user token)" },
  { path: '/reports', needs: "app role 'Reports.Read.All' (e.g. an app-only token)" },
  { path: '/admin', needs: "both 'Files.Read' and 'Admin' (a user token with the Admin app role)" }
]

/** The route that calls the downstream API (downstream.js) on the user's behalf, when configured. */
export const downstreamRoute = { path: '/data', needs: "delegated scope 'Files.Read'; calls the downstream API on the user's behalf (on-behalf-of)" }

/** Who is calling: identify callers by (tenantId, objectId), never by name or e-mail. */
function identity (token) {
  return {
    tenantId: token.tenantId,
    objectId: token.objectId,
    clientId: token.clientId,
    version: token.version,
    isAppOnly: token.isAppOnly,
    scopes: token.scopes
  }
}

/**
 * Builds the example API.
 *
 * @param {import('../dist/index.js').EntraAuthOptions} auth plugin options: `clientId` and
 *   `tenant` or `oidcEndpoint` (tests add the fake Entra's `dispatcher`)
 * @param {import('fastify').FastifyServerOptions} [fastifyOptions]
 * @param {{ url: string, tokenEndpoint: string, clientSecret: string, scope: string }} [downstream]
 *   the downstream API to call on the user's behalf, and this API's secret to ask for tokens with
 * @returns {Promise<import('fastify').FastifyInstance>}
 */
export async function buildApp (auth, fastifyOptions = {}, downstream = undefined) {
  const app = Fastify(fastifyOptions)
  await app.register(entraAuth, auth)

  app.get('/', async () => ({
    name: 'fastify-entra-auth example API',
    routes: downstream === undefined ? routes : [...routes, downstreamRoute]
  }))

  // Authentication only: any valid access token for this API.
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => identity(request.entraToken))

  // A delegated scope (`scp`, user tokens). The object form keeps scopes and app roles apart.
  app.get('/files', { onRequest: app.entraAuth({ scopes: ['Files.Read'] }) }, async (request) => ({
    owner: request.entraToken.objectId,
    files: ['budget.xlsx', 'roadmap.docx']
  }))

  // An app role (`roles`): application permissions of app-only tokens, or roles assigned to users.
  app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async (request) => ({
    requestedBy: request.entraToken.clientId,
    reports: ['usage-2025-q1.csv']
  }))

  // Both: the array form (as in the Python flask-entra-auth) matches words from `scp` ∪ `roles`; ['A B', 'C'] means (A AND B) OR C.
  app.get('/admin', { onRequest: app.entraAuth(['Files.Read Admin']) }, async (request) => ({
    admin: request.entraToken.objectId,
    settings: { retentionDays: 30 }
  }))

  if (downstream !== undefined) {
    // On behalf of the user: this API trades the user's token it received for one for the downstream API.
    app.get(downstreamRoute.path, { onRequest: app.entraAuth({ scopes: ['Files.Read'] }) }, async (request, reply) => {
      const client = { tokenEndpoint: downstream.tokenEndpoint, clientId: auth.clientId, clientSecret: downstream.clientSecret, scope: downstream.scope }
      const obo = await onBehalfOf(client, request.entraToken.raw)
      // invalid_grant: the user's token can't be exchanged (consent missing, token refused): theirs to fix.
      if (obo.accessToken === undefined) return reply.code(obo.error === 'invalid_grant' ? 403 : 502).send({ error: obo.error, detail: obo.description })
      const answer = await fetch(`${downstream.url}${downstreamRoute.path}`, { headers: { authorization: `Bearer ${obo.accessToken}` }, signal: AbortSignal.timeout(10_000) })
      return reply.code(answer.status).send(await answer.json())
    })
  }

  return app
}
