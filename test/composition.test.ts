/**
 * Composition (issue 6): @fastify/auth strategies, encapsulated contexts, two protected APIs in
 * one app, the app's own @fastify/jwt, and optional authentication.
 */
import fastifyAuth from '@fastify/auth'
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { EntraAuthError } from '../src/index.js'
import { API_ID, OTHER_API_ID, bearer, closing, decoratorOf, fakeEntra } from './helpers/index.js'

/** A second strategy for @fastify/auth: an API key. */
async function apiKey (request: FastifyRequest): Promise<void> {
  if (request.headers['x-api-key'] !== 'let-me-in') throw Object.assign(new Error('bad api key'), { statusCode: 401 })
}

async function authApp (t: Test) {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(fastifyAuth)
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  return { app, entra }
}

t.test('@fastify/auth: strategy() throws, so alternatives are tried', async t => {
  const { app, entra } = await authApp(t)
  let handled = 0
  const handler = async (request: FastifyRequest) => { handled++; return { user: request.entraToken?.claims.sub ?? null } }
  app.get('/or', { onRequest: app.auth([apiKey, app.entraAuth.strategy('Data.Read')]) }, handler)
  app.get('/and', { onRequest: app.auth([apiKey, app.entraAuth.strategy('Data.Read')], { relation: 'and' }) }, handler)
  const good = entra.token(API_ID, { scp: 'Data.Read', sub: 'alice' })

  let res = await app.inject({ url: '/or', headers: bearer(good) })
  t.same([res.statusCode, res.json()], [200, { user: 'alice' }], 'Entra token alone passes OR')
  res = await app.inject({ url: '/or', headers: { 'x-api-key': 'let-me-in' } })
  t.same([res.statusCode, res.json()], [200, { user: null }], 'API key alone passes OR; entraToken stays null')

  res = await app.inject({ url: '/or' })
  t.equal(res.statusCode, 401, "neither: the last strategy's error (Entra's) decides")
  t.equal(res.headers['www-authenticate'], 'Bearer', "Fastify's error handler copies the challenge")
  t.match(res.json(), { statusCode: 401, message: /^auth_header_missing: / })

  res = await app.inject({ url: '/or', headers: bearer(entra.token(API_ID, { scp: 'Other' })) })
  t.equal(res.statusCode, 403)
  t.equal(res.headers['www-authenticate'], `Bearer error="insufficient_scope", error_description="Insufficient scopes", scope="api://${API_ID}/Data.Read"`)
  t.notMatch(res.body, entra.token(API_ID, { scp: 'Other' }).split('.')[1] as string, 'no token in the body')

  res = await app.inject({ url: '/and', headers: { ...bearer(good), 'x-api-key': 'let-me-in' } })
  t.equal(res.statusCode, 200, 'AND: both pass')
  res = await app.inject({ url: '/and', headers: { 'x-api-key': 'let-me-in' } })
  t.equal(res.statusCode, 401, 'AND: Entra fails')
  t.equal(handled, 3, 'the handler ran only for admitted requests')
})

t.test('@fastify/auth: sendProblem() gives strategy failures the problem reply', async t => {
  const { app, entra } = await authApp(t)
  await app.register(async api => {
    api.setErrorHandler((error, _request, reply) => {
      if (error instanceof EntraAuthError) return api.entraAuth.sendProblem(reply, error)
      return reply.send(error)
    })
    api.get('/data', { onRequest: api.auth([api.entraAuth.strategy('Data.Read')]) }, async () => ({ ok: true }))
  })
  const res = await app.inject({ url: '/data', headers: bearer(entra.token(API_ID, { scp: 'Data.Read', exp: Math.floor(Date.now() / 1000) - 600, nbf: Math.floor(Date.now() / 1000) - 3600 })) })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['content-type'], 'application/problem+json')
  t.match(res.headers['www-authenticate'], /^Bearer error="invalid_token"/)
  t.same(res.json(), { type: 'auth_token_expired', title: 'Token expired', status: 401, detail: 'The token has expired. Request a new access token and try again.' })
})

