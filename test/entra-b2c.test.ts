/**
 * Azure AD B2C's version 1.0 access tokens: client in `azp`, `iss` the B2C discovery issuer. Tested
 * with passport-azure-ad's real B2C token and key (test/fixtures/peers/README.md) and with tokens
 * minted by the test kit.
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { readFixture } from './helpers/fixtures.js'
import { jwkFromPem, serveMetadata } from './helpers/metadata.js'

const TENANT = '0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5'
const API = 'b2c0a9e1-0000-4000-8000-0000000000a1'
const WEB_APP = 'b2c0a9e1-0000-4000-8000-0000000000c1'
const OTHER_APP = 'b2c0a9e1-0000-4000-8000-0000000000c2'
const B2C_ISSUER = `https://contoso.b2clogin.com/${TENANT}/v2.0/`

interface ClientView { version: string, clientId: string | undefined, scopes: string[] }

async function b2cApp (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<{ entra: FakeEntra, app: FastifyInstance, call: (token: string) => Promise<LightMyRequestResponse> }> {
  const entra = new FakeEntra({ tenant: 'contoso.onmicrosoft.com/B2C_1_signupsignin1', tenantId: TENANT, origin: 'https://contoso.b2clogin.com', issuer: B2C_ISSUER, keyIssuer: null })
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: API, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  app.get('/me', { onRequest: app.entraAuth() }, async (request): Promise<ClientView> => {
    const token = request.entraToken!
    return { version: token.version, clientId: token.clientId, scopes: token.scopes }
  })
  app.get('/read', { onRequest: app.entraAuth(['demo.read']) }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await entra.close() })
  return { entra, app, call: token => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } }) }
}

/** A token as B2C issues it: ver 1.0, client in azp, no appid, B2C's issuer; `tid` as B2C sends it. */
function b2cToken (entra: FakeEntra, overrides: Record<string, unknown> = {}): string {
  return entra.token(API, { iss: B2C_ISSUER, ver: '1.0', azp: WEB_APP, tid: TENANT, scp: 'demo.read', additionalClaims: { tfp: 'B2C_1_signupsignin1' }, ...overrides })
}

t.test('test kit: B2C access tokens (ver 1.0, azp, B2C issuer) are admitted with azp as the client', async t => {
  const { entra, app, call } = await b2cApp(t)
  const res = await call(b2cToken(entra))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { version: '1.0', clientId: WEB_APP, scopes: ['demo.read'] })
  // Without `tid` (B2C leaves it out unless configured) too.
  t.equal((await call(b2cToken(entra, { tid: false }))).statusCode, 200)
  t.equal((await app.inject({ url: '/read', headers: { authorization: `Bearer ${b2cToken(entra)}` } })).statusCode, 200)

  const token = await app.entraAuth.verify(b2cToken(entra))
  t.equal(token.clientId, WEB_APP)
  t.equal((await app.entraAuth.introspect(b2cToken(entra))).client_id, WEB_APP)
})

t.test('the B2C client claim is azp: required, checked by allowedApps, appid never stands in', async t => {
  const { entra, call } = await b2cApp(t, { allowedApps: [WEB_APP] })
  t.equal((await call(b2cToken(entra))).statusCode, 200)
  const rogue = await call(b2cToken(entra, { azp: OTHER_APP }))
  t.equal(rogue.statusCode, 403)
  t.equal(rogue.json().type, 'auth_token_azp_not_trusted')
  // An allowed `appid` does not vouch for another `azp`…
  t.equal((await call(b2cToken(entra, { azp: OTHER_APP, additionalClaims: { appid: WEB_APP } }))).json().type, 'auth_token_azp_not_trusted')
  // …nor replace a missing one.
  const missing = await call(b2cToken(entra, { azp: false, additionalClaims: { appid: WEB_APP } }))
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().type, 'auth_token_claim_missing')
  t.match(missing.json().detail, /'azp'/)
})

t.test('a 1.0 token is held to the B2C issuer exactly; an STS issuer has no B2C counterpart', async t => {
  const { entra, call } = await b2cApp(t)
  for (const iss of [B2C_ISSUER.slice(0, -1), `https://contoso.b2clogin.com/tfp/${TENANT}/b2c_1_signupsignin1/v2.0/`, `https://login.microsoftonline.com/${TENANT}/v2.0`]) {
    // Not the discovery issuer, so the STS shape (appid) applies, and no STS issuer is derived for B2C.
    const res = await call(b2cToken(entra, { iss, additionalClaims: { appid: WEB_APP } }))
    t.equal(res.json().type, 'auth_token_issuer_untrusted', iss)
  }
  const sts = await call(b2cToken(entra, { iss: `https://sts.windows.net/${TENANT}/`, azp: false, additionalClaims: { appid: WEB_APP } }))
  t.equal(sts.json().type, 'auth_token_issuer_untrusted', 'an STS-form 1.0 token keeps appid and is not B2C\'s')
  // v2.0 tokens under the same issuer keep working.
  t.equal((await call(b2cToken(entra, { ver: '2.0' }))).statusCode, 200)
  // tokenVersions still applies to B2C's 1.0 tokens.
  const { entra: only2, call: call2 } = await b2cApp(t, { tokenVersions: ['2.0'] })
  t.equal((await call2(b2cToken(only2))).json().type, 'auth_token_ver_not_supported')
})

