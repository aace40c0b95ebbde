/**
 * What the key layer and the token cache guarantee on top of get-jwks and @fastify/jwt: whole key
 * sets, usable keys only, outages that don't wipe good keys, cached tokens bound to a usable key
 * set, no redirects whatever the app's dispatcher, and coexistence with an app's own @fastify/jwt.
 * Time moves through the key store's internal clock: nothing sleeps.
 */
import { generateKeyPairSync } from 'node:crypto'
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { interceptors, MockAgent } from 'undici'
import entraAuth, { createEntraVerifier, type EntraAuthOptions, type EntraToken } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra, MockJwk, type MockJwtClient } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const HOUR = 60 * 60 * 1000

/** The fake Entra of the running subtest: a new one each time (the test kit shares one RSA key, so it's cheap). */
let entra: FakeEntra
let baseKey: MockJwk

function reset (t: Test): FakeEntra {
  const created = new FakeEntra()
  t.teardown(() => created.close())
  entra = created
  baseKey = created.keys[0] as MockJwk
  return created
}

interface Fixture {
  app: FastifyInstance
  client: MockJwtClient
  clock: { now: number }
  get: (token: string) => Promise<{ status: number, type: string | undefined, token: EntraToken | null }>
}

async function fixture (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
  reset(t)
  const clock = { now: 1_000_000 }
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options, [kKeyStoreClock]: () => clock.now } as unknown as EntraAuthOptions)
  let seen: EntraToken | null = null
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => { seen = request.entraToken; return { ok: true } })
  t.teardown(() => app.close())
  return {
    app,
    client: entra.client(API_ID),
    clock,
    async get (token) {
      seen = null
      const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
      return { status: res.statusCode, type: res.statusCode === 200 ? undefined : res.json().type, token: seen }
    }
  }
}

t.test('a cached token is admitted only while its key set is usable (ttl + maxStale)', async t => {
  const fx = await fixture(t, { jwks: { ttl: HOUR, maxStale: HOUR, cooldown: 0 } })
  const token = fx.client.generate()
  const first = await fx.get(token)
  t.equal(first.status, 200)
  t.equal((await fx.get(token)).token, first.token, 'a cache hit')
  entra.mode = 'jwks-404'
  fx.clock.now += HOUR + HOUR / 2
  t.equal((await fx.get(token)).status, 200, 'within ttl + maxStale the last good set serves, cached or not')
  fx.clock.now += HOUR
  t.same(await fx.get(token), { status: 503, type: 'auth_oidc_error', token: null }, 'past ttl + maxStale the cached token is refused like a new one')
  t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', token: null }, 'a never-seen token from the same key')
})

t.test('a refresh keeps cached tokens whose key is still published', async t => {
  const fx = await fixture(t, { jwks: { cooldown: 0 } })
  const token = fx.client.generate()
  const first = await fx.get(token)
  t.equal((await fx.get(token)).token, first.token)
  entra.keys = [baseKey, entra.newKey('rotated-in')]
  const fetches = entra.requests.jwks
  t.equal((await fx.get(entra.client(API_ID, 'v2', entra.keys[1]).generate())).status, 200, 'an unknown kid refreshes the set')
  t.equal(entra.requests.jwks, fetches + 1)
  t.equal((await fx.get(token)).token, first.token, 'same key, same object: the cache survived the refresh')
  entra.keys = [entra.keys[1] as MockJwk]
  fx.clock.now += 25 * HOUR
  t.equal((await fx.get(entra.client(API_ID, 'v2', entra.keys[0]).generate())).status, 200, 'stale set serves while it refreshes')
  await fx.app.entraAuth.verifier.warm()
  t.equal((await fx.get(token)).type, 'auth_token_key_error', 'a removed key drops its cached tokens')
})

