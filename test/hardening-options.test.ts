/**
 * Options fail loudly at register time, in the package's own words, with a stable code, every
 * problem at once and hints for common mistakes; a clock that gives no time refuses every token;
 * the standalone verifier refuses the plugin-only options.
 */
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, EntraAuthOptionsError, type EntraAuthOptions, type EntraVerifierOptions } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { resolvedOptionsOf } from './helpers/index.js'

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
