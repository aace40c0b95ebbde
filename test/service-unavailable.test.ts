/**
 * 503 problems say when to come back (`Retry-After`, RFC 9110 §10.2.3), on the route hook, through
 * `EntraAuthError.headers` for Fastify's own error handler (@fastify/auth strategies), and the one
 * log line per `auth_oidc_error` rejection says why keys could not be had — without any token.
 */
import fastifyAuth from '@fastify/auth'
import Fastify from 'fastify'
import t from 'tap'
import entraAuth, { EntraAuthError, problems, type ProblemType } from '../src/index.js'
import { API_ID, assertProblem, bearer, captureLogs, closing, fakeEntra } from './helpers/index.js'

const REJECTED = 'fastify-entra-auth: request rejected'

t.test('an identity provider outage: 503 with Retry-After, and the log line names the reason', async t => {
  const modes = [
    { mode: 'jwks-404', reason: /404/ },
    { mode: 'discovery-404', reason: /404/ },
    { mode: 'discovery-not-json', reason: /json/i },
    { mode: 'jwks-empty', reason: /\S/ }
  ] as const
  for (const { mode, reason } of modes) {
    await t.test(mode, async t => {
      const entra = fakeEntra(t)
      entra.mode = mode
      const logs = captureLogs()
      const app = closing(t, Fastify({ logger: logs.logger }))
      await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
      app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
      const token = entra.token(API_ID)
      const res = await app.inject({ url: '/me', headers: bearer(token) })
      assertProblem(t, res, 'auth_oidc_error', { credential: `Bearer ${token}` })
      t.equal(res.headers['retry-after'], '5', 'Retry-After: 5 (seconds)')

      const rejections = logs.lines.filter(line => line.msg === REJECTED)
      t.equal(rejections.length, 1, 'one log line')
      t.match(rejections[0], { problem: 'auth_oidc_error', status: 503, reason }, 'with the fetch failure as reason')
      t.type(rejections[0]?.reason, 'string')
      for (const part of token.split('.')) t.notOk(logs.raw.some(line => line.includes(part)), 'no log line contains the token')
    })
  }
})

t.test('other rejections carry no reason and no Retry-After', async t => {
  const entra = fakeEntra(t)
  const logs = captureLogs()
  const app = closing(t, Fastify({ logger: logs.logger }))
  await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
  app.get('/me', { onRequest: app.entraAuth('Files.Read') }, async () => ({ ok: true }))
  assertProblem(t, await app.inject('/me'), 'auth_header_missing')
  assertProblem(t, await app.inject({ url: '/me', headers: bearer(entra.token(API_ID, { scp: 'Other' })) }), 'auth_token_insufficient_scopes', { scope: 'Files.Read' })
  const rejections = logs.lines.filter(line => line.msg === REJECTED)
  t.same(rejections.map(line => Object.hasOwn(line, 'reason')), [false, false])
})

t.test('EntraAuthError.headers: Retry-After exactly for 503 problems', async t => {
  for (const type of Object.keys(problems) as ProblemType[]) {
    const headers = new EntraAuthError(type).headers
    if (problems[type].status === 503) t.same(headers, { 'www-authenticate': 'Bearer', 'retry-after': '5' }, type)
    else t.same(Object.keys(headers), ['www-authenticate'], type)
  }
})

t.test('@fastify/auth with Fastify\'s default error handler: the 503 keeps Retry-After', async t => {
  const entra = fakeEntra(t)
  entra.mode = 'jwks-404'
  const app = closing(t, Fastify())
  await app.register(fastifyAuth)
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  app.get('/me', { onRequest: app.auth([app.entraAuth.strategy()]) }, async () => ({ ok: true }))
  const res = await app.inject({ url: '/me', headers: bearer(entra.token(API_ID)) })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.equal(res.headers['www-authenticate'], 'Bearer')
})
