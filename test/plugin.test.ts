/**
 * The plugin in a Fastify app: its options (checked at register time), its public API and misuse,
 * composition with other plugins, token sources, the `Authorization` header, claims challenges,
 * OpenAPI and logs. One section per subject below, each with its own fixtures.
 */
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import fastifyAuth from '@fastify/auth'
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import fastifySecureSession from '@fastify/secure-session'
import fastifySession from '@fastify/session'
import swagger, { type SwaggerOptions } from '@fastify/swagger'
import Fastify, { type FastifyInstance, type FastifyRequest, type onRequestAsyncHookHandler, type FastifyReply } from 'fastify'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions, EntraAuthOptionsError, type EntraVerifierOptions, buildClaimsChallenge, claimsChallenge, INSUFFICIENT_CLAIMS, supportsClaimsChallenge, withEntraSecurity, type EntraToken } from '../src/index.js'
import { FAKE_TENANT_ID, FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'
import { OPTION_DEFAULTS, resolveOptions } from '../src/options.js'
import { RecordingDispatcher, resolvedOptionsOf, ROOT, API_ID as HELPER_API_ID, OTHER_API_ID, bearer, closing, decoratorOf, fakeEntra, API_ID, problemType, entraApp, captureLogs, type LogLine } from './helpers/index.js'

/**
 * Contract §2 and §3: options are checked once, at register time, with errors naming the
 * offending option; valid options derive the discovery URL; malformed route requirements throw
 * when the route is defined.
 */
t.test('options', async t => {
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
})

/**
 * The plugin through Fastify's public API: misuse fails when the route is defined, where
 * `request.entraToken` is decorated, and registering twice in one context.
 */
t.test('Fastify API', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

  const entra = new FakeEntra()
  t.teardown(() => entra.close())

  async function app (t: Test, decorator?: string): Promise<FastifyInstance> {
    const fastify = Fastify({ logger: false })
    t.teardown(() => fastify.close())
    await fastify.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...(decorator === undefined ? {} : { decorator }) })
    return fastify
  }

  function definitionError (define: () => unknown): (TypeError & { code?: string }) | undefined {
    try {
      define()
    } catch (err) {
      return err as TypeError
    }
    return undefined
  }

  t.test('onRequest: app.entraAuth (not called) is refused when the route is defined', async t => {
    const fastify = await app(t)
    const uncalled = fastify.entraAuth as unknown as onRequestAsyncHookHandler
    const cases: Record<string, () => unknown> = {
      onRequest: () => fastify.get('/a', { onRequest: uncalled }, async () => ({})),
      'preHandler array': () => fastify.get('/b', { preHandler: [fastify.entraAuth(), uncalled] }, async () => ({})),
      'preValidation via route()': () => fastify.route({ method: 'POST', url: '/c', preValidation: uncalled, handler: async () => ({}) }),
      'strategy not called': () => fastify.get('/d', { onRequest: fastify.entraAuth.strategy as unknown as onRequestAsyncHookHandler }, async () => ({}))
    }
    for (const [label, define] of Object.entries(cases)) {
      const err = definitionError(define)
      t.type(err, TypeError, label)
      t.equal(err?.code, 'FST_ENTRA_AUTH_HOOK_NOT_CALLED', `${label}: code`)
      t.match(err?.message, /without calling it/, `${label}: says what is wrong`)
      t.match(err?.message, /entraAuth(\.strategy)?\(\)/, `${label}: says to call it`)
    }
    t.match(definitionError(cases.onRequest as () => unknown)?.message, /route GET \/a/, 'names the route')
    t.equal(definitionError(() => fastify.get('/ok', { onRequest: fastify.entraAuth() }, async () => ({}))), undefined, 'a called one is fine')
    await fastify.ready()
    t.equal((await fastify.inject({ url: '/ok' })).statusCode, 401)
  })

  t.test('with another decorator name, and as a global hook', async t => {
    const fastify = await app(t, 'apiAuth')
    const decorator = (fastify as unknown as Record<string, onRequestAsyncHookHandler>).apiAuth as onRequestAsyncHookHandler
    t.match(definitionError(() => fastify.get('/a', { onRequest: decorator }, async () => ({})))?.message, /fastify\.apiAuth\(\)/)

    // addHook can't be seen when routes are defined: the request fails, and the log says why.
    const { logger, lines: logged } = captureLogs('error')
    const global = Fastify({ logger })
    t.teardown(() => global.close())
    await global.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
    global.addHook('onRequest', global.entraAuth as unknown as onRequestAsyncHookHandler)
    global.get('/x', async () => ({}))
    const res = await global.inject({ url: '/x' })
    t.equal(res.statusCode, 500)
    t.match(JSON.stringify(logged), /without calling it/)
  })

  /** What a route sees in `request.entraToken`: 'null', 'undefined', or the token's `sub`. */
  function seen (request: FastifyRequest): { token: string } {
    const token = request.entraToken as unknown
    return { token: token === null ? 'null' : token === undefined ? 'undefined' : String(request.entraToken?.claims.sub) }
  }

  async function tokensSeen (app: FastifyInstance, urls: string[], headers: Record<string, string> = {}): Promise<Record<string, string>> {
    const result: Record<string, string> = {}
    for (const url of urls) result[url] = ((await app.inject({ url, headers })).json() as { token: string }).token
    return result
  }

  t.test('request.entraToken: null in the registering context and below, undefined elsewhere', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    app.get('/root', async (request) => seen(request))
    await app.register(async sibling => { sibling.get('/sibling', async (request) => seen(request)) })
    await app.register(async api => {
      await api.register(entraAuth, { clientId: HELPER_API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
      api.get('/api/open', async (request) => seen(request))
      api.get('/api/me', { onRequest: api.entraAuth() }, async (request) => seen(request))
      api.get('/api/maybe', { onRequest: api.entraAuth(undefined, { optional: true }) }, async (request) => seen(request))
      await api.register(async nested => { nested.get('/api/nested', async (request) => seen(request)) })
    })
    // The README's optional-auth test, outside the context.
    app.get('/feed', async (request) => ({ user: request.entraToken == null ? 'anonymous' : request.entraToken.claims.sub }))
    await app.ready()

    t.notOk(app.hasRequestDecorator('entraToken'), 'the root has no request decorator')
    const headers = bearer(entra.token(HELPER_API_ID, { sub: 'bob' }))
    t.same(await tokensSeen(app, ['/root', '/sibling', '/api/open', '/api/nested', '/api/maybe']), {
      '/root': 'undefined',
      '/sibling': 'undefined',
      '/api/open': 'null',
      '/api/nested': 'null',
      '/api/maybe': 'null'
    })
    t.same(await tokensSeen(app, ['/api/me', '/api/maybe', '/root'], headers), { '/api/me': 'bob', '/api/maybe': 'bob', '/root': 'undefined' }, 'an admitted request elsewhere changes nothing outside')
    t.same((await app.inject({ url: '/feed', headers })).json(), { user: 'anonymous' })

    const other = closing(t, Fastify())
    other.get('/', async (request) => ({ has: 'entraToken' in request }))
    t.same((await other.inject('/')).json(), { has: false }, 'another app is untouched')
  })

  t.test('registered at the root, request.entraToken is null on every route', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    app.get('/before', async (request) => seen(request))
    await app.register(entraAuth, { clientId: HELPER_API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    await app.register(async late => { late.get('/late', async (request) => seen(request)) })
    app.get('/me', { onRequest: app.entraAuth() }, async (request) => seen(request))
    await app.ready()
    t.same(await tokensSeen(app, ['/before', '/late']), { '/before': 'null', '/late': 'null' })
    t.same(await tokensSeen(app, ['/me'], bearer(entra.token(HELPER_API_ID, { sub: 'ann' }))), { '/me': 'ann' })
  })

  t.test('registering twice in one context needs a distinct decorator', async t => {
    const entra = fakeEntra(t)

    t.test('same context', async t => {
      const app = closing(t, Fastify())
      await app.register(entraAuth, { clientId: HELPER_API_ID, ...entra.pluginOptions() })
      const err = await app.register(entraAuth, { clientId: OTHER_API_ID, ...entra.pluginOptions() }).then(() => undefined, (error: unknown) => error)
      t.type(err, EntraAuthOptionsError)
      t.type(err, TypeError)
      t.match(err, {
        code: 'FST_ENTRA_AUTH_INVALID_OPTIONS',
        message: /option 'decorator': this context already has a decorator 'entraAuth'.*give each registration its own name, e.g. \{ decorator: 'filesAuth' \}/
      })
      t.notMatch((err as Error).message, /FST_ERR_DEC_ALREADY_PRESENT/)
    })

    t.test('a child of a context that has it', async t => {
      const app = closing(t, Fastify())
      await app.register(entraAuth, { clientId: HELPER_API_ID, decorator: 'filesAuth', ...entra.pluginOptions() })
      await t.rejects(async () => {
        await app.register(async child => {
          await child.register(entraAuth, { clientId: OTHER_API_ID, decorator: 'filesAuth', ...entra.pluginOptions() })
        })
      }, /option 'decorator': this context already has a decorator 'filesAuth'/)
    })

    t.test('with distinct decorators both work', async t => {
      const app = closing(t, Fastify())
      await app.register(entraAuth, { clientId: HELPER_API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
      await app.register(entraAuth, { clientId: OTHER_API_ID, decorator: 'otherAuth', rejectionLogLevel: 'silent', ...entra.pluginOptions() })
      app.get('/a', { onRequest: app.entraAuth() }, async () => ({}))
      app.get('/b', { onRequest: decoratorOf(app, 'otherAuth')() }, async () => ({}))
      await app.ready()
      t.equal((await app.inject({ url: '/a', headers: bearer(entra.token(HELPER_API_ID)) })).statusCode, 200)
      t.equal((await app.inject({ url: '/b', headers: bearer(entra.token(OTHER_API_ID)) })).statusCode, 200)
      t.equal((await app.inject({ url: '/b', headers: bearer(entra.token(HELPER_API_ID)) })).statusCode, 401)
    })
  })
})

/**
 * Composition (issue 6): @fastify/auth strategies, encapsulated contexts, two protected APIs in
 * one app, the app's own @fastify/jwt, and optional authentication.
 */
t.test('composition', async t => {
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
})

/**
 * Token sources (issue 6): opt-in cookie and session sources, read only when there is no
 * Authorization header; never the query string.
 */
t.test('token sources', async t => {
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
})

/**
 * The `Authorization` header, hardened: RFC 6750 §2.1 `"Bearer" 1*SP b64token`, a challenge
 * without error code for another scheme (§3.1), `invalid_request` for a malformed Bearer
 * credential, and a request with two `Authorization` headers refused — also on a real socket,
 * where Node would keep only the first.
 */
t.test('Authorization header', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

  const entra = new FakeEntra()
  t.teardown(() => entra.close())

  async function app (t: Test): Promise<FastifyInstance> {
    const fastify = Fastify({ logger: false })
    await fastify.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    fastify.get('/me', { onRequest: fastify.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub }))
    t.teardown(() => fastify.close())
    return fastify
  }

  interface Outcome { status: number, type?: string, challenge?: string }

  async function send (fastify: FastifyInstance, authorization: string | string[]): Promise<Outcome> {
    // light-my-request sends an array as repeated headers (its types say string only).
    const res = await fastify.inject({ url: '/me', headers: { authorization: authorization as string } })
    if (res.statusCode === 200) return { status: 200 }
    return { status: res.statusCode, type: (res.json() as { type: string }).type, challenge: res.headers['www-authenticate'] as string }
  }

  t.test('Bearer followed by one or more spaces (RFC 6750 §2.1: 1*SP)', async t => {
    const fastify = await app(t)
    const token = entra.token(API_ID)
    for (const header of [`Bearer ${token}`, `Bearer  ${token}`, `Bearer     ${token}`, `bearer   ${token}`, `BEARER ${token}`]) {
      t.same(await send(fastify, header), { status: 200 }, JSON.stringify(header.slice(0, 12)))
    }
  })

  t.test('another scheme: a challenge without error code (RFC 6750 §3.1)', async t => {
    const fastify = await app(t)
    for (const header of ['Basic dXNlcjpwYXNz', 'Basic', 'DPoP eyJhbGciOi.x.y', 'Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1', 'Digest username="a"', 'Bearerx token']) {
      t.same(await send(fastify, header), { status: 401, type: 'auth_header_invalid', challenge: 'Bearer' }, header)
    }
  })

  t.test('a malformed Bearer credential: error="invalid_request"', async t => {
    const fastify = await app(t)
    const token = entra.token(API_ID)
    for (const header of ['Bearer', 'Bearer ', `Bearer ${token} extra`, `Bearer ${token},${token}`, `Bearer\t${token}`, 'Bearer "quoted"', 'Bearer a\u00e9b', '(bad) scheme', `Bearer ${token}=x`]) {
      const outcome = await send(fastify, header)
      t.equal(outcome.status, 401, JSON.stringify(header.slice(0, 30)))
      t.equal(outcome.type, 'auth_header_invalid')
      t.match(outcome.challenge, /^Bearer error="invalid_request"/)
    }
  })

  t.test('two Authorization headers are refused, whichever comes first', async t => {
    const fastify = await app(t)
    const token = entra.token(API_ID)
    t.same(await send(fastify, [`Bearer ${token}`, `Bearer ${token}`]), { status: 401, type: 'auth_header_invalid', challenge: 'Bearer error="invalid_request", error_description="Invalid authorization header"' })
    t.equal((await send(fastify, [`Bearer ${token}`, 'Basic dXNlcjpwYXNz'])).type, 'auth_header_invalid')
    t.equal((await send(fastify, ['Basic dXNlcjpwYXNz', `Bearer ${token}`])).type, 'auth_header_invalid')
  })

  /** Sends raw HTTP/1.1 and returns the status line and headers of the answer. */
  function rawRequest (port: number, request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end(request))
      let answer = ''
      socket.setEncoding('utf8')
      socket.on('data', chunk => { answer += chunk })
      socket.on('end', () => resolve(answer))
      socket.on('error', reject)
    })
  }

  t.test('two Authorization headers on the wire (Node keeps only the first)', async t => {
    const fastify = await app(t)
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const address = fastify.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    const token = entra.token(API_ID)
    const request = (...headers: string[]): string => ['GET /me HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', ...headers, '', ''].join('\r\n')

    const single = await rawRequest(port, request(`Authorization: Bearer ${token}`))
    t.match(single, /^HTTP\/1\.1 200 /, 'one header is admitted')
    for (const [first, second] of [[`Bearer ${token}`, 'Basic dXNlcjpwYXNz'], ['Basic dXNlcjpwYXNz', `Bearer ${token}`], [`Bearer ${token}`, `Bearer ${token}`]]) {
      const answer = await rawRequest(port, request(`Authorization: ${first}`, `authorization: ${second}`))
      t.match(answer, /^HTTP\/1\.1 401 /, `${(first as string).slice(0, 10)} then ${(second as string).slice(0, 10)}`)
      t.match(answer, /auth_header_invalid/)
      t.match(answer, /www-authenticate: Bearer error="invalid_request"/i)
    }
  })
})

