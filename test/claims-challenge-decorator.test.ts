/**
 * The claims-challenge helper finds the plugin's verifier through a symbol the plugin sets, not
 * the default decorator name: an app registered with another `decorator` gets the discovery
 * document's authorization endpoint too.
 */
import Fastify from 'fastify'
import t from 'tap'
import entraAuth, { claimsChallenge, type EntraAuthOptions } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { bearer } from './helpers/index.js'

const CLIENT = '6e1c9b1a-0000-4000-8000-00000000a11d'

t.test('with decorator: "filesAuth", the helper still finds the verifier', async t => {
  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  const app = Fastify()
  await app.register(entraAuth, { clientId: CLIENT, ...entra.pluginOptions(), decorator: 'filesAuth' } as EntraAuthOptions)
  t.teardown(() => app.close())
  const auth = (app as unknown as { filesAuth: (requirement?: string[]) => never }).filesAuth
  app.get('/step-up', { onRequest: auth() }, async (request, reply) => {
    claimsChallenge(reply, request.entraToken, { claims: '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}' })
    return reply
  })
  await app.ready()
  t.equal((app as unknown as { entraAuth?: unknown }).entraAuth, undefined, 'no default decorator to fall back on')
  const res = await app.inject({ url: '/step-up', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
  t.equal(res.statusCode, 401)
  t.match(res.headers['www-authenticate'], /authorization_uri="https:\/\/login\.microsoftonline\.com\/[^"]+\/oauth2\/v2\.0\/authorize"/)
})
