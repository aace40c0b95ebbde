/**
 * Contract §2 and §3: options are checked once, at register time, with errors naming the
 * offending option; valid options derive the discovery URL; malformed route requirements throw
 * when the route is defined.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions, EntraAuthOptionsError, type EntraVerifierOptions } from '../src/index.js'
import { FAKE_TENANT_ID, FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'
import { RecordingDispatcher, resolvedOptionsOf, ROOT } from './helpers/index.js'
import { OPTION_DEFAULTS, resolveOptions } from '../src/options.js'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const CLIENT_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

/** A fake Entra whose dispatcher records every URL, closed with the test. */
function fakeEntra (t: Test, options: FakeEntraOptions = {}): { entra: FakeEntra, recorder: RecordingDispatcher } {
  const entra = new FakeEntra(options)
  const recorder = new RecordingDispatcher(entra.dispatcher)
  t.teardown(async () => { await entra.close() })
  return { entra, recorder }
}

function newApp (t: Test): FastifyInstance {
  const app = Fastify({ logger: false })
  t.teardown(async () => { await app.close() })
  return app
}

interface BadCase {
  name: string
  options: Record<string, unknown>
  /** What the error message must say: at least the option's name. */
  message: RegExp
}

const TENANT = { tenant: 'contoso.onmicrosoft.com' }

