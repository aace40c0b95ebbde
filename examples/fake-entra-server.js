/**
 * A fake Microsoft Entra ID on loopback for `npm start`: the test kit's loopback server
 * (`startFakeEntraServer` from 'fastify-entra-auth/testing', which `npx fastify-entra-auth
 * fake-entra` runs too). Discovery, keys and the token and authorize endpoints are on
 * http://127.0.0.1:<random port>; the issuer is Entra-shaped
 * (https://login.microsoftonline.com/{tenant}/v2.0), as real tokens carry it.
 *
 * The plugin accepts http:// discovery URLs on loopback only, for exactly this use.
 */
import { startFakeEntraServer, FAKE_TENANT_ID } from '../dist/testing/index.js'

/**
 * Starts the fake on 127.0.0.1 (random port). Like the test kit's FakeEntra, it serves
 * `entra.discoveryDocument` / `entra.jwksDocument` instead of its own documents when they are set.
 *
 * @param {import('../dist/testing/index.js').FakeEntraServerOptions} [options] the server's
 *   options: the tenant GUID (default the test kit's), the APIs it issues tokens for (default any),
 *   test users, … and where its start-up notice goes (default nowhere: start.js says it itself)
 * @returns {Promise<import('../dist/testing/index.js').FakeEntraServer>}
 */
export async function startFakeEntra ({ tenantId = FAKE_TENANT_ID, log = null, ...options } = {}) {
  return startFakeEntraServer({ ...options, tenantId, log })
}
