/**
 * Continuous Access Evaluation claims challenges (issue 3 item 6): only for clients whose token
 * says `xms_cc: ['cp1']`, one `WWW-Authenticate` with Microsoft's attributes, a problem body.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { buildClaimsChallenge, claimsChallenge, createEntraVerifier, type EntraAuthOptions, INSUFFICIENT_CLAIMS, supportsClaimsChallenge } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { bearer, entraApp } from './helpers/index.js'

const CLIENT = 'c1e47000-0000-4000-8000-000000000002'
const TENANT = '11111111-2222-4333-8444-555555555555'
const STEP_UP = { access_token: { acrs: { essential: true, value: 'c1' } } }
const AUTHORIZE = `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/authorize`

/**
 * The plugin's app with a step-up route: tokens without authentication context `c1` get a claims
 * challenge when their client can handle one, and a 403 otherwise.
 */
async function stepUpApp (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<{ app: FastifyInstance, entra: FakeEntra, handled: string[] }> {
  const entra = new FakeEntra({ tenant: TENANT })
  const app = await entraApp({ clientId: CLIENT, ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  const handled: string[] = []
  app.post('/transfer', { onRequest: app.entraAuth() }, async (request, reply) => {
    const token = request.entraToken!
    const acrs = token.claims.acrs
    if (!Array.isArray(acrs) || !acrs.includes('c1')) {
      if (claimsChallenge(reply, token, { claims: STEP_UP })) return reply
      handled.push('refused')
      return reply.code(403).send({ error: 'step-up needed' })
    }
    handled.push('transferred')
    return { ok: true }
  })
  t.teardown(async () => {
    await app.close()
    await entra.close()
  })
  return { app, entra, handled }
}

function decodeChallenge (header: unknown): { authorizationUri: string, claims: unknown } {
  const match = /^Bearer realm="", authorization_uri="([^"]+)", error="insufficient_claims", claims="([A-Za-z0-9+/=]+)"$/.exec(String(header))
  if (match === null) throw new Error(`not a claims challenge: ${String(header)}`)
  return { authorizationUri: match[1] as string, claims: JSON.parse(Buffer.from(match[2] as string, 'base64').toString('utf8')) }
}

t.test('a cp1 client gets one claims challenge and a problem body', async t => {
  const { app, entra, handled } = await stepUpApp(t)
  const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
  t.equal(res.statusCode, 401)
  t.equal(typeof res.headers['www-authenticate'], 'string', 'exactly one WWW-Authenticate header')
  t.same(decodeChallenge(res.headers['www-authenticate']), { authorizationUri: AUTHORIZE, claims: STEP_UP })
  t.equal(res.headers['www-authenticate'], `Bearer realm="", authorization_uri="${AUTHORIZE}", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"`)
  t.equal(res.headers['content-type'], 'application/problem+json')
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json() as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['detail', 'status', 'title', 'type'])
  t.match(body, { type: INSUFFICIENT_CLAIMS, status: 401, title: 'Additional claims required' })
  t.same(handled, [])
})

t.test('clients without cp1 get nothing from it, and the handler goes on', async t => {
  const { app, entra, handled } = await stepUpApp(t)
  for (const xmsCc of [undefined, [], ['cp2'], 'cp1', ['cp1 cp2'], [1]]) {
    const token = entra.token(CLIENT, xmsCc === undefined ? {} : { xms_cc: xmsCc })
    const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(token) })
    t.equal(res.statusCode, 403, `xms_cc ${JSON.stringify(xmsCc)}`)
    t.equal(res.headers['www-authenticate'], undefined)
  }
  t.equal(handled.length, 6)
})

t.test('tokens that already satisfy the claims pass', async t => {
  const { app, entra, handled } = await stepUpApp(t)
  const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'], acrs: ['c1'] })) })
  t.equal(res.statusCode, 200)
  t.same(handled, ['transferred'])
})

t.test('cp1 is matched case-insensitively among other capabilities', async t => {
  const { app, entra } = await stepUpApp(t)
  for (const xmsCc of [['CP1'], ['cp2', 'cp1']]) {
    const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: xmsCc })) })
    t.equal(res.statusCode, 401, JSON.stringify(xmsCc))
  }
})