t.test('a JWKS with no usable key is an outage: the good set keeps serving and state() says why', async t => {
  const unusable: Array<[string, () => unknown]> = [
    ['{"keys":[]}', () => ({ keys: [] })],
    ['only an encryption key', () => ({ keys: [{ ...baseKey.toJSON(), use: 'enc' }] })],
    ['only an EC key', () => ({ keys: [{ ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: baseKey.kid }] })]
  ]
  for (const [label, document] of unusable) {
    t.test(label, async t => {
      const fx = await fixture(t, { jwks: { ttl: HOUR, cooldown: 0 } })
      const token = fx.client.generate()
      t.equal((await fx.get(token)).status, 200)
      entra.jwksDocument = document()
      fx.clock.now += HOUR + 1
      t.equal((await fx.get(fx.client.generate())).status, 200, 'served from the last good set (a refresh starts)')
      await fx.app.entraAuth.verifier.warm()
      const state = fx.app.entraAuth.state().keys
      t.match(state.lastError, /no (usable|keys)/, 'the failure is reported')
      t.ok(state.failures >= 1)
      t.same(state.kids, [baseKey.kid], 'the good key is still there')
      t.equal((await fx.get(fx.client.generate())).status, 200, 'valid tokens still pass')
    })
  }
  t.test('cold: no key can be found', async t => {
    const fx = await fixture(t)
    entra.jwksDocument = { keys: [{ ...baseKey.toJSON(), use: 'enc' }] }
    t.same(await fx.get(fx.client.generate()), { status: 401, type: 'auth_token_key_error', token: null })
    t.match(fx.app.entraAuth.state().keys.lastError, /no usable/)
  })
  t.test('cold, malformed ({} has no keys array): an outage', async t => {
    const fx = await fixture(t)
    entra.jwksDocument = {}
    t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', token: null })
  })
})

t.test('degenerate and restricted keys never verify', async t => {
  type Jwk = Record<string, unknown>
  const cases: Array<[string, (good: Jwk) => Jwk]> = [
    ['e = 1', good => ({ ...good, e: 'AQ' })],
    ['even exponent', good => ({ ...good, e: 'AQAA' })],
    ['key_ops without verify', good => ({ ...good, key_ops: ['encrypt'] })],
    ['key_ops not an array', good => ({ ...good, key_ops: 'verify' })],
    ['non-string issuer', good => ({ ...good, issuer: 42 })]
  ]
  for (const [label, make] of cases) {
    t.test(label, async t => {
      const fx = await fixture(t)
      entra.jwksDocument = { keys: [make(baseKey.toJSON()), entra.newKey('other').toJSON()] }
      t.equal((await fx.get(fx.client.generate())).type, 'auth_token_key_error')
      t.same(fx.app.entraAuth.state().keys.kids, ['other'], 'left out of the key set')
    })
  }
  t.test('e = 1 with a forged "signature" (the encoded hash itself) is refused', async t => {
    const fx = await fixture(t)
    const good = baseKey.toJSON()
    entra.jwksDocument = { keys: [{ ...good, e: 'AQ' }, entra.newKey('other').toJSON()] }
    const claims = fx.client.claims.build()
    const input = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: good.kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
    // With e = 1, s^e mod n = s: the PKCS#1 v1.5 encoding of the SHA-256 digest "verifies".
    const digest = (await import('node:crypto')).createHash('sha256').update(input).digest()
    const prefix = Buffer.from('3031300d060960864801650304020105000420', 'hex')
    const k = Buffer.from(good.n as string, 'base64url').length
    const em = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(k - prefix.length - digest.length - 3, 0xff), Buffer.from([0]), prefix, digest])
    t.equal((await fx.get(`${input}.${em.toString('base64url')}`)).status, 401)
  })
  t.test('key_ops with verify, and a blank issuer (counts as absent), verify', async t => {
    const fx = await fixture(t)
    const good = baseKey.toJSON()
    entra.jwksDocument = { keys: [{ ...good, key_ops: ['verify'], issuer: ' ' }] }
    t.equal((await fx.get(fx.client.generate())).status, 200)
  })
  t.test('e = 3 is a legitimate exponent', async t => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 })
    const key = new MockJwk({ kid: 'e3', privateKey })
    t.equal(publicKey.asymmetricKeyDetails?.publicExponent, 3n)
    const fx = await fixture(t)
    entra.keys = [key]
    t.equal((await fx.get(entra.client(API_ID, 'v2', key).generate())).status, 200)
  })
})

