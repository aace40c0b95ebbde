/**
 * Key set documents and their fetching: whole key sets of usable keys, malformed JWKS documents,
 * the deadline of every discovery and JWKS fetch, and what the key and signature layers rely on in
 * get-jwks and @fastify/jwt. One section per subject below, each with its own fixtures. The key
 * store's own behaviour (single flight, floods, rotation, outages): keys.test.ts.
 */
import { generateKeyPairSync, createPublicKey, sign } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { deflateRawSync, gzipSync } from 'node:zlib'
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance } from 'fastify'
import buildGetJwks from 'get-jwks'
import t, { type Test } from 'tap'
import { MockAgent, interceptors, Agent, type Dispatcher } from 'undici'
import entraAuth, { createEntraVerifier, type EntraAuthOptions, type EntraVerifierOptions, type EntraToken, EntraAuthError } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra, MockJwk, MockJwtClient } from '../src/testing/index.js'
import { KeyStore } from '../src/core/keys.js'
import { OPTION_DEFAULTS } from '../src/options.js'
import { fastifyJwtOverride, mapJwtError } from '../src/core/signature.js'
import { GET_JWKS_OUTAGE } from '../src/core/jwks.js'
import { captureLogs, RecordingDispatcher, testKey } from './helpers/index.js'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const HOUR = 60 * 60 * 1000

/**
 * What the key layer and the token cache guarantee on top of get-jwks and @fastify/jwt: whole key
 * sets, usable keys only, outages that don't wipe good keys, cached tokens bound to a usable key
 * set, no redirects whatever the app's dispatcher, and coexistence with an app's own @fastify/jwt.
 * Time moves through the key store's internal clock: nothing sleeps.
 */
t.test('key sets', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

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
      const privateKey = testKey('e3')
      const publicKey = createPublicKey(privateKey)
      const key = new MockJwk({ kid: 'e3', privateKey })
      t.equal(publicKey.asymmetricKeyDetails?.publicExponent, 3n)
      const fx = await fixture(t)
      entra.keys = [key]
      t.equal((await fx.get(entra.client(API_ID, 'v2', key).generate())).status, 200)
    })
  })

  t.test("redirects are refused even through the app's redirect-following dispatcher", async t => {
    reset(t)
    const attacker = new MockJwk({ kid: 'attacker', privateKey: testKey('foreign') })
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
})

/**
 * Every malformed JWKS document fails closed: whatever the provider (or something between it and
 * the API) serves as the key set, no token is admitted that its good keys would not admit, nothing
 * answers 500, and a set that was good keeps serving instead of being wiped. Time moves through
 * the key store's internal clock: nothing sleeps.
 */
