/** Type tests of the published `fastify-entra-auth/testing` entry (built `dist/`). */
import type { Dispatcher } from 'undici'
import { expect, test } from 'tstyche'
import { FakeEntra, MockClaims, MockJwk, MockJwks, MockJwtClient, type FakeEntraMode } from 'fastify-entra-auth/testing'

test('the test kit', () => {
  const jwks = new MockJwks()
  expect(jwks.jwk).type.toBe<MockJwk>()
  expect(jwks.jwk.kid).type.toBe<string>()
  expect(jwks.toJSON().keys).type.toBeAssignableTo<unknown[]>()

  const claims = new MockClaims({ selfAppId: 'id' })
  const client = new MockJwtClient({ key: jwks.jwk, claims })
  expect(client.generate()).type.toBe<string>()
  expect(client.generate).type.toBeCallableWith({ scp: 'A B', sub: false })
  expect(client.generateEmpty()).type.toBe<string>()
  expect(client.generateKid()).type.toBe<string>()
})

test('the fake Entra', () => {
  const entra = new FakeEntra()
  expect(entra.pluginOptions()).type.toBe<{ oidcEndpoint: string, dispatcher: Dispatcher, jwks: { cooldown: number } }>()
  expect(entra.token('client-id', { scp: 'Files.Read' })).type.toBe<string>()
  expect(entra.requests.discovery).type.toBe<number>()
  expect<FakeEntraMode>().type.toBeAssignableFrom('discovery-404' as const)
  expect<FakeEntraMode>().type.not.toBeAssignableFrom('down' as const)
  expect(entra.close()).type.toBe<Promise<void>>()
})
