/**
 * Contract §6: every problem type of the registry is produced through `app.inject`, each reply is
 * an RFC 9457 problem with its RFC 6750 challenge, `request.entraToken` stays null unless the
 * request was admitted, and `verify()`/`introspect()` (plugin and standalone) report the same
 * problems as `EntraAuthError`.
 */
import t from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions, problems, type ProblemType } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { API_ID, CLIENT_ID, assertProblem, bearer, captureLogs, closing, fakeEntra, seedFixture, type SeedFixture } from './helpers/index.js'
import fastifyAuth from '@fastify/auth'
import Fastify from 'fastify'

interface ProblemCase {
  type: ProblemType
  /** The route to call; default `/restricted`. */
  url?: string
  /** Prepares the fixture before the first request (e.g. a failure mode of the fake Entra). */
  setup?: (fx: SeedFixture) => void
  /** The Authorization header to send, if any. */
  authorization?: (fx: SeedFixture) => string
  /** The `scope` challenge attribute expected (insufficient scopes only). */
  scope?: string
  /** Extra plugin options. */
  options?: Partial<EntraAuthOptions>
}

/** The Authorization header value for `token`. */
const bearerValue = (token: string): string => `Bearer ${token}`

const CASES: ProblemCase[] = [
  { type: 'auth_header_missing' },
  // A malformed Bearer credential (another scheme, e.g. Basic, gets a challenge without error code).
  { type: 'auth_header_invalid', authorization: () => 'Bearer not a token' },
  { type: 'auth_oidc_error', setup: fx => { fx.entra.mode = 'discovery-404' }, authorization: fx => bearerValue(fx.client.generate()) },
  { type: 'auth_token_key_error', authorization: fx => bearerValue(fx.client.sign({ alg: 'RS256', typ: 'JWT', kid: 'no-such-key' }, fx.client.claims.build())) },
  { type: 'auth_token_invalid', authorization: fx => bearerValue(fx.client.sign({ alg: 'none', typ: 'JWT', kid: fx.client.key.kid }, fx.client.claims.build())) },
  {
    type: 'auth_token_signature_untrusted',
    authorization: fx => {
      const [header, payload] = fx.client.generate().split('.')
      return bearerValue(`${header}.${payload}.${fx.client.generate({ sub: 'someone_else' }).split('.')[2]}`)
    }
  },
  { type: 'auth_token_claim_missing', authorization: fx => bearerValue(fx.client.generate({ iss: false })) },
  { type: 'auth_token_issuer_untrusted', authorization: fx => bearerValue(fx.client.generate({ iss: 'https://evil.example.com' })) },
  { type: 'auth_token_audience_invalid', authorization: fx => bearerValue(fx.client.generate({ aud: 'another_app' })) },
  { type: 'auth_token_expired', authorization: fx => bearerValue(fx.client.generate({ exp: 1 })) },
  { type: 'auth_token_immature', authorization: fx => bearerValue(fx.client.generate({ nbf: 4070908800 })) },
  { type: 'auth_token_ver_not_supported', authorization: fx => bearerValue(fx.client.generate({ ver: '3.0' })) },
  { type: 'auth_token_subject_not_trusted', authorization: fx => bearerValue(fx.client.generate({ sub: 'intruder' })) },
  { type: 'auth_token_azp_not_trusted', authorization: fx => bearerValue(fx.client.generate({ azp: 'rogue_app' })) },
  { type: 'auth_token_insufficient_scopes', url: '/scopes/0', authorization: fx => bearerValue(fx.client.generate({ scp: 'SCOPE_A', roles: false })), scope: `api://${CLIENT_ID}/SCOPE_A api://${CLIENT_ID}/SCOPE_B` },
  {
    type: 'auth_tenant_check_error',
    options: { allowedTenants: async () => { throw new Error('tenant database unreachable') } },
    authorization: fx => bearerValue(fx.client.generate({ additionalClaims: { tid: '3b7f0c52-2d9e-4f5a-9c1e-7a8b6d5e4f30' } }))
  }
]

for (const contact of [undefined, 'https://example.com/support']) {
  t.test(`every problem type is produced through inject (${contact === undefined ? 'no contact' : 'with contact'})`, async t => {
    const produced = new Set<string>()
    for (const c of CASES) {
      await t.test(c.type, async t => {
        const fx = await seedFixture(t, { ...c.options, ...(contact === undefined ? {} : { contact }) })
        c.setup?.(fx)
        const credential = c.authorization?.(fx)
        const res = await fx.app.inject({ url: c.url ?? '/restricted', headers: credential === undefined ? {} : { authorization: credential } })
        const body = assertProblem(t, res, c.type, { contact, credential, scope: c.scope ?? null })
        produced.add(body.type as string)
      })
    }
    t.same([...produced].sort(), Object.keys(problems).sort(), 'each of the registry\'s types was produced')
    t.equal(Object.keys(problems).length, 16, 'the registry has the 16 types of contract §6')
  })
}

t.test('a problem for the missing header carries a bare Bearer challenge', async t => {
  const fx = await seedFixture(t)
  const res = await fx.app.inject({ url: '/restricted' })
  t.equal(res.headers['www-authenticate'], 'Bearer')
})

