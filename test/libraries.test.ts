/**
 * Tripwires on the design card's libraries: each fact about get-jwks, @fastify/jwt and fast-jwt
 * that the key layer (src/jwks.ts) and the signature layer (src/signature.ts) answer in code. If a
 * library changes under us, one of these fails and says which answer to revisit.
 */
import { createRequire } from 'node:module'
import buildGetJwks from 'get-jwks'
import t from 'tap'
import { MockAgent, type Dispatcher } from 'undici'
import { EntraAuthError } from '../src/index.js'
import { loadFastifyJwt, mapJwtError } from '../src/core/signature.js'

const require = createRequire(import.meta.url)
const ORIGIN = 'https://login.example.test'

/** A mock origin answering `path` with what `answer()` returns at the time of the request. */
function mockOrigin (answer: (path: string) => { statusCode: number, data: string, headers?: Record<string, string> }): MockAgent {
  const agent = new MockAgent()
  agent.disableNetConnect()
  agent.get(ORIGIN).intercept({ path: () => true, method: 'GET' }).reply(opts => answer(opts.path)).persist()
  return agent
}

function getJwksWith (dispatcher: Dispatcher, extra: object = {}): ReturnType<typeof buildGetJwks> {
  return buildGetJwks({ jwksPath: '/keys', fetchOptions: { dispatcher } as never, ...extra })
}

const jwk = (kid: string): Record<string, string> => ({ kty: 'RSA', kid, use: 'sig', n: 'AQAB', e: 'AQAB' })

t.test('get-jwks resolves one kid per call and keeps no key set', async t => {
  const agent = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify({ keys: [jwk('a'), jwk('b')] }) }))
  t.teardown(() => agent.close())
  const found = await getJwksWith(agent).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' })
  t.equal(found.kid, 'a', 'one JWK comes back')
  t.notOk('keys' in found, 'not the set: the key layer must read the whole document itself')
})

t.test('get-jwks hands back a removed key from its stale cache on errors', async t => {
  let published = [jwk('a'), jwk('b')]
  let status = 200
  const agent = mockOrigin(() => ({ statusCode: status, data: JSON.stringify({ keys: published }) }))
  t.teardown(() => agent.close())
  const getJwks = getJwksWith(agent, { max: 1 })
  await getJwks.getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' })
  await getJwks.getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'b' }) // evicts a into the stale cache
  published = []
  status = 500
  const again = await getJwks.getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' })
  t.equal(again.kid, 'a', 'the provider no longer publishes kid a, yet get-jwks returns it: the key layer uses a fresh get-jwks per refresh')
})

t.test("get-jwks' timeout option does nothing with the global fetch", async t => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  agent.get(ORIGIN).intercept({ path: () => true, method: 'GET' }).reply(200, '{}').delay(5000).persist()
  const stop = new AbortController()
  t.teardown(async () => { stop.abort(); await agent.close() })
  const pending = getJwksWith(agent, { fetchOptions: { dispatcher: agent, timeout: 20, signal: stop.signal } as never }).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' })
  pending.catch(() => {})
  const outcome = await Promise.race([pending.then(() => 'settled', () => 'settled'), new Promise(resolve => setTimeout(resolve, 300, 'pending'))])
  t.equal(outcome, 'pending', 'still waiting 15x past its timeout: the key layer passes an AbortSignal per refresh')
})

t.test('the global fetch follows redirects to another origin unless told not to', async t => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  agent.get(ORIGIN).intercept({ path: '/keys', method: 'GET' }).reply(302, '', { headers: { location: 'https://evil.example.test/keys' } }).persist()
  agent.get('https://evil.example.test').intercept({ path: '/keys', method: 'GET' }).reply(200, JSON.stringify({ keys: [jwk('evil')] })).persist()
  t.teardown(() => agent.close())
  const followed = await getJwksWith(agent).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'evil' })
  t.equal(followed.kid, 'evil', 'keys from another origin: the key layer sets redirect: error and refuses 3xx in its dispatcher')
  await t.rejects(getJwksWith(agent, { fetchOptions: { dispatcher: agent, redirect: 'error' } as never }).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'evil' }))
})

t.test("get-jwks can't tell {} from {\"keys\":[]}, and trips over a null entry", async t => {
  for (const document of [{}, { keys: [] }]) {
    const agent = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify(document) }))
    t.teardown(() => agent.close())
    await t.rejects(getJwksWith(agent).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' }), { code: 'NO_JWKS' }, JSON.stringify(document))
  }
  const agent = mockOrigin(() => ({ statusCode: 200, data: JSON.stringify({ keys: [null, jwk('a')] }) }))
  t.teardown(() => agent.close())
  await t.rejects(getJwksWith(agent).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' }), TypeError, 'the key layer parses the document itself')
})

t.test('get-jwks parses the body before it looks at the status', async t => {
  const agent = mockOrigin(() => ({ statusCode: 404, data: 'Not Found' }))
  t.teardown(() => agent.close())
  await t.rejects(getJwksWith(agent).getJwk({ domain: `${ORIGIN}/`, alg: 'RS256', kid: 'a' }), SyntaxError, 'a 404 page surfaces as a JSON error: the key layer reports the status it saw')
})

