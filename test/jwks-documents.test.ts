/**
 * Every malformed JWKS document fails closed: whatever the provider (or something between it and
 * the API) serves as the key set, no token is admitted that its good keys would not admit, nothing
 * answers 500, and a set that was good keeps serving instead of being wiped. Time moves through
 * the key store's internal clock: nothing sleeps.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra, type MockJwtClient } from '../src/testing/index.js'

const API_ID = 'b1c2d3e4-0000-4000-8000-00000000a11f'
const HOUR = 60 * 60 * 1000

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
