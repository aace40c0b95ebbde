/**
 * The key store: single flight on a cold store, unknown-kid floods and their cooldown, rotation,
 * outages that keep the last good keys serving, refused key sets and documents, start-up without
 * the identity provider, and one refresh in flight whatever starts it. One section per subject
 * below, each with its own fixtures. Key set documents and their fetching: jwks.test.ts.
 */
import { generateKeyPairSync, createPublicKey, sign } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { MockAgent } from 'undici'
import entraAuth, { createEntraVerifier, type EntraAuthOptions, type EntraVerifier, type EntraVerifierOptions, CHANNELS, type KeyRefreshMessage } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra, type FakeEntraMode, MockJwk, MockJwtClient } from '../src/testing/index.js'
import { captureLogs, typeOf, testKey } from './helpers/index.js'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/**
 * Key store (issue 4): single flight, unknown-kid cooldown, rotation, outages, refused key sets
 * and documents, start-up without the identity provider. Counters and states only: no assertion
 * depends on how long something took.
 */
t.test('key store', async t => {
  const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

  /**
   * The key store's clock (the internal `kKeyStoreClock` option): tests move it past a ttl or a
   * cooldown instead of sleeping. It only ever moves forward, so every fixture may share it.
   */
  const clock = { now: 1_000_000 }
  const keyStoreClock = { [kKeyStoreClock]: () => clock.now }

  /** Polls `predicate` with small sleeps (at most ~`limit` ms); the caller asserts the state after. */
  async function waitFor (predicate: () => boolean, limit = 5000): Promise<boolean> {
    for (let waited = 0; waited < limit && !predicate(); waited += 10) await sleep(10)
    return predicate()
  }

  /**
   * One fake Entra for the whole file (each one generates an RSA key, which is slow); every fixture
   * resets it. Subtests run one after another, so they never share it at the same time.
   */
  const shared = new FakeEntra()
  const baseKey = shared.keys[0] as MockJwk
  t.teardown(() => shared.close())

  function fresh (): FakeEntra {
    shared.mode = 'ok'
    shared.discoveryDocument = undefined
    shared.jwksDocument = undefined
    shared.keys = [baseKey]
    shared.requests.discovery = 0
    shared.requests.jwks = 0
    return shared
  }

  interface Fixture {
    app: FastifyInstance
    entra: FakeEntra
    client: MockJwtClient
    logs: Array<{ level: number, msg: string }>
    get: (token: string) => Promise<{ status: number, type: string | undefined, challenge: string | undefined }>
  }

  /** A Fastify app protected by the plugin against a fake Entra. Not made ready. */
  async function fixture (t: Test, options: Partial<EntraAuthOptions> = {}, setup: (entra: FakeEntra) => void = () => {}): Promise<Fixture> {
    const entra = fresh()
    setup(entra)
    const capture = captureLogs('warn')
    const logs = capture.lines as Fixture['logs']
    const app = Fastify({ logger: capture.logger })
    await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), ...options, ...keyStoreClock } as EntraAuthOptions)
    app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    t.teardown(() => app.close())
    return {
      app,
      entra,
      client: entra.client(API_ID),
      logs,
      async get (token) {
        const res = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
        const body = res.statusCode === 200 ? undefined : res.json() as { type: string }
        return { status: res.statusCode, type: body?.type, challenge: res.headers['www-authenticate'] as string | undefined }
      }
    }
  }

  function standalone (t: Test, entra: FakeEntra, options: Partial<EntraAuthOptions> = {}): EntraVerifier {
    const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions(), ...options, ...keyStoreClock } as EntraVerifierOptions)
    t.teardown(() => verifier.close())
    return verifier
  }

  /** A token signed with the fake's key but naming another `kid`. */
  function withKid (client: MockJwtClient, kid: string): string {
    return client.sign({ alg: 'RS256', typ: 'JWT', kid }, client.claims.build())
  }

  // ---------------------------------------------------------------------------------------------

  t.test('single flight on a cold store', async t => {
    t.test('200 concurrent verify() calls: one discovery and one JWKS fetch', async t => {
      const entra = fresh()
      const verifier = standalone(t, entra)
      const client = entra.client(API_ID)
      t.same(verifier.state().keys.kids, [], 'cold: no keys yet')
      t.equal(verifier.state().keys.ready, false)
      const tokens = Array.from({ length: 200 }, (_, i) => client.generate({ additionalClaims: { n: i } }))
      const results = await Promise.allSettled(tokens.map(token => verifier.verify(token)))
      t.equal(results.filter(r => r.status === 'fulfilled').length, 200, 'all 200 verified')
      t.same(entra.requests, { discovery: 1, jwks: 1 })
      t.equal(verifier.state().keys.discoveryFetches, 1)
      t.equal(verifier.state().keys.jwksFetches, 1)
    })

    t.test('200 concurrent requests on an app that was never made ready', async t => {
      const fx = await fixture(t)
      const tokens = Array.from({ length: 200 }, (_, i) => fx.client.generate({ additionalClaims: { n: i } }))
      const replies = await Promise.all(tokens.map(token => fx.get(token)))
      t.same(replies.filter(r => r.status !== 200), [], 'all 200')
      t.same(fx.entra.requests, { discovery: 1, jwks: 1 })
    })

    t.test('200 concurrent calls while the provider hangs share one failing fetch', async t => {
      const entra = fresh()
      entra.mode = 'hang'
      const verifier = standalone(t, entra, { jwks: { timeout: 200 } })
      const client = entra.client(API_ID)
      const types = await Promise.all(Array.from({ length: 200 }, () => typeOf(verifier.verify(client.generate()))))
      t.same([...new Set(types)], ['auth_oidc_error'])
      t.same(entra.requests, { discovery: 1, jwks: 0 }, 'one discovery attempt, no JWKS')
    })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('unknown-kid floods', async t => {
    t.test('300 distinct unknown kids inside a cooldown: at most one refresh', async t => {
      const fx = await fixture(t, { jwks: { cooldown: 60_000 } })
      await fx.app.ready()
      const before = { ...fx.entra.requests }
      const replies = await Promise.all(Array.from({ length: 300 }, (_, i) => fx.get(withKid(fx.client, `unknown-${i}`))))
      t.same([...new Set(replies.map(r => `${r.status} ${r.type}`))], ['401 auth_token_key_error'])
      t.ok(fx.entra.requests.jwks - before.jwks <= 1, `JWKS fetched ${fx.entra.requests.jwks - before.jwks} more times`)
      t.equal(fx.entra.requests.discovery, before.discovery, 'discovery not fetched again')
      t.equal((await fx.get(fx.client.generate())).status, 200, 'real tokens still verify')
    })

    t.test('concurrent misses share one fetch (cooldown 0)', async t => {
      const entra = fresh()
      const verifier = standalone(t, entra, { jwks: { cooldown: 0 } })
      t.ok(await verifier.warm())
      const client = entra.client(API_ID)
      const tokens = Array.from({ length: 300 }, (_, i) => withKid(client, `unknown-${i}`))
      const before = entra.requests.jwks
      const types = await Promise.all(tokens.map(token => typeOf(verifier.verify(token))))
      t.same([...new Set(types)], ['auth_token_key_error'])
      t.equal(entra.requests.jwks - before, 1, 'one JWKS fetch for 300 concurrent misses')
    })

    t.test('after the cooldown, one flood costs one fetch, and the next is free again', async t => {
      const entra = fresh()
      const verifier = standalone(t, entra, { jwks: { cooldown: 1000 } })
      const client = entra.client(API_ID)
      // Signed before the clock matters: each wave must fit well inside one cooldown.
      const waves = Object.fromEntries(['a', 'b', 'c'].map(wave => [wave, Array.from({ length: 300 }, (_, i) => withKid(client, `${wave}-${i}`))]))
      const flood = (wave: string): Promise<string[]> => Promise.all((waves[wave] as string[]).map(token => typeOf(verifier.verify(token))))
      t.ok(await verifier.warm())
      const start = entra.requests.jwks
      t.same([...new Set(await flood('a'))], ['auth_token_key_error'])
      t.equal(entra.requests.jwks, start, 'inside the cooldown after start-up: no fetch')
      clock.now += 1100
      t.same([...new Set(await flood('b'))], ['auth_token_key_error'])
      t.equal(entra.requests.jwks, start + 1, 'cooldown over: exactly one fetch')
      t.same([...new Set(await flood('c'))], ['auth_token_key_error'])
      t.equal(entra.requests.jwks, start + 1, 'a new cooldown started: no fetch')
      t.equal(entra.requests.discovery, 1, 'discovery is not refetched for unknown kids')
    })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('rotation', async t => {
    t.test('a key published later is accepted after at most one cooldown', async t => {
      let next: MockJwk | undefined
      const fx = await fixture(t, { jwks: { cooldown: 500 } }, entra => { next = entra.newKey() })
      await fx.app.ready()
      const key = next as MockJwk
      t.equal((await fx.get(fx.client.generate())).status, 200)
      fx.entra.keys.push(key)
      const token = fx.entra.client(API_ID, 'v2', key).generate()
      const early = await fx.get(token)
      t.ok(early.status === 200 || early.type === 'auth_token_key_error', `before the cooldown: ${early.status} ${early.type}`)
      clock.now += 600
      t.equal((await fx.get(token)).status, 200, 'accepted once a cooldown has passed')
      t.ok(fx.app.entraAuth.state().keys.kids.includes(key.kid))
      t.ok(fx.entra.requests.jwks <= 3, `JWKS fetched ${fx.entra.requests.jwks} times`)
    })

    t.test('with cooldown 0 a new key is accepted at once', async t => {
      let next: MockJwk | undefined
      const fx = await fixture(t, { jwks: { cooldown: 0 } }, entra => { next = entra.newKey() })
      await fx.app.ready()
      fx.entra.keys.push(next as MockJwk)
      t.equal((await fx.get(fx.entra.client(API_ID, 'v2', next).generate())).status, 200)
      t.equal(fx.entra.requests.jwks, 2)
    })

    t.test('a removed key stops verifying once the set is refreshed (ttl)', async t => {
      let next: MockJwk | undefined
      const fx = await fixture(t, { jwks: { ttl: 300, cooldown: 60_000 } }, entra => { next = entra.newKey() })
      await fx.app.ready()
      const oldKey = fx.entra.keys[0] as MockJwk
      const newKey = next as MockJwk
      const cached = fx.client.generate()
      t.equal((await fx.get(cached)).status, 200)
      fx.entra.keys = [newKey]
      const fetches = fx.entra.requests.jwks
      clock.now += 350
      const during = await fx.get(fx.client.generate())
      t.ok(during.status === 200 || during.type === 'auth_token_key_error', `while the refresh runs: ${during.status}`)
      t.ok(await waitFor(() => !fx.app.entraAuth.state().keys.kids.includes(oldKey.kid)), 'the set was refreshed')
      t.ok(fx.entra.requests.jwks > fetches)
      t.same(fx.app.entraAuth.state().keys.kids, [newKey.kid], 'replaced, not merged')
      t.same(await fx.get(cached), { status: 401, type: 'auth_token_key_error', challenge: 'Bearer error="invalid_token", error_description="Token signing key unknown"' }, 'a cached token of the removed key is refused')
      t.equal((await fx.get(fx.client.generate())).type, 'auth_token_key_error', 'a new token of the removed key is refused')
      t.equal((await fx.get(fx.entra.client(API_ID, 'v2', newKey).generate())).status, 200, 'the new key verifies')
    })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('outage after keys were loaded: the last good keys keep serving', async t => {
    const modes: FakeEntraMode[] = ['jwks-404', 'jwks-not-json', 'jwks-empty', 'discovery-404', 'discovery-not-json', 'discovery-empty', 'hang']
    for (const mode of modes) {
      t.test(mode, async t => {
        const fx = await fixture(t, { jwks: { ttl: 200, cooldown: 50, timeout: 200 } })
        await fx.app.ready()
        t.equal((await fx.get(fx.client.generate())).status, 200)
        fx.entra.mode = mode
        const before = { ...fx.entra.requests }
        const failuresBefore = fx.app.entraAuth.state().keys.failures
        clock.now += 250
        const statuses: number[] = []
        statuses.push((await fx.get(fx.client.generate())).status)
        // Wait until the provider was asked again and (where the key set itself failed) the failure was seen.
        const jwksFails = mode.startsWith('jwks-') || mode === 'hang'
        t.ok(await waitFor(() => {
          const asked = mode.startsWith('discovery-') ? fx.entra.requests.discovery > before.discovery : fx.entra.requests.jwks + fx.entra.requests.discovery > before.jwks + before.discovery
          return asked && (!jwksFails || fx.app.entraAuth.state().keys.failures > failuresBefore)
        }), 'the provider was asked again')
        for (let i = 0; i < 5; i++) {
          statuses.push((await fx.get(fx.client.generate())).status)
          await sleep(20)
        }
        t.same(statuses, [200, 200, 200, 200, 200, 200], 'still served past ttl')
        t.ok(fx.app.entraAuth.state().keys.ready, 'state says ready')

        fx.entra.mode = 'ok'
        const okBefore = fx.entra.requests.jwks
        let recovered = false
        for (let i = 0; i < 100 && !recovered; i++) {
          t.equal((await fx.get(fx.client.generate())).status, 200)
          recovered = fx.entra.requests.jwks > okBefore && fx.app.entraAuth.state().keys.lastError === undefined
          // The failure back-off (at most the cooldown) must pass on the key store's clock.
          if (!recovered) { clock.now += 20; await sleep(5) }
        }
        t.ok(recovered, 'keys refreshed again once the provider answers')
        t.equal((await fx.get(fx.client.generate())).status, 200)
      })
    }
  })

  // ---------------------------------------------------------------------------------------------

  t.test('cold store and a failing provider: 503 auth_oidc_error', async t => {
    t.test('hang, timeout 200 ms', async t => {
      const fx = await fixture(t, { jwks: { timeout: 200 } }, entra => { entra.mode = 'hang' })
      await fx.app.ready()
      const reply = await fx.get(fx.client.generate())
      t.same(reply, { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' })
      t.equal(fx.app.entraAuth.state().keys.ready, false)
      t.ok(fx.app.entraAuth.state().keys.failures >= 1)
    })

    t.test('standalone verifier: verify and introspect reject with auth_oidc_error', async t => {
      const entra = fresh()
      entra.mode = 'hang'
      const verifier = standalone(t, entra, { jwks: { timeout: 200 } })
      const token = entra.client(API_ID).generate()
      t.equal(await typeOf(verifier.verify(token)), 'auth_oidc_error')
      t.equal(await typeOf(verifier.introspect(token)), 'auth_oidc_error')
    })

    for (const mode of ['discovery-404', 'discovery-not-json', 'discovery-empty', 'jwks-404', 'jwks-not-json', 'jwks-empty'] as const) {
      t.test(mode, async t => {
        const fx = await fixture(t, {}, entra => { entra.mode = mode })
        t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' })
      })
    }

    t.test('a discovery document without jwks_uri or issuer', async t => {
      for (const document of [{ jwks_uri: 'https://login.microsoftonline.com/x/keys' }, { issuer: 'https://login.microsoftonline.com/x/v2.0' }, [], 'text', 42, { issuer: 42, jwks_uri: 'https://login.microsoftonline.com/x/keys' }, { issuer: 'x', jwks_uri: 'not a url' }]) {
        const fx = await fixture(t, {}, entra => { entra.discoveryDocument = document })
        t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' }, JSON.stringify(document))
      }
    })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('jwks_uri on another origin is refused, never fetched', async t => {
    const uris = [
      'https://evil.example.com/keys',
      'https://login.microsoftonline.com.evil.example.com/keys',
      'https://login.microsoftonline.com@evil.example.com/keys',
      'http://login.microsoftonline.com/common/discovery/v2.0/keys',
      'https://login.microsoftonline.com:8443/common/discovery/v2.0/keys',
      'https://login.microsoftonline.us/common/discovery/v2.0/keys',
      '//evil.example.com/keys',
      '/common/discovery/v2.0/keys'
    ]
    for (const jwksUri of uris) {
      const fx = await fixture(t, {}, entra => { entra.discoveryDocument = { issuer: entra.issuer, jwks_uri: jwksUri } })
      t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' }, jwksUri)
      t.equal(fx.entra.requests.jwks, 0, `${jwksUri}: nothing fetched`)
    }
    t.test('control: an issuer on another host is taken as published', async t => {
      const fx = await fixture(t, {}, entra => {
        entra.discoveryDocument = { issuer: 'https://sts.example.org/tenant/', jwks_uri: entra.jwksUri }
        entra.jwksDocument = { keys: [{ ...baseKey.toJSON(), issuer: undefined }] }
      })
      t.equal((await fx.get(fx.client.generate({ iss: 'https://sts.example.org/tenant/' }))).status, 200)
    })
  })

  t.test('redirects are not followed to another origin', async t => {
    const origin = 'https://login.microsoftonline.com'
    const discoveryPath = '/contoso/v2.0/.well-known/openid-configuration'
    const evil: string[] = []
    for (const which of ['discovery', 'jwks'] as const) {
      const agent = new MockAgent()
      agent.disableNetConnect()
      const key = new MockJwk()
      const host = agent.get(origin)
      host.intercept({ path: discoveryPath, method: 'GET' }).reply(which === 'discovery' ? 302 : 200, which === 'discovery' ? '' : JSON.stringify({ issuer: `${origin}/contoso/v2.0`, jwks_uri: `${origin}/contoso/keys` }), which === 'discovery' ? { headers: { location: 'https://evil.example.com/openid-configuration' } } : {}).persist()
      host.intercept({ path: '/contoso/keys', method: 'GET' }).reply(302, '', { headers: { location: 'https://evil.example.com/keys' } }).persist()
      agent.get('https://evil.example.com').intercept({ path: () => true, method: 'GET' }).reply(opts => {
        evil.push(opts.path)
        return { statusCode: 200, data: JSON.stringify({ issuer: `${origin}/contoso/v2.0`, jwks_uri: `${origin}/contoso/keys`, keys: [key.toJSON()] }) }
      }).persist()
      const verifier = createEntraVerifier({ clientId: API_ID, oidcEndpoint: `${origin}${discoveryPath}`, dispatcher: agent })
      t.teardown(async () => {
        await verifier.close()
        await agent.close()
      })
      const token = new MockJwtClient({ key, claims: fresh().client(API_ID).claims }).generate({ iss: `${origin}/contoso/v2.0` })
      t.equal(await typeOf(verifier.verify(token)), 'auth_oidc_error', `${which} redirected`)
    }
    t.same(evil, [], 'nothing fetched from the redirect target')
  })

  // ---------------------------------------------------------------------------------------------

  t.test('keys that are not RSA signing keys never verify', async t => {
    const jwkOf = (entra: FakeEntra): Record<string, unknown> => ({ ...(entra.keys[0] as MockJwk).toJSON() })
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' })
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' })
    const cases: Array<[string, (entra: FakeEntra) => Record<string, unknown>]> = [
      ['use: enc', entra => ({ ...jwkOf(entra), use: 'enc' })],
      ['use: sig ', entra => ({ ...jwkOf(entra), use: 'sig ' })],
      ['alg RS512', entra => ({ ...jwkOf(entra), alg: 'RS512' })],
      ['alg PS256', entra => ({ ...jwkOf(entra), alg: 'PS256' })],
      ['alg HS256', entra => ({ ...jwkOf(entra), alg: 'HS256' })],
      ['kty rsa (case)', entra => ({ ...jwkOf(entra), kty: 'rsa' })],
      ['kty EC', entra => ({ ...ec, kid: jwkOf(entra).kid, use: 'sig' })],
      ['kty OKP', entra => ({ ...ed, kid: jwkOf(entra).kid, use: 'sig' })],
      ['kty oct keyed with the public key', entra => ({ kty: 'oct', kid: jwkOf(entra).kid, use: 'sig', k: Buffer.from((entra.keys[0] as MockJwk).publicKey.export({ type: 'spki', format: 'pem' }) as string).toString('base64url') })],
      ['no modulus', entra => ({ ...jwkOf(entra), n: undefined })],
      ['modulus not a string', entra => ({ ...jwkOf(entra), n: 12345 })]
    ]
    for (const [label, make] of cases) {
      t.test(label, async t => {
        const fx = await fixture(t, {}, entra => { entra.jwksDocument = { keys: [make(entra)] } })
        t.same(await fx.get(fx.client.generate()), { status: 401, type: 'auth_token_key_error', challenge: 'Bearer error="invalid_token", error_description="Token signing key unknown"' })
        t.same(fx.app.entraAuth.state().keys.kids, [], 'not in the key set')
      })
    }

    t.test('RSA-1024 key', async t => {
      const weak = { privateKey: testKey('rsa-1024'), publicKey: createPublicKey(testKey('rsa-1024')) }
      const fx = await fixture(t, {}, entra => { entra.jwksDocument = { keys: [{ ...weak.publicKey.export({ format: 'jwk' }), kid: 'weak', use: 'sig', issuer: entra.issuer }] } })
      const claims = fx.client.claims.build()
      const input = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'weak' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
      const token = `${input}.${sign('sha256', Buffer.from(input), weak.privateKey).toString('base64url')}`
      t.same(await fx.get(token), { status: 401, type: 'auth_token_key_error', challenge: 'Bearer error="invalid_token", error_description="Token signing key unknown"' })
    })

    t.test('bad entries do not poison the good ones', async t => {
      const fx = await fixture(t, {}, entra => {
        const good = (entra.keys[0] as MockJwk).toJSON()
        entra.jwksDocument = { keys: [null, 'x', 42, { kid: good.kid, kty: 'RSA', use: 'enc', n: good.n, e: good.e }, { ...ec, kid: 'ec' }, good] }
      })
      t.equal((await fx.get(fx.client.generate())).status, 200)
      t.same(fx.app.entraAuth.state().keys.kids, [fx.client.key.kid])
    })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('documents larger than jwks.maxBytes: 503', async t => {
    t.test('JWKS', async t => {
      const fx = await fixture(t, { jwks: { maxBytes: 4096 } }, entra => { entra.jwksDocument = { keys: entra.keys.map(k => k.toJSON()), padding: 'x'.repeat(8192) } })
      t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' })
      t.match(fx.app.entraAuth.state().keys.lastError, /larger/)
    })
    t.test('discovery', async t => {
      const fx = await fixture(t, { jwks: { maxBytes: 4096 } }, entra => { entra.discoveryDocument = { issuer: entra.issuer, jwks_uri: entra.jwksUri, padding: 'x'.repeat(8192) } })
      t.same(await fx.get(fx.client.generate()), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' })
      t.equal(fx.entra.requests.jwks, 0)
    })
    t.test('control: the same limit with normal documents', async t => {
      const fx = await fixture(t, { jwks: { maxBytes: 4096 } })
      t.equal((await fx.get(fx.client.generate())).status, 200)
    })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('state() exposes the key store', async t => {
    const fx = await fixture(t)
    const cold = fx.app.entraAuth.state()
    t.same({ ready: cold.keys.ready, kids: cold.keys.kids, keysAge: cold.keys.keysAge, discoveryFetches: cold.keys.discoveryFetches, jwksFetches: cold.keys.jwksFetches }, { ready: false, kids: [], keysAge: null, discoveryFetches: 0, jwksFetches: 0 })
    await fx.app.ready()
    const warm = fx.app.entraAuth.state()
    t.equal(warm.keys.ready, true)
    t.same(warm.keys.kids, [fx.client.key.kid])
    t.equal(warm.keys.issuer, fx.entra.issuer)
    t.equal(warm.keys.jwksUri, fx.entra.jwksUri)
    t.equal(warm.keys.discoveryFetches, 1)
    t.equal(warm.keys.jwksFetches, 1)
    t.equal(warm.keys.failures, 0)
    t.equal(warm.keys.lastError, undefined)
    t.type(warm.keys.keysAge, 'number')
    t.same(warm.keys.discoveryFetches, fx.entra.requests.discovery)
    t.same(warm.keys.jwksFetches, fx.entra.requests.jwks)
    t.same(warm.tokenCache.size, 0)
  })

  // ---------------------------------------------------------------------------------------------

  t.test('start-up while the provider is down', async t => {
    for (const mode of ['discovery-404', 'jwks-not-json', 'hang'] as const) {
      t.test(mode, async t => {
        const fx = await fixture(t, { jwks: { timeout: 200, cooldown: 50 } }, entra => { entra.mode = mode })
        await t.resolves(async () => { await fx.app.ready() }, 'ready() succeeds')
        t.ok(fx.logs.some(line => line.level === 40 && /not reachable/.test(line.msg)), 'a warning was logged')
        const token = fx.client.generate()
        t.same(await fx.get(token), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' })
        clock.now += 60
        t.same(await fx.get(token), { status: 503, type: 'auth_oidc_error', challenge: 'Bearer' }, 'still down')
        t.equal(fx.app.entraAuth.state().keys.ready, false)
        fx.entra.mode = 'ok'
        clock.now += 60
        let status = 0
        for (let i = 0; i < 200 && status !== 200; i++) {
          status = (await fx.get(token)).status
          if (status !== 200) { clock.now += 20; await sleep(5) }
        }
        t.equal(status, 200, 'answers once the provider does')
        t.equal(fx.app.entraAuth.state().keys.ready, true)
      })
    }
  })

  // Regression: a failing discovery refresh served from the last good copy was only logged, so
  // state() showed a healthy provider during a discovery outage.
  t.test('a discovery outage covered by the cached document shows in state()', async t => {
    const entra = new FakeEntra()
    const verifier = createEntraVerifier({ clientId: 'api', ...entra.pluginOptions(), jwks: { ttl: 50, cooldown: 0 } })
    t.teardown(async () => { await verifier.close(); await entra.close() })
    const token = entra.token('api')
    t.equal((await verifier.verify(token)).claims.aud, 'api')
    t.equal(verifier.state().keys.failures, 0)

    entra.mode = 'discovery-404'
    await new Promise(resolve => setTimeout(resolve, 80))
    await verifier.warm()
    const state = verifier.state().keys
    t.equal(state.ready, true, 'keys still served')
    t.ok(state.failures >= 1, 'failure counted')
    t.match(state.lastError, /404/)
  })
})

/**
 * One key-set refresh in flight per verifier, whatever starts it: a cached token past `ttl`
 * (background revalidation), a new token, unknown `kid`s and `warm()` all wait on the same one.
 * Time moves through the key store's internal clock; the provider hangs until `jwks.timeout`.
 */
t.test('one refresh in flight', async t => {
  const API_ID = 'c2d3e4f5-0000-4000-8000-00000000a120'

  /** A token signed with the fake's key but naming another `kid`. */
  function withKid (client: MockJwtClient, kid: string): string {
    return client.sign({ alg: 'RS256', typ: 'JWT', kid }, client.claims.build())
  }

  t.test('every trigger shares the refresh in flight', async t => {
    const entra = new FakeEntra()
    t.teardown(() => entra.close())
    const clock = { now: 1_000_000 }
    const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions(), jwks: { ttl: 1000, cooldown: 0, timeout: 300 }, [kKeyStoreClock]: () => clock.now } as unknown as EntraVerifierOptions)
    t.teardown(() => verifier.close())
    const client = entra.client(API_ID)
    t.ok(await verifier.warm())
    const cached = client.generate()
    await verifier.verify(cached)
    const fresh = Array.from({ length: 20 }, (_, i) => client.generate({ sub: `user-${i}` }))
    const unknown = Array.from({ length: 20 }, (_, i) => withKid(client, `unknown-${i}`))
    const before = { ...entra.requests }

    const refreshes: string[] = []
    const onRefresh = (message: unknown): void => { refreshes.push((message as KeyRefreshMessage).event) }
    diagnostics.subscribe(CHANNELS.keysRefresh, onRefresh)
    t.teardown(() => diagnostics.unsubscribe(CHANNELS.keysRefresh, onRefresh))
    clock.now += 1001
    entra.mode = 'hang'
    const all = Promise.all([
      ...Array.from({ length: 20 }, () => typeOf(verifier.verify(cached))),
      ...fresh.map(token => typeOf(verifier.verify(token))),
      ...unknown.map(token => typeOf(verifier.verify(token))),
      ...Array.from({ length: 5 }, () => verifier.warm().then(ready => ready ? 'ready' : 'not ready'))
    ])
    const outcomes = await all
    t.same([...new Set(outcomes.slice(0, 40))], ['ok'], 'the cached and new tokens are served by the set still usable')
    t.same([...new Set(outcomes.slice(40, 60))], ['auth_token_key_error'], 'unknown kids are refused once the refresh failed')
    t.same([...new Set(outcomes.slice(60))], ['not ready'])
    t.same(refreshes, ['start', 'failure'], 'one refresh for all of them')
    t.same({ discovery: entra.requests.discovery - before.discovery, jwks: entra.requests.jwks - before.jwks }, { discovery: 1, jwks: 1 }, 'one request per document')
    t.ok(verifier.state().keys.failures >= 1, 'the refresh failed once the deadline passed')
  })
})