t.test('get-jwks error codes: the ones the key layer maps', async t => {
  const { errorCode } = require('get-jwks/src/error.js') as { errorCode: Record<string, string> }
  t.same(Object.values(errorCode).sort(), ['DOMAIN_NOT_ALLOWED', 'JWKS_REQUEST_FAILED', 'JWK_NOT_FOUND', 'NO_JWKS', 'NO_JWKS_URI', 'OPENID_CONFIGURATION_REQUEST_FAILED'],
    'a new code needs a mapping in src/jwks.ts')
})

t.test('@fastify/jwt decorates instance, request and reply; applied to a private target it touches no app', async t => {
  const kUser = Symbol('user')
  const { decorations } = loadFastifyJwt({ secret: 'x'.repeat(32), decoratorName: kUser })
  t.same(decorations, ['request.Symbol(user)', 'instance.jwt', 'request.jwtDecode', 'request.jwtVerify', 'reply.jwtSign'],
    'what @fastify/jwt decorates (an app with its own @fastify/jwt would clash with these)')
})

t.test('@fastify/jwt: a plugin error surfaces at load, not at request time', async t => {
  t.throws(() => loadFastifyJwt({}), /missing secret/)
})

t.test("fast-jwt's error codes are all reviewed, and every one maps to a 401 problem", async t => {
  const { TokenError } = require('fast-jwt') as { TokenError: { codes: Record<string, string> } }
  const codes = Object.values(TokenError.codes).sort()
  t.same(codes, [
    'FAST_JWT_EXPIRED', 'FAST_JWT_INACTIVE', 'FAST_JWT_INVALID_ALGORITHM', 'FAST_JWT_INVALID_CLAIM_TYPE', 'FAST_JWT_INVALID_CLAIM_VALUE',
    'FAST_JWT_INVALID_CRIT_HEADER', 'FAST_JWT_INVALID_KEY', 'FAST_JWT_INVALID_OPTION', 'FAST_JWT_INVALID_PAYLOAD', 'FAST_JWT_INVALID_SIGNATURE',
    'FAST_JWT_INVALID_TYPE', 'FAST_JWT_KEY_FETCHING_ERROR', 'FAST_JWT_MALFORMED', 'FAST_JWT_MISSING_KEY', 'FAST_JWT_MISSING_REQUIRED_CLAIM',
    'FAST_JWT_MISSING_SIGNATURE', 'FAST_JWT_SIGN_ERROR', 'FAST_JWT_VERIFY_ERROR'
  ], 'a new fast-jwt code needs a look at mapJwtError')
  const fastifyJwtCodes = ['FST_JWT_AUTHORIZATION_TOKEN_INVALID', 'FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED', 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED', 'FST_JWT_BAD_REQUEST']
  for (const code of [...codes, ...fastifyJwtCodes]) {
    const mapped = mapJwtError(Object.assign(new Error('x'), { code }), () => undefined)
    t.ok(mapped instanceof EntraAuthError && mapped.status === 401, `${code} → 401 ${mapped.type}`)
  }
  t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_MALFORMED' }), () => 'why').type, 'auth_token_invalid', 'malformed')
  t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_INVALID_SIGNATURE' }), () => 'why').type, 'auth_token_signature_untrusted', 'signature failure')
  t.equal(mapJwtError(Object.assign(new Error('x'), { code: 'FAST_JWT_INVALID_SIGNATURE' }), () => 'why').detail, 'why')
  t.equal(mapJwtError(new TypeError('unforeseen'), () => undefined).type, 'auth_token_signature_untrusted', 'no code: refused closed')
})

t.test('@fastify/jwt: jwt.verify(token) without options reuses the verifier of its static key', async t => {
  // Per-call options or a key function would build a verifier (and convert the PEM) on every call:
  // the signature layer keeps one @fastify/jwt instance per key and calls jwt.verify(token) bare.
  const source = require('node:fs').readFileSync(require.resolve('@fastify/jwt'), 'utf8') as string
  t.match(source, /if \(useGlobalOptions && hasStaticPublicKey\) return verifier/)
  t.match(source, /if \(options && typeof options !== 'function'\) \{\s*localVerifier = getVerifier/)
})

t.test('@fastify/jwt verifies with a public key only (no signer), and reports fast-jwt codes as they are', async t => {
  const { generateKeyPairSync, sign } = await import('node:crypto')
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const { jwt } = loadFastifyJwt({ secret: { public: publicKey.export({ type: 'spki', format: 'pem' }) }, verify: { algorithms: ['RS256'], complete: true } })
  const input = `${Buffer.from('{"alg":"RS256","kid":"k"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}`
  const token = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
  t.match(jwt.verify(token), { header: { kid: 'k' }, payload: { sub: 'x' } })
  t.throws(() => jwt.verify(`${input}.${'A'.repeat(342)}`), { code: 'FAST_JWT_INVALID_SIGNATURE' })
  t.throws(() => jwt.verify(`${Buffer.from('{"alg":"RS256"}').toString('base64url')}.bm90IGpzb24.${'A'.repeat(342)}`), { code: 'FAST_JWT_MALFORMED' })
})