t.test('route hook options are checked when the route is defined', async t => {
  const { app } = await authApp(t)
  t.throws(() => app.entraAuth('A', { optional: 'yes' } as never), /'optional' must be a boolean/)
  t.throws(() => app.entraAuth('A', { optinal: true } as never), /unknown route hook option 'optinal'/)
  t.throws(() => app.entraAuth.strategy('A', 5 as never), /must be an object/)
  t.throws(() => app.entraAuth.strategy('A B "C'), /invalid scope/)
})

t.test('encapsulation: the decorator lives in the context that registered the plugin', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  app.get('/public', async (request) => ({ token: request.entraToken === undefined ? 'not decorated' : request.entraToken }))
  await app.register(async api => {
    await api.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    api.get('/me', { onRequest: api.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub }))
    await api.register(async nested => {
      nested.get('/nested', { preHandler: nested.entraAuth('Deep') }, async () => ({ ok: true }))
    })
  }, { prefix: '/api' })
  await app.ready()
  t.notOk(app.hasDecorator('entraAuth'), 'the root has no decorator')
  const token = entra.token(API_ID, { sub: 'bob', scp: 'Deep' })
  t.same((await app.inject({ url: '/public', headers: bearer(token) })).json(), { token: 'not decorated' }, 'outside the context, Fastify leaves request.entraToken undefined')
  t.same((await app.inject({ url: '/api/me', headers: bearer(token) })).json(), { sub: 'bob' })
  t.equal((await app.inject({ url: '/api/nested', headers: bearer(token) })).statusCode, 200, 'nested contexts inherit it')
  t.equal((await app.inject({ url: '/api/nested' })).statusCode, 401)
})

t.test('two APIs in one app', async t => {
  t.test('in two encapsulated contexts', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    for (const [prefix, clientId] of [['/a', API_ID], ['/b', OTHER_API_ID]] as const) {
      await app.register(async api => {
        await api.register(entraAuth, { clientId, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
        api.get('/me', { onRequest: api.entraAuth() }, async (request) => ({ aud: request.entraToken?.claims.aud }))
      }, { prefix })
    }
    const forA = entra.token(API_ID)
    const forB = entra.token(OTHER_API_ID)
    t.same((await app.inject({ url: '/a/me', headers: bearer(forA) })).json(), { aud: API_ID })
    t.same((await app.inject({ url: '/b/me', headers: bearer(forB) })).json(), { aud: OTHER_API_ID })
    t.match((await app.inject({ url: '/a/me', headers: bearer(forB) })).json(), { type: 'auth_token_audience_invalid' }, "B's token is refused by A")
    t.match((await app.inject({ url: '/b/me', headers: bearer(forA) })).json(), { type: 'auth_token_audience_invalid' }, "A's token is refused by B")
  })

  t.test('in one context, with the decorator option', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    await app.register(entraAuth, { clientId: OTHER_API_ID, decorator: 'otherApiAuth', rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    const otherApiAuth = decoratorOf(app, 'otherApiAuth')
    t.not(otherApiAuth, app.entraAuth)
    app.get('/a', { onRequest: app.entraAuth() }, async (request) => ({ aud: request.entraToken?.claims.aud }))
    app.get('/b', { onRequest: otherApiAuth() }, async (request) => ({ aud: request.entraToken?.claims.aud }))
    t.same((await app.inject({ url: '/a', headers: bearer(entra.token(API_ID)) })).json(), { aud: API_ID })
    t.same((await app.inject({ url: '/b', headers: bearer(entra.token(OTHER_API_ID)) })).json(), { aud: OTHER_API_ID })
    t.equal((await app.inject({ url: '/b', headers: bearer(entra.token(API_ID)) })).statusCode, 401)
  })

  t.test('a bad decorator name is refused; a taken one is reported by Fastify', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, decorator: 'not-an-identifier', ...entra.pluginOptions() }) }, /option 'decorator' must be a JavaScript identifier/)
    const other = closing(t, Fastify())
    await other.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
    await t.rejects(async () => { await other.register(entraAuth, { clientId: OTHER_API_ID, ...entra.pluginOptions() }) }, /entraAuth/)
  })
})

