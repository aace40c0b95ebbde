/**
 * Type tests of the published package: `fastify-entra-auth` resolves to this package itself
 * (self-reference through `exports`), so these check the emitted `dist/*.d.ts`. Run `npm run build` first.
 */
import Fastify, { type FastifyReply, type FastifyRequest, type onRequestAsyncHookHandler } from 'fastify'
import { expect, test } from 'tstyche'
import entraAuth, {
  createEntraVerifier,
  EntraAuthError,
  entraAuth as namedEntraAuth,
  type EntraAuthDecorator,
  type EntraAuthOptions,
  type EntraClaims,
  type EntraToken,
  type EntraVerifier,
  type ProblemType,
  type Rfc7662Introspection,
  type ScopeRequirement,
  withEntraSecurity
} from 'fastify-entra-auth'
import swagger from '@fastify/swagger'

declare module 'fastify-entra-auth' {
  interface CustomEntraClaims {
    NAVident?: string
  }
}

const app = Fastify()

test('the default and the named export are the same plugin', () => {
  expect(namedEntraAuth).type.toBe(entraAuth)
  expect(app.register).type.toBeCallableWith(entraAuth, { clientId: 'id', tenant: 'contoso.onmicrosoft.com' })
  expect(app.register).type.toBeCallableWith(entraAuth, { clientId: 'id', oidcEndpoint: 'https://login.example.com/.well-known/openid-configuration' })
})

test('options', () => {
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common', tokenVersions: ['2.0' as const], jwks: { ttl: 1000, cooldown: 0, timeout: 500 } })
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common', now: () => 0, rejectionLogLevel: 'warn' as const })
  expect<EntraAuthOptions>().type.toBeAssignableFrom({
    clientId: 'id',
    tenant: 'common',
    decorator: 'otherAuth',
    tokenSources: [{ cookie: 'access_token' }, { session: 'accessToken' }],
    openapi: { securityScheme: 'entra', scopePrefix: 'api://id/' },
    onAuthSuccess: (request: FastifyRequest, token: EntraToken) => { request.log.info({ sub: token.claims.sub }) },
    onAuthFailure: (_request: FastifyRequest, error: EntraAuthError) => { expect(error.type).type.toBe<ProblemType>() }
  })
  expect<EntraAuthOptions>().type.toBeAssignableFrom({ clientId: 'id', tenant: 'common', openapi: false as const })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ tenant: 'common' })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'common', tokenVersions: ['3.0'] })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'common', tokenSources: [{ query: 'access_token' }] })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'common', now: 5 })
  expect<EntraAuthOptions>().type.not.toBeAssignableFrom({ clientId: 'id', tenant: 'common', onAuthFailure: 'log' })
})

test('the instance decorator', () => {
  expect(app.entraAuth).type.toBe<EntraAuthDecorator>()
  expect(app.entraAuth()).type.toBe<onRequestAsyncHookHandler>()
  expect(app.entraAuth).type.toBeCallableWith(['Files.Read', 'A B'])
  expect(app.entraAuth).type.toBeCallableWith('Files.Read')
  expect(app.entraAuth).type.toBeCallableWith({ scopes: ['Files.Read'], roles: 'Files.Read.All' })
  expect(app.entraAuth).type.toBeCallableWith(undefined, { optional: true })
  expect(app.entraAuth).type.not.toBeCallableWith(42)
  expect(app.entraAuth).type.not.toBeCallableWith('A', { optional: 'yes' })
  expect(app.entraAuth.strategy('A')).type.toBe<onRequestAsyncHookHandler>()
  expect(app.entraAuth.verify('token')).type.toBe<Promise<EntraToken>>()
  expect(app.entraAuth.introspect('token')).type.toBe<Promise<Rfc7662Introspection>>()
  expect(app.entraAuth.state().tokenCache.size).type.toBe<number>()
  expect(app.entraAuth.state().keys.kids).type.toBe<string[]>()
  expect(app.entraAuth.sendProblem).type.toBe<(reply: FastifyReply, error: EntraAuthError) => FastifyReply>()
  expect<ScopeRequirement>().type.toBeAssignableFrom(['A', 'B C'] as const)
  expect(app.entraAuth).type.toBeCallableWith({ roles: ['Reports.Read.All'], appOnly: true })
  expect<ScopeRequirement>().type.toBeAssignableFrom({ roles: 'Jobs.Run', appOnly: false })
  expect<ScopeRequirement>().type.not.toBeAssignableFrom({ roles: ['A'], appOnly: 'yes' })
  expect<ScopeRequirement>().type.not.toBeAssignableFrom({ roles: ['A'], appOnlyy: true })

  app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
  app.get('/files', { preHandler: [app.entraAuth(['Files.Read'])] }, async () => ({}))
})

test('withEntraSecurity keeps the type of the swagger options it is given', () => {
  const swaggerOptions = withEntraSecurity({ openapi: { info: { title: 'api', version: '1.0.0' } } }, { clientId: 'id', tenant: 'common' })
  expect(swaggerOptions).type.toBe<{ openapi: { info: { title: string, version: string } } }>()
  expect(app.register).type.toBeCallableWith(swagger, swaggerOptions)
  expect(withEntraSecurity).type.not.toBeCallableWith({ openapi: {} }, { tenant: 'common' })
})

test('request.entraToken', () => {
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => {
    expect(request.entraToken).type.toBe<EntraToken | null>()
    const token = request.entraToken!
    expect(token.raw).type.toBe<string>()
    expect(token.scopes).type.toBe<string[]>()
    expect(token.version).type.toBe<'1.0' | '2.0'>()
    expect(token.claims).type.toBe<EntraClaims>()
    expect(token.claims.sub).type.toBe<string>()
    expect(token.claims.scp).type.toBe<string | undefined>()
    expect(token.claims.roles).type.toBe<string[] | undefined>()
    expect(token.claims.aud).type.toBe<string | string[]>()
    expect(token.introspect()).type.toBe<Rfc7662Introspection>()
    return {}
  })
})

test('CustomEntraClaims merges into the claims', () => {
  expect<EntraClaims['NAVident']>().type.toBe<string | undefined>()
  expect<EntraToken['claims']['NAVident']>().type.toBe<string | undefined>()
  expect<EntraClaims['anythingElse']>().type.toBe<unknown>()
})

test('EntraAuthError and the standalone verifier', () => {
  const error = new EntraAuthError('auth_token_expired')
  expect(error.type).type.toBe<ProblemType>()
  expect(error.status).type.toBe<number>()
  expect(error.statusCode).type.toBe<number>()
  expect(error.headers).type.toBe<Record<string, string>>()
  expect(EntraAuthError).type.not.toBeConstructableWith('auth_no_such_type')

  const verifier = createEntraVerifier({ clientId: 'id', tenant: 'common' })
  expect(verifier).type.toBe<EntraVerifier>()
  expect(verifier.verify('t')).type.toBe<Promise<EntraToken>>()
  expect(verifier.introspect('t')).type.toBe<Promise<Rfc7662Introspection>>()
  expect(verifier.close()).type.toBe<Promise<void>>()
})