const BAD: BadCase[] = [
  { name: 'missing clientId', options: { ...TENANT }, message: /'clientId'/ },
  { name: 'empty clientId', options: { clientId: '', ...TENANT }, message: /'clientId'/ },
  { name: 'clientId not a string', options: { clientId: 42, ...TENANT }, message: /'clientId'/ },
  { name: 'neither oidcEndpoint nor tenant', options: { clientId: CLIENT_ID }, message: /'oidcEndpoint'.*'tenant'|'tenant'.*'oidcEndpoint'/ },
  { name: 'both oidcEndpoint and tenant', options: { clientId: CLIENT_ID, ...TENANT, oidcEndpoint: 'https://login.example.com/.well-known/openid-configuration' }, message: /'oidcEndpoint'.*'tenant'|'tenant'.*'oidcEndpoint'/ },
  { name: 'unknown key', options: { clientId: CLIENT_ID, ...TENANT, audience: ['api://x'] }, message: /unknown option 'audience'/ },
  { name: 'unknown key in jwks', options: { clientId: CLIENT_ID, ...TENANT, jwks: { ttl: 1000, refresh: 5 } }, message: /jwks\.refresh/ },
  { name: 'audiences not an array', options: { clientId: CLIENT_ID, ...TENANT, audiences: 'api://x' }, message: /'audiences'/ },
  { name: 'allowedTenants not an array', options: { clientId: CLIENT_ID, ...TENANT, allowedTenants: FAKE_TENANT_ID }, message: /'allowedTenants'/ },
  { name: 'clockTolerance negative', options: { clientId: CLIENT_ID, ...TENANT, clockTolerance: -1 }, message: /'clockTolerance'/ },
  { name: 'clockTolerance not a number', options: { clientId: CLIENT_ID, ...TENANT, clockTolerance: '5s' }, message: /'clockTolerance'/ },
  { name: 'jwks.ttl 0', options: { clientId: CLIENT_ID, ...TENANT, jwks: { ttl: 0 } }, message: /'jwks\.ttl'/ },
  { name: 'jwks.timeout negative', options: { clientId: CLIENT_ID, ...TENANT, jwks: { timeout: -5 } }, message: /'jwks\.timeout'/ },
  { name: 'jwks.cooldown negative', options: { clientId: CLIENT_ID, ...TENANT, jwks: { cooldown: -1 } }, message: /'jwks\.cooldown'/ },
  { name: "tokenVersions ['3.0']", options: { clientId: CLIENT_ID, ...TENANT, tokenVersions: ['3.0'] }, message: /'tokenVersions/ },
  { name: 'now not a function', options: { clientId: CLIENT_ID, ...TENANT, now: 1700000000000 }, message: /'now'/ },
  { name: 'contact not a string', options: { clientId: CLIENT_ID, ...TENANT, contact: { email: 'a@example.com' } }, message: /'contact'/ },
  { name: 'http oidcEndpoint on a non-loopback host', options: { clientId: CLIENT_ID, oidcEndpoint: 'http://login.example.com/.well-known/openid-configuration' }, message: /'oidcEndpoint'.*https/ },
  { name: 'oidcEndpoint not a URL', options: { clientId: CLIENT_ID, oidcEndpoint: 'login.example.com/.well-known/openid-configuration' }, message: /'oidcEndpoint'/ },
  { name: 'tenant with a path', options: { clientId: CLIENT_ID, tenant: 'contoso.onmicrosoft.com/../evil' }, message: /'tenant'/ },
  { name: 'authorityHost without tenant', options: { clientId: CLIENT_ID, oidcEndpoint: 'https://login.example.com/.well-known/openid-configuration', authorityHost: 'login.microsoftonline.us' }, message: /'authorityHost'/ },
  { name: 'authorityHost not a host', options: { clientId: CLIENT_ID, ...TENANT, authorityHost: 'login.microsoftonline.us/evil?x=' }, message: /'authorityHost'/ }
]

t.test('misconfiguration fails at register with a message naming the option', async t => {
  const { entra } = fakeEntra(t)
  for (const c of BAD) {
    await t.test(c.name, async t => {
      const app = newApp(t)
      // Every case gets the fake's dispatcher, so a fetch (which must not happen) could not leave.
      await t.rejects(async () => {
        await app.register(entraAuth, { ...c.options, dispatcher: entra.dispatcher } as unknown as EntraAuthOptions)
        await app.ready()
      }, { name: 'TypeError', message: c.message })
      t.same(entra.requests, { discovery: 0, jwks: 0 }, 'nothing was fetched')
    })
  }
})

t.test("other plugins' option names point to this plugin's", async t => {
  const hints: Array<[string, Record<string, unknown>, RegExp]> = [
    ['tenantId', { tenantId: FAKE_TENANT_ID }, /unknown option 'tenantId' \(did you mean 'tenant'\? It takes a tenant ID, a domain/],
    ['issuer (fastify-jwt-jwks)', { issuer: 'https://login.microsoftonline.com/x/v2.0', ...TENANT }, /unknown option 'issuer' \(the issuer comes from the discovery document: give 'tenant'.*or 'oidcEndpoint'/],
    ['jwksUrl (fastify-jwt-jwks)', { jwksUrl: 'https://login.microsoftonline.com/x/discovery/v2.0/keys', ...TENANT }, /unknown option 'jwksUrl' \(the keys' URL comes from the discovery document: give 'tenant'.*or 'oidcEndpoint'/]
  ]
  for (const [name, options, message] of hints) {
    const app = newApp(t)
    await t.rejects(async () => { await app.register(entraAuth, { clientId: CLIENT_ID, ...options } as unknown as EntraAuthOptions) }, { name: 'TypeError', code: 'FST_ENTRA_AUTH_INVALID_OPTIONS', message }, name)
  }
  const app = newApp(t)
  await t.rejects(async () => { await app.register(entraAuth, { clientId: CLIENT_ID, ...TENANT, jwks: { issuer: 'x' } } as unknown as EntraAuthOptions) }, { message: /^fastify-entra-auth: unknown option 'jwks\.issuer'$/ }, 'a nested key gets no top-level hint')
})

t.test('an app with bad options never starts serving', async t => {
  const app = newApp(t)
  app.register(entraAuth, { clientId: CLIENT_ID } as EntraAuthOptions)
  app.get('/open', async () => ({ ok: true }))
  await t.rejects(app.inject({ url: '/open' }), { message: /'oidcEndpoint'/ })
})

t.test('tenant derives the v2.0 discovery URL on login.microsoftonline.com', async t => {
  for (const tenant of [FAKE_TENANT_ID, 'contoso.onmicrosoft.com', 'organizations', 'common']) {
    await t.test(tenant, async t => {
      const { entra, recorder } = fakeEntra(t, { tenant })
      const app = newApp(t)
      await app.register(entraAuth, { clientId: CLIENT_ID, tenant, dispatcher: recorder })
      const expected = `https://login.microsoftonline.com/${tenant}/v2.0/.well-known/openid-configuration`
      t.equal(resolvedOptionsOf(app.entraAuth.verifier).discoveryUrl.href, expected)
      await app.ready()
      t.equal(recorder.urls[0], expected, 'the derived URL is the one fetched')
      t.equal(entra.requests.discovery, 1)
    })
  }
})

t.test('authorityHost selects a sovereign cloud', async t => {
  for (const host of ['login.microsoftonline.us', 'login.chinacloudapi.cn']) {
    await t.test(host, async t => {
      const { entra, recorder } = fakeEntra(t, { origin: `https://${host}` })
      const app = newApp(t)
      await app.register(entraAuth, { clientId: CLIENT_ID, tenant: FAKE_TENANT_ID, authorityHost: host, dispatcher: recorder, rejectionLogLevel: 'silent' })
      app.get('/me', { onRequest: app.entraAuth() }, async (request) => ({ iss: request.entraToken?.claims.iss }))
      const expected = `https://${host}/${FAKE_TENANT_ID}/v2.0/.well-known/openid-configuration`
      t.equal(resolvedOptionsOf(app.entraAuth.verifier).discoveryUrl.href, expected)

      const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${entra.token(CLIENT_ID)}` } })
      t.equal(res.statusCode, 200)
      t.same(res.json(), { iss: `https://${host}/${FAKE_TENANT_ID}/v2.0` })
      t.equal(recorder.urls[0], expected, 'discovery fetched from the sovereign cloud')
      t.ok(recorder.urls.every(url => url.startsWith(`https://${host}/`)), 'nothing fetched from the public cloud')
    })
  }
})

t.test('oidcEndpoint over http is accepted on loopback', async t => {
  for (const origin of ['http://localhost:8080', 'http://127.0.0.1:8080']) {
    const app = newApp(t)
    const { entra } = fakeEntra(t, { origin })
    await app.register(entraAuth, { clientId: CLIENT_ID, ...entra.pluginOptions() })
    t.equal(resolvedOptionsOf(app.entraAuth.verifier).discoveryUrl.href, entra.oidcEndpoint)
  }
})

// Durations are whole milliseconds (a fraction of one is refused: see below).
t.test('jwks accepts sub-second durations and a cooldown of 0', async t => {
  const { entra } = fakeEntra(t)
  const app = newApp(t)
  await app.register(entraAuth, { clientId: CLIENT_ID, ...entra.pluginOptions(), jwks: { ttl: 50, cooldown: 0, timeout: 250 } })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  const { jwks } = resolvedOptionsOf(app.entraAuth.verifier)
  t.equal(jwks.ttl, 50)
  t.equal(jwks.cooldown, 0)
  t.equal(jwks.timeout, 250)
  const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${entra.token(CLIENT_ID)}` } })
  t.equal(res.statusCode, 200)
})

t.test("Fastify's own register options are not refused", async t => {
  const { entra } = fakeEntra(t)
  const app = newApp(t)
  await app.register(entraAuth, { clientId: CLIENT_ID, ...entra.pluginOptions(), prefix: '/api', logLevel: 'warn' } as EntraAuthOptions)
  t.equal(resolvedOptionsOf(app.entraAuth.verifier).clientId, CLIENT_ID)
})

t.test('a malformed route requirement throws when the route is defined', async t => {
  const { entra } = fakeEntra(t)
  const app = newApp(t)
  await app.register(entraAuth, { clientId: CLIENT_ID, ...entra.pluginOptions() })
  const handler = async (): Promise<{ ok: boolean }> => ({ ok: true })
  const malformed: Array<[string, unknown]> = [
    ['an empty alternative', ['']],
    ['a blank alternative', ['Files.Read', '   ']],
    ['an empty string', ''],
    ['a non-string alternative', [42]],
    ['a number', 42],
    ['an object with an unknown key', { scope: ['Files.Read'] }],
    ['a scope with a double quote', ['Files"Read']],
    ['a scope with a comma', 'Files.Read,Files.Write'],
    ['an object form without a non-empty list', { roles: [] }],
    ['null', null]
  ]
  malformed.forEach(([name, requirement], i) => {
    t.throws(() => {
      app.get(`/bad/${i}`, { onRequest: app.entraAuth(requirement as string[]) }, handler)
    }, { name: 'TypeError', message: /fastify-entra-auth/ }, name)
  })

  // Well-formed requirements are accepted, and the app still starts and serves.
  const wellFormed: unknown[] = [undefined, [], 'Files.Read', ['Files.Read'], ['A B', 'C'], { scopes: ['Files.Read'], roles: 'Files.Read.All' }]
  wellFormed.forEach((requirement, i) => {
    t.doesNotThrow(() => {
      app.get(`/good/${i}`, { onRequest: app.entraAuth(requirement as string[]) }, handler)
    }, JSON.stringify(requirement) ?? 'undefined')
  })
  const res = await app.inject({ url: '/good/0', headers: { authorization: `Bearer ${entra.token(CLIENT_ID)}` } })
  t.equal(res.statusCode, 200)
})

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const CODE = 'FST_ENTRA_AUTH_INVALID_OPTIONS'

const entra = new FakeEntra()
t.teardown(() => entra.close())

/** The error registering `options` throws (fails the test when it does not throw). */
async function registerError (t: Test, options: Record<string, unknown>): Promise<TypeError & { code?: string, issues?: string[] }> {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  try {
    await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), ...options } as unknown as EntraAuthOptions)
    await app.ready()
  } catch (err) {
    return err as TypeError & { code?: string }
  }
  t.fail(`registering ${JSON.stringify(options)} did not throw`)
  return new TypeError('did not throw')
}

function verifierError (options: Record<string, unknown>): TypeError & { code?: string, issues?: string[] } {
  try {
    const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions(), ...options } as unknown as EntraVerifierOptions)
    verifier.close().catch(() => {})
  } catch (err) {
    return err as TypeError
  }
  return new TypeError('did not throw')
}

function checkError (t: Test, err: TypeError & { code?: string }, message: RegExp, label: string): void {
  t.type(err, TypeError, `${label}: a TypeError`)
  t.equal(err.name, 'TypeError', `${label}: named TypeError`)
  t.ok(err instanceof EntraAuthOptionsError, `${label}: an EntraAuthOptionsError`)
  t.equal(err.code, CODE, `${label}: code`)
  t.match(err.message, message, label)
  t.notMatch(err.message, /Expected (union|string|number|integer|array|object|boolean)|must match pattern|Unexpected property/, `${label}: in the package's own words`)
}

t.test('now must yield a finite number, or every token is refused (never admitted)', async t => {
  for (const [label, clock] of [['undefined', () => undefined], ['NaN', () => NaN], ['a string', () => '1700000000000'], ['Infinity', () => Infinity], ['null', () => null]] as const) {
    await t.test(label, async t => {
      const app = Fastify({ logger: false })
      t.teardown(() => app.close())
      await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), now: clock as unknown as () => number })
      app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
      const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${entra.token(API_ID)}` } })
      t.equal(res.statusCode, 401)
      t.equal(res.json().type, 'auth_token_expired')
      const err = await app.entraAuth.verify(entra.token(API_ID)).catch((err: unknown) => err)
      t.ok(err instanceof EntraAuthError && err.type === 'auth_token_expired', 'verify rejects with an EntraAuthError')
      t.same(await app.entraAuth.introspect(entra.token(API_ID)), { active: false })
    })
  }

  await t.test('a clock that breaks after a token was cached', async t => {
    let now: unknown = Date.now()
    const app = Fastify({ logger: false })
    t.teardown(() => app.close())
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), now: () => now as number })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    const token = entra.token(API_ID)
    t.equal((await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
    now = undefined
    const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
    t.equal(res.statusCode, 401, 'the cached token is refused too')
  })
})

t.test('jwks durations: whole milliseconds from 0 or 1 to 2^31-1', async t => {
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ timeout: 1500.5 }, 'jwks.timeout'],
    [{ timeout: 5e9 }, 'jwks.timeout'],
    [{ timeout: 2 ** 31 }, 'jwks.timeout'],
    [{ timeout: 0 }, 'jwks.timeout'],
    [{ ttl: 0.5 }, 'jwks.ttl'],
    [{ ttl: Infinity }, 'jwks.ttl'],
    [{ ttl: NaN }, 'jwks.ttl'],
    [{ cooldown: -1 }, 'jwks.cooldown'],
    [{ cooldown: 1e12 }, 'jwks.cooldown'],
    [{ maxStale: 0.25 }, 'jwks.maxStale'],
    [{ maxStale: '1h' }, 'jwks.maxStale']
  ]
  for (const [jwks, name] of bad) {
    const err = await registerError(t, { jwks })
    checkError(t, err, new RegExp(`option '${name.replace('.', '\\.')}' must be a whole number of milliseconds`), JSON.stringify(jwks))
  }
  checkError(t, await registerError(t, { clockTolerance: Infinity }), /option 'clockTolerance' must be a number of milliseconds/, 'clockTolerance Infinity')

  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), jwks: { ttl: 50, cooldown: 0, timeout: 2 ** 31 - 1, maxStale: 0 } })
  t.same(resolvedOptionsOf(app.entraAuth.verifier).jwks, { ttl: 50, cooldown: 0, timeout: 2 ** 31 - 1, maxStale: 0, maxBytes: 1024 * 1024 }, 'sub-second, zero and the largest timer are fine')
})

t.test('allowedTenants takes tenant IDs (GUIDs) only', async t => {
  for (const tenants of [['contoso.onmicrosoft.com'], [entra.tenantId, 'common'], ['72f988bf86f141af91ab2d7cd011db47']]) {
    checkError(t, await registerError(t, { allowedTenants: tenants }), /option 'allowedTenants' must be an array of tenant IDs \(GUIDs/, JSON.stringify(tenants))
  }
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), allowedTenants: [entra.tenantId.toUpperCase()] })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${entra.token(API_ID)}` } })
  t.equal(res.statusCode, 200, 'an upper-case GUID matches the lower-case tid Entra sends')
})

t.test('createEntraVerifier refuses the plugin-only options, naming them', async t => {
  const pluginOnly: Record<string, unknown> = {
    decorator: 'otherAuth',
    tokenSources: [{ cookie: 'token' }],
    onAuthSuccess: () => {},
    onAuthFailure: () => {},
    rejectionLogLevel: 'warn',
    openapi: false
  }
  for (const [name, value] of Object.entries(pluginOnly)) {
    checkError(t, verifierError({ [name]: value }), new RegExp(`option '${name}' belongs to the plugin: createEntraVerifier does not take it`), name)
  }
  const all = verifierError(pluginOnly)
  t.equal(all.issues?.length, 6, 'each is named')
  for (const name of Object.keys(pluginOnly)) t.match(all.message, `'${name}'`)
})

t.test('every problem is reported, not only the first', async t => {
  const err = await registerError(t, { clientId: 42, jwks: { timeout: 1.5, refresh: 5 }, allowedTenants: ['contoso.com'], tokenVersions: ['3.0'], audience: ['x'] })
  checkError(t, err, /6 problems with the options:\n- /, 'six problems')
  t.same([...(err.issues ?? [])].sort(), [
    "option 'allowedTenants' must be an array of tenant IDs (GUIDs such as '72f988bf-86f1-41af-91ab-2d7cd011db47'), not domain names: tokens name their tenant by ID; or a function (tenantId, token) => boolean | Promise<boolean>, got ['contoso.com']",
    "option 'clientId' must be the application (client) ID of your API, a non-empty string, got 42",
    "option 'jwks.timeout' must be a whole number of milliseconds from 1 to 2147483647, got 1.5",
    "option 'tokenVersions' must be a non-empty array of '1.0' and/or '2.0', got ['3.0']",
    "unknown option 'audience' (did you mean 'audiences'?)",
    "unknown option 'jwks.refresh'"
  ])
  for (const issue of err.issues ?? []) t.ok(err.message.includes(issue), 'the message lists it')
})

t.test("messages say what is expected in the package's words", async t => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ tokenVersions: ['3.0'] }, /option 'tokenVersions' must be a non-empty array of '1\.0' and\/or '2\.0', got \['3\.0'\]/],
    [{ rejectionLogLevel: 'loud' }, /option 'rejectionLogLevel' must be one of 'fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent', got 'loud'/],
    [{ openapi: 'yes' }, /option 'openapi' must be false or an object/],
    [{ tokenSources: [{ query: 'access_token' }] }, /option 'tokenSources' must be an array of \{ cookie: 'name' \} and \{ session: 'key' \}/],
    [{ decorator: 'not-an-identifier' }, /option 'decorator' must be a JavaScript identifier/],
    [{ audiences: 'api://x' }, /option 'audiences' must be an array of non-empty strings/],
    [{ now: 5 }, /option 'now' must be a function returning the time in milliseconds, got 5/],
    [{ dispatcher: {} }, /option 'dispatcher' must be an undici Dispatcher/],
    [{ tokenCache: { max: -1 } }, /option 'tokenCache\.max' must be a whole number/],
    [{ jwks: 5 }, /option 'jwks' must be an object/]
  ]
  for (const [options, message] of cases) checkError(t, await registerError(t, options), message, JSON.stringify(options))
})

