/**
 * A fake Microsoft Entra ID on loopback: the test kit's FakeEntra (keys, token presets) served
 * over real HTTP, so `npm start` and the CLI work offline. Discovery and keys are on
 * http://127.0.0.1:<random port>; the issuer is Entra-shaped
 * (https://login.microsoftonline.com/{tenant}/v2.0), as real tokens carry it.
 *
 * The plugin accepts http:// discovery URLs on loopback only, for exactly this use.
 */
import { createServer } from 'node:http'
import { FakeEntra, FAKE_TENANT_ID } from '../dist/testing/index.js'

/**
 * Starts the fake on 127.0.0.1 (random port). Like the test kit's FakeEntra, it serves
 * `entra.discoveryDocument` / `entra.jwksDocument` instead of its own documents when they are set.
 *
 * @param {{ tenantId?: string }} [options] the tenant GUID (default the test kit's)
 * @returns {Promise<{ entra: FakeEntra, oidcEndpoint: string, close: () => Promise<void> }>}
 */
export async function startFakeEntra ({ tenantId = FAKE_TENANT_ID } = {}) {
  const server = createServer()
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(undefined))
  })
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address())
  const entra = new FakeEntra({
    tenantId,
    origin: `http://127.0.0.1:${port}`,
    issuer: `https://login.microsoftonline.com/${tenantId}/v2.0`
  })
  const discoveryPath = new URL(entra.oidcEndpoint).pathname
  const jwksPath = new URL(entra.jwksUri).pathname

  server.on('request', (request, response) => {
    const path = new URL(request.url ?? '/', entra.origin).pathname
    let document
    if (path === discoveryPath) {
      document = entra.discoveryDocument ?? {
        issuer: entra.issuer,
        jwks_uri: entra.jwksUri,
        authorization_endpoint: `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/authorize`,
        token_endpoint: `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/token`,
        id_token_signing_alg_values_supported: ['RS256']
      }
    } else if (path === jwksPath) {
      // Read on every request: rotate keys by replacing or pushing to `entra.keys`.
      document = entra.jwksDocument ?? { keys: entra.keys.map(key => key.toJSON()) }
    }
    if (request.method !== 'GET' || document === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found')
      return
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(document))
  })

  return {
    entra,
    oidcEndpoint: entra.oidcEndpoint,
    async close () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(() => resolve(undefined)))
      await entra.close()
    }
  }
}
