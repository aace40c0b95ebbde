/**
 * Contract §2 and §3: options are checked once, at register time, with errors naming the
 * offending option; valid options derive the discovery URL; malformed route requirements throw
 * when the route is defined.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import { FAKE_TENANT_ID, FakeEntra, type FakeEntraOptions } from '../src/testing/index.js'
import { RecordingDispatcher, resolvedOptionsOf } from './helpers/index.js'

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

// Durations are whole milliseconds (a fraction of one is refused: see hardening-options.test.ts).
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
    ['a scope with a double quote', ['Files"Read']]
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
