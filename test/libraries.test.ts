/**
 * What the key layer (src/core/jwks.ts) and the signature layer (src/core/signature.ts) depend on
 * in get-jwks and @fastify/jwt, through their public entry points only. If a library changes what
 * the layers rely on, one of these fails and says which. Quirks the layers defend against are
 * tested by their effect on our behaviour instead (keys.test.ts, keys-libraries.test.ts), so an
 * upstream fix never breaks the build.
 */
import { createPublicKey, generateKeyPairSync, sign } from 'node:crypto'
import { createRequire } from 'node:module'
import fastifyJwt from '@fastify/jwt'
import Fastify from 'fastify'
import buildGetJwks from 'get-jwks'
import t from 'tap'
import { MockAgent, type Dispatcher } from 'undici'
import { EntraAuthError } from '../src/index.js'
import { GET_JWKS_OUTAGE } from '../src/core/jwks.js'
import { mapJwtError } from '../src/core/signature.js'
import { RecordingDispatcher } from './helpers/index.js'

const require = createRequire(import.meta.url)
const ORIGIN = 'https://login.example.test'
const DOMAIN = `${ORIGIN}/`

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const jwk = (kid: string): Record<string, unknown> => ({ ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' })

/** A mock origin answering every GET with what `answer()` returns at the time of the request. */
function mockOrigin (answer: (path: string) => { statusCode: number, data: string }): { agent: MockAgent, recorded: RecordingDispatcher } {
  const agent = new MockAgent()
  agent.disableNetConnect()
  agent.get(ORIGIN).intercept({ path: () => true, method: 'GET' }).reply(opts => answer(opts.path)).persist()
  return { agent, recorded: new RecordingDispatcher(agent) }
}

function getJwksWith (dispatcher: Dispatcher, jwksPath = '/keys', fetchOptions: object = {}): ReturnType<typeof buildGetJwks> {
  return buildGetJwks({ jwksPath, fetchOptions: { dispatcher, ...fetchOptions } as never })
}

async function codeOf (promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
    return 'resolved'
  } catch (err) {
    return (err as { code?: unknown }).code ?? (err as Error).name
  }
}

t.test('get-jwks requests `domain` + `jwksPath`: the URL the key layer reads the document of', async t => {
  const { agent, recorded } = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify({ keys: [jwk('a')] }) }))
  t.teardown(() => agent.close())
  // The layer gives get-jwks the jwks_uri's origin + '/' and its path + query (a #fragment is never sent).
  const jwksUri = new URL(`${ORIGIN}/tenant/discovery/v2.0/keys?appid=x#section`)
  const jwksPath = jwksUri.pathname + jwksUri.search
  await getJwksWith(recorded, jwksPath).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' })
  t.same(recorded.urls, [new URL(DOMAIN + jwksPath.slice(1)).href])
  t.equal(recorded.urls[0], `${ORIGIN}/tenant/discovery/v2.0/keys?appid=x`)
})

t.test('get-jwks hands its fetchOptions to fetch: dispatcher, headers, signal, redirect', async t => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  t.teardown(() => agent.close())
  agent.get(ORIGIN).intercept({ path: '/keys', method: 'GET', headers: { 'accept-encoding': 'identity', accept: 'application/json' } })
    .reply(200, JSON.stringify({ keys: [jwk('a')] })).persist()
  agent.get(ORIGIN).intercept({ path: '/moved', method: 'GET' }).reply(302, '', { headers: { location: `${ORIGIN}/keys` } }).persist()
  const headers = { accept: 'application/json', 'accept-encoding': 'identity' }
  const found = await getJwksWith(agent, '/keys', { headers }).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' })
  t.equal(found.kid, 'a', 'the request went through the dispatcher, with the headers')

  const stop = new AbortController()
  const reason = new Error('the refresh deadline')
  stop.abort(reason)
  await t.rejects(getJwksWith(agent, '/keys', { headers, signal: stop.signal }).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' }), reason,
    "an aborted signal rejects with the signal's reason (the layer recognises its own deadline)")
  await t.rejects(getJwksWith(agent, '/moved', { headers, redirect: 'error' }).getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' }), TypeError, "redirect: 'error' refuses a 3xx")
})

t.test('get-jwks error codes, and when each is thrown: all mapped by the key layer', async t => {
  let answer = { statusCode: 200, data: '' }
  const { agent } = mockOrigin(() => answer)
  t.teardown(() => agent.close())
  const cases: Array<[string, { statusCode: number, data: string }, unknown, object?]> = [
    ['a 2xx set without the kid', { statusCode: 200, data: JSON.stringify({ keys: [jwk('b')] }) }, 'JWK_NOT_FOUND'],
    ['a 2xx set with no keys', { statusCode: 200, data: JSON.stringify({ keys: [] }) }, 'NO_JWKS'],
    ['a non-2xx JSON answer', { statusCode: 500, data: JSON.stringify({ error: 'x' }) }, 'JWKS_REQUEST_FAILED'],
    ['a body that is not JSON, whatever the status', { statusCode: 404, data: 'Not Found' }, 'SyntaxError'],
    ['a domain outside issuersWhitelist', { statusCode: 200, data: JSON.stringify({ keys: [jwk('a')] }) }, 'DOMAIN_NOT_ALLOWED', { issuersWhitelist: ['https://other.example.test'] }]
  ]
  for (const [label, response, expected, extra] of cases) {
    answer = response
    const getJwks = buildGetJwks({ jwksPath: '/keys', fetchOptions: { dispatcher: agent } as never, ...extra })
    const code = await codeOf(getJwks.getJwk({ domain: DOMAIN, alg: 'RS256', kid: 'a' }))
    t.equal(code, expected, label)
    if (typeof code === 'string' && code !== 'SyntaxError') t.ok(code === 'JWK_NOT_FOUND' || code in GET_JWKS_OUTAGE, `${code} is mapped`)
  }
})