/** The token with one bit of its signature flipped, still canonical base64url. */
function tamperedSignature (token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const bytes = Buffer.from(signature, 'base64url')
  bytes[100] = (bytes[100] as number) ^ 0x01
  return `${header}.${payload}.${bytes.toString('base64url')}`
}

// passport-azure-ad's real B2C token (2016): an ID token (`nonce`, no azp), so it is refused as
// an access token, after its signature verified with B2C's real key.
const PEER = {
  token: readFixture('peers', 'passport-b2c-id-token.jwt'),
  badSignature: readFixture('peers', 'passport-b2c-id-token.bad-signature.jwt'),
  key: jwkFromPem(readFixture('peers', 'passport-b2c-id-token.key.pem'), 'IdTokenSigningKeyContainer.v2'),
  issuer: 'https://login.microsoftonline.com/22bf40c6-1186-4ea5-b49b-3dc4ec0f54eb/v2.0/',
  oidcEndpoint: 'https://login.microsoftonline.com/22bf40c6-1186-4ea5-b49b-3dc4ec0f54eb/v2.0/.well-known/openid-configuration?p=b2c_1_signin',
  aud: 'f0b6e4eb-2d8c-40b6-b9c6-e26d1074846d',
  verifyAt: 1474692884
}

t.test('passport-azure-ad B2C token: signature verified with the real key, refused as an ID token', async t => {
  const metadata = serveMetadata(PEER.oidcEndpoint, PEER.issuer, [PEER.key])
  const app = Fastify({ logger: false })
  await app.register(entraAuth, { clientId: PEER.aud, oidcEndpoint: PEER.oidcEndpoint, dispatcher: metadata.dispatcher, now: () => PEER.verifyAt * 1000, rejectionLogLevel: 'silent' })
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await metadata.close() })
  const call = (token: string): Promise<LightMyRequestResponse> => app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })

  const res = await call(PEER.token)
  t.equal(res.statusCode, 401)
  t.equal(res.json().type, 'auth_token_claim_missing', 'past the signature: the B2C client claim azp is missing')
  t.match(res.json().detail, /'azp'/)
  t.match(res.json().detail, /ID token/)
  t.notOk(res.body.includes(PEER.token.split('.')[2]!), 'the detail does not echo the token')

  const bad = await call(tamperedSignature(PEER.token))
  t.equal(bad.statusCode, 401)
  t.equal(bad.json().type, 'auth_token_signature_untrusted', 'one signature bit changed: the real key refuses it')
  // passport-azure-ad's own twin changes only the last character's padding bits: a second
  // spelling of the same signature, refused before any key is used.
  t.equal((await call(PEER.badSignature)).json().type, 'auth_token_invalid')
  t.equal(metadata.requests.discovery, 1)
})

t.test('passport-azure-ad B2C token through the standalone verifier', async t => {
  const metadata = serveMetadata(PEER.oidcEndpoint, PEER.issuer, [PEER.key])
  const verifier = createEntraVerifier({ clientId: PEER.aud, oidcEndpoint: PEER.oidcEndpoint, dispatcher: metadata.dispatcher, now: () => PEER.verifyAt * 1000 })
  t.teardown(async () => { await verifier.close(); await metadata.close() })
  const err = await verifier.verify(PEER.token).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof EntraAuthError)
  t.match(err, { type: 'auth_token_claim_missing', detail: /'azp'.*ID token/ })
  const bad = await verifier.verify(tamperedSignature(PEER.token)).then(() => undefined, (e: unknown) => e)
  t.match(bad, { type: 'auth_token_signature_untrusted' })
  // The same key set with another key: the real token's kid is unknown, so it never reaches the claims.
  metadata.keys = [jwkFromPem(readFixture('peers', 'passport-b2c-id-token.key.pem'), 'another-kid')]
  const other = createEntraVerifier({ clientId: PEER.aud, oidcEndpoint: PEER.oidcEndpoint, dispatcher: metadata.dispatcher, now: () => PEER.verifyAt * 1000 })
  t.teardown(() => other.close())
  t.match(await other.verify(PEER.token).then(() => undefined, (e: unknown) => e), { type: 'auth_token_key_error' })
})