t.test('malformed JWKS documents', async t => {
  const API_ID = 'b1c2d3e4-0000-4000-8000-00000000a11f'

  interface Fixture {
    entra: FakeEntra
    app: FastifyInstance
    client: MockJwtClient
    clock: { now: number }
    get: (token: string) => Promise<{ status: number, type: string | undefined }>
  }

  async function fixture (t: Test): Promise<Fixture> {
    const entra = new FakeEntra()
    t.teardown(() => entra.close())
    const clock = { now: 1_000_000 }
    const app = Fastify({ logger: false })
    await app.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), jwks: { ttl: HOUR, cooldown: 0 }, [kKeyStoreClock]: () => clock.now } as unknown as EntraAuthOptions)
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(() => app.close())
    return {
      entra,
      app,
      client: entra.client(API_ID),
      clock,
      async get (token) {
        const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
        return { status: res.statusCode, type: res.statusCode === 200 ? undefined : res.json().type }
      }
    }
  }

  /** Malformed key sets (a body that is not JSON: see keys.test.ts), given the good key of the fake (as JSON) so entries can be spoilt one way each. */
  const MALFORMED: Array<[string, (good: Record<string, unknown>) => unknown]> = [
    ['an array', good => [good]],
    ['a string', () => 'keys'],
    ['a number', () => 42],
    ['{}', () => ({})],
    ['keys: null', () => ({ keys: null })],
    ['keys: a string', () => ({ keys: 'x' })],
    ['keys: an object', good => ({ keys: { [good.kid as string]: good } })],
    ['keys: []', () => ({ keys: [] })],
    ['keys: [null, 42, "x", []]', () => ({ keys: [null, 42, 'x', []] })],
    ['n not a string', good => ({ keys: [{ ...good, n: 42 }] })],
    ['n not base64url', good => ({ keys: [{ ...good, n: '!!!not base64url!!!' }] })],
    ['n cut short (512 bits)', good => ({ keys: [{ ...good, n: (good.n as string).slice(0, 86) }] })],
    ['e missing', good => ({ keys: [{ ...good, e: undefined }] })],
    ['e even', good => ({ keys: [{ ...good, e: 'AAAC' }] })],
    ['e of 1', good => ({ keys: [{ ...good, e: 'AQ' }] })],
    ['kty missing', good => ({ keys: [{ ...good, kty: undefined }] })],
    ['kty oct', good => ({ keys: [{ ...good, kty: 'oct', k: 'c2VjcmV0' }] })],
    ['alg RS512', good => ({ keys: [{ ...good, alg: 'RS512' }] })],
    ['alg none', good => ({ keys: [{ ...good, alg: 'none' }] })],
    ['use enc', good => ({ keys: [{ ...good, use: 'enc' }] })],
    ['key_ops without verify', good => ({ keys: [{ ...good, key_ops: ['encrypt'] }] })],
    ['key_ops not an array', good => ({ keys: [{ ...good, key_ops: 'verify' }] })],
    ['issuer not a string', good => ({ keys: [{ ...good, issuer: 42 }] })]
  ]

  t.test('cold: a malformed key set never admits a token and never answers 500', async t => {
    for (const [label, document] of MALFORMED) {
      const fx = await fixture(t)
      const good = fx.entra.keys[0]!.toJSON() as unknown as Record<string, unknown>
      fx.entra.jwksDocument = document(good)
      const reply = await fx.get(fx.client.generate())
      t.ok((reply.status === 401 && reply.type === 'auth_token_key_error') || (reply.status === 503 && reply.type === 'auth_oidc_error'), `${label}: ${reply.status} ${String(reply.type)}`)
      t.ok(fx.app.entraAuth.state().keys.kids.length === 0, `${label}: no key was taken`)
    }
  })

  t.test('warm: a malformed key set is a failed refresh; the last good set keeps serving', async t => {
    for (const [label, document] of MALFORMED) {
      const fx = await fixture(t)
      const good = fx.entra.keys[0]!.toJSON() as unknown as Record<string, unknown>
      t.equal((await fx.get(fx.client.generate())).status, 200, `${label}: control`)
      fx.entra.jwksDocument = document(good)
      fx.clock.now += HOUR + 1
      await fx.app.entraAuth.verifier.warm()
      const state = fx.app.entraAuth.state().keys
      t.ok(state.lastError !== undefined && state.failures >= 1, `${label}: the refresh failed (${String(state.lastError)})`)
      t.same(state.kids, [good.kid], `${label}: the good key is kept`)
      t.equal((await fx.get(fx.client.generate({ sub: 'another' }))).status, 200, `${label}: valid tokens still pass`)
    }
  })

  t.test('one malformed entry next to a good key: the good key verifies, the malformed one verifies nothing', async t => {
    for (const [label, document] of MALFORMED.slice(MALFORMED.findIndex(([name]) => name === 'n not a string'))) {
      const fx = await fixture(t)
      const good = fx.entra.keys[0]!.toJSON() as unknown as Record<string, unknown>
      const other = fx.entra.newKey('other')
      const spoilt = (document(other.toJSON() as unknown as Record<string, unknown>) as { keys: unknown[] }).keys[0]
      fx.entra.jwksDocument = { keys: [spoilt, good] }
      t.equal((await fx.get(fx.client.generate())).status, 200, `${label}: the good key verifies`)
      const byOther = fx.entra.client(API_ID, 'v2', other).generate()
      t.equal((await fx.get(byOther)).type, 'auth_token_key_error', `${label}: a token naming the malformed key is refused`)
    }
  })
})