/**
 * Continuous Access Evaluation claims challenges (issue 3 item 6): only for clients whose token
 * says `xms_cc: ['cp1']`, one `WWW-Authenticate` with Microsoft's attributes, a problem body.
 */
t.test('claims challenges', async t => {
  const CLIENT = 'c1e47000-0000-4000-8000-000000000002'
  const TENANT = '11111111-2222-4333-8444-555555555555'
  const STEP_UP = { access_token: { acrs: { essential: true, value: 'c1' } } }
  const AUTHORIZE = `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/authorize`

  /**
   * The plugin's app with a step-up route: tokens without authentication context `c1` get a claims
   * challenge when their client can handle one, and a 403 otherwise.
   */
  async function stepUpApp (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<{ app: FastifyInstance, entra: FakeEntra, handled: string[] }> {
    const entra = new FakeEntra({ tenant: TENANT })
    const app = await entraApp({ clientId: CLIENT, ...entra.pluginOptions(), ...options } as EntraAuthOptions)
    const handled: string[] = []
    app.post('/transfer', { onRequest: app.entraAuth() }, async (request, reply) => {
      const token = request.entraToken!
      const acrs = token.claims.acrs
      if (!Array.isArray(acrs) || !acrs.includes('c1')) {
        if (claimsChallenge(reply, token, { claims: STEP_UP })) return reply
        handled.push('refused')
        return reply.code(403).send({ error: 'step-up needed' })
      }
      handled.push('transferred')
      return { ok: true }
    })
    t.teardown(async () => {
      await app.close()
      await entra.close()
    })
    return { app, entra, handled }
  }

  function decodeChallenge (header: unknown): { authorizationUri: string, claims: unknown } {
    const match = /^Bearer realm="", authorization_uri="([^"]+)", error="insufficient_claims", claims="([A-Za-z0-9+/=]+)"$/.exec(String(header))
    if (match === null) throw new Error(`not a claims challenge: ${String(header)}`)
    return { authorizationUri: match[1] as string, claims: JSON.parse(Buffer.from(match[2] as string, 'base64').toString('utf8')) }
  }

  t.test('a cp1 client gets one claims challenge and a problem body', async t => {
    const { app, entra, handled } = await stepUpApp(t)
    const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
    t.equal(res.statusCode, 401)
    t.equal(typeof res.headers['www-authenticate'], 'string', 'exactly one WWW-Authenticate header')
    t.same(decodeChallenge(res.headers['www-authenticate']), { authorizationUri: AUTHORIZE, claims: STEP_UP })
    t.equal(res.headers['www-authenticate'], `Bearer realm="", authorization_uri="${AUTHORIZE}", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"`)
    t.equal(res.headers['content-type'], 'application/problem+json')
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json() as Record<string, unknown>
    t.same(Object.keys(body).sort(), ['detail', 'status', 'title', 'type'])
    t.match(body, { type: INSUFFICIENT_CLAIMS, status: 401, title: 'Additional claims required' })
    t.same(handled, [])
  })

  t.test('clients without cp1 get nothing from it, and the handler goes on', async t => {
    const { app, entra, handled } = await stepUpApp(t)
    for (const xmsCc of [undefined, [], ['cp2'], 'cp1', ['cp1 cp2'], [1]]) {
      const token = entra.token(CLIENT, xmsCc === undefined ? {} : { xms_cc: xmsCc })
      const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(token) })
      t.equal(res.statusCode, 403, `xms_cc ${JSON.stringify(xmsCc)}`)
      t.equal(res.headers['www-authenticate'], undefined)
    }
    t.equal(handled.length, 6)
  })

  t.test('tokens that already satisfy the claims pass', async t => {
    const { app, entra, handled } = await stepUpApp(t)
    const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'], acrs: ['c1'] })) })
    t.equal(res.statusCode, 200)
    t.same(handled, ['transferred'])
  })

  t.test('cp1 is matched case-insensitively among other capabilities', async t => {
    const { app, entra } = await stepUpApp(t)
    for (const xmsCc of [['CP1'], ['cp2', 'cp1']]) {
      const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: xmsCc })) })
      t.equal(res.statusCode, 401, JSON.stringify(xmsCc))
    }
  })

  t.test('the problem body carries the plugin\'s contact', async t => {
    const { app, entra } = await stepUpApp(t, { contact: 'mailto:api-owners@contoso.com' })
    const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
    t.equal((res.json() as { contact: string }).contact, 'mailto:api-owners@contoso.com')
  })

  t.test('options: authorizationUri, claims as JSON text, detail', async t => {
    const { app, entra } = await stepUpApp(t)
    const claims = '{"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}'
    app.get('/revoked', { onRequest: app.entraAuth() }, async (request, reply) => {
      claimsChallenge(reply, request.entraToken, { claims, authorizationUri: 'https://login.microsoftonline.com/common/oauth2/authorize', detail: 'Your session was revoked.' })
      return reply
    })
    const res = await app.inject({ url: '/revoked', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
    const challenge = String(res.headers['www-authenticate'])
    t.equal(decodeChallenge(challenge).authorizationUri, 'https://login.microsoftonline.com/common/oauth2/authorize')
    t.ok(challenge.endsWith(`claims="${Buffer.from(claims).toString('base64')}"`), 'JSON text is sent byte for byte')
    t.equal((res.json() as { detail: string }).detail, 'Your session was revoked.')
  })

  t.test('no token: nothing to challenge', async t => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.get('/', async (request, reply) => ({ sent: claimsChallenge(reply, null, { claims: STEP_UP, authorizationUri: AUTHORIZE }) }))
    t.same((await app.inject({ url: '/' })).json(), { sent: false })
    t.equal(supportsClaimsChallenge(undefined), false)
  })

  t.test('with a standalone verifier: its discovery supplies authorization_uri', async t => {
    const entra = new FakeEntra({ tenant: TENANT })
    const verifier = createEntraVerifier({ clientId: CLIENT, ...entra.pluginOptions() })
    const app = Fastify()
    t.teardown(async () => {
      await app.close()
      await verifier.close()
      await entra.close()
    })
    app.get('/needs-verifier', async (request, reply) => {
      const token = await verifier.verify(String(request.headers['x-token']))
      claimsChallenge(reply, token, { claims: STEP_UP })
      return reply
    })
    app.get('/explicit', async (request, reply) => {
      const token = await verifier.verify(String(request.headers['x-token']))
      claimsChallenge(reply, token, { claims: STEP_UP, verifier })
      return reply
    })
    const headers = { 'x-token': entra.token(CLIENT, { xms_cc: ['cp1'] }) }
    // Without the plugin there is no `app.entraAuth.verifier` to default to: a programming error.
    const missing = await app.inject({ url: '/needs-verifier', headers })
    t.equal(missing.statusCode, 500)
    t.match((missing.json() as { message: string }).message, /authorizationUri/)
    const res = await app.inject({ url: '/explicit', headers })
    t.equal(res.statusCode, 401)
    t.equal(decodeChallenge(res.headers['www-authenticate']).authorizationUri, AUTHORIZE)
  })

  t.test('buildClaimsChallenge', async t => {
    t.equal(
      buildClaimsChallenge({ claims: STEP_UP, authorizationUri: 'https://login.microsoftonline.com/common/oauth2/authorize' }),
      'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"'
    )
    for (const claims of ['not json', '[]', 'null', '"text"', '{"a":']) {
      t.throws(() => buildClaimsChallenge({ claims, authorizationUri: AUTHORIZE }), TypeError, `claims ${claims}`)
    }
    for (const authorizationUri of ['', 'https://x/"', 'https://x/\\', 'https://x/\r\nSet-Cookie: a=b', 'https://x/a b', 'https://x/ä']) {
      t.throws(() => buildClaimsChallenge({ claims: STEP_UP, authorizationUri }), TypeError, JSON.stringify(authorizationUri))
    }
  })

  const DECORATED_API = '6e1c9b1a-0000-4000-8000-00000000a11d'

  t.test('with decorator: "filesAuth", the helper still finds the verifier', async t => {
    const entra = new FakeEntra()
    t.teardown(() => entra.close())
    const app = Fastify()
    await app.register(entraAuth, { clientId: DECORATED_API, ...entra.pluginOptions(), decorator: 'filesAuth' } as EntraAuthOptions)
    t.teardown(() => app.close())
    const auth = (app as unknown as { filesAuth: (requirement?: string[]) => never }).filesAuth
    app.get('/step-up', { onRequest: auth() }, async (request, reply) => {
      claimsChallenge(reply, request.entraToken, { claims: '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}' })
      return reply
    })
    await app.ready()
    t.equal((app as unknown as { entraAuth?: unknown }).entraAuth, undefined, 'no default decorator to fall back on')
    const res = await app.inject({ url: '/step-up', headers: bearer(entra.token(DECORATED_API, { xms_cc: ['cp1'] })) })
    t.equal(res.statusCode, 401)
    t.match(res.headers['www-authenticate'], /authorization_uri="https:\/\/login\.microsoftonline\.com\/[^"]+\/oauth2\/v2\.0\/authorize"/)
  })
})

