/**
 * Type tests of the option types as published: the standalone verifier's options are the plugin's
 * without the plugin-only ones, and `tenant` and `oidcEndpoint` exclude each other.
 */
import { expect, test } from 'tstyche'
import Fastify from 'fastify'
import entraAuth, {
  createEntraVerifier,
  EntraAuthOptionsError,
  type EntraAuthOptions,
  type EntraVerifierOptions
} from 'fastify-entra-auth'

const endpoint = 'https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration'

test('tenant and oidcEndpoint exclude each other', () => {
  expect<EntraVerifierOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common' })
  expect<EntraVerifierOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common', authorityHost: 'login.microsoftonline.us' })
  expect<EntraVerifierOptions>().type.toBeAssignableFrom({ clientId: 'id', oidcEndpoint: endpoint })
  expect<EntraVerifierOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'common', oidcEndpoint: endpoint })
  expect<EntraVerifierOptions>().type.not.toBeAssignableFrom({ clientId: 'id' })
  expect<EntraVerifierOptions>().type.not.toBeAssignableFrom({ clientId: 'id', oidcEndpoint: endpoint, authorityHost: 'login.microsoftonline.us' })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'common', oidcEndpoint: endpoint })
  expect(Fastify().register).type.not.toBeCallableWith(entraAuth, { clientId: 'id', tenant: 'common', oidcEndpoint: endpoint })
})

test("the verifier's options are the plugin's without the plugin-only ones", () => {
  expect(createEntraVerifier).type.toBeCallableWith({ clientId: 'id', tenant: 'common', jwks: { ttl: 50, cooldown: 0 }, now: () => 0 })
  expect(createEntraVerifier).type.not.toBeCallableWith({ clientId: 'id', tenant: 'common', decorator: 'otherAuth' })
  expect(createEntraVerifier).type.not.toBeCallableWith({ clientId: 'id', tenant: 'common', tokenSources: [{ cookie: 'token' }] })
  expect(createEntraVerifier).type.not.toBeCallableWith({ clientId: 'id', tenant: 'common', onAuthSuccess: () => {} })
  expect(createEntraVerifier).type.not.toBeCallableWith({ clientId: 'id', tenant: 'common', onAuthFailure: () => {} })
  expect(createEntraVerifier).type.not.toBeCallableWith({ clientId: 'id', tenant: 'common', rejectionLogLevel: 'warn' })
  expect(createEntraVerifier).type.not.toBeCallableWith({ clientId: 'id', tenant: 'common', openapi: false })
  expect<EntraVerifierOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common' } as EntraAuthOptions & { decorator?: undefined, tokenSources?: undefined, onAuthSuccess?: undefined, onAuthFailure?: undefined, rejectionLogLevel?: undefined, openapi?: undefined })
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common' } as EntraVerifierOptions)
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common', decorator: 'otherAuth', rejectionLogLevel: 'warn' as const })
})

test('option errors', () => {
  expect<EntraAuthOptionsError>().type.toBeAssignableTo<TypeError>()
  expect<EntraAuthOptionsError['code']>().type.toBe<'FST_ENTRA_AUTH_INVALID_OPTIONS'>()
  expect<EntraAuthOptionsError['issues']>().type.toBe<readonly string[]>()
})
