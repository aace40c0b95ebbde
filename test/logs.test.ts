/**
 * Observability (issue 6): one log line per rejection with the problem type and request id and
 * never the token; metrics callbacks; `state()` for health checks.
 */
import fastifyAuth from '@fastify/auth'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { EntraAuthError, type EntraAuthOptions, type EntraToken } from '../src/index.js'
import type { FakeEntra } from '../src/testing/index.js'
import { API_ID, bearer, captureLogs, closing, fakeEntra, type LogLine } from './helpers/index.js'

const REJECTED = 'fastify-entra-auth: request rejected'

/** An app whose log lines (JSON, level `info` unless given) are collected in `lines`. */
async function loggedApp (t: Test, options: Partial<EntraAuthOptions> = {}, loggerLevel = 'info'): Promise<{ app: FastifyInstance, entra: FakeEntra, lines: LogLine[], raw: string[] }> {
  const entra = fakeEntra(t)
  const { logger, lines, raw } = captureLogs(loggerLevel)
  const app = closing(t, Fastify({ logger, requestIdHeader: 'x-request-id' }))
  await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({ ok: true }))
  return { app, entra, lines, raw }
}

t.test('each rejection is logged once, at the configured level, with problem type and request id', async t => {
  const { app, entra, lines, raw } = await loggedApp(t, { rejectionLogLevel: 'warn' })
  const cases = [
    { id: 'req-missing', headers: {}, type: 'auth_header_missing', status: 401 },
    { id: 'req-garbage', headers: { authorization: 'Bearer abc.def.ghi' }, type: 'auth_token_invalid', status: 401 },
    { id: 'req-scope', headers: bearer(entra.token(API_ID, { scp: 'Other' })), type: 'auth_token_insufficient_scopes', status: 403 },
    { id: 'req-audience', headers: bearer(entra.token('someone-else', { scp: 'Files.Read' })), type: 'auth_token_audience_invalid', status: 401 }
  ]
  for (const c of cases) {
    const res = await app.inject({ url: '/read', headers: { ...c.headers, 'x-request-id': c.id } })
    t.equal(res.statusCode, c.status)
  }
  const ok = await app.inject({ url: '/read', headers: { ...bearer(entra.token(API_ID, { scp: 'Files.Read' })), 'x-request-id': 'req-ok' } })
  t.equal(ok.statusCode, 200)

  const rejections = lines.filter(line => line.msg === REJECTED)
  t.same(rejections.map(line => ({ reqId: line.reqId, problem: line.problem, status: line.status, level: line.level })),
    cases.map(c => ({ reqId: c.id, problem: c.type, status: c.status, level: 40 })), 'one warn line per rejection, none for the admitted request')
  const tokens = cases.map(c => (c.headers as { authorization?: string }).authorization?.split(' ')[1]).filter((x): x is string => x !== undefined)
  for (const token of tokens) {
    for (const part of token.split('.')) t.notOk(raw.some(line => line.includes(part)), 'no log line contains any part of the token')
  }
})

t.test('the level is configurable: below the logger level or silent, nothing is logged', async t => {
  for (const [level, loggerLevel, expected] of [['debug', 'info', 0], ['debug', 'debug', 1], ['silent', 'trace', 0], ['info', 'info', 1]] as const) {
    const { app, lines } = await loggedApp(t, { rejectionLogLevel: level }, loggerLevel)
    await app.inject('/read')
    t.equal(lines.filter(line => line.msg === REJECTED).length, expected, `rejectionLogLevel ${level}, logger ${loggerLevel}`)
  }
  const { app, lines } = await loggedApp(t)
  await app.inject('/read')
  t.same(lines.filter(line => line.msg === REJECTED).map(line => line.level), [30], 'default: info')
})

