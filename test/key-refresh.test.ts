/**
 * One key-set refresh in flight per verifier, whatever starts it: a cached token past `ttl`
 * (background revalidation), a new token, unknown `kid`s and `warm()` all wait on the same one.
 * Time moves through the key store's internal clock; the provider hangs until `jwks.timeout`.
 */
import diagnostics from 'node:diagnostics_channel'
import t from 'tap'
import { CHANNELS, createEntraVerifier, type EntraVerifierOptions, type KeyRefreshMessage } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra, type MockJwtClient } from '../src/testing/index.js'
import { typeOf } from './helpers/index.js'

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
