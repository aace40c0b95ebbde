/**
 * OpenAPI through @fastify/swagger's public options: the plugin gives protected routes their
 * `schema.security`, and `withEntraSecurity` adds the OAuth2 scheme with the scopes the operations
 * name. @fastify/swagger's own `swagger()` (and its YAML) is left as it is.
 */
import swagger, { type SwaggerOptions } from '@fastify/swagger'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import entraAuth, { withEntraSecurity, type EntraAuthOptions } from '../src/index.js'
import { API_ID, bearer, closing, decoratorOf, fakeEntra } from './helpers/index.js'

type Doc = Record<string, any>

const PREFIX = `api://${API_ID}/`

/** An app with swagger (OpenAPI 3 unless `swaggerOptions` say otherwise) and the plugin on a fake Entra, joined by the documented line. */
async function documentedApp (t: Test, options: Partial<EntraAuthOptions> = {}, swaggerOptions: SwaggerOptions = { openapi: { info: { title: 'api', version: '1.0.0' } } }): Promise<{ app: FastifyInstance, entra: ReturnType<typeof fakeEntra> }> {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  const auth = { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions
  await app.register(swagger, withEntraSecurity(swaggerOptions, auth))
  await app.register(entraAuth, auth)
  return { app, entra }
}

t.test('OpenAPI 3: scheme next to the authority, security per operation, scopes collected', async t => {
  const userOptions = { openapi: { info: { title: 'api', version: '1.0.0' }, components: { securitySchemes: { apiKey: { type: 'apiKey' as const, name: 'x-api-key', in: 'header' as const } } } } }
  const { app, entra } = await documentedApp(t, {}, userOptions)
  const shared = { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } }
  app.get('/open', { schema: shared }, async () => ({ ok: true }))
  app.get('/me', { onRequest: app.entraAuth(), schema: shared }, async () => ({ ok: true }))
  app.get('/files', { preHandler: [async () => {}, app.entraAuth(['Files.Read', 'Files.ReadWrite Files.Admin'])] }, async () => ({ ok: true }))
  app.post('/jobs', { onRequest: app.entraAuth({ scopes: 'Jobs.Write', roles: ['Jobs.Run', 'Jobs.Admin'] }) }, async () => ({ ok: true }))
  app.get('/maybe', { onRequest: app.entraAuth('Files.Read', { optional: true }) }, async () => ({ ok: true }))
  app.get('/keyed', { onRequest: app.entraAuth(['Other.Scope']), schema: { security: [{ apiKey: [] }] } }, async () => ({ ok: true }))
  await app.ready()

  const doc = app.swagger() as Doc
  t.same(doc.components.securitySchemes.apiKey, { type: 'apiKey', name: 'x-api-key', in: 'header' }, "the app's own scheme is kept")
  const scheme = doc.components.securitySchemes.entraAuth
  const authority = `${entra.origin}/${entra.tenantId}`
  t.same(scheme, {
    type: 'oauth2',
    flows: {
      authorizationCode: {
        authorizationUrl: `${authority}/oauth2/v2.0/authorize`,
        tokenUrl: `${authority}/oauth2/v2.0/token`,
        scopes: {
          [`${PREFIX}.default`]: 'All permissions of this API consented for the client',
          [`${PREFIX}Files.Read`]: 'Delegated permission Files.Read',
          [`${PREFIX}Files.ReadWrite`]: 'Delegated permission Files.ReadWrite',
          [`${PREFIX}Files.Admin`]: 'Delegated permission Files.Admin',
          [`${PREFIX}Jobs.Write`]: 'Delegated permission Jobs.Write'
        }
      },
      clientCredentials: {
        tokenUrl: `${authority}/oauth2/v2.0/token`,
        scopes: { [`${PREFIX}.default`]: 'Application permissions (app roles) granted to the client' }
      }
    }
  })
  t.notOk(Object.hasOwn(scheme.flows.authorizationCode.scopes, `${PREFIX}Other.Scope`), 'a route with its own security adds no scope')

  t.notOk(doc.paths['/open'].get.security, 'unprotected route: no security')
  t.same(doc.paths['/me'].get.security, [{ entraAuth: [] }], 'authentication only')
  t.same(doc.paths['/files'].get.security, [{ entraAuth: [`${PREFIX}Files.Read`] }, { entraAuth: [`${PREFIX}Files.ReadWrite`, `${PREFIX}Files.Admin`] }], 'OR of ANDs')
  t.same(doc.paths['/jobs'].post.security, [{ entraAuth: [`${PREFIX}Jobs.Write`] }, { entraAuth: [`${PREFIX}.default`] }], 'app roles are requested with .default, once')
  t.same(doc.paths['/maybe'].get.security, [{ entraAuth: [`${PREFIX}Files.Read`] }, {}], 'optional authentication')
  t.same(doc.paths['/keyed'].get.security, [{ apiKey: [] }], "the route's own security wins")
  t.notOk(Object.hasOwn(userOptions.openapi.components.securitySchemes, 'entraAuth'), "the app's swagger options object is not mutated")
  t.notOk(Object.hasOwn(shared, 'security'), 'a shared route schema is not mutated')
  t.equal(app.swagger(), doc, 'the document is still cached by @fastify/swagger')
  t.same((app.swagger() as Doc).paths['/me'].get.security, [{ entraAuth: [] }], 'a second call is unchanged')

  const yamlText = app.swagger({ yaml: true })
  t.type(yamlText, 'string')
  t.same(parse(yamlText), JSON.parse(JSON.stringify(doc)), "@fastify/swagger's own YAML carries the contribution too")

  // The documented routes are still protected.
  t.equal((await app.inject('/me')).statusCode, 401)
  t.equal((await app.inject({ url: '/maybe' })).statusCode, 200)
  t.equal((await app.inject({ url: '/files', headers: bearer(entra.token(API_ID, { scp: 'Files.Read' })) })).statusCode, 200)
})

