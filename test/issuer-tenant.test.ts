import Fastify from 'fastify'
import t from 'tap'
import entraAuth from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'

const CLIENT_ID = '5d9a4f0e-1111-4222-8333-444455556666'
const OTHER_TENANT = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'

// Regression: with a fixed (single-tenant) issuer nothing bound `tid`, so a token naming tenant A
// in `iss` and tenant B in `tid` passed `allowedTenants: [B]`.
t.test('a token whose tid differs from its issuer tenant is refused', async t => {
  const entra = new FakeEntra()
  const app = Fastify()
  await app.register(entraAuth, { clientId: CLIENT_ID, allowedTenants: [entra.tenantId, OTHER_TENANT], ...entra.pluginOptions() })
  app.get('/', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(() => app.close())

  const inject = (token: string) => app.inject({ url: '/', headers: { authorization: `Bearer ${token}` } })
  t.equal((await inject(entra.token(CLIENT_ID))).statusCode, 200, 'consistent token passes')
  for (const preset of ['v2', 'v1'] as const) {
    const mixed = entra.client(CLIENT_ID, preset).generate({ additionalClaims: { tid: OTHER_TENANT } })
    const res = await inject(mixed)
    t.equal(res.statusCode, 401, preset)
    t.equal(res.json().type, 'auth_token_issuer_untrusted', preset)
  }
  const numeric = await inject(entra.client(CLIENT_ID).generate({ additionalClaims: { tid: 42 } }))
  t.equal(numeric.json().type, 'auth_token_issuer_untrusted', 'non-string tid')
})