/**
 * Every discovery and JWKS fetch ends within `jwks.timeout` whatever the response (issue 19.1,
 * contract §6): an undecodable `content-encoding`, a corrupt or oversized compressed body, a body
 * that never ends. The refresh fails, the last good set serves (or 503), and the next refresh
 * recovers. Served by a real loopback HTTP server, through the default agent and through an app's
 * own agent (whose timeouts are undici's 300 s defaults: only the package's deadline applies).
 */
t.test('fetch deadline', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
  const TIMEOUT = 1000
  const MAX_BYTES = 64 * 1024
  /** How long a test waits before it calls something hung: generous, for a loaded machine. */
  const BOUND = 20_000

  /** `promise`, or 'hung' once BOUND ms have passed; the bound's timer is cleared either way (it would hold the process open). */
  async function bounded<T> (promise: Promise<T>): Promise<T | 'hung'> {
    let timer: NodeJS.Timeout | undefined
    const hung = new Promise<'hung'>(resolve => { timer = setTimeout(() => resolve('hung'), BOUND) })
    try {
      return await Promise.race([promise, hung])
    } finally {
      clearTimeout(timer)
    }
  }

  type Bad = (res: ServerResponse, document: string) => void

  /** Responses the fetch layer can't use, each of which must end the fetch within the deadline. */
  const BODIES: Record<string, Bad> = {
    'content-encoding zstd': (res, document) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' })
      res.end(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.from(document)]))
    },
    'raw deflate as content-encoding deflate': (res, document) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'deflate' })
      res.end(deflateRawSync(document))
    },
    'corrupt gzip': (res, document) => {
      const gzip = gzipSync(document)
      gzip.fill(0x41, 12, 40)
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
      res.end(gzip)
    },
    'gzip larger than jwks.maxBytes once decoded': (res, document) => {
      const padded = `${document.slice(0, -1)},"padding":"${'x'.repeat(MAX_BYTES * 4)}"}`
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
      res.end(gzipSync(padded))
    },
    'a body that never ends': (res, document) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(document.slice(0, -1))
      // One byte every 20 ms: never idle long enough for a body timeout, never complete.
      const trickle = setInterval(() => { if (!res.destroyed) res.write(' ') }, 20)
      res.on('close', () => clearInterval(trickle))
    }
  }

  /**
   * What state() says for each: a body that never ends is cut by the deadline; the others are
   * refused sooner, unless a loaded machine let the deadline come first (both end the fetch).
   */
  const REASONS: Record<string, RegExp> = {
    'content-encoding zstd': /unsupported content-encoding 'zstd'/,
    'raw deflate as content-encoding deflate': /could not be decoded/,
    'corrupt gzip': /could not be decoded/,
    'gzip larger than jwks.maxBytes once decoded': /could not be decoded within 65536 bytes/,
    'a body that never ends': /no complete response within 1000 ms/
  }

  interface Server {
    entra: FakeEntra
    /** Which document (if any) is answered with `bad`. */
    failing: { document: 'discovery' | 'jwks' | null, bad: Bad | null }
  }

  async function loopback (t: Test): Promise<Server> {
    const failing: Server['failing'] = { document: null, bad: null }
    const ref: { entra?: FakeEntra } = {}
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const fake = ref.entra as FakeEntra
      const answer = fake.handle({ method: req.method ?? 'GET', url: req.url ?? '/', headers: {}, body: '' })
      const path = new URL(req.url ?? '/', fake.origin).href
      const document = path === fake.oidcEndpoint ? 'discovery' : path === fake.jwksUri ? 'jwks' : null
      if (document !== null && document === failing.document && failing.bad !== null) {
        failing.bad(res, answer.body)
        return
      }
      res.writeHead(answer.status, answer.headers)
      res.end(answer.body)
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
    const entra = new FakeEntra({ origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    ref.entra = entra
    t.teardown(() => entra.close())
    return { entra, failing }
  }

  interface App {
    app: FastifyInstance
    /** The key store's clock (ms): each test moves its own, so the tests can run side by side. */
    clock: { now: number }
    get: () => Promise<{ status: number, type: string | undefined }>
  }

  async function protectedApp (t: Test, server: Server, dispatcher: Agent | undefined): Promise<App> {
    const clock = { now: 1_000_000 }
    const app = Fastify({ logger: false })
    await app.register(entraAuth, {
      clientId: API_ID,
      oidcEndpoint: server.entra.oidcEndpoint,
      ...(dispatcher === undefined ? {} : { dispatcher }),
      rejectionLogLevel: 'silent',
      jwks: { timeout: TIMEOUT, cooldown: 0, ttl: HOUR, maxStale: HOUR, maxBytes: MAX_BYTES },
      [kKeyStoreClock]: () => clock.now
    } as unknown as EntraAuthOptions)
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(() => app.close())
    const token = server.entra.client(API_ID).generate()
    return {
      app,
      clock,
      async get () {
        // A request that never ends fails here with 'hung' (a generous bound, not a timing assertion).
        const res = await bounded(app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } }))
        if (res === 'hung') return { status: 0, type: 'hung' }
        return { status: res.statusCode, type: res.statusCode === 200 ? undefined : res.json().type }
      }
    }
  }

  /**
   * Polls until the background refresh ended: it counted a failure, and when discovery failed, the
   * key set fetched after it (beside the cached document) is installed (its age is 0: the clock stands still).
   */
  async function refreshFailed (app: FastifyInstance, failures: number, document: 'discovery' | 'jwks'): Promise<boolean> {
    const ended = (): boolean => app.entraAuth.state().keys.failures > failures && (document === 'jwks' || app.entraAuth.state().keys.keysAge === 0)
    for (let waited = 0; waited < BOUND && !ended(); waited += 10) await sleep(10)
    return ended()
  }

  // Every body for both documents on the default agent; the JWKS ones again on an app's own agent.
  t.jobs = 2
  for (const [dispatcherLabel, makeDispatcher, documents] of [['default agent', () => undefined, ['jwks', 'discovery']], ["the app's own agent", () => new Agent(), ['jwks']]] as const) {
    t.test(dispatcherLabel, async t => {
      // The cases share nothing (each has its own server, app and clock): they run side by side, so
      // the ones that wait out the deadline wait together.
      t.jobs = 5
      for (const document of documents) {
        for (const [label, bad] of Object.entries(BODIES)) {
          t.test(`${document}: ${label}`, async t => {
            const server = await loopback(t)
            const dispatcher = makeDispatcher()
            if (dispatcher !== undefined) t.teardown(() => dispatcher.close())
            const fx = await protectedApp(t, server, dispatcher)
            server.failing.document = document
            server.failing.bad = bad

            t.same(await fx.get(), { status: 503, type: 'auth_oidc_error' }, 'cold: the fetch ends, 503')
            const reason = new RegExp(`${(REASONS[label] as RegExp).source}|no complete response within ${TIMEOUT} ms`)
            t.match(fx.app.entraAuth.state().keys, { ready: false, lastError: reason }, String(fx.app.entraAuth.state().keys.lastError))

            server.failing.bad = null
            fx.clock.now += 10_000
            t.same(await fx.get(), { status: 200, type: undefined }, 'the next refresh recovers')

            server.failing.bad = bad
            const failures = fx.app.entraAuth.state().keys.failures
            fx.clock.now += HOUR
            t.same(await fx.get(), { status: 200, type: undefined }, 'past ttl: the last good set serves while the refresh runs')
            t.ok(await refreshFailed(fx.app, failures, document), 'the background refresh ended, failed')
            t.match(fx.app.entraAuth.state().keys, { ready: true, lastError: /\S/ })
            t.same(await fx.get(), { status: 200, type: undefined }, 'and the last good set still serves')

            server.failing.bad = null
            fx.clock.now += HOUR
            // Each request past ttl starts a refresh once the one in flight (if any) has ended.
            for (let i = 0; i < BOUND / 10 && fx.app.entraAuth.state().keys.lastError !== undefined; i++) { await fx.get(); await sleep(10) }
            t.equal(fx.app.entraAuth.state().keys.lastError, undefined, 'recovered')
          })
        }
      }
    })
  }
})

