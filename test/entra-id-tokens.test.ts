/**
 * ID tokens presented as access tokens: `auth_token_claim_missing`, with a detail that names the
 * missing client claim (`azp` or `appid`) and says it looks like an ID token.
 */
import Fastify, { type LightMyRequestResponse } from 'fastify'
import t from 'tap'
import entraAuth from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { readFixture } from './helpers/fixtures.js'
import { jwkFromPem, serveMetadata } from './helpers/metadata.js'

const API = '8c7b6a59-0000-4000-8000-0000000000a1'

t.test('test kit: v2.0 and v1.0 ID tokens', async t => {
  const entra = new FakeEntra()
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: API, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await entra.close() })
  const call = async (token: string): Promise<{ type: string, detail: string }> => (await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })).json()

  // ID tokens: audience the client itself, no client claim, no scp or roles, a nonce.
  const v2 = await call(entra.token(API, { aud: API, azp: false, scp: false, roles: false, additionalClaims: { nonce: 'n-0S6_WzA2Mj' } }))
  t.equal(v2.type, 'auth_token_claim_missing')
  t.match(v2.detail, /'azp'/)
  t.match(v2.detail, /looks like an ID token/)
  const v1 = await call(entra.client(API, 'v1').generate({ aud: API, scp: false, roles: false, appid: false, additionalClaims: { nonce: 'n-0S6_WzA2Mj' } }))
  t.equal(v1.type, 'auth_token_claim_missing')
  t.match(v1.detail, /'appid'/)
  t.match(v1.detail, /looks like an ID token/)

  // An access token that merely lacks its client claim is not called an ID token.
  const access = await call(entra.token(API, { azp: false, scp: 'access_as_user' }))
  t.equal(access.type, 'auth_token_claim_missing')
  t.match(access.detail, /'azp'/)
  t.notMatch(access.detail, /ID token/)
})

t.test('passport-azure-ad\'s real v1.0 ID token, through the tenant\'s v1.0 metadata document', async t => {
  const tenant = '268da1a1-9db4-48b9-b1fe-683250ba90cc'
  const oidcEndpoint = `https://login.microsoftonline.com/${tenant}/.well-known/openid-configuration`
  const key = jwkFromPem(readFixture('entra', '05-v1-delegated-access-token.passport-azure-ad.key.pem'), 'YbRAQRYcE_motWVJKHrwLBbd_9s')
  const metadata = serveMetadata(oidcEndpoint, `https://sts.windows.net/${tenant}/`, [key])
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: '2abf3a52-7d86-460b-a1ef-77dc43de8aad', oidcEndpoint, dispatcher: metadata.dispatcher, now: () => 1471313477 * 1000, rejectionLogLevel: 'silent' })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await metadata.close() })
  const call = (token: string): Promise<LightMyRequestResponse> => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })

  const res = await call(readFixture('peers', 'passport-v1-id-token.jwt'))
  t.equal(res.statusCode, 401)
  t.match(res.json(), { type: 'auth_token_claim_missing', detail: /'appid'.*looks like an ID token/ })
  // passport-azure-ad's twin alters only the padding bits of the last character: not canonical.
  t.equal((await call(readFixture('peers', 'passport-v1-id-token.bad-signature.jwt'))).json().type, 'auth_token_invalid')
})
