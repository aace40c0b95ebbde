/**
 * The downstream example API: what the example API (app.js) calls on a user's behalf with an
 * on-behalf-of token. `npm start` runs it beside the example API; test/e2e covers the pair.
 */
import Fastify from 'fastify'
import entraAuth from '../dist/index.js'

/**
 * Builds the downstream API: `GET /data` needs the delegated scope `Data.Read`, and says who the
 * user is and which app called on their behalf.
 *
 * @param {import('../dist/index.js').EntraAuthOptions} auth plugin options of this API
 * @param {import('fastify').FastifyServerOptions} [fastifyOptions]
 * @returns {Promise<import('fastify').FastifyInstance>}
 */
export async function buildDownstreamApp (auth, fastifyOptions = {}) {
  const app = Fastify(fastifyOptions)
  await app.register(entraAuth, auth)
  app.get('/data', { onRequest: app.entraAuth({ scopes: ['Data.Read'] }) }, async (request) => ({
    user: { tenantId: request.entraToken.tenantId, objectId: request.entraToken.objectId },
    calledBy: request.entraToken.clientId,
    data: ['sales-2025.csv']
  }))
  return app
}

/**
 * Gets a token for the downstream API on behalf of the user whose token `assertion` is, as the
 * Microsoft identity platform's on-behalf-of flow asks: the calling API authenticates as a
 * confidential client and sends the user's token for it. MSAL Node's `acquireTokenOnBehalfOf`
 * does the same, with a cache.
 *
 * @param {{ tokenEndpoint: string, clientId: string, clientSecret: string, scope: string }} client
 * @param {string} assertion the incoming access token (`request.entraToken.raw`)
 * @returns {Promise<{ accessToken?: string, error?: string, description?: string }>}
 */
export async function onBehalfOf (client, assertion) {
  const response = await fetch(client.tokenEndpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      requested_token_use: 'on_behalf_of',
      client_id: client.clientId,
      client_secret: client.clientSecret,
      assertion,
      scope: client.scope
    }),
    signal: AbortSignal.timeout(10_000)
  })
  const body = await response.json()
  return response.ok ? { accessToken: body.access_token } : { error: body.error, description: body.error_description }
}
