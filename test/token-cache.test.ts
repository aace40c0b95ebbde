/**
 * The verified-token cache: a token seen before is not verified again, but time, key presence and
 * route requirements are still judged on every request, and the cache stays bounded.
 *
 * A cache hit is observed by identity: a full verification builds a new `EntraToken`, a hit hands
 * back the instance built the first time.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type EntraAuthOptions, type EntraToken } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra, type MockJwk, type MockJwtClient } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** One fake Entra for the file (key generation is slow); each fixture resets it. */
const entra = new FakeEntra()
const baseKey = entra.keys[0] as MockJwk
t.teardown(() => entra.close())

interface Reply { status: number, type: string | undefined, token: EntraToken | null }

interface Fixture {
  app: FastifyInstance
  client: MockJwtClient
  /** The pinned clock (ms) every token time check uses; tokens are minted against it too. */
  clock: { now: number }
  get: (url: string, token: string) => Promise<Reply>
  size: () => number
}

async function fixture (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
  entra.mode = 'ok'
  entra.jwksDocument = undefined
  entra.discoveryDocument = undefined
  entra.keys = [baseKey]
  const clock = { now: Date.now() }
  const app = Fastify({ logger: false })
  // One clock for token times and the key store (internal option): tests move it instead of sleeping.
  await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), now: () => clock.now, ...options, [kKeyStoreClock]: () => clock.now } as unknown as EntraAuthOptions)
  /** `request.entraToken` when each response was sent, by the test's `x-probe` header. */
  const seen = new Map<string, EntraToken | null>()
  let probes = 0
  app.addHook('onResponse', async (request) => { seen.set(request.headers['x-probe'] as string, request.entraToken) })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  app.get('/read', { onRequest: app.entraAuth(['access_as_user']) }, async () => ({ ok: true }))
  app.get('/admin', { onRequest: app.entraAuth(['Admin.All']) }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  const client = entra.client(API_ID)
  client.claims.now = () => clock.now
  return {
    app,
    client,
    clock,
    async get (url, token) {
      const probe = String(++probes)
      const res = await app.inject({ url, headers: { authorization: `Bearer ${token}`, 'x-probe': probe } })
      const type = res.statusCode === 200 ? undefined : (res.json() as { type: string }).type
      for (let i = 0; i < 100 && !seen.has(probe); i++) await sleep(1)
      t.ok(seen.has(probe), 'request recorded')
      return { status: res.statusCode, type, token: seen.get(probe) ?? null }
    },
    size: () => app.entraAuth.state().tokenCache.size
  }
}

t.test('a token seen before is not verified again', async t => {
  const fx = await fixture(t)
  const token = fx.client.generate()
  t.equal(fx.size(), 0)
  const first = await fx.get('/me', token)
  t.equal(first.status, 200)
  t.ok(first.token !== null)
  t.equal(fx.size(), 1, 'cached after the first success')
  const second = await fx.get('/me', token)
  t.equal(second.status, 200)
  t.equal(second.token, first.token, 'the cached EntraToken is handed back: no second verification')
  t.equal(fx.size(), 1)
  t.equal(await fx.app.entraAuth.verify(token), first.token, 'app.entraAuth.verify shares the cache')

  const other = await fx.get('/me', fx.client.generate({ additionalClaims: { n: 2 } }))
  t.equal(other.status, 200)
  t.not(other.token, first.token, 'another token is verified on its own')
  t.equal(fx.size(), 2)

  t.equal(fx.app.entraAuth.state().tokenCache.max, 4096, 'bounded by default')
})

t.test('the cache key is the exact token string', async t => {
  const fx = await fixture(t)
  const token = fx.client.generate()
  t.equal((await fx.get('/me', token)).status, 200)
  const [h, p, s] = token.split('.') as [string, string, string]
  const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11)
  t.equal((await fx.get('/me', `${h}.${p}.${flipped}`)).type, 'auth_token_signature_untrusted', 'another signature')
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
  const forged = Buffer.from(JSON.stringify({ ...payload, scp: 'Admin.All' })).toString('base64url')
  t.equal((await fx.get('/admin', `${h}.${forged}.${s}`)).type, 'auth_token_signature_untrusted', 'another payload with the cached signature')
  t.equal((await fx.get('/me', `${token}.`)).type, 'auth_token_invalid', 'a suffix')
  t.equal(fx.size(), 1, 'failures are not cached')
  t.equal((await fx.get('/me', fx.client.generate({ exp: Math.floor(fx.clock.now / 1000) - 1 }))).type, 'auth_token_expired')
  t.equal(fx.size(), 1, 'expired tokens are not cached')
})

t.test('exp is enforced on a cache hit', async t => {
  const fx = await fixture(t)
  const exp = Math.floor(fx.clock.now / 1000) + 60
  const token = fx.client.generate({ exp })
  const first = await fx.get('/me', token)
  t.equal(first.status, 200)
  fx.clock.now = exp * 1000 - 1
  const hit = await fx.get('/me', token)
  t.equal(hit.status, 200, 'a millisecond before exp')
  t.equal(hit.token, first.token, 'served from the cache')
  fx.clock.now = exp * 1000
  const expired = await fx.get('/me', token)
  t.same({ status: expired.status, type: expired.type }, { status: 401, type: 'auth_token_expired' }, 'at exp')
  t.equal(expired.token, null)
  t.equal(fx.size(), 0, 'the expired entry is dropped')
  t.equal((await fx.app.entraAuth.introspect(token)).active, false, 'introspection agrees')
})

