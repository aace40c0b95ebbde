/**
 * Token sources (issue 6): opt-in cookie and session sources, read only when there is no
 * Authorization header; never the query string.
 */
import fastifyCookie from '@fastify/cookie'
import fastifySecureSession from '@fastify/secure-session'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import type { FakeEntra } from '../src/testing/index.js'
import { API_ID, bearer, closing, fakeEntra, problemType } from './helpers/index.js'

async function cookieApp (t: Test, options: Partial<EntraAuthOptions>): Promise<{ app: FastifyInstance, entra: FakeEntra }> {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(fastifyCookie)
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub }))
  return { app, entra }
}

t.test('cookie source', async t => {
  const { app, entra } = await cookieApp(t, { tokenSources: [{ cookie: 'access_token' }] })
  const good = entra.token(API_ID, { sub: 'from-cookie' })

  let res = await app.inject({ url: '/me', cookies: { access_token: good } })
  t.same([res.statusCode, res.json()], [200, { sub: 'from-cookie' }], 'the named cookie is read')

  res = await app.inject({ url: '/me', cookies: { other: good } })
  t.equal(problemType(res), 'auth_header_missing', 'other cookies are not read')
  t.equal(res.headers['www-authenticate'], 'Bearer')

  res = await app.inject({ url: '/me', cookies: { access_token: 'garbage' } })
  t.equal(problemType(res), 'auth_token_invalid', 'a bad cookie token is refused')
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)

  res = await app.inject({ url: '/me', headers: { authorization: 'Basic abc' }, cookies: { access_token: good } })
  t.equal(problemType(res), 'auth_header_invalid', 'an Authorization header is authoritative: no fallback to the cookie')

  res = await app.inject({ url: '/me', headers: bearer(entra.token(API_ID, { sub: 'from-header' })), cookies: { access_token: 'garbage' } })
  t.same(res.json(), { sub: 'from-header' }, 'with a header, the cookie is not looked at')
})

t.test('safe defaults: no cookie, no session, never the query string', async t => {
  const { app, entra } = await cookieApp(t, {})
  const good = entra.token(API_ID)
  t.equal(problemType(await app.inject({ url: '/me', cookies: { access_token: good } })), 'auth_header_missing', 'cookies are ignored unless configured')
  t.equal(problemType(await app.inject({ url: `/me?access_token=${good}` })), 'auth_header_missing', 'the RFC 6750 query parameter is ignored')

  const configured = await cookieApp(t, { tokenSources: [{ cookie: 'access_token' }] })
  t.equal(problemType(await configured.app.inject({ url: `/me?access_token=${configured.entra.token(API_ID)}` })), 'auth_header_missing', 'even with sources configured')
})

t.test('@fastify/session source', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: 'a session secret of at least thirty-two characters', cookie: { secure: false } })
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), tokenSources: [{ cookie: 'unused' }, { session: 'accessToken' }] })
  // A sign-in route of the app puts the user's access token into the server-side session.
  app.post('/sign-in', async (request) => {
    const { token } = request.body as { token: unknown }
    request.session.set('accessToken' as never, token as never)
    return { ok: true }
  })
  app.get('/me', { onRequest: app.entraAuth('Files.Read') }, async (request) => ({ sub: request.entraToken?.claims.sub }))

  async function signIn (token: unknown): Promise<Record<string, string>> {
    const res = await app.inject({ method: 'POST', url: '/sign-in', payload: { token } })
    const cookie = res.cookies.find(c => c.name === 'sessionId')
    t.ok(cookie, 'session cookie set')
    return { sessionId: cookie!.value }
  }

  let res = await app.inject({ url: '/me', cookies: await signIn(entra.token(API_ID, { sub: 'session-user', scp: 'Files.Read' })) })
  t.same([res.statusCode, res.json()], [200, { sub: 'session-user' }], 'the token is taken from the session')
  res = await app.inject({ url: '/me', cookies: await signIn(entra.token(API_ID, { scp: 'Other' })) })
  t.equal(res.statusCode, 403, 'and checked like any other')
  res = await app.inject({ url: '/me', cookies: await signIn(42) })
  t.equal(problemType(res), 'auth_header_missing', 'a session value that is not a string is no token')
  t.equal(problemType(await app.inject({ url: '/me' })), 'auth_header_missing', 'no session: no token')
})

t.test('@fastify/secure-session source', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(fastifySecureSession, { key: Buffer.alloc(32, 7), cookie: { path: '/' } })
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), tokenSources: [{ session: 'accessToken' }] })
  app.post('/sign-in', async (request) => {
    request.session.set('accessToken' as never, (request.body as { token: string }).token as never)
    return { ok: true }
  })
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub }))

  const signedIn = await app.inject({ method: 'POST', url: '/sign-in', payload: { token: entra.token(API_ID, { sub: 'sealed' }) } })
  const cookie = signedIn.cookies.find(c => c.name === 'session')
  t.ok(cookie, 'session cookie set')
  const res = await app.inject({ url: '/me', cookies: { session: cookie!.value } })
  t.same([res.statusCode, res.json()], [200, { sub: 'sealed' }])
  t.equal(problemType(await app.inject({ url: '/me' })), 'auth_header_missing')
})

t.test('bad token sources are refused at register', async t => {
  for (const tokenSources of [[{ query: 'access_token' }], [{ cookie: '' }], [{ cookie: 'a', session: 'b' }], 'cookie', [{ header: 'x-token' }]]) {
    const app = closing(t, Fastify())
    await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, tenant: 'common', tokenSources: tokenSources as never }) }, /fastify-entra-auth: option 'tokenSources/, JSON.stringify(tokenSources))
  }
})