t.test('hints for common mistakes', async t => {
  const appIdUri = await registerError(t, { clientId: `api://${API_ID}` })
  checkError(t, appIdUri, new RegExp(`option 'clientId' must be the application \\(client\\) ID, not the App ID URI: use '${API_ID}'`), 'api:// client ID')
  const customUri = await registerError(t, { clientId: 'https://contoso.com/api' })
  checkError(t, customUri, /put 'https:\/\/contoso\.com\/api' into 'audiences'/, 'custom App ID URI')

  const issuer = `https://login.microsoftonline.com/${entra.tenantId}/v2.0`
  for (const url of [issuer, `${issuer}/`]) {
    const err = verifierError({ oidcEndpoint: url })
    checkError(t, err, /option 'oidcEndpoint' must be the URL of the OpenID configuration document, not the issuer/, url)
    t.match(err.message, `try '${issuer}/.well-known/openid-configuration'`)
  }
})

/** The option table of docs/options.md: option → default cell. */
function documentedDefaults (): Map<string, string> {
  const section = readFileSync(join(ROOT, 'docs', 'options.md'), 'utf8')
  const rows = new Map<string, string>()
  for (const line of section.split('\n')) {
    const cells = line.split(' | ')
    const name = /^\| `([^`]+)`$/.exec(cells[0] ?? '')?.[1]
    if (name !== undefined && cells.length >= 4) rows.set(name, (cells[2] as string).trim())
  }
  return rows
}

const UNITS: Record<string, number> = { h: 3_600_000, min: 60_000, s: 1000, ms: 1, MiB: 1024 * 1024 }

/** What a documented default cell means, as a value comparable with the table's. */
function meaning (cell: string): unknown {
  if (cell === 'both') return ['1.0', '2.0']
  if (/^`\[\]`( \(all\))?$/.test(cell)) return []
  const unit = /^(\d+) (h|min|s|ms|MiB)$/.exec(cell)
  if (unit !== null) return Number(unit[1]) * (UNITS[unit[2] as string] as number)
  const number = /^`?(\d+)`?( \(.*\))?$/.exec(cell)
  if (number !== null) return Number(number[1])
  const code = /^`([^`]+)`$/.exec(cell)
  if (code !== null) return code[1]
  return cell
}

t.test('the option reference (docs/options.md) shows every default of OPTION_DEFAULTS', async t => {
  const rows = documentedDefaults()
  t.ok(rows.size >= 20, `${rows.size} options in the table`)
  for (const [name, value] of Object.entries(OPTION_DEFAULTS)) {
    const cell = rows.get(name)
    t.ok(cell !== undefined, `docs/options.md documents ${name}`)
    t.same(meaning(cell ?? ''), value, `${name}: docs/options.md says ${cell}`)
  }
})

t.test('resolved options take their defaults from the table, and are deeply frozen', async t => {
  const options = resolveOptions({ clientId: 'c0ffee00-0000-4000-8000-000000000001', tenant: 'contoso.onmicrosoft.com' })
  t.equal(options.discoveryUrl.hostname, OPTION_DEFAULTS.authorityHost)
  t.same(options.jwks, { ttl: OPTION_DEFAULTS['jwks.ttl'], cooldown: OPTION_DEFAULTS['jwks.cooldown'], timeout: OPTION_DEFAULTS['jwks.timeout'], maxStale: OPTION_DEFAULTS['jwks.maxStale'], maxBytes: OPTION_DEFAULTS['jwks.maxBytes'] })
  t.equal(options.tokenCacheMax, OPTION_DEFAULTS['tokenCache.max'])
  t.equal(options.tokenCacheMaxBytes, OPTION_DEFAULTS['tokenCache.maxBytes'])
  t.equal(options.clockTolerance, OPTION_DEFAULTS.clockTolerance)
  t.equal(options.rejectionLogLevel, OPTION_DEFAULTS.rejectionLogLevel)
  t.equal(options.decorator, OPTION_DEFAULTS.decorator)
  t.same([...options.tokenVersions], OPTION_DEFAULTS.tokenVersions)
  t.ok(Object.isFrozen(options) && Object.isFrozen(options.jwks) && Object.isFrozen(OPTION_DEFAULTS))

  // A Set survives Object.freeze; these are the sets every token is judged against.
  const audiences = options.audiences as Set<string>
  t.throws(() => Set.prototype.add.call(audiences, 'api://evil'), 'audiences cannot be widened')
  t.notOk(audiences.has('api://evil'))
  const listed = resolveOptions({ clientId: 'c0ffee00-0000-4000-8000-000000000001', tenant: 'contoso.onmicrosoft.com', allowedApps: ['app'], allowedSubjects: ['sub'] })
  for (const set of [listed.allowedApps, listed.allowedSubjects, listed.tokenVersions]) {
    t.throws(() => Set.prototype.add.call(set as Set<string>, 'evil'))
    t.throws(() => { (set as unknown as { add: (v: string) => void }).add('evil') })
  }
})
