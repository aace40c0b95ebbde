/**
 * The Python seed's 58 acceptance cases (seed.md), one subtest each, against the seed's fixture
 * app (test/helpers/ `seedApp`), with this package's corrections: 503 for provider outages,
 * 403 for authenticated-but-not-allowed, real Entra `scp` strings.
 */
import type { LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { assertProblem, SCOPE_ROUTES, seedFixture, type SeedFixture } from './helpers/index.js'

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
