/**
 * The key store on top of its libraries, by its behaviour: get-jwks resolves every installed key
 * from one fetch; a `jwks_uri` with a `#fragment` works; @fastify/jwt failing to register fails
 * the refresh (503 and an error log, never a 401) while the last good set keeps serving; a `kid`
 * re-published with new key material is refreshed at most once per cooldown (issue 19.2).
 * Time moves through the key store's internal clock.
 */
import buildGetJwks from 'get-jwks'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions, type EntraVerifierOptions } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { KeyStore } from '../src/core/keys.js'
import { OPTION_DEFAULTS } from '../src/options.js'
import { fastifyJwtOverride } from '../src/core/signature.js'
import { FakeEntra, MockJwk, type MockJwtClient } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const HOUR = 60 * 60 * 1000
const clock = { now: 1_000_000 }

interface Fixture {
  app: FastifyInstance
  entra: FakeEntra
  client: MockJwtClient
  logs: Array<{ level: number, msg: string, reason?: string, err?: { message?: string } }>
  get: (token: string) => Promise<{ status: number, type: string | undefined }>
}

async function fixture (t: Test, options: Partial<EntraAuthOptions> = {}, setup: (entra: FakeEntra) => void = () => {}): Promise<Fixture> {
  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  setup(entra)
  const logs: Fixture['logs'] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options, [kKeyStoreClock]: () => clock.now } as unknown as EntraAuthOptions)
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  return {
    app,
    entra,
    client: entra.client(API_ID),
    logs,
    async get (token) {
      const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
      return { status: res.statusCode, type: res.statusCode === 200 ? undefined : res.json().type }
    }
  }
}

/** A plugin function that fails to register, like an incompatible @fastify/jwt release would. */
function failingFastifyJwt (t: Test): void {
  fastifyJwtOverride.plugin = (_instance: unknown, _options: unknown, done: (err?: Error) => void) => { done(new Error('simulated: this @fastify/jwt release is incompatible')) }
  t.teardown(() => { fastifyJwtOverride.plugin = undefined })
}

t.test('a jwks_uri with a #fragment works: get-jwks requests it without the fragment, and the layer reads that', async t => {
  const fx = await fixture(t, {}, entra => { entra.discoveryDocument = { issuer: entra.issuer, jwks_uri: `${entra.jwksUri}#signing-keys` } })
  t.same(await fx.get(fx.client.generate()), { status: 200, type: undefined })
  t.equal(fx.app.entraAuth.state().keys.jwksUri, `${fx.entra.jwksUri}#signing-keys`)
  t.equal(fx.entra.requests.jwks, 1)
})

t.test('get-jwks resolves each installed key, and one refresh is one fetch whatever the number of keys', async t => {
  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  entra.keys = [entra.keys[0] as MockJwk, entra.newKey(), entra.newKey()]
  const asked: string[] = []
  const pems = new Map<string, string>()
  // get-jwks itself, with its getJwk and getPublicKey answers recorded.
  const recording = ((options: Parameters<typeof buildGetJwks>[0]) => {
    const getJwks = buildGetJwks(options)
    const { getJwk, getPublicKey } = getJwks
    getJwks.getJwk = async signature => { asked.push(signature.kid); return await getJwk(signature) }
    getJwks.getPublicKey = async function (signature) {
      const pem = await getPublicKey.call(this, signature)
      pems.set(signature?.kid as string, pem)
      return pem
    }
    return getJwks
  }) as typeof buildGetJwks
  const timings = { ttl: HOUR, cooldown: 0, timeout: 5000, maxStale: HOUR, maxBytes: OPTION_DEFAULTS['jwks.maxBytes'] }
  const store = new KeyStore({ discoveryUrl: new URL(entra.oidcEndpoint), timings, dispatcher: entra.dispatcher, buildGetJwks: recording })
  t.teardown(() => store.close())
  await store.refresh()
  const kids = entra.keys.map(key => key.kid)
  t.same(store.state().kids, kids, 'the whole set is installed')
  t.equal(entra.requests.jwks, 1, 'three keys, one JWKS request')
  for (const kid of kids) {
    t.ok(asked.includes(kid), `getJwk was asked for ${kid}`)
    t.equal(store.currentKey(kid)?.pem, pems.get(kid), `${kid}: @fastify/jwt was given get-jwks' PEM`)
  }
  t.equal(asked[0], 'fastify-entra-auth:first-load', 'a first load without a token asks for a placeholder kid (docs/architecture.md)')

  asked.length = 0
  await store.refresh()
  t.equal(asked[0], kids[0], 'a later refresh without a token asks for a kid of the current set')
  await store.refresh('from-a-token')
  t.ok(asked.includes('from-a-token'), "a refresh for a token's kid asks get-jwks for that kid")
  t.equal(entra.requests.jwks, 3)
})