t.test('request.entraToken is null on open routes and on rejected requests', async t => {
  const fx = await seedFixture(t)
  const seen: Array<{ url: string, status: number, token: unknown }> = []
  fx.app.addHook('onResponse', async (request, reply) => {
    seen.push({ url: request.url, status: reply.statusCode, token: request.entraToken })
  })
  fx.app.get('/open/echo', async (request) => ({ token: request.entraToken }))

  const echo = await fx.app.inject({ url: '/open/echo' })
  t.equal(echo.statusCode, 200)
  t.same(echo.json(), { token: null }, 'open route handler sees null')

  const rejected = [
    fx.client.generate({ exp: 1 }),
    fx.client.generate({ sub: 'intruder' }),
    fx.client.generate({ scp: 'SCOPE_A', roles: false })
  ]
  await fx.app.inject({ url: '/restricted', headers: fx.bearer(rejected[0]!) })
  await fx.app.inject({ url: '/restricted', headers: fx.bearer(rejected[1]!) })
  // A valid token on a route whose scopes it lacks: authenticated, but not admitted.
  await fx.app.inject({ url: '/scopes/0', headers: fx.bearer(rejected[2]!) })
  await fx.app.inject({ url: '/open' })
  await fx.app.inject({ url: '/restricted', headers: fx.bearer(fx.client.generate()) })

  t.same(seen.map(s => s.status), [200, 401, 403, 403, 200, 200])
  for (const s of seen.slice(0, 5)) t.equal(s.token, null, `${s.url} (${s.status}): entraToken is null`)
  const admitted = seen[5]?.token as { claims?: { sub?: string } } | null | undefined
  t.equal(admitted?.claims?.sub, 'test_subject', 'an admitted request carries the token')
})

t.test('app.entraAuth.verify rejects with EntraAuthError carrying type, title, status, detail', async t => {
  const fx = await seedFixture(t)
  await fx.app.ready()
  const expectations: Array<[string, ProblemType]> = [
    [fx.client.generate({ exp: 1 }), 'auth_token_expired'],
    [fx.client.generate({ sub: 'intruder' }), 'auth_token_subject_not_trusted'],
    ['not-a-jwt', 'auth_token_invalid']
  ]
  for (const [token, type] of expectations) {
    const err = await fx.app.entraAuth.verify(token).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof EntraAuthError, `${type}: an EntraAuthError`)
    if (!(err instanceof EntraAuthError)) continue
    t.equal(err.type, type)
    t.equal(err.title, problems[type].title)
    t.equal(err.status, problems[type].status)
    t.type(err.detail, 'string')
    t.ok(err.detail.length > 0)
    t.notOk(err.detail.includes(token), 'detail does not echo the token')
  }
  const token = await fx.app.entraAuth.verify(fx.client.generate())
  t.equal(token.claims.sub, 'test_subject', 'a good token verifies')
})

t.test('createEntraVerifier (standalone)', async t => {
  const clientId = 'a0b1c2d3-0000-4000-8000-00000000a11e'
  const entra = new FakeEntra()
  const verifier = createEntraVerifier({ clientId, ...entra.pluginOptions() })
  t.teardown(async () => {
    await verifier.close()
    await entra.close()
  })
  const client = entra.client(clientId)

  await t.test('verify resolves with an EntraToken for a good token', async t => {
    const token = await verifier.verify(client.generate({ scp: 'Files.Read User.Read', roles: ['Admin'] }))
    t.equal(token.version, '2.0')
    t.same(token.scopes, ['Files.Read', 'User.Read', 'Admin'])
  })

  await t.test('verify rejects with EntraAuthError', async t => {
    const err = await verifier.verify(client.generate({ aud: 'api://someone-else' })).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof EntraAuthError)
    t.match(err, { type: 'auth_token_audience_invalid', status: 401, title: problems.auth_token_audience_invalid.title, detail: String })
  })

  await t.test('introspect answers { active: false } for bad tokens', async t => {
    t.same(await verifier.introspect(client.generate({ exp: 1 })), { active: false }, 'expired')
    t.same(await verifier.introspect('garbage'), { active: false }, 'not a JWT')
    t.same(await verifier.introspect(client.generate({ iss: 'https://evil.example.com/' })), { active: false }, 'wrong issuer')
  })

  await t.test('introspect answers the RFC 7662 shape for a good token', async t => {
    const raw = client.generate({ scp: 'Files.Read User.Read', roles: ['Admin'], additionalClaims: { preferred_username: 'ada@example.com' } })
    const claims = JSON.parse(Buffer.from(raw.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
    const info = await verifier.introspect(raw)
    t.same(info, {
      active: true,
      scope: 'Files.Read User.Read Admin',
      client_id: claims.azp,
      username: 'ada@example.com',
      token_type: 'Bearer',
      exp: claims.exp,
      iat: claims.iat,
      nbf: claims.nbf,
      sub: claims.sub,
      aud: clientId,
      iss: entra.issuerFor()
    })
    t.type(info.scope, 'string', 'scope is a space-joined string')
  })

  await t.test('introspect rejects with auth_oidc_error when keys cannot be had', async t => {
    const down = new FakeEntra()
    down.mode = 'discovery-404'
    const cold = createEntraVerifier({ clientId, ...down.pluginOptions() })
    t.teardown(async () => {
      await cold.close()
      await down.close()
    })
    const err = await cold.introspect(down.token(clientId)).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof EntraAuthError)
    t.match(err, { type: 'auth_oidc_error', status: 503 })
    t.ok(down.requests.discovery >= 1, 'the discovery document was asked for')
  })
})

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
  assertProblem(t, await app.inject({ url: '/me', headers: bearer(entra.token(API_ID, { scp: 'Other' })) }), 'auth_token_insufficient_scopes', { scope: `api://${API_ID}/Files.Read` })
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