t.test('exp on a cache hit honours clockTolerance', async t => {
  const fx = await fixture(t, { clockTolerance: 5000 })
  const exp = Math.floor(fx.clock.now / 1000) + 60
  const token = fx.client.generate({ exp })
  const first = await fx.get('/me', token)
  fx.clock.now = exp * 1000 + 4000
  const hit = await fx.get('/me', token)
  t.equal(hit.status, 200, 'within the tolerance')
  t.equal(hit.token, first.token)
  fx.clock.now = exp * 1000 + 5000
  t.equal((await fx.get('/me', token)).type, 'auth_token_expired', 'past the tolerance')
})

t.test('nbf is enforced on a cache hit', async t => {
  const fx = await fixture(t)
  const start = fx.clock.now
  const nbf = Math.floor(start / 1000)
  const token = fx.client.generate({ nbf })
  const first = await fx.get('/me', token)
  t.equal(first.status, 200)
  // The clock steps back (NTP correction): the cached token is not yet valid again.
  fx.clock.now = nbf * 1000 - 1
  const early = await fx.get('/me', token)
  t.same({ status: early.status, type: early.type }, { status: 401, type: 'auth_token_immature' })
  t.equal(fx.size(), 0, 'dropped')
  fx.clock.now = start
  const again = await fx.get('/me', token)
  t.equal(again.status, 200)
  t.not(again.token, first.token, 'verified afresh')

  // A token refused as immature is not cached, and is accepted once its time has come.
  const later = fx.client.generate({ nbf: nbf + 30, additionalClaims: { n: 2 } })
  t.equal((await fx.get('/me', later)).type, 'auth_token_immature')
  t.equal(fx.size(), 1)
  fx.clock.now = (nbf + 30) * 1000
  t.equal((await fx.get('/me', later)).status, 200)
})

t.test('route requirements run on cached tokens', async t => {
  const fx = await fixture(t)
  const token = fx.client.generate()
  const read = await fx.get('/read', token)
  t.equal(read.status, 200)
  const admin = await fx.get('/admin', token)
  t.same({ status: admin.status, type: admin.type, token: admin.token }, { status: 403, type: 'auth_token_insufficient_scopes', token: null }, 'same token, route needing another scope')
  t.equal(fx.size(), 1, 'it was a cache hit')
  const readAgain = await fx.get('/read', token)
  t.equal(readAgain.status, 200)
  t.equal(readAgain.token, read.token)

  // The other way round: a 403 still caches the (valid) token, and the scope check runs on the hit.
  const other = fx.client.generate({ additionalClaims: { n: 2 } })
  t.equal((await fx.get('/admin', other)).type, 'auth_token_insufficient_scopes')
  t.equal(fx.size(), 2)
  t.equal((await fx.get('/admin', other)).type, 'auth_token_insufficient_scopes', 'the hit is still refused')
  t.equal((await fx.get('/read', other)).status, 200)
  t.equal((await fx.get('/me', other)).status, 200)
})

t.test('a cached entry is dropped when its key leaves the set', async t => {
  const fx = await fixture(t, { jwks: { ttl: 200, cooldown: 60_000 } })
  const newKey = entra.newKey()
  const token = fx.client.generate()
  const first = await fx.get('/me', token)
  t.equal(first.status, 200)
  t.equal(fx.size(), 1)
  entra.keys = [newKey]
  fx.clock.now += 250
  // Past ttl: the hit itself starts a background refresh; wait until the set was replaced.
  await fx.get('/me', token)
  for (let i = 0; i < 500 && fx.app.entraAuth.state().keys.kids.includes(baseKey.kid); i++) await sleep(10)
  t.same(fx.app.entraAuth.state().keys.kids, [newKey.kid], 'the key set was refreshed')
  const after = await fx.get('/me', token)
  t.same({ status: after.status, type: after.type }, { status: 401, type: 'auth_token_key_error' })
  t.equal(fx.size(), 0, 'the entry is gone')
})

t.test('memory is bounded', async t => {
  const fx = await fixture(t, { tokenCache: { max: 10 } })
  const tokens = Array.from({ length: 50 }, (_, i) => fx.client.generate({ additionalClaims: { n: i } }))
  const statuses = []
  for (const token of tokens) statuses.push((await fx.get('/me', token)).status)
  t.same([...new Set(statuses)], [200])
  t.equal(fx.app.entraAuth.state().tokenCache.max, 10)
  t.ok(fx.size() <= 10, `size ${fx.size()}`)
  t.ok(fx.size() > 0, 'still caching')
  const last = tokens.at(-1) as string
  t.equal((await fx.get('/me', last)).token, await fx.app.entraAuth.verify(last), 'recent tokens are cached')
  t.equal((await fx.get('/me', tokens[0] as string)).status, 200, 'an evicted token is verified again')
  t.ok(fx.size() <= 10)
})

t.test('tokenCache.max 0 disables the cache', async t => {
  const fx = await fixture(t, { tokenCache: { max: 0 } })
  const token = fx.client.generate()
  const first = await fx.get('/me', token)
  const second = await fx.get('/me', token)
  t.equal(first.status, 200)
  t.equal(second.status, 200)
  t.not(second.token, first.token, 'verified every time')
  t.same(fx.app.entraAuth.state().tokenCache, { size: 0, max: 0, bytes: 0 })
})

t.test('bad tokenCache options fail at register time', async t => {
  for (const tokenCache of [{ max: -1 }, { max: 1.5 }, { max: '10' }, { size: 10 }]) {
    const app = Fastify({ logger: false })
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions(), tokenCache } as unknown as EntraAuthOptions) }, TypeError, JSON.stringify(tokenCache))
  }
})