t.test('endpoints follow the authority of tenant or oidcEndpoint, without a fetch', async t => {
  t.test('oidcEndpoint', async t => {
    const entra = fakeEntra(t)
    entra.mode = 'discovery-404'
    const app = closing(t, Fastify())
    const auth = { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), jwks: { timeout: 1000 } } as const
    await app.register(swagger, withEntraSecurity({ openapi: {} }, auth))
    await app.register(entraAuth, auth)
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
    await app.ready()
    const flow = (app.swagger() as Doc).components.securitySchemes.entraAuth.flows.authorizationCode
    t.equal(flow.authorizationUrl, `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/authorize`)
    t.equal(flow.tokenUrl, `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/token`)
  })

  t.test('tenant and authorityHost', async t => {
    const options = withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'contoso.onmicrosoft.com', authorityHost: 'login.microsoftonline.us' })
    const flow = (options.openapi as Doc).components.securitySchemes.entraAuth.flows.authorizationCode
    t.equal(flow.authorizationUrl, 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/authorize')
    t.equal(flow.tokenUrl, 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token')
  })
})

t.test('Swagger 2.0: an accessCode security definition', async t => {
  for (const swaggerOptions of [{ swagger: { info: { title: 'api', version: '1' } } }, {}]) {
    const { app, entra } = await documentedApp(t, { openapi: { description: 'Microsoft Entra ID' } }, swaggerOptions)
    app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({}))
    await app.ready()
    const doc = app.swagger() as Doc
    t.equal(doc.swagger, '2.0')
    t.same(doc.securityDefinitions.entraAuth, {
      type: 'oauth2',
      flow: 'accessCode',
      authorizationUrl: `${entra.origin}/${entra.tenantId}/oauth2/v2.0/authorize`,
      tokenUrl: `${entra.origin}/${entra.tenantId}/oauth2/v2.0/token`,
      scopes: { [`${PREFIX}.default`]: 'All permissions of this API consented for the client', [`${PREFIX}Files.Read`]: 'Delegated permission Files.Read' },
      description: 'Microsoft Entra ID'
    })
    t.same(doc.paths['/read'].get.security, [{ entraAuth: [`${PREFIX}Files.Read`] }])
  }
})