/**
 * The key store on top of its libraries, by its behaviour: get-jwks resolves every installed key
 * from one fetch; a `jwks_uri` with a `#fragment` works; @fastify/jwt failing to register fails
 * the refresh (503 and an error log, never a 401) while the last good set keeps serving; a `kid`
 * re-published with new key material is refreshed at most once per cooldown (issue 19.2).
 * Time moves through the key store's internal clock.
 */
t.test('the key store on its libraries', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
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
    const capture = captureLogs('warn')
    const logs = capture.lines as Fixture['logs']
    const app = Fastify({ logger: capture.logger })
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

    const replaced = new MockJwk({ kid: old.kid, privateKey: testKey('foreign'), issuer: fx.entra.issuer })
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
})

/**
 * What the key layer (src/core/jwks.ts) and the signature layer (src/core/signature.ts) depend on
 * in get-jwks and @fastify/jwt, through their public entry points only. If a library changes what
 * the layers rely on, one of these fails and says which. Quirks the layers defend against are
 * tested by their effect on our behaviour instead (keys.test.ts and the sections above), so
 * an upstream fix never breaks the build.
 */
t.test('what the layers rely on in get-jwks and @fastify/jwt', async t => {
  const require = createRequire(import.meta.url)
  const ORIGIN = 'https://login.example.test'
  const DOMAIN = `${ORIGIN}/`

  const privateKey = testKey('foreign')
  const publicKey = createPublicKey(privateKey)
  const jwk = (kid: string): Record<string, unknown> => ({ ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' })

  /** A mock origin answering every GET with what `answer()` returns at the time of the request. */
  function mockOrigin (answer: (path: string) => { statusCode: number, data: string }): { agent: MockAgent, recorded: RecordingDispatcher } {
    const agent = new MockAgent()
    agent.disableNetConnect()
    agent.get(ORIGIN).intercept({ path: () => true, method: 'GET' }).reply(opts => answer(opts.path)).persist()
    return { agent, recorded: new RecordingDispatcher(agent) }
  }

  function getJwksWith (dispatcher: Dispatcher, jwksPath = '/keys', fetchOptions: object = {}): ReturnType<typeof buildGetJwks> {
    return buildGetJwks({ jwksPath, fetchOptions: { dispatcher, ...fetchOptions } as never })
  }

  async function codeOf (promise: Promise<unknown>): Promise<unknown> {
    try {
      await promise
      return 'resolved'
    } catch (err) {
      return (err as { code?: unknown }).code ?? (err as Error).name
    }
  }

  t.test('get-jwks requests `domain` + `jwksPath`: the URL the key layer reads the document of', async t => {
    const { agent, recorded } = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify({ keys: [jwk('a')] }) }))
    t.teardown(() => agent.close())
    // The layer gives get-jwks the jwks_uri's origin + '/' and its path + query (a #fragment is never sent).
    const jwksUri = new URL(`${ORIGIN}/tenant/discovery/v2.0/keys?appid=x#section`)
    const jwksPath = jwksUri.pathname + jwksUri.search
    await getJwksWith(recorded, jwksPath).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' })
    t.same(recorded.urls, [new URL(DOMAIN + jwksPath.slice(1)).href])
    t.equal(recorded.urls[0], `${ORIGIN}/tenant/discovery/v2.0/keys?appid=x`)
  })

  t.test('get-jwks hands its fetchOptions to fetch: dispatcher, headers, signal, redirect', async t => {
    const agent = new MockAgent()
    agent.disableNetConnect()
    t.teardown(() => agent.close())
    agent.get(ORIGIN).intercept({ path: '/keys', method: 'GET', headers: { 'accept-encoding': 'identity', accept: 'application/json' } })
      .reply(200, JSON.stringify({ keys: [jwk('a')] })).persist()
    agent.get(ORIGIN).intercept({ path: '/moved', method: 'GET' }).reply(302, '', { headers: { location: `${ORIGIN}/keys` } }).persist()
    const headers = { accept: 'application/json', 'accept-encoding': 'identity' }
    const found = await getJwksWith(agent, '/keys', { headers }).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' })
    t.equal(found.kid, 'a', 'the request went through the dispatcher, with the headers')

    const stop = new AbortController()
    const reason = new Error('the refresh deadline')
    stop.abort(reason)
    await t.rejects(getJwksWith(agent, '/keys', { headers, signal: stop.signal }).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' }), reason,
      "an aborted signal rejects with the signal's reason (the layer recognises its own deadline)")
    await t.rejects(getJwksWith(agent, '/moved', { headers, redirect: 'error' }).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' }), TypeError, "redirect: 'error' refuses a 3xx")
  })

  t.test('get-jwks error codes, and when each is thrown: all mapped by the key layer', async t => {
    let answer = { statusCode: 200, data: '' }
    const { agent } = mockOrigin(() => answer)
    t.teardown(() => agent.close())
    const cases: Array<[string, { statusCode: number, data: string }, unknown, object?]> = [
      ['a 2xx set without the kid', { statusCode: 200, data: JSON.stringify({ keys: [jwk('b')] }) }, 'JWK_NOT_FOUND'],
      ['a 2xx set with no keys', { statusCode: 200, data: JSON.stringify({ keys: [] }) }, 'NO_JWKS'],
      ['a non-2xx JSON answer', { statusCode: 500, data: JSON.stringify({ error: 'x' }) }, 'JWKS_REQUEST_FAILED'],
      ['a body that is not JSON, whatever the status', { statusCode: 404, data: 'Not Found' }, 'SyntaxError'],
      ['a domain outside issuersWhitelist', { statusCode: 200, data: JSON.stringify({ keys: [jwk('a')] }) }, 'DOMAIN_NOT_ALLOWED', { issuersWhitelist: ['https://other.example.test'] }]
    ]
    for (const [label, response, expected, extra] of cases) {
      answer = response
      const getJwks = buildGetJwks({ jwksPath: '/keys', fetchOptions: { dispatcher: agent } as never, ...extra })
      const code = await codeOf(getJwks.getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' }))
      t.equal(code, expected, label)
      if (typeof code === 'string' && code !== 'SyntaxError') t.ok(code === 'JWK_NOT_FOUND' || code in GET_JWKS_OUTAGE, `${code} is mapped`)
    }
  })

  t.test('get-jwks caches per kid: the same kid and its PEM cost no second request; its public cache entry can be deleted', async t => {
    const { agent, recorded } = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify({ keys: [jwk('a'), jwk('b')] }) }))
    t.teardown(() => agent.close())
    const getJwks = getJwksWith(recorded)
    const signature = { domain: DOMAIN, alg: 'RS256', kid: 'a' }
    const first = await getJwks.getJwk(signature)
    const pem = await getJwks.getPublicKey(signature)
    t.equal(recorded.urls.length, 1, 'getJwk then getPublicKey of one kid: one request')
    t.equal(first.n, jwk('a').n)
    const fromPem = createPublicKey(pem).export({ format: 'jwk' })
    t.same({ n: fromPem.n, e: fromPem.e }, { n: first.n, e: first.e }, 'getPublicKey is the PEM of the JWK getJwk returned')
    getJwks.cache.delete(getJwks.generateCacheKey('RS256', 'a', DOMAIN))
    await getJwks.getJwk(signature)
    t.equal(recorded.urls.length, 2, 'a deleted cache entry is fetched again')
  })

  t.test('@fastify/jwt under a namespace: jwt[namespace].verify and namespaced request and reply decorators', async t => {
    const pem = publicKey.export({ type: 'spki', format: 'pem' })
    const app = Fastify()
    t.teardown(() => app.close())
    for (const namespace of ['k0', 'k1']) {
      app.register(fastifyJwt, { namespace, secret: { public: pem }, verify: { algorithms: ['RS256'] } })
    }
    await app.ready()
    const jwt = (app as unknown as { jwt: Record<string, { verify: (token: string) => unknown }> }).jwt
    t.same(Object.keys(jwt).sort(), ['k0', 'k1'], 'one entry per namespace, nothing else')
    for (const namespace of ['k0', 'k1']) {
      t.equal(typeof jwt[namespace]?.verify, 'function', `jwt.${namespace}.verify`)
      t.ok(app.hasRequestDecorator(`${namespace}JwtVerify`) && app.hasRequestDecorator(`${namespace}JwtDecode`), `request.${namespace}JwtVerify/JwtDecode`)
      t.ok(app.hasReplyDecorator(`${namespace}JwtSign`), `reply.${namespace}JwtSign`)
    }
    t.notOk(app.hasRequestDecorator('jwtVerify'), 'no default-named decorator')

    const input = `${Buffer.from('{"alg":"RS256","kid":"k"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}`
    const token = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
    const verify = jwt.k0?.verify as (token: string) => unknown
    t.same(verify(token), { sub: 'x' }, 'verify(token) alone, called detached: the payload')
    t.throws(() => verify(`${input}.${'A'.repeat(342)}`), { code: 'FAST_JWT_INVALID_SIGNATURE' })
    t.throws(() => verify(`${Buffer.from('{"alg":"RS256"}').toString('base64url')}.bm90IGpzb24.${'A'.repeat(342)}`), { code: 'FAST_JWT_MALFORMED' })
  })

  t.test('@fastify/jwt: a registration error surfaces from ready()', async t => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(fastifyJwt, { namespace: 'k0', secret: {} as never })
    await t.rejects(async () => { await app.ready() }, /missing public key/)
  })

  t.test('every fast-jwt and @fastify/jwt error code maps to a 401 problem', async t => {
    const { TokenError } = require('fast-jwt') as { TokenError: { codes: Record<string, string> } }
    const codes = [...Object.values(TokenError.codes), 'FST_JWT_AUTHORIZATION_TOKEN_INVALID', 'FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED', 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED', 'FST_JWT_BAD_REQUEST']
    t.ok(codes.includes('FAST_JWT_INVALID_SIGNATURE') && codes.includes('FAST_JWT_MALFORMED'), 'the codes the layer tells apart exist')
    for (const code of codes) {
      const mapped = mapJwtError(Object.assign(new Error('x'), { code }), () => undefined)
      t.ok(mapped instanceof EntraAuthError && mapped.status === 401, `${code} → 401 ${mapped.type}`)
    }
    t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_MALFORMED' }), () => 'why').type, 'auth_token_invalid', 'malformed')
    t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_INVALID_SIGNATURE' }), () => 'why').type, 'auth_token_signature_untrusted', 'signature failure')
    t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_INVALID_SIGNATURE' }), () => 'why').detail, 'why')
    t.equal(mapJwtError(new TypeError('unforeseen'), () => undefined).type, 'auth_token_signature_untrusted', 'no code: refused closed')
  })
})