t.test("coexists with the app's own @fastify/jwt, registered before or after", async t => {
  for (const order of ['jwt first', 'jwt last']) {
    t.test(order, async t => {
      const entra = fakeEntra(t)
      const app = closing(t, Fastify())
      const jwt = async () => { await app.register(fastifyJwt, { secret: 'a-secret-of-the-app-itself-0123456789' }) }
      if (order === 'jwt first') await jwt()
      await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
      if (order === 'jwt last') await jwt()
      app.get('/session', { onRequest: async (request: FastifyRequest) => { await request.jwtVerify() } }, async (request) => ({ user: request.user }))
      app.get('/api', { onRequest: app.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub, user: request.user ?? null }))
      await app.ready()
      const own = app.jwt.sign({ name: 'carol' })
      const entraToken = entra.token(API_ID, { sub: 'dave' })
      t.match((await app.inject({ url: '/session', headers: bearer(own) })).json(), { user: { name: 'carol' } }, 'the app token works on its route')
      t.same((await app.inject({ url: '/api', headers: bearer(entraToken) })).json(), { sub: 'dave', user: null }, 'the Entra token works on ours')
      t.match((await app.inject({ url: '/api', headers: bearer(own) })).json(), { type: 'auth_token_invalid' }, 'an HS256 app token is refused by ours')
      // (@fastify/jwt itself answers 500 FAST_JWT_INVALID_ALGORITHM here; what matters is that it does not pass.)
      t.not((await app.inject({ url: '/session', headers: bearer(entraToken) })).statusCode, 200, 'an Entra token is refused by the app route')
    })
  }
})

t.test('optional authentication', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  const view = async (request: FastifyRequest, reply: FastifyReply) => reply.send({ sub: request.entraToken === null ? null : request.entraToken.claims.sub })
  app.get('/feed', { onRequest: app.entraAuth(undefined, { optional: true }) }, view)
  app.get('/feed/scoped', { onRequest: app.entraAuth('Feed.Read', { optional: true }) }, view)

  t.same((await app.inject('/feed')).json(), { sub: null }, 'no credentials: the route runs with entraToken null')
  t.same((await app.inject({ url: '/feed', headers: { authorization: '' } })).json(), { sub: null }, 'an empty header counts as none')
  t.same((await app.inject({ url: '/feed', headers: bearer(entra.token(API_ID, { sub: 'erin' })) })).json(), { sub: 'erin' }, 'valid credentials are used')
  t.match((await app.inject({ url: '/feed', headers: { authorization: 'Basic abc' } })).json(), { type: 'auth_header_invalid' }, 'a malformed header is refused')
  t.match((await app.inject({ url: '/feed', headers: bearer('not.a.token') })).json(), { type: 'auth_token_invalid' }, 'a bad token is refused')
  const expired = entra.token(API_ID, { exp: Math.floor(Date.now() / 1000) - 600, nbf: Math.floor(Date.now() / 1000) - 3600 })
  t.equal((await app.inject({ url: '/feed', headers: bearer(expired) })).statusCode, 401, 'an expired token is refused, not ignored')
  t.same((await app.inject('/feed/scoped')).json(), { sub: null })
  t.equal((await app.inject({ url: '/feed/scoped', headers: bearer(entra.token(API_ID, { scp: 'Other' })) })).statusCode, 403, 'credentials sent must meet the requirement')

  const strict = closing(t, Fastify())
  await strict.register(fastifyAuth)
  await strict.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
  strict.get('/s', { onRequest: strict.auth([strict.entraAuth.strategy([], { optional: true })]) }, view)
  t.same((await strict.inject('/s')).json(), { sub: null }, 'strategies can be optional too')
})