t.test('options: scheme name, scope prefix, or off', async t => {
  t.test('securityScheme and scopePrefix', async t => {
    const { app } = await documentedApp(t, { openapi: { securityScheme: 'entra', scopePrefix: 'https://contoso.com/files/' } })
    app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({}))
    await app.ready()
    const doc = app.swagger() as Doc
    t.ok(doc.components.securitySchemes.entra.flows.authorizationCode.scopes['https://contoso.com/files/Files.Read'])
    t.same(doc.paths['/read'].get.security, [{ entra: ['https://contoso.com/files/Files.Read'] }])
  })

  t.test('openapi: false', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(swagger, { openapi: {} })
    await app.register(entraAuth, { clientId: API_ID, openapi: false, ...entra.pluginOptions() })
    app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({}))
    await app.ready()
    const doc = app.swagger() as Doc
    t.notOk(doc.components.securitySchemes)
    t.notOk(doc.paths['/read'].get.security)
    t.throws(() => withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'common', openapi: false }), /'openapi: false'/)
  })

  t.test('bad options are refused, at register and by withEntraSecurity', async t => {
    for (const openapi of [{ securityScheme: 'has space' }, { scopePrefix: '' }, { unknown: 1 }, true]) {
      const app = closing(t, Fastify())
      await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, tenant: 'common', openapi: openapi as never }) }, /fastify-entra-auth: option 'openapi/)
      t.throws(() => withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'common', openapi: openapi as never }), /fastify-entra-auth: option 'openapi/)
    }
    t.throws(() => withEntraSecurity({ openapi: {} }, { clientId: API_ID } as never), /exactly one of the options 'oidcEndpoint' and 'tenant'/)
    t.throws(() => withEntraSecurity(undefined as never, { clientId: API_ID, tenant: 'common' }), /withEntraSecurity takes the options of @fastify\/swagger, then the options of the plugin/)
    t.throws(() => withEntraSecurity({ openapi: {}, transformObject: 'x' } as never, { clientId: API_ID, tenant: 'common' }), /'transformObject' must be a function/)
  })
})

t.test("the app's own transform and transformObject still apply; hidden routes stay hidden", async t => {
  const { app } = await documentedApp(t, {}, {
    openapi: {},
    transform: ({ schema, url }) => ({ schema: { ...schema, summary: `route ${url}` }, url }),
    transformObject: (documentObject) => ({ ...(documentObject as { openapiObject: Doc }).openapiObject, info: { title: 'transformed', version: '2' } })
  })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
  app.get('/hidden', { onRequest: app.entraAuth('Secret'), schema: { hide: true } }, async () => ({}))
  await app.ready()
  const doc = app.swagger() as Doc
  t.equal(doc.paths['/me'].get.summary, 'route /me')
  t.same(doc.info, { title: 'transformed', version: '2' }, "the app's transformObject ran")
  t.ok(doc.components.securitySchemes.entraAuth, 'on the completed document')
  t.same(doc.paths['/me'].get.security, [{ entraAuth: [] }])
  t.notOk(doc.paths['/hidden'])
  t.notOk(doc.components.securitySchemes.entraAuth.flows.authorizationCode.scopes[`${PREFIX}Secret`], 'hidden routes name no scope')
})