t.test('get-jwks caches per kid: the same kid and its PEM cost no second request; its public cache entry can be deleted', async t => {
  const { agent, recorded } = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify({ keys: [jwk('a'), jwk('b')] }) }))
  t.teardown(() => agent.close())
  const getJwks = getJwksWith(recorded)
  const signature = { domain: DOMAIN, alg: 'RS256', kid: 'a' }
  const first = await getJwks.getJwk(signature)
  const pem = await getJwks.getPublicKey(signature)
  t.equal(recorded.urls.length, 1, 'getJwk then getPublicKey of one kid: one request')
  t.equal(first.n, jwk('a').n)
  const fromPem = createPublicKey(pem).export({ format: 'jwk' })
  t.same({ n: fromPem.n, e: fromPem.e }, { n: first.n, e: first.e }, 'getPublicKey is the PEM of the JWK getJwk returned')
  getJwks.cache.delete(getJwks.generateCacheKey('RS256', 'a', DOMAIN))
  await getJwks.getJwk(signature)
  t.equal(recorded.urls.length, 2, 'a deleted cache entry is fetched again')
})

t.test('@fastify/jwt under a namespace: jwt[namespace].verify and namespaced request and reply decorators', async t => {
  const pem = publicKey.export({ type: 'spki', format: 'pem' })
  const app = Fastify()
  t.teardown(() => app.close())
  for (const namespace of ['k0', 'k1']) {
    app.register(fastifyJwt, { namespace, secret: { public: pem }, verify: { algorithms: ['RS256'], complete: true } })
  }
  await app.ready()
  const jwt = (app as unknown as { jwt: Record<string, { verify: (token: string) => unknown }> }).jwt
  t.same(Object.keys(jwt).sort(), ['k0', 'k1'], 'one entry per namespace, nothing else')
  for (const namespace of ['k0', 'k1']) {
    t.equal(typeof jwt[namespace]?.verify, 'function', `jwt.${namespace}.verify`)
    t.ok(app.hasRequestDecorator(`${namespace}JwtVerify`) && app.hasRequestDecorator(`${namespace}JwtDecode`), `request.${namespace}JwtVerify/JwtDecode`)
    t.ok(app.hasReplyDecorator(`${namespace}JwtSign`), `reply.${namespace}JwtSign`)
  }
  t.notOk(app.hasRequestDecorator('jwtVerify'), 'no default-named decorator')

  const input = `${Buffer.from('{"alg":"RS256","kid":"k"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}`
  const token = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
  const verify = jwt.k0?.verify as (token: string) => unknown
  t.match(verify(token), { header: { kid: 'k' }, payload: { sub: 'x' } }, 'verify(token) alone, called detached: the header and payload')
  t.throws(() => verify(`${input}.${'A'.repeat(342)}`), { code: 'FAST_JWT_INVALID_SIGNATURE' })
  t.throws(() => verify(`${Buffer.from('{"alg":"RS256"}').toString('base64url')}.bm90IGpzb24.${'A'.repeat(342)}`), { code: 'FAST_JWT_MALFORMED' })
})

t.test('@fastify/jwt: a registration error surfaces from ready()', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(fastifyJwt, { namespace: 'k0', secret: {} as never })
  await t.rejects(async () => { await app.ready() }, /missing public key/)
})

t.test('every fast-jwt and @fastify/jwt error code maps to a 401 problem', async t => {
  const { TokenError } = require('fast-jwt') as { TokenError: { codes: Record<string, string> } }
  const codes = [...Object.values(TokenError.codes), 'FST_JWT_AUTHORIZATION_TOKEN_INVALID', 'FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED', 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED', 'FST_JWT_BAD_REQUEST']
  t.ok(codes.includes('FAST_JWT_INVALID_SIGNATURE') && codes.includes('FAST_JWT_MALFORMED'), 'the codes the layer tells apart exist')
  for (const code of codes) {
    const mapped = mapJwtError(Object.assign(new Error('x'), { code }), () => undefined)
    t.ok(mapped instanceof EntraAuthError && mapped.status === 401, `${code} → 401 ${mapped.type}`)
  }
  t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_MALFORMED' }), () => 'why').type, 'auth_token_invalid', 'malformed')
  t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_INVALID_SIGNATURE' }), () => 'why').type, 'auth_token_signature_untrusted', 'signature failure')
  t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_INVALID_SIGNATURE' }), () => 'why').detail, 'why')
  t.equal(mapJwtError(new TypeError('unforeseen'), () => undefined).type, 'auth_token_signature_untrusted', 'no code: refused closed')
})
