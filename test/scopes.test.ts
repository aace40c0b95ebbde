/**
 * Route requirements: what is refused when the route is defined, app-only routes, and the 403
 * challenge's `scope` (one alternative that would be enough, as clients request it).
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type ScopeRequirement } from '../src/index.js'
import { inspectToken } from '../src/inspect/validate.js'
import { API_ID, assertProblem, bearer, closing, fakeEntra, parseChallenge } from './helpers/index.js'

const PREFIX = `api://${API_ID}/`

async function appWith (t: Test): Promise<{ app: FastifyInstance, entra: ReturnType<typeof fakeEntra> }> {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  return { app, entra }
}

t.test('requirements that would open the route, or never admit anyone, throw when the route is defined', async t => {
  const { app } = await appWith(t)
  const refused: Array<[string, unknown, RegExp]> = [
    ['{}', {}, /names no scope and no app role.*\{ roles: \['Admin'\] \}/],
    ['{ roles: [] }', { roles: [] }, /names no scope and no app role/],
    ['{ scopes: [], roles: [] }', { scopes: [], roles: [] }, /a list read from configuration may have come out empty/],
    ['{ appOnly: true }', { appOnly: true }, /names no scope and no app role/],
    ["'Files.Read,Files.Write'", 'Files.Read,Files.Write', /'Files\.Read,Files\.Write', and scope names have no commas: write \['Files\.Read', 'Files\.Write'\] for any one of them, or 'Files\.Read Files\.Write' for all of them/],
    ["['A', 'B,C']", ['A', 'B,C'], /'B,C'.*\['B', 'C'\]/],
    ["{ roles: ['Admin,Reader'] }", { roles: ['Admin,Reader'] }, /the requirement's 'roles' contains 'Admin,Reader'/],
    ['appOnly with delegated scopes', { scopes: ['Files.Read'], roles: ['Files.Read.All'], appOnly: true }, /carry no delegated scopes.*put the app roles the route needs into 'roles'/],
    ["appOnly: 'yes'", { roles: ['A'], appOnly: 'yes' }, /'appOnly' must be true or false/],
    ['an unknown key', { role: ['A'] }, /unknown requirement key 'role' \(the object form is \{ scopes\?, roles\?, appOnly\? \}\)/],
    ['null', null, /must be a string, an array of strings, or \{ scopes\?, roles\?, appOnly\? \}; leave it out for authentication only/]
  ]
  for (const [label, requirement, message] of refused) {
    t.throws(() => app.entraAuth(requirement as ScopeRequirement), { name: 'TypeError', message }, `entraAuth(${label})`)
    t.throws(() => app.entraAuth.strategy(requirement as ScopeRequirement), TypeError, `strategy(${label})`)
  }
  // Authentication only stays as it was; an empty list inside a form with another non-empty one is fine.
  for (const requirement of [undefined, [], { scopes: [], roles: ['Admin'] }, { scopes: 'A', roles: [] }]) {
    t.doesNotThrow(() => app.entraAuth(requirement as ScopeRequirement), JSON.stringify(requirement) ?? 'undefined')
  }
})

t.test('an empty list from configuration is refused, not open', async t => {
  const { app, entra } = await appWith(t)
  const config = { adminRoles: ''.split(',').filter(Boolean) }
  t.throws(() => app.get('/admin', { onRequest: app.entraAuth({ roles: config.adminRoles }) }, async () => ({})), TypeError)
  await app.ready()
  t.equal((await app.inject({ url: '/admin', headers: bearer(entra.token(API_ID)) })).statusCode, 404, 'the route was never defined')
})

t.test('appOnly: only app-only tokens pass, a user with the app role gets 403', async t => {
  const { app, entra } = await appWith(t)
  app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'], appOnly: true }) }, async (request) => ({ app: request.entraToken?.isAppOnly }))
  app.get('/either', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async () => ({ ok: true }))
  await app.ready()

  const daemon = entra.client(API_ID, 'app').generate({ roles: ['Reports.Read.All'] })
  const daemonWithoutRole = entra.client(API_ID, 'app').generate({ roles: ['Other'] })
  const userWithRole = entra.client(API_ID).generate({ scp: 'access_as_user', roles: ['Reports.Read.All'] })
  // A user token whose client asked for no delegated scope still names a user: idtyp 'user'.
  const userWithoutScp = entra.client(API_ID).generate({ scp: false, roles: ['Reports.Read.All'], additionalClaims: { idtyp: 'user' } })
  // Without idtyp, Entra's rule: an app token has oid == sub (the preset's user token differs).
  const noIdtypUser = entra.client(API_ID).generate({ scp: false, roles: ['Reports.Read.All'] })
  const noIdtypApp = entra.client(API_ID, 'app').generate({ roles: ['Reports.Read.All'], additionalClaims: { idtyp: undefined } })
  // An `idtyp: app` token that carries delegated scopes is no app-only token.
  const appWithScp = entra.client(API_ID, 'app').generate({ scp: 'access_as_user', roles: ['Reports.Read.All'] })

  t.same((await app.inject({ url: '/reports', headers: bearer(daemon) })).json(), { app: true }, 'the daemon')
  t.equal((await app.inject({ url: '/reports', headers: bearer(noIdtypApp) })).statusCode, 200, 'an app token without idtyp (oid == sub, no scp)')
  for (const [label, token] of [['user with the app role', userWithRole], ['user without scp', userWithoutScp], ['user token without idtyp', noIdtypUser], ['idtyp app with scp', appWithScp]] as const) {
    const res = await app.inject({ url: '/reports', headers: bearer(token) })
    assertProblem(t, res, 'auth_token_insufficient_scopes', { scope: `${PREFIX}.default`, detail: /^This route is for applications: .*not a user's token, even one whose user was assigned the app role\. This route needs "Reports\.Read\.All" \(app role\)\./, credential: token })
    t.comment(label)
    t.equal((await app.inject({ url: '/either', headers: bearer(token) })).statusCode, 200, `${label}: the same token passes a route without appOnly`)
  }
  const res = await app.inject({ url: '/reports', headers: bearer(daemonWithoutRole) })
  assertProblem(t, res, 'auth_token_insufficient_scopes', { scope: `${PREFIX}.default`, detail: /^This route needs "Reports\.Read\.All" \(app role\)\. Request a token with them/ })
  t.notMatch(res.json().detail, /for applications/, 'an app without the role is told about the role only')

  t.test('explain() and the inspector judge it the same way', async t => {
    const requirement: ScopeRequirement = { roles: ['Reports.Read.All'], appOnly: true }
    const forUser = await app.entraAuth.explain(userWithRole, requirement)
    t.equal(forUser.valid, false)
    t.match(forUser.problem, { type: 'auth_token_insufficient_scopes', step: 'scopes', detail: /for applications/ })
    t.match(forUser.steps.at(-1), { step: 'scopes', ok: false, facts: { appOnly: true, isAppOnly: false } })
    t.equal((await app.entraAuth.explain(daemon, requirement)).valid, true)

    const inspected = await inspectToken(userWithRole, { clientId: API_ID, ...entra.pluginOptions(), requirement })
    t.match(inspected.validation?.problem, { type: 'auth_token_insufficient_scopes', detail: /for applications/ })
    t.equal((await inspectToken(daemon, { clientId: API_ID, ...entra.pluginOptions(), requirement })).validation?.valid, true)
    await t.rejects(inspectToken(daemon, { clientId: API_ID, ...entra.pluginOptions(), requirement: { roles: [], appOnly: true } }), TypeError)
  })
})

t.test("the challenge's scope names the first alternative as clients request it; the detail names all", async t => {
  const { app, entra } = await appWith(t)
  const routes: Array<[string, ScopeRequirement, string, RegExp]> = [
    ['/either', ['Files.Read', 'Files.ReadWrite'], `${PREFIX}Files.Read`, /needs "Files\.Read" or "Files\.ReadWrite"\. Request a token with one of them/],
    ['/both', 'Files.Read Files.Write', `${PREFIX}Files.Read ${PREFIX}Files.Write`, /needs "Files\.Read Files\.Write"\./],
    ['/mixed', ['A C', 'B C'], `${PREFIX}A ${PREFIX}C`, /needs "A C" or "B C"/],
    ['/delegated-first', { scopes: 'Jobs.Write', roles: 'Jobs.Run' }, `${PREFIX}Jobs.Write`, /needs "Jobs\.Write" \(delegated scope\) or "Jobs\.Run" \(app role\)/],
    ['/role', { roles: ['Jobs.Run', 'Jobs.Admin'] }, `${PREFIX}.default`, /needs "Jobs\.Run" \(app role\) or "Jobs\.Admin" \(app role\)/]
  ]
  for (const [url, requirement] of routes) app.get(url, { onRequest: app.entraAuth(requirement) }, async () => ({}))
  await app.ready()
  const token = entra.token(API_ID, { scp: 'Other', roles: false })
  for (const [url, , scope, detail] of routes) {
    const res = await app.inject({ url, headers: bearer(token) })
    assertProblem(t, res, 'auth_token_insufficient_scopes', { scope, detail })
    t.equal(parseChallenge(res.headers['www-authenticate']).params.error, 'insufficient_scope', url)
  }
})

t.test('the challenge uses the OpenAPI scope prefix when one is configured', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', openapi: { scopePrefix: 'https://contoso.com/files/' }, ...entra.pluginOptions() })
  app.get('/read', { onRequest: app.entraAuth(['Files.Read', 'Files.All']) }, async () => ({}))
  await app.ready()
  const res = await app.inject({ url: '/read', headers: bearer(entra.token(API_ID, { scp: 'Other' })) })
  assertProblem(t, res, 'auth_token_insufficient_scopes', { scope: 'https://contoso.com/files/Files.Read' })
})