t.test("redirects are refused even through the app's redirect-following dispatcher", async t => {
  reset(t)
  const attacker = new MockJwk({ kid: 'attacker', fresh: true })
  const origin = 'https://login.microsoftonline.com'
  const evil = new MockAgent()
  evil.disableNetConnect()
  const discoveryPath = new URL(entra.oidcEndpoint).pathname
  evil.get(origin).intercept({ path: discoveryPath, method: 'GET' }).reply(200, JSON.stringify({ issuer: entra.issuer, jwks_uri: entra.jwksUri })).persist()
  evil.get(origin).intercept({ path: new URL(entra.jwksUri).pathname, method: 'GET' }).reply(302, '', { headers: { location: 'https://evil.example.test/keys' } }).persist()
  evil.get('https://evil.example.test').intercept({ path: '/keys', method: 'GET' }).reply(200, JSON.stringify({ keys: [attacker.toJSON()] })).persist()
  const following = evil.compose(interceptors.redirect({ maxRedirections: 3 }))
  t.teardown(() => evil.close())

  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: API_ID, oidcEndpoint: entra.oidcEndpoint, dispatcher: following, rejectionLogLevel: 'silent' })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  const forged = entra.client(API_ID, 'v2', attacker).generate()
  const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${forged}` } })
  t.equal(res.statusCode, 503, 'no keys: the redirect was not followed')
  t.match(app.entraAuth.state().keys.lastError, /redirect/)

  const verifier = createEntraVerifier({ clientId: API_ID, oidcEndpoint: entra.oidcEndpoint, dispatcher: following })
  t.teardown(() => verifier.close())
  const error = await verifier.verify(forged).then(() => null, (err: unknown) => err)
  t.match(error, { type: 'auth_oidc_error' }, 'the standalone verifier too')
})

t.test('documents are capped in size whatever the dispatcher, and the deadline covers each fetch', async t => {
  const fx = await fixture(t, { jwks: { maxBytes: 4096, timeout: 200 } })
  entra.jwksDocument = { keys: entra.keys.map(k => k.toJSON()), padding: 'x'.repeat(8192) }
  t.equal((await fx.get(fx.client.generate())).status, 503)
  t.match(fx.app.entraAuth.state().keys.lastError, /larger than 4096/)
  entra.jwksDocument = undefined
  entra.mode = 'hang'
  fx.clock.now += 10_000
  t.equal((await fx.get(fx.client.generate())).status, 503)
  t.match(fx.app.entraAuth.state().keys.lastError, /within 200 ms/)
})

t.test('an unknown-kid flood costs at most one fetch per cooldown, and never pins the set', async t => {
  const fx = await fixture(t, { jwks: { cooldown: 60_000 } })
  t.equal((await fx.get(fx.client.generate())).status, 200)
  const fetches = entra.requests.jwks
  const forged = Array.from({ length: 20 }, (_, i) => fx.client.sign({ alg: 'RS256', kid: `forged-${i}` }, fx.client.claims.build()))
  const results = await Promise.all(forged.map(token => fx.get(token)))
  t.same([...new Set(results.map(r => r.type))], ['auth_token_key_error'])
  t.ok(entra.requests.jwks - fetches <= 1, `${entra.requests.jwks - fetches} fetch(es) for 20 forged kids`)
  const genuine = entra.newKey('genuine-new')
  entra.keys = [baseKey, genuine]
  fx.clock.now += 60_000
  t.equal((await fx.get(entra.client(API_ID, 'v2', genuine).generate())).status, 200, 'a genuine new key is found after the cooldown')
})

// ---------------------------------------------------------------------------------------------
// Coexistence with the app's own @fastify/jwt

t.test("an app's own @fastify/jwt, before or after, namespaced or not, boots and keeps its decorators", async t => {
  const secret = 'a-secret-of-at-least-32-characters!!'
  for (const order of ['before', 'after'] as const) {
    for (const namespace of [undefined, 'app']) {
      t.test(`${order}, ${namespace === undefined ? 'default names' : `namespace ${namespace}`}`, async t => {
        reset(t)
        const app = Fastify({ logger: false })
        t.teardown(() => app.close())
        const own = async (): Promise<void> => { await app.register(fastifyJwt, { secret, ...(namespace === undefined ? {} : { namespace }) }) }
        if (order === 'before') await own()
        await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), rejectionLogLevel: 'silent' })
        if (order === 'after') await own()
        const verifyOwn = namespace === undefined ? 'jwtVerify' : `${namespace}JwtVerify`
        app.get('/own', async (request) => {
          await (request as unknown as Record<string, () => Promise<unknown>>)[verifyOwn]!()
          return { user: (request as unknown as { user: unknown }).user, entraToken: request.entraToken }
        })
        app.get('/entra', { onRequest: app.entraAuth() }, async (request) => ({ user: (request as unknown as { user: unknown }).user ?? null, sub: request.entraToken?.claims.sub }))
        await app.ready()

        const jwtDecorator = (app as unknown as { jwt: Record<string, unknown> }).jwt
        const ownJwt = (namespace === undefined ? jwtDecorator : jwtDecorator[namespace]) as { sign: (p: object) => string }
        t.same(Object.keys(jwtDecorator).sort(), namespace === undefined ? ['cookie', 'decode', 'lookupToken', 'options', 'sign', 'verify'] : [namespace], 'nothing of ours on fastify.jwt')
        const ownToken = ownJwt.sign({ name: 'app user' })
        const own1 = await app.inject({ url: '/own', headers: { authorization: `Bearer ${ownToken}` } })
        t.equal(own1.statusCode, 200)
        t.match(own1.json(), { user: { name: 'app user' }, entraToken: null })

        const entraToken = entra.client(API_ID).generate()
        const mine = await app.inject({ url: '/entra', headers: { authorization: `Bearer ${entraToken}` } })
        t.equal(mine.statusCode, 200)
        t.same(mine.json().user, null, 'request.user untouched by us')
        // (@fastify/jwt answers an RS256 token under an HMAC secret with a 500: the app's plugin, not ours.)
        t.not((await app.inject({ url: '/own', headers: { authorization: `Bearer ${entraToken}` } })).statusCode, 200, "the app's verifier refuses our token, and the reverse:")
        t.equal((await app.inject({ url: '/entra', headers: { authorization: `Bearer ${ownToken}` } })).statusCode, 401)
      })
    }
  }
})

t.test('two registrations of the plugin in one app still work', async t => {
  reset(t)
  const other = new FakeEntra({ tenant: '11111111-2222-4333-8444-555555555555' })
  t.teardown(() => other.close())
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), rejectionLogLevel: 'silent' })
  await app.register(entraAuth, { clientId: API_ID, ...other.pluginOptions(), decorator: 'partnerAuth', rejectionLogLevel: 'silent' })
  const partner = (app as unknown as { partnerAuth: typeof app.entraAuth }).partnerAuth
  app.get('/a', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  app.get('/b', { onRequest: partner() }, async () => ({ ok: true }))
  const a = entra.client(API_ID).generate()
  const b = other.client(API_ID).generate()
  t.equal((await app.inject({ url: '/a', headers: { authorization: `Bearer ${a}` } })).statusCode, 200)
  t.equal((await app.inject({ url: '/b', headers: { authorization: `Bearer ${b}` } })).statusCode, 200)
  t.equal((await app.inject({ url: '/a', headers: { authorization: `Bearer ${b}` } })).statusCode, 401)
})

t.test('the default agent (no dispatcher option) is created and closed by the verifier', async t => {
  reset(t)
  const verifier = createEntraVerifier({ clientId: API_ID, oidcEndpoint: 'https://127.0.0.1:1/v2.0/.well-known/openid-configuration', jwks: { timeout: 2000 } })
  // Nothing listens on port 1: the fetch fails at once (however loaded the machine, well within 2 s).
  const error = await verifier.verify(entra.client(API_ID).generate()).then(() => null, (err: unknown) => err)
  t.match(error, { type: 'auth_oidc_error' }, 'refused with 503, never a rejection of another kind')
  t.equal(await verifier.warm(), false, 'unreachable: warm() resolves false, never rejects')
  t.match(verifier.state().keys.lastError, /discovery document/)
  await verifier.close()
})