t.test('onAuthSuccess and onAuthFailure are called once per request', async t => {
  const events: Array<[string, string | null, unknown]> = []
  const { app, entra } = await loggedApp(t, {
    rejectionLogLevel: 'silent',
    onAuthSuccess: (request: FastifyRequest, token: EntraToken) => { events.push(['success', request.id, token.claims.sub]) },
    onAuthFailure: (request: FastifyRequest, error: EntraAuthError) => {
      t.ok(error instanceof EntraAuthError)
      events.push(['failure', request.id, error.type])
    }
  })
  await app.register(fastifyAuth)
  app.get('/either', { onRequest: app.auth([app.entraAuth.strategy('Files.Read'), async () => {}]) }, async () => ({ ok: true }))
  app.get('/maybe', { onRequest: app.entraAuth([], { optional: true }) }, async () => ({ ok: true }))

  await app.inject({ url: '/read', headers: { 'x-request-id': 'a' } })
  await app.inject({ url: '/read', headers: { ...bearer(entra.token(API_ID, { scp: 'Files.Read', sub: 'fay' })), 'x-request-id': 'b' } })
  await app.inject({ url: '/read', headers: { ...bearer(entra.token(API_ID, { scp: 'Nope' })), 'x-request-id': 'c' } })
  const either = await app.inject({ url: '/either', headers: { 'x-request-id': 'd' } })
  t.equal(either.statusCode, 200, 'the other strategy admitted it')
  await app.inject({ url: '/maybe', headers: { 'x-request-id': 'e' } })
  t.same(events, [
    ['failure', 'a', 'auth_header_missing'],
    ['success', 'b', 'fay'],
    ['failure', 'c', 'auth_token_insufficient_scopes'],
    ['failure', 'd', 'auth_header_missing']
  ], 'a failed strategy is reported even when another one admits the request; optional without credentials is neither')
})

t.test('a throwing or rejecting callback changes nothing, and is logged', async t => {
  const { app, entra, lines } = await loggedApp(t, {
    rejectionLogLevel: 'silent',
    onAuthSuccess: function metricsDown () { throw new Error('metrics down') },
    onAuthFailure: async function asyncMetrics () { throw new Error('async metrics down') }
  })
  const ok = await app.inject({ url: '/read', headers: bearer(entra.token(API_ID, { scp: 'Files.Read' })) })
  t.equal(ok.statusCode, 200)
  const refused = await app.inject('/read')
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().type, 'auth_header_missing')
  await new Promise(resolve => setImmediate(resolve))
  const errors = lines.filter(line => line.level === 50)
  t.same(errors.map(line => [line.msg, (line.err as { message: string }).message]), [
    ['fastify-entra-auth: metricsDown failed', 'metrics down'],
    ['fastify-entra-auth: asyncMetrics failed', 'async metrics down']
  ])
})

t.test('callbacks are checked at register', async t => {
  for (const key of ['onAuthSuccess', 'onAuthFailure']) {
    const app = closing(t, Fastify())
    await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, tenant: 'common', [key]: 'not a function' }) }, new RegExp(`option '${key}' must be a function`))
  }
})

t.test('state() shows key store and token cache', async t => {
  const { app, entra } = await loggedApp(t, { rejectionLogLevel: 'silent', tokenCache: { max: 10 }, jwks: { cooldown: 0 } })
  app.get('/health', async () => app.entraAuth.state())
  const before = app.entraAuth.state()
  t.same(before, {
    keys: { ready: false, issuer: undefined, jwksUri: undefined, kids: [], keysAge: null, discoveryFetches: 0, jwksFetches: 0, failures: 0, lastError: undefined },
    tokenCache: { size: 0, max: 10, bytes: 0 }
  }, 'nothing loaded before ready')

  await app.ready()
  const token = entra.token(API_ID, { scp: 'Files.Read' })
  t.equal((await app.inject({ url: '/read', headers: bearer(token) })).statusCode, 200)
  t.equal((await app.inject({ url: '/read', headers: bearer(token) })).statusCode, 200)
  const after = (await app.inject('/health')).json()
  t.match(after, {
    keys: { ready: true, issuer: entra.issuer, jwksUri: entra.jwksUri, kids: [entra.keys[0]!.kid], discoveryFetches: 1, jwksFetches: 1, failures: 0 },
    tokenCache: { size: 1, max: 10 }
  }, 'keys loaded once; the token is cached once')
  t.type(after.keys.keysAge, 'number')
  t.same(app.entraAuth.state(), app.entraAuth.verifier.state(), 'the decorator shows its verifier')

  entra.mode = 'jwks-404'
  const unknownKid = entra.client(API_ID, 'v2', entra.newKey('rotated')).generate({ scp: 'Files.Read' })
  t.equal((await app.inject({ url: '/read', headers: bearer(unknownKid) })).statusCode, 401)
  const failed = app.entraAuth.state()
  t.equal(failed.keys.failures, 1, 'a failed refresh is counted')
  t.type(failed.keys.lastError, 'string')
})