/**
 * OpenAPI through @fastify/swagger's public options: the plugin gives protected routes their
 * `schema.security`, and `withEntraSecurity` adds the OAuth2 scheme with the scopes the operations
 * name. @fastify/swagger's own `swagger()` (and its YAML) is left as it is.
 */
t.test('OpenAPI', async t => {
  type Doc = Record<string, any>

  const PREFIX = `api://${API_ID}/`

  /** An app with swagger (OpenAPI 3 unless `swaggerOptions` say otherwise) and the plugin on a fake Entra, joined by the documented line. */
  async function documentedApp (t: Test, options: Partial<EntraAuthOptions> = {}, swaggerOptions: SwaggerOptions = { openapi: { info: { title: 'api', version: '1.0.0' } } }): Promise<{ app: FastifyInstance, entra: ReturnType<typeof fakeEntra> }> {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    const auth = { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions
    await app.register(swagger, withEntraSecurity(swaggerOptions, auth))
    await app.register(entraAuth, auth)
    return { app, entra }
  }

  t.test('OpenAPI 3: scheme next to the authority, security per operation, scopes collected', async t => {
    const userOptions = { openapi: { info: { title: 'api', version: '1.0.0' }, components: { securitySchemes: { apiKey: { type: 'apiKey' as const, name: 'x-api-key', in: 'header' as const } } } } }
    const { app, entra } = await documentedApp(t, {}, userOptions)
    const shared = { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } }
    app.get('/open', { schema: shared }, async () => ({ ok: true }))
    app.get('/me', { onRequest: app.entraAuth(), schema: shared }, async () => ({ ok: true }))
    app.get('/files', { preHandler: [async () => {}, app.entraAuth(['Files.Read', 'Files.ReadWrite Files.Admin'])] }, async () => ({ ok: true }))
    app.post('/jobs', { onRequest: app.entraAuth({ scopes: 'Jobs.Write', roles: ['Jobs.Run', 'Jobs.Admin'] }) }, async () => ({ ok: true }))
    app.get('/maybe', { onRequest: app.entraAuth('Files.Read', { optional: true }) }, async () => ({ ok: true }))
    app.get('/keyed', { onRequest: app.entraAuth(['Other.Scope']), schema: { security: [{ apiKey: [] }] } }, async () => ({ ok: true }))
    await app.ready()

    const doc = app.swagger() as Doc
    t.same(doc.components.securitySchemes.apiKey, { type: 'apiKey', name: 'x-api-key', in: 'header' }, "the app's own scheme is kept")
    const scheme = doc.components.securitySchemes.entraAuth
    const authority = `${entra.origin}/${entra.tenantId}`
    t.same(scheme, {
      type: 'oauth2',
      flows: {
        authorizationCode: {
          authorizationUrl: `${authority}/oauth2/v2.0/authorize`,
          tokenUrl: `${authority}/oauth2/v2.0/token`,
          scopes: {
            [`${PREFIX}.default`]: 'All permissions of this API consented for the client',
            [`${PREFIX}Files.Read`]: 'Delegated permission Files.Read',
            [`${PREFIX}Files.ReadWrite`]: 'Delegated permission Files.ReadWrite',
            [`${PREFIX}Files.Admin`]: 'Delegated permission Files.Admin',
            [`${PREFIX}Jobs.Write`]: 'Delegated permission Jobs.Write'
          }
        },
        clientCredentials: {
          tokenUrl: `${authority}/oauth2/v2.0/token`,
          scopes: { [`${PREFIX}.default`]: 'Application permissions (app roles) granted to the client' }
        }
      }
    })
    t.notOk(Object.hasOwn(scheme.flows.authorizationCode.scopes, `${PREFIX}Other.Scope`), 'a route with its own security adds no scope')

    t.notOk(doc.paths['/open'].get.security, 'unprotected route: no security')
    t.same(doc.paths['/me'].get.security, [{ entraAuth: [] }], 'authentication only')
    t.same(doc.paths['/files'].get.security, [{ entraAuth: [`${PREFIX}Files.Read`] }, { entraAuth: [`${PREFIX}Files.ReadWrite`, `${PREFIX}Files.Admin`] }], 'OR of ANDs')
    t.same(doc.paths['/jobs'].post.security, [{ entraAuth: [`${PREFIX}Jobs.Write`] }, { entraAuth: [`${PREFIX}.default`] }], 'app roles are requested with .default, once')
    t.same(doc.paths['/maybe'].get.security, [{ entraAuth: [`${PREFIX}Files.Read`] }, {}], 'optional authentication')
    t.same(doc.paths['/keyed'].get.security, [{ apiKey: [] }], "the route's own security wins")
    t.notOk(Object.hasOwn(userOptions.openapi.components.securitySchemes, 'entraAuth'), "the app's swagger options object is not mutated")
    t.notOk(Object.hasOwn(shared, 'security'), 'a shared route schema is not mutated')
    t.equal(app.swagger(), doc, 'the document is still cached by @fastify/swagger')
    t.same((app.swagger() as Doc).paths['/me'].get.security, [{ entraAuth: [] }], 'a second call is unchanged')

    const yamlText = app.swagger({ yaml: true })
    t.type(yamlText, 'string')
    t.same(parse(yamlText), JSON.parse(JSON.stringify(doc)), "@fastify/swagger's own YAML carries the contribution too")

    // The documented routes are still protected.
    t.equal((await app.inject('/me')).statusCode, 401)
    t.equal((await app.inject({ url: '/maybe' })).statusCode, 200)
    t.equal((await app.inject({ url: '/files', headers: bearer(entra.token(API_ID, { scp: 'Files.Read' })) })).statusCode, 200)
  })

  t.test('endpoints follow the authority of tenant or oidcEndpoint, without a fetch', async t => {
    t.test('oidcEndpoint', async t => {
      const entra = fakeEntra(t)
      entra.mode = 'discovery-404'
      const app = closing(t, Fastify())
      const auth = { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), jwks: { timeout: 1000 } } as const
      await app.register(swagger, withEntraSecurity({ openapi: {} }, auth))
      await app.register(entraAuth, auth)
      app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
      await app.ready()
      const flow = (app.swagger() as Doc).components.securitySchemes.entraAuth.flows.authorizationCode
      t.equal(flow.authorizationUrl, `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/authorize`)
      t.equal(flow.tokenUrl, `https://login.microsoftonline.com/${entra.tenantId}/oauth2/v2.0/token`)
    })

    t.test('tenant and authorityHost', async t => {
      const options = withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'contoso.onmicrosoft.com', authorityHost: 'login.microsoftonline.us' })
      const flow = (options.openapi as Doc).components.securitySchemes.entraAuth.flows.authorizationCode
      t.equal(flow.authorizationUrl, 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/authorize')
      t.equal(flow.tokenUrl, 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token')
    })
  })

  t.test('Swagger 2.0: an accessCode security definition', async t => {
    for (const swaggerOptions of [{ swagger: { info: { title: 'api', version: '1' } } }, {}]) {
      const { app, entra } = await documentedApp(t, { openapi: { description: 'Microsoft Entra ID' } }, swaggerOptions)
      app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({}))
      await app.ready()
      const doc = app.swagger() as Doc
      t.equal(doc.swagger, '2.0')
      t.same(doc.securityDefinitions.entraAuth, {
        type: 'oauth2',
        flow: 'accessCode',
        authorizationUrl: `${entra.origin}/${entra.tenantId}/oauth2/v2.0/authorize`,
        tokenUrl: `${entra.origin}/${entra.tenantId}/oauth2/v2.0/token`,
        scopes: { [`${PREFIX}.default`]: 'All permissions of this API consented for the client', [`${PREFIX}Files.Read`]: 'Delegated permission Files.Read' },
        description: 'Microsoft Entra ID'
      })
      t.same(doc.paths['/read'].get.security, [{ entraAuth: [`${PREFIX}Files.Read`] }])
    }
  })

  t.test('options: scheme name, scope prefix, or off', async t => {
    t.test('securityScheme and scopePrefix', async t => {
      const { app } = await documentedApp(t, { openapi: { securityScheme: 'entra', scopePrefix: 'https://contoso.com/files/' } })
      app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({}))
      await app.ready()
      const doc = app.swagger() as Doc
      t.ok(doc.components.securitySchemes.entra.flows.authorizationCode.scopes['https://contoso.com/files/Files.Read'])
      t.same(doc.paths['/read'].get.security, [{ entra: ['https://contoso.com/files/Files.Read'] }])
    })

    t.test('openapi: false', async t => {
      const entra = fakeEntra(t)
      const app = closing(t, Fastify())
      await app.register(swagger, { openapi: {} })
      await app.register(entraAuth, { clientId: API_ID, openapi: false, ...entra.pluginOptions() })
      app.get('/read', { onRequest: app.entraAuth('Files.Read') }, async () => ({}))
      await app.ready()
      const doc = app.swagger() as Doc
      t.notOk(doc.components.securitySchemes)
      t.notOk(doc.paths['/read'].get.security)
      t.throws(() => withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'common', openapi: false }), /'openapi: false'/)
    })

    t.test('bad options are refused, at register and by withEntraSecurity', async t => {
      for (const openapi of [{ securityScheme: 'has space' }, { scopePrefix: '' }, { unknown: 1 }, true]) {
        const app = closing(t, Fastify())
        await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, tenant: 'common', openapi: openapi as never }) }, /fastify-entra-auth: option 'openapi/)
        t.throws(() => withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'common', openapi: openapi as never }), /fastify-entra-auth: option 'openapi/)
      }
      t.throws(() => withEntraSecurity({ openapi: {} }, { clientId: API_ID } as never), /exactly one of the options 'oidcEndpoint' and 'tenant'/)
      t.throws(() => withEntraSecurity(undefined as never, { clientId: API_ID, tenant: 'common' }), /withEntraSecurity takes the options of @fastify\/swagger, then the options of the plugin/)
      t.throws(() => withEntraSecurity({ openapi: {}, transformObject: 'x' } as never, { clientId: API_ID, tenant: 'common' }), /'transformObject' must be a function/)
    })
  })

  t.test("the app's own transform and transformObject still apply; hidden routes stay hidden", async t => {
    const { app } = await documentedApp(t, {}, {
      openapi: {},
      transform: ({ schema, url }) => ({ schema: { ...schema, summary: `route ${url}` }, url }),
      transformObject: (documentObject) => ({ ...(documentObject as { openapiObject: Doc }).openapiObject, info: { title: 'transformed', version: '2' } })
    })
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
    app.get('/hidden', { onRequest: app.entraAuth('Secret'), schema: { hide: true } }, async () => ({}))
    await app.ready()
    const doc = app.swagger() as Doc
    t.equal(doc.paths['/me'].get.summary, 'route /me')
    t.same(doc.info, { title: 'transformed', version: '2' }, "the app's transformObject ran")
    t.ok(doc.components.securitySchemes.entraAuth, 'on the completed document')
    t.same(doc.paths['/me'].get.security, [{ entraAuth: [] }])
    t.notOk(doc.paths['/hidden'])
    t.notOk(doc.components.securitySchemes.entraAuth.flows.authorizationCode.scopes[`${PREFIX}Secret`], 'hidden routes name no scope')
  })

  t.test('swagger at the root, the plugin in an encapsulated context (as with @fastify/swagger-ui)', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    const auth = { clientId: API_ID, ...entra.pluginOptions() }
    await app.register(swagger, withEntraSecurity({ openapi: {} }, auth))
    await app.register(async api => {
      await api.register(entraAuth, auth)
      api.get('/me', { onRequest: api.entraAuth('User.Read') }, async () => ({}))
    }, { prefix: '/api' })
    // A sibling context reads the document the way @fastify/swagger-ui does.
    await app.register(async docs => { docs.get('/openapi.json', async () => docs.swagger()) })
    await app.ready()
    const doc = (await app.inject('/openapi.json')).json() as Doc
    t.same(doc.paths['/api/me'].get.security, [{ entraAuth: [`${PREFIX}User.Read`] }])
    t.ok(doc.components.securitySchemes.entraAuth.flows.authorizationCode.scopes[`${PREFIX}User.Read`])
  })

  t.test('two registrations: distinct schemes, or a clear error when their names clash', async t => {
    t.test('decorator names give distinct schemes; withEntraSecurity wraps twice', async t => {
      const entra = fakeEntra(t)
      const app = closing(t, Fastify())
      const first = { clientId: API_ID, ...entra.pluginOptions() }
      const second = { clientId: 'other-api', decorator: 'otherAuth', ...entra.pluginOptions() }
      await app.register(swagger, withEntraSecurity(withEntraSecurity({ openapi: {} }, first), second))
      await app.register(entraAuth, first)
      await app.register(entraAuth, second)
      app.get('/a', { onRequest: app.entraAuth('A') }, async () => ({}))
      app.get('/b', { onRequest: decoratorOf(app, 'otherAuth')('B') }, async () => ({}))
      await app.ready()
      const doc = app.swagger() as Doc
      t.same(doc.paths['/a'].get.security, [{ entraAuth: [`${PREFIX}A`] }])
      t.same(doc.paths['/b'].get.security, [{ otherAuth: ['api://other-api/B'] }])
      t.same(Object.keys(doc.components.securitySchemes).sort(), ['entraAuth', 'otherAuth'])
      t.notOk(doc.components.securitySchemes.entraAuth.flows.authorizationCode.scopes['api://other-api/B'], "each scheme lists only its own API's scopes")
      t.ok(doc.components.securitySchemes.otherAuth.flows.authorizationCode.scopes['api://other-api/B'])
    })

    t.test('the same scheme twice in the swagger options', async t => {
      const once = withEntraSecurity({ openapi: {} }, { clientId: API_ID, tenant: 'common' })
      t.throws(() => withEntraSecurity(once, { clientId: 'other-api', tenant: 'common' }), /already define the security scheme 'entraAuth'; give this registration its own option 'openapi.securityScheme'/)
      t.throws(() => withEntraSecurity({ swagger: { securityDefinitions: { entraAuth: {} } } }, { clientId: API_ID, tenant: 'common' }), /already define the security scheme 'entraAuth'/)
    })

    t.test('same scheme name in two contexts', async t => {
      const entra = fakeEntra(t)
      const app = closing(t, Fastify())
      await app.register(swagger, withEntraSecurity({ openapi: {} }, { clientId: API_ID, ...entra.pluginOptions() }))
      for (const clientId of [API_ID, 'other-api']) {
        await app.register(async api => {
          await api.register(entraAuth, { clientId, ...entra.pluginOptions() })
          api.get(`/${clientId}`, { onRequest: api.entraAuth('A') }, async () => ({}))
        })
      }
      await app.ready()
      t.throws(() => app.swagger(), /names the scope 'api:\/\/other-api\/A' under the OpenAPI security scheme 'entraAuth'.*its own option 'openapi.securityScheme'/)
    })
  })

  t.test("@fastify/swagger's decorator is left as it is", async t => {
    const swaggerOf = (app: FastifyInstance): unknown => app.swagger
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    const auth = { clientId: API_ID, ...entra.pluginOptions() }
    await app.register(swagger, withEntraSecurity({ openapi: {} }, auth))
    const before = swaggerOf(app)
    await app.register(entraAuth, auth)
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({}))
    await app.ready()
    t.equal(swaggerOf(app), before, 'the same function')
  })

  t.test('without @fastify/swagger the routes are left alone', async t => {
    const entra = fakeEntra(t)
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    const schemas: unknown[] = []
    app.addHook('onRoute', route => { schemas.push(route.schema) })
    app.get('/me', { onRequest: app.entraAuth('A') }, async () => ({}))
    await app.ready()
    t.same(schemas, [undefined, undefined], 'GET and HEAD keep no schema')
    t.equal((await app.inject('/me')).statusCode, 401)
  })
})

/**
 * Observability (issue 6): one log line per rejection with the problem type and request id and
 * never the token; metrics callbacks; `state()` for health checks.
 */
t.test('logs, callbacks and state()', async t => {
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
    // The same function, not two snapshots: `keysAge` (ms) may tick between two calls.
    t.equal(app.entraAuth.state, app.entraAuth.verifier.state, 'the decorator shows its verifier')

    entra.mode = 'jwks-404'
    const unknownKid = entra.client(API_ID, 'v2', entra.newKey('rotated')).generate({ scp: 'Files.Read' })
    t.equal((await app.inject({ url: '/read', headers: bearer(unknownKid) })).statusCode, 401)
    const failed = app.entraAuth.state()
    t.equal(failed.keys.failures, 1, 'a failed refresh is counted')
    t.type(failed.keys.lastError, 'string')
  })
})
