/**
 * Test kit of fastify-entra-auth: fake keys, fake tokens and a fake Entra ID that needs no
 * network. Import from `fastify-entra-auth/testing`.
 * @packageDocumentation
 */
export { MockJwk, MockJwks, sharedTestKey, type MockJwkOptions } from './mock-jwks.js'
export { MockClaims, MockJwtClient, MOCK_ISSUER, type ClaimOverrides } from './mock-jwt.js'
export { FakeEntra, FAKE_TENANT_ID, presets, type ClientCredentialsRequest, type FakeEntraMode, type FakeEntraOptions } from './fake-entra.js'
export { startFakeEntraServer, type FakeEntraServer, type FakeEntraServerOptions } from './fake-entra-server.js'
export {
  FAKE_USER_ID, type FakeAuthorizationOptions, type FakeEntraApi, type FakeEntraClient, type FakeEntraUser,
  type FakeHttpRequest, type FakeHttpResponse
} from './oauth.js'
