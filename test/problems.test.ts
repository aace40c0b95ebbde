/**
 * Problems: every problem type of the registry through `app.inject` and the standalone verifier,
 * and the acceptance cases of flask-entra-auth (the Python library this package ports) with this
 * package's answers. One section per subject below, each with its own fixtures.
 */
import fastifyAuth from '@fastify/auth'
import Fastify, { type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions, problems, type ProblemType } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { API_ID, CLIENT_ID, assertProblem, bearer, captureLogs, closing, fakeEntra, seedFixture, type SeedFixture, SCOPE_ROUTES } from './helpers/index.js'

/**
 * Contract §6: every problem type of the registry is produced through `app.inject`, each reply is
 * an RFC 9457 problem with its RFC 6750 challenge, `request.entraToken` stays null unless the
 * request was admitted, and `verify()`/`introspect()` (plugin and standalone) report the same
 * problems as `EntraAuthError`.
 */
t.test('problem registry', async t => {
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
})

/**
 * The Python seed's 58 acceptance cases (seed.md), one subtest each, against the seed's fixture
 * app (test/helpers/ `seedApp`), with this package's corrections: 503 for provider outages,
 * 403 for authenticated-but-not-allowed, real Entra `scp` strings.
 */
t.test('flask-entra-auth acceptance cases', async t => {
  function expectOk (t: Test, res: LightMyRequestResponse): void {
    t.equal(res.statusCode, 200, 'status')
    t.same(res.json(), { ok: true })
  }

  /** GET `url` with `Authorization: Bearer <token>`. */
  async function get (fx: SeedFixture, url: string, token: string): Promise<LightMyRequestResponse> {
    return fx.app.inject({ method: 'GET', url, headers: fx.bearer(token) })
  }

  t.test('#1 open route, no auth → 200', async t => {
    const fx = await seedFixture(t)
    expectOk(t, await fx.app.inject({ url: '/open' }))
  })

  t.test('#2 protected route, default claims without scp/roles → 200', async t => {
    const fx = await seedFixture(t)
    expectOk(t, await get(fx, '/restricted', fx.client.generate({ scp: false, roles: false })))
  })

  t.test('#3 no Authorization header → auth_header_missing', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await fx.app.inject({ url: '/restricted' }), 'auth_header_missing', { status: 401 })
  })

  t.test('#4 "Bearer" alone → auth_header_invalid', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await fx.app.inject({ url: '/restricted', headers: { authorization: 'Bearer' } }), 'auth_header_invalid', { status: 401 })
  })

  t.test('#5 "<token>" alone → auth_header_invalid', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await fx.app.inject({ url: '/restricted', headers: { authorization: fx.client.generate() } }), 'auth_header_invalid', { status: 401, challengeError: null })
  })

  t.test('#6 "Invalid <token>" → auth_header_invalid', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await fx.app.inject({ url: '/restricted', headers: { authorization: `Invalid ${fx.client.generate()}` } }), 'auth_header_invalid', { status: 401, challengeError: null })
  })

  t.test('#7 discovery answers 404 → 503 auth_oidc_error', async t => {
    const fx = await seedFixture(t)
    fx.entra.mode = 'discovery-404'
    assertProblem(t, await get(fx, '/restricted', fx.client.generate()), 'auth_oidc_error', { status: 503 })
  })

  t.test('#8 discovery answers 200 with non-JSON → 503 auth_oidc_error', async t => {
    const fx = await seedFixture(t)
    fx.entra.mode = 'discovery-not-json'
    assertProblem(t, await get(fx, '/restricted', fx.client.generate()), 'auth_oidc_error', { status: 503 })
  })

  t.test('#9 discovery answers {} (no allow-lists, token with kid and empty payload) → 503 auth_oidc_error', async t => {
    const fx = await seedFixture(t, { allowedSubjects: [], allowedApps: [] })
    fx.entra.discoveryDocument = {}
    assertProblem(t, await get(fx, '/restricted', fx.client.generateKid()), 'auth_oidc_error', { status: 503 })
    t.ok(fx.entra.requests.discovery >= 1, 'the discovery document was fetched')
  })

  t.test('#10 JWKS answers 404 → 503 auth_oidc_error', async t => {
    const fx = await seedFixture(t)
    fx.entra.mode = 'jwks-404'
    assertProblem(t, await get(fx, '/restricted', fx.client.generate()), 'auth_oidc_error', { status: 503 })
  })

  t.test('#11 JWKS answers 200 with non-JSON → 503 auth_oidc_error', async t => {
    const fx = await seedFixture(t)
    fx.entra.mode = 'jwks-not-json'
    assertProblem(t, await get(fx, '/restricted', fx.client.generate()), 'auth_oidc_error', { status: 503 })
  })

  t.test('#12 JWKS {"keys":[]} → auth_token_key_error', async t => {
    const fx = await seedFixture(t)
    fx.entra.jwksDocument = { keys: [] }
    assertProblem(t, await get(fx, '/restricted', fx.client.generate()), 'auth_token_key_error', { status: 401 })
  })

  t.test('#13 token with no kid and empty payload → auth_token_key_error', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generateEmpty()), 'auth_token_key_error', { status: 401 })
  })

  t.test('#14 "Bearer Invalid" → auth_token_invalid', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await fx.app.inject({ url: '/restricted', headers: { authorization: 'Bearer Invalid' } }), 'auth_token_invalid', { status: 401 })
  })

  t.test('#15 kid "invalid" → auth_token_key_error', async t => {
    const fx = await seedFixture(t)
    const token = fx.client.sign({ alg: 'RS256', typ: 'JWT', kid: 'invalid' }, fx.client.claims.build())
    assertProblem(t, await get(fx, '/restricted', token), 'auth_token_key_error', { status: 401 })
  })

  t.test('#16 signature segment replaced (payload empty) → auth_token_signature_untrusted', async t => {
    const fx = await seedFixture(t)
    const [header, payload] = fx.client.generateKid().split('.')
    // A genuine RS256 signature by the same key, but over another token.
    const otherSignature = fx.client.generate().split('.')[2]
    assertProblem(t, await get(fx, '/restricted', `${header}.${payload}.${otherSignature}`), 'auth_token_signature_untrusted', { status: 401 })
  })

  const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'nbf', 'azp', 'ver']
  REQUIRED_CLAIMS.forEach((claim, i) => {
    t.test(`#${17 + i} ${claim} omitted → auth_token_claim_missing`, async t => {
      const fx = await seedFixture(t)
      const body = assertProblem(t, await get(fx, '/restricted', fx.client.generate({ [claim]: false })), 'auth_token_claim_missing', { status: 401 })
      t.match(body.detail, new RegExp(`\\b${claim}\\b`), `detail names '${claim}'`)
      for (const other of REQUIRED_CLAIMS.filter(c => c !== claim)) {
        t.notMatch(body.detail, new RegExp(`'${other}'`), `detail does not name '${other}'`)
      }
    })
  })

  t.test('#24 iss "invalid" → auth_token_issuer_untrusted', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ iss: 'invalid' })), 'auth_token_issuer_untrusted', { status: 401 })
  })

  t.test('#25 aud "invalid" → auth_token_audience_invalid', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ aud: 'invalid' })), 'auth_token_audience_invalid', { status: 401 })
  })

  t.test('#26 exp 1 → auth_token_expired', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ exp: 1 })), 'auth_token_expired', { status: 401 })
  })

  t.test('#27 nbf 4070908800 → auth_token_immature', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ nbf: 4070908800 })), 'auth_token_immature', { status: 401 })
  })

  t.test('#28 sub "invalid" → 403 auth_token_subject_not_trusted', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ sub: 'invalid' })), 'auth_token_subject_not_trusted', { status: 403 })
  })

  t.test('#29 azp "invalid" → 403 auth_token_azp_not_trusted', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ azp: 'invalid' })), 'auth_token_azp_not_trusted', { status: 403 })
  })

  t.test('#30 ver "invalid" → auth_token_ver_not_supported', async t => {
    const fx = await seedFixture(t)
    assertProblem(t, await get(fx, '/restricted', fx.client.generate({ ver: 'invalid' })), 'auth_token_ver_not_supported', { status: 401 })
  })

  /** `scp` as Entra sends it (one space-delimited string) and `roles` (an array); `false` omits. */
  interface Grant { scp: string | false, roles: string[] | false }

  interface ScopeCase { route: number, grant: Grant, why: string }

  function routeName (route: number): string {
    return `/scopes/${route} ${JSON.stringify(SCOPE_ROUTES[route])}`
  }

  /** Tokens that cover the route's requirement. */
  const SATISFYING: ScopeCase[] = [
    { route: 0, grant: { scp: 'SCOPE_A SCOPE_B SCOPE_C', roles: false }, why: 'A, B and C' },
    { route: 1, grant: { scp: 'SCOPE_A', roles: false }, why: 'only A' },
    { route: 1, grant: { scp: 'SCOPE_B', roles: false }, why: 'only B' },
    { route: 2, grant: { scp: 'SCOPE_B SCOPE_C', roles: false }, why: 'B and C' },
    { route: 3, grant: { scp: false, roles: ['ROLE_1', 'ROLE_2', 'ROLE_3'] }, why: 'roles 1, 2 and 3' },
    { route: 4, grant: { scp: false, roles: ['ROLE_2'] }, why: 'only role 2' },
    { route: 5, grant: { scp: false, roles: ['ROLE_1', 'ROLE_3'] }, why: 'roles 1 and 3' },
    { route: 6, grant: { scp: 'SCOPE_A', roles: ['ROLE_1'] }, why: 'scope A and role 1' },
    { route: 7, grant: { scp: 'SCOPE_A', roles: false }, why: 'only scope A' },
    { route: 7, grant: { scp: false, roles: ['ROLE_1'] }, why: 'only role 1' },
    { route: 8, grant: { scp: 'SCOPE_A SCOPE_C', roles: ['ROLE_1', 'ROLE_3'] }, why: 'the first alternative' },
    { route: 8, grant: { scp: 'SCOPE_B SCOPE_C', roles: ['ROLE_2', 'ROLE_3'] }, why: 'the second alternative' }
  ]

  /** Tokens that don't. */
  const FAILING: ScopeCase[] = [
    { route: 0, grant: { scp: 'SCOPE_A', roles: ['ROLE_1', 'ROLE_2', 'ROLE_3'] }, why: 'only A' },
    { route: 1, grant: { scp: 'SCOPE_C', roles: ['ROLE_1'] }, why: 'only C' },
    { route: 2, grant: { scp: 'SCOPE_A SCOPE_B', roles: false }, why: 'A and B but not C' },
    { route: 3, grant: { scp: 'SCOPE_A SCOPE_B SCOPE_C', roles: ['ROLE_1'] }, why: 'only role 1' },
    { route: 4, grant: { scp: 'SCOPE_A', roles: ['ROLE_3'] }, why: 'only role 3' },
    { route: 5, grant: { scp: false, roles: ['ROLE_1', 'ROLE_2'] }, why: 'roles 1 and 2 but not 3' },
    { route: 6, grant: { scp: 'SCOPE_A', roles: ['ROLE_2'] }, why: 'scope A and role 2' },
    { route: 7, grant: { scp: false, roles: false }, why: 'no scopes at all' },
    { route: 8, grant: { scp: 'SCOPE_A SCOPE_B SCOPE_C', roles: ['ROLE_1', 'ROLE_2'] }, why: 'everything but role 3' }
  ]

  SATISFYING.forEach(({ route, grant, why }, i) => {
    t.test(`#${31 + i} ${routeName(route)} with ${why} → 200`, async t => {
      const fx = await seedFixture(t)
      expectOk(t, await get(fx, `/scopes/${route}`, fx.client.generate({ ...grant })))
    })
  })

  FAILING.forEach(({ route, grant, why }, i) => {
    t.test(`#${43 + i} ${routeName(route)} with ${why} → 403 auth_token_insufficient_scopes`, async t => {
      const fx = await seedFixture(t)
      assertProblem(t, await get(fx, `/scopes/${route}`, fx.client.generate({ ...grant })), 'auth_token_insufficient_scopes', { status: 403 })
      if (grant.scp === false && grant.roles === false) {
        // "any requirement with no scopes": every scope route refuses a token without scp and roles.
        for (let other = 0; other < SCOPE_ROUTES.length; other++) {
          const res = await get(fx, `/scopes/${other}`, fx.client.generate({ ...grant }))
          t.equal(res.statusCode, 403, `${routeName(other)} refuses a token without scopes`)
        }
      }
    })
  })

  t.test('#52 current-token route returns the verified claims → 200, sub test_subject', async t => {
    const fx = await seedFixture(t)
    const res = await get(fx, '/restricted/current-token', fx.client.generate())
    t.equal(res.statusCode, 200)
    t.equal(res.json().claims.sub, 'test_subject')
  })

  t.test('#53 introspect a good token → active: true', async t => {
    const fx = await seedFixture(t)
    const res = await fx.app.inject({ method: 'POST', url: '/introspect', payload: { token: fx.client.generate() } })
    t.equal(res.statusCode, 200)
    t.equal(res.json().active, true)
    t.equal(res.json().sub, 'test_subject')
  })

  t.test('#54 introspect an expired token → active: false', async t => {
    const fx = await seedFixture(t)
    const res = await fx.app.inject({ method: 'POST', url: '/introspect', payload: { token: fx.client.generate({ exp: 1 }) } })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { active: false })
  })

  t.test('#55 contact configured → the problem body carries contact', async t => {
    const fx = await seedFixture(t, { contact: 'mailto:support@example.com' })
    assertProblem(t, await fx.app.inject({ url: '/restricted' }), 'auth_header_missing', { status: 401, contact: 'mailto:support@example.com' })
  })

  t.test('#56 one good request on a cold app → discovery fetched once', async t => {
    const fx = await seedFixture(t)
    t.equal(fx.entra.requests.discovery, 0, 'registering fetches nothing')
    expectOk(t, await get(fx, '/restricted', fx.client.generate()))
    t.equal(fx.entra.requests.discovery, 1)
  })

  t.test('#57 one good request on a cold app → JWKS fetched once', async t => {
    const fx = await seedFixture(t)
    t.equal(fx.entra.requests.jwks, 0, 'registering fetches nothing')
    expectOk(t, await get(fx, '/restricted', fx.client.generate()))
    t.equal(fx.entra.requests.jwks, 1)
  })

  t.test('#58 mock token with an extra claim foo: "bar" → verified claims include it', async t => {
    const fx = await seedFixture(t)
    const res = await get(fx, '/restricted/current-token', fx.client.generate({ additionalClaims: { foo: 'bar' } }))
    t.equal(res.statusCode, 200)
    t.equal(res.json().claims.foo, 'bar')
  })
})
