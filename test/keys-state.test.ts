import t from 'tap'
import { createEntraVerifier } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'

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
