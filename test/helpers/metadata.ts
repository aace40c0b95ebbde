/**
 * Serves one OpenID configuration document at an exact URL, and its key set, through an undici
 * MockAgent: for discovery documents the test kit's FakeEntra does not publish (Entra's v1.0
 * metadata documents, a B2C tenant's document with a real key). No network, no server.
 */
import { createPublicKey } from 'node:crypto'
import { MockAgent, type Dispatcher } from 'undici'

export interface MetadataServer {
  readonly oidcEndpoint: string
  readonly jwksUri: string
  /** Documents served so far. */
  readonly requests: { discovery: number, jwks: number }
  readonly dispatcher: Dispatcher
  /** Replaces the published keys. */
  keys: object[]
  close: () => Promise<void>
}

/**
 * `oidcEndpoint` is served with `issuer` and a `jwks_uri` on the same origin
 * (`{origin}/{first path segment}/discovery/keys`, as Entra's v1.0 documents have it).
 */
export function serveMetadata (oidcEndpoint: string, issuer: string, keys: object[]): MetadataServer {
  const url = new URL(oidcEndpoint)
  const jwksUri = `${url.origin}/${url.pathname.split('/')[1] as string}/discovery/keys`
  const agent = new MockAgent({ connections: 1 })
  agent.disableNetConnect()
  const server: MetadataServer = {
    oidcEndpoint,
    jwksUri,
    requests: { discovery: 0, jwks: 0 },
    dispatcher: agent,
    keys,
    close: async () => { await agent.close() }
  }
  const pool = agent.get(url.origin)
  pool.intercept({ path: `${url.pathname}${url.search}`, method: 'GET' }).reply(() => {
    server.requests.discovery++
    return { statusCode: 200, data: JSON.stringify({ issuer, jwks_uri: jwksUri, id_token_signing_alg_values_supported: ['RS256'] }) }
  }).persist()
  pool.intercept({ path: new URL(jwksUri).pathname, method: 'GET' }).reply(() => {
    server.requests.jwks++
    return { statusCode: 200, data: JSON.stringify({ keys: server.keys }) }
  }).persist()
  return server
}

/** A public JWK (`kid`, `use: sig`) from a PEM public key such as the vendored peer keys. */
export function jwkFromPem (pem: string, kid: string): object {
  const { n, e } = createPublicKey(pem).export({ format: 'jwk' })
  return { kty: 'RSA', use: 'sig', kid, n, e }
}