t.test('@fastify/jwt failing to register fails the refresh, never the requests', async t => {
  t.test('no good key set: 503 auth_oidc_error and an error log with the cause', async t => {
    failingFastifyJwt(t)
    const fx = await fixture(t)
    t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error' })
    const logged = fx.logs.find(line => line.level === 50)
    t.match(logged, { msg: /a library failed/, reason: /@fastify\/jwt could not be registered: simulated/, err: { message: /simulated/ } }, 'logged at error level with its cause')
    t.match(fx.app.entraAuth.state().keys, { ready: false, lastError: /@fastify\/jwt/ }, 'state() reports it')
  })

  t.test('the standalone verifier: auth_oidc_error', async t => {
    failingFastifyJwt(t)
    const entra = new FakeEntra()
    t.teardown(() => entra.close())
    const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions() } as EntraVerifierOptions)
    t.teardown(() => verifier.close())
    const failure = await verifier.verify(entra.client(API_ID).generate()).then(() => undefined, (err: unknown) => err)
    t.ok(failure instanceof EntraAuthError && failure.type === 'auth_oidc_error', 'auth_oidc_error')
    t.match(verifier.state().keys.lastError, /@fastify\/jwt/)
  })

  t.test('a good key set keeps serving; the next refresh recovers', async t => {
    const fx = await fixture(t, { jwks: { ttl: HOUR, maxStale: HOUR, cooldown: 0 } })
    const token = fx.client.generate()
    t.equal((await fx.get(token)).status, 200)
    const next = fx.entra.newKey()
    fx.entra.keys.push(next)
    failingFastifyJwt(t)
    const rotated = fx.entra.client(API_ID, 'v2', next).generate()
    t.equal((await fx.get(rotated)).status, 401, "the new key isn't installed: unknown kid, as in any failed refresh")
    t.equal((await fx.get(fx.client.generate())).status, 200, 'the last good set serves')
    t.match(fx.app.entraAuth.state().keys, { ready: true, lastError: /@fastify\/jwt/ })
    t.ok(fx.logs.some(line => line.level === 50), 'an error log')
    fastifyJwtOverride.plugin = undefined
    clock.now += 10_000
    t.equal((await fx.get(rotated)).status, 200, 'recovered')
    t.equal(fx.app.entraAuth.state().keys.lastError, undefined)
  })
})

t.test('a kid re-published with new key material (issue 19.2)', async t => {
  const cooldown = 60_000
  const fx = await fixture(t, { jwks: { ttl: 24 * HOUR, maxStale: HOUR, cooldown } })
  const old = fx.entra.keys[0] as MockJwk
  const oldToken = fx.client.generate()
  t.equal((await fx.get(oldToken)).status, 200)
  t.equal(fx.entra.requests.jwks, 1)

  const replaced = new MockJwk({ kid: old.kid, fresh: true, issuer: fx.entra.issuer })
  fx.entra.keys = [replaced]
  const newToken = fx.entra.client(API_ID, 'v2', replaced).generate()
  t.same(await fx.get(newToken), { status: 401, type: 'auth_token_signature_untrusted' }, 'within the cooldown of the last fetch: no refresh')
  t.equal(fx.entra.requests.jwks, 1)

  clock.now += cooldown
  t.same(await fx.get(newToken), { status: 200, type: undefined }, 'past the cooldown: one refresh, judged with the re-published key')
  t.equal(fx.entra.requests.jwks, 2)
  t.same(await fx.get(oldToken), { status: 401, type: 'auth_token_signature_untrusted' }, 'the replaced key no longer verifies, cached or not')
  const forged = `${newToken.slice(0, newToken.lastIndexOf('.'))}.${'A'.repeat(342)}`
  for (let i = 0; i < 20; i++) t.equal((await fx.get(forged)).status, 401)
  t.equal(fx.entra.requests.jwks, 2, 'bad signatures on a known kid: at most one refresh per cooldown')
  clock.now += cooldown
  await fx.get(forged)
  t.equal(fx.entra.requests.jwks, 3, 'and one again after it')
})