t.test('swagger at the root, the plugin in an encapsulated context (as with @fastify/swagger-ui)', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  const auth = { clientId: API_ID, ...entra.pluginOptions() }
  await app.register(swagger, withEntraSecurity({ openapi: {} }, auth))
  await app.register(async api => {
    await api.register(entraAuth, auth)
    api.get('/me', { onRequest: api.entraAuth('User.Read') }, async () => ({}))
  }, { prefix: '/api' })
  // A sibling context reads the document the way @fastify/swagger-ui does.
  await app.register(async docs => { docs.get('/openapi.json', async () => docs.swagger()) })
  await app.ready()
  const doc = (await app.inject('/openapi.json')).json() as Doc
  t.same(doc.paths['/api/me'].get.security, [{ entraAuth: [`${PREFIX}User.Read`] }])
  t.ok(doc.components.securitySchemes.entraAuth.flows.authorizationCode.scopes[`${PREFIX}User.Read`])
})

t.test('two registrations: distinct schemes, or a clear error when their names clash', async t => {
  t.test('decorator names give distinct schemes; withEntraSecurity wraps twice', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    const first = { clientId: API_ID, ...entra.pluginOptions() }
    const second = { clientId: 'other-api', decorator: 'otherAuth', ...entra.pluginOptions() }
    await app.register(swagger, withEntraSecurity(withEntraSecurity({ openapi: {} }, first), second))
    await app.register(entraAuth, first)
    await app.register(entraAuth, second)
    app.get('/a', { onRequest: app.entraAuth('A') }, async () => ({}))
    app.get('/b', { onRequest: decoratorOf(app, 'otherAuth')('B') }, async () => ({}))
    await app.ready()
    const doc = app.swagger() as Doc
    t.same(doc.paths['/a'].get.security, [{ entraAuth: [`${PREFIX}A`] }])
    t.same(doc.paths['/b'].get.security, [{ otherAuth: ['api://other-api/B'] }])
    t.same(Object.keys(doc.components.securitySchemes).sort(), ['entraAuth', 'otherAuth'])
    t.notOk(doc.components.securitySchemes.entraAuth.flows.authorizationCode.scopes['api://other-api/B'], "each scheme lists only its own API's scopes")
    t.ok(doc.components.securitySchemes.otherAuth.flows.authorizationCode.scopes['api://other-api/B'])
  })

  t.test('the same scheme twice in the swagger options', async t => {
    const once = withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'common' })
    t.throws(() => withEntraSecurity(once, { clientId: 'other-api', tenant: 'common' }), /already define the security scheme 'entraAuth'; give this registration its own option 'openapi.securityScheme'/)
    t.throws(() => withEntraSecurity({ swagger: { securityDefinitions: { entraAuth: {} } } }, { clientId: API_ID, tenant: 'common' }), /already define the security scheme 'entraAuth'/)
  })

  t.test('same scheme name in two contexts', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(swagger, withEntraSecurity({ openapi: {} }, { clientId: API_ID, ...entra.pluginOptions() }))
    for (const clientId of [API_ID, 'other-api']) {
      await app.register(async api => {
        await api.register(entraAuth, { clientId, ...entra.pluginOptions() })
        api.get(`/${clientId}`, { onRequest: api.entraAuth('A') }, async () => ({}))
      })
    }
    await app.ready()
    t.throws(() => app.swagger(), /names the scope 'api:\/\/other-api\/A' under the OpenAPI security scheme 'entraAuth'.*its own option 'openapi.securityScheme'/)
  })
})

t.test("@fastify/swagger's decorator is left as it is", async t => {
  const swaggerOf = (app: FastifyInstance): unknown => app.swagger
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  const auth = { clientId: API_ID, ...entra.pluginOptions() }
  await app.register(swagger, withEntraSecurity({ openapi: {} }, auth))
  const before = swaggerOf(app)
  await app.register(entraAuth, auth)
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
  await app.ready()
  t.equal(swaggerOf(app), before, 'the same function')
})

t.test('without @fastify/swagger the routes are left alone', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  const schemas: unknown[] = []
  app.addHook('onRoute', route => { schemas.push(route.schema) })
  app.get('/me', { onRequest: app.entraAuth('A') }, async () => ({}))
  await app.ready()
  t.same(schemas, [undefined, undefined], 'GET and HEAD keep no schema')
  t.equal((await app.inject('/me')).statusCode, 401)
})