t.test('the problem body carries the plugin\'s contact', async t => {
  const { app, entra } = await stepUpApp(t, { contact: 'mailto:api-owners@contoso.com' })
  const res = await app.inject({ method: 'POST', url: '/transfer', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
  t.equal((res.json() as { contact: string }).contact, 'mailto:api-owners@contoso.com')
})

t.test('options: authorizationUri, claims as JSON text, detail', async t => {
  const { app, entra } = await stepUpApp(t)
  const claims = '{"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}'
  app.get('/revoked', { onRequest: app.entraAuth() }, async (request, reply) => {
    claimsChallenge(reply, request.entraToken, { claims, authorizationUri: 'https://login.microsoftonline.com/common/oauth2/authorize', detail: 'Your session was revoked.' })
    return reply
  })
  const res = await app.inject({ url: '/revoked', headers: bearer(entra.token(CLIENT, { xms_cc: ['cp1'] })) })
  const challenge = String(res.headers['www-authenticate'])
  t.equal(decodeChallenge(challenge).authorizationUri, 'https://login.microsoftonline.com/common/oauth2/authorize')
  t.ok(challenge.endsWith(`claims="${Buffer.from(claims).toString('base64')}"`), 'JSON text is sent byte for byte')
  t.equal((res.json() as { detail: string }).detail, 'Your session was revoked.')
})

t.test('no token: nothing to challenge', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.get('/', async (request, reply) => ({ sent: claimsChallenge(reply, null, { claims: STEP_UP, authorizationUri: AUTHORIZE }) }))
  t.same((await app.inject({ url: '/' })).json(), { sent: false })
  t.equal(supportsClaimsChallenge(undefined), false)
})

t.test('with a standalone verifier: its discovery supplies authorization_uri', async t => {
  const entra = new FakeEntra({ tenant: TENANT })
  const verifier = createEntraVerifier({ clientId: CLIENT, ...entra.pluginOptions() })
  const app = Fastify()
  t.teardown(async () => {
    await app.close()
    await verifier.close()
    await entra.close()
  })
  app.get('/needs-verifier', async (request, reply) => {
    const token = await verifier.verify(String(request.headers['x-token']))
    claimsChallenge(reply, token, { claims: STEP_UP })
    return reply
  })
  app.get('/explicit', async (request, reply) => {
    const token = await verifier.verify(String(request.headers['x-token']))
    claimsChallenge(reply, token, { claims: STEP_UP, verifier })
    return reply
  })
  const headers = { 'x-token': entra.token(CLIENT, { xms_cc: ['cp1'] }) }
  // Without the plugin there is no `app.entraAuth.verifier` to default to: a programming error.
  const missing = await app.inject({ url: '/needs-verifier', headers })
  t.equal(missing.statusCode, 500)
  t.match((missing.json() as { message: string }).message, /authorizationUri/)
  const res = await app.inject({ url: '/explicit', headers })
  t.equal(res.statusCode, 401)
  t.equal(decodeChallenge(res.headers['www-authenticate']).authorizationUri, AUTHORIZE)
})

t.test('buildClaimsChallenge', async t => {
  t.equal(
    buildClaimsChallenge({ claims: STEP_UP, authorizationUri: 'https://login.microsoftonline.com/common/oauth2/authorize' }),
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"'
  )
  for (const claims of ['not json', '[]', 'null', '"text"', '{"a":']) {
    t.throws(() => buildClaimsChallenge({ claims, authorizationUri: AUTHORIZE }), TypeError, `claims ${claims}`)
  }
  for (const authorizationUri of ['', 'https://x/"', 'https://x/\\', 'https://x/\r\nSet-Cookie: a=b', 'https://x/a b', 'https://x/ä']) {
    t.throws(() => buildClaimsChallenge({ claims: STEP_UP, authorizationUri }), TypeError, JSON.stringify(authorizationUri))
  }
})

const DECORATED_API = '6e1c9b1a-0000-4000-8000-00000000a11d'

t.test('with decorator: "filesAuth", the helper still finds the verifier', async t => {
  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  const app = Fastify()
  await app.register(entraAuth, { clientId: DECORATED_API, ...entra.pluginOptions(), decorator: 'filesAuth' } as EntraAuthOptions)
  t.teardown(() => app.close())
  const auth = (app as unknown as { filesAuth: (requirement?: string[]) => never }).filesAuth
  app.get('/step-up', { onRequest: auth() }, async (request, reply) => {
    claimsChallenge(reply, request.entraToken, { claims: '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}' })
    return reply
  })
  await app.ready()
  t.equal((app as unknown as { entraAuth?: unknown }).entraAuth, undefined, 'no default decorator to fall back on')
  const res = await app.inject({ url: '/step-up', headers: bearer(entra.token(DECORATED_API, { xms_cc: ['cp1'] })) })
  t.equal(res.statusCode, 401)
  t.match(res.headers['www-authenticate'], /authorization_uri="https:\/\/login\.microsoftonline\.com\/[^"]+\/oauth2\/v2\.0\/authorize"/)
})
