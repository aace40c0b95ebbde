/**
 * Hardening of the verified token and its decoding: a token is deeply immutable and never shows
 * its string, has one spelling, is valid UTF-8, has a bounded size, and no claim is inherited
 * from a polluted `Object.prototype`. The problem registry is frozen too.
 */
import { sign } from 'node:crypto'
import { inspect } from 'node:util'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { createEntraVerifier, EntraAuthError, problems, type EntraAuthOptions, type EntraToken } from '../src/index.js'
import { FakeEntra, type MockJwk } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const OTHER_TENANT = '0b5e55ed-0000-4000-8000-00000000beef'

const entra = new FakeEntra()
const key = entra.keys[0] as MockJwk
t.teardown(() => entra.close())

const b64 = (bytes: Buffer | string): string => Buffer.from(bytes).toString('base64url')

/** Signs arbitrary header and payload bytes with the fake's key, as Entra would sign JSON. */
function signBytes (header: Buffer | string, payload: Buffer | string): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), key.privateKey).toString('base64url')}`
}

function header (): string {
  return JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.kid })
}

function claims (extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { iss: entra.issuer, sub: 'alice', aud: API_ID, exp: now + 3600, nbf: now - 60, iat: now - 60, azp: 'c11e0000-0000-4000-8000-000000000001', ver: '2.0', tid: entra.tenantId, ...extra }
}

async function app (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<FastifyInstance> {
  const fastify = Fastify({ logger: false })
  await fastify.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  t.teardown(() => fastify.close())
  return fastify
}

/** The problem type a promise rejects with ('resolved' when it does not). */
async function rejection (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'resolved'
  } catch (err) {
    return err instanceof EntraAuthError ? err.type : String(err)
  }
}

async function problemType (fastify: FastifyInstance, url: string, token: string): Promise<string | number> {
  const res = await fastify.inject({ url, headers: { authorization: `Bearer ${token}` } })
  return res.statusCode === 200 ? 200 : (res.json() as { type: string }).type
}

t.test('a cached token is deeply immutable: one request cannot widen the next one\'s scopes', async t => {
  const fastify = await app(t)
  const attempts: Record<string, string> = {}
  fastify.get('/tamper', { onRequest: fastify.entraAuth() }, async (request) => {
    const token = request.entraToken as EntraToken
    const tries: Record<string, () => unknown> = {
      'scopes.push': () => (token.scopes as string[]).push('Admin.All'),
      'scopes[0]': () => { (token.scopes as string[])[0] = 'Admin.All' },
      'claims.scp': () => { (token.claims as Record<string, unknown>).scp = 'Admin.All' },
      'claims.roles.push': () => (token.claims.roles as string[]).push('Admin.All'),
      'claims nested object': () => { (token.claims.xms_st as Record<string, unknown>).sub = 'mallory' },
      'header.kid': () => { (token.header as Record<string, unknown>).kid = 'other' },
      'all.add': () => (token.all as Set<string>).add('Admin.All'),
      'Set.prototype.add on all': () => Set.prototype.add.call(token.all, 'Admin.All'),
      'roles.add': () => (token.roles as Set<string>).add('Admin.All'),
      'delegated.add': () => (token.delegated as Set<string>).add('Admin.All'),
      'token.scopes =': () => { (token as { scopes: string[] }).scopes = ['Admin.All'] },
      'token.version =': () => { (token as { version: string }).version = '1.0' }
    }
    for (const [name, attempt] of Object.entries(tries)) {
      try {
        attempt()
        attempts[name] = 'changed'
      } catch {
        attempts[name] = 'refused'
      }
    }
    return { ok: true }
  })
  fastify.get('/admin', { onRequest: fastify.entraAuth(['Admin.All']) }, async () => ({ ok: true }))
  const token = entra.token(API_ID, { scp: 'User.Read', roles: ['Reader'], additionalClaims: { xms_st: { sub: 'alice' } } })

  t.equal(await problemType(fastify, '/tamper', token), 200)
  for (const [name, outcome] of Object.entries(attempts)) t.equal(outcome, 'refused', `${name} is refused`)
  t.equal(await problemType(fastify, '/admin', token), 'auth_token_insufficient_scopes', 'the next request with the same (cached) token is not widened')

  const first = await fastify.entraAuth.verify(token)
  t.equal(await fastify.entraAuth.verify(token), first, 'a cache hit hands out the same instance')
  t.same(first.scopes, ['User.Read', 'Reader'])
  t.ok(Object.isFrozen(first), 'the token')
  t.ok(Object.isFrozen(first.claims) && Object.isFrozen(first.claims.roles) && Object.isFrozen(first.claims.xms_st), 'claims, deeply')
  t.ok(Object.isFrozen(first.header) && Object.isFrozen(first.scopes), 'header and scopes')
  t.same([...first.all], ['User.Read', 'Reader'], 'the permission sets still iterate')
  t.ok(first.all.has('Reader') && first.delegated.has('User.Read') && first.roles.has('Reader') && first.roles.size === 1)
  t.same([[...first.all.keys()], [...first.all.values()], [...first.all.entries()]], [['User.Read', 'Reader'], ['User.Read', 'Reader'], [['User.Read', 'User.Read'], ['Reader', 'Reader']]])
  const seen: string[] = []
  first.all.forEach(function (this: string[], value, again, set) { this.push(`${value}=${again}:${set === first.all}`) }, seen)
  t.same(seen, ['User.Read=User.Read:true', 'Reader=Reader:true'], 'forEach as a Set would')
})

t.test('the token string never shows: not enumerable, not in JSON, inspect, console.log or a spread', async t => {
  const fastify = await app(t)
  const raw = entra.token(API_ID, { scp: 'User.Read' })
  const token = await fastify.entraAuth.verify(raw)
  t.equal(token.raw, raw, 'it is still there for who asks for it')
  t.notOk(Object.keys(token).includes('raw'), 'not enumerable')
  t.notOk(Object.getOwnPropertyDescriptor(token, 'raw')?.enumerable)
  t.notMatch(JSON.stringify(token), raw)
  t.notOk('raw' in { ...token }, 'a spread leaves it out')
  t.notMatch(JSON.stringify({ ...token }), raw)
  for (const options of [{}, { showHidden: true }, { depth: Infinity, showHidden: true }]) {
    const shown = inspect(token, options)
    t.notMatch(shown, raw, `util.inspect ${JSON.stringify(options)}`)
    t.notMatch(shown, raw.split('.')[2] as string, 'not even the signature')
    t.match(shown, /EntraToken/)
    t.match(shown, /User\.Read/, 'the rest is shown')
    t.match(shown, /redacted/)
  }
  const logged: string[] = []
  const original = console.log
  console.log = (...args: unknown[]) => { logged.push(args.map(arg => inspect(arg)).join(' ')) }
  try {
    console.log(token)
    console.log({ token })
  } finally {
    console.log = original
  }
  for (const line of logged) t.notMatch(line, raw, 'console.log')
})

t.test('one token has one spelling: non-canonical base64url is refused', async t => {
  const fastify = await app(t)
  fastify.get('/me', { onRequest: fastify.entraAuth() }, async () => ({ ok: true }))
  const token = entra.token(API_ID)
  t.equal(await problemType(fastify, '/me', token), 200)
  const [h, p, s] = token.split('.') as [string, string, string]
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

  // Every other character decoding to the same bytes: same high bits, other unused low bits.
  function respellings (segment: string): string[] {
    const unused = segment.length % 4 === 2 ? 4 : segment.length % 4 === 3 ? 2 : 0
    const last = ALPHABET.indexOf(segment.at(-1) as string)
    const out: string[] = []
    for (let low = 1; low < 1 << unused; low++) out.push(segment.slice(0, -1) + ALPHABET[last | low])
    return out
  }
  const signatures = respellings(s)
  t.equal(signatures.length, 15, 'an RS256 signature (256 bytes) has 16 spellings')
  for (const other of signatures) {
    t.same(Buffer.from(other, 'base64url'), Buffer.from(s, 'base64url'), 'same bytes')
    t.equal(await problemType(fastify, '/me', `${h}.${p}.${other}`), 'auth_token_invalid')
  }
  t.equal(fastify.entraAuth.state().tokenCache.size, 1, 'no cache entry per spelling')

  // Header and payload: pad them to a length with unused bits, signed properly.
  const padded = (json: string, tail: 2 | 3): string => {
    let text = json
    while (Buffer.from(text).length % 3 !== tail - 1) text = text.replace(/}$/, ' }')
    return text
  }
  const payloadJson = padded(JSON.stringify(claims()), 2)
  const headerJson = padded(header(), 3)
  const good = signBytes(headerJson, payloadJson)
  t.equal(await problemType(fastify, '/me', good), 200, 'the canonical spelling verifies')
  const [gh, gp] = good.split('.') as [string, string]
  for (const other of respellings(gp).slice(0, 3)) {
    const input = `${gh}.${other}`
    const resigned = `${input}.${sign('RSA-SHA256', Buffer.from(input), key.privateKey).toString('base64url')}`
    t.equal(await problemType(fastify, '/me', resigned), 'auth_token_invalid', 'a payload spelled otherwise, even when signed that way')
  }
  for (const other of respellings(gh)) {
    const input = `${other}.${gp}`
    const resigned = `${input}.${sign('RSA-SHA256', Buffer.from(input), key.privateKey).toString('base64url')}`
    t.equal(await problemType(fastify, '/me', resigned), 'auth_token_invalid', 'a header spelled otherwise')
  }
})

t.test('header and payload must be valid UTF-8', async t => {
  const fastify = await app(t)
  fastify.get('/name', { onRequest: fastify.entraAuth() }, async (request) => ({ name: request.entraToken?.claims.name }))
  const valid = signBytes(header(), JSON.stringify(claims({ name: 'Zoë Ångström 日本' })))
  const res = await fastify.inject({ url: '/name', headers: { authorization: `Bearer ${valid}` } })
  t.same(res.json(), { name: 'Zoë Ångström 日本' }, 'UTF-8 is decoded')

  const json = Buffer.from(JSON.stringify(claims({ name: 'Zoe' })))
  const at = json.indexOf('Zoe')
  for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
    const bytes = Buffer.concat([json.subarray(0, at), Buffer.from(bad), json.subarray(at + 3)])
    t.equal(await problemType(fastify, '/name', signBytes(header(), bytes)), 'auth_token_invalid', `payload with bytes ${bad.map(b => b.toString(16)).join(' ')}`)
  }
  const headerBytes = Buffer.from(header())
  headerBytes[headerBytes.indexOf('"JWT"') + 1] = 0xff
  t.equal(await problemType(fastify, '/name', signBytes(headerBytes, JSON.stringify(claims()))), 'auth_token_invalid', 'header with invalid UTF-8')
  const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(claims()))])
  t.equal(await problemType(fastify, '/name', signBytes(header(), bom)), 'auth_token_invalid', 'a byte order mark is not JSON')
})

t.test('size: at least 16 KiB accepted, beyond 64 KiB refused before decoding, on routes as in verify and introspect', async t => {
  const fastify = await app(t)
  fastify.get('/me', { onRequest: fastify.entraAuth() }, async () => ({ ok: true }))
  const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions() })
  t.teardown(() => verifier.close())

  const big = entra.token(API_ID, { additionalClaims: { groups: Array.from({ length: 400 }, (_, i) => `0000000${i}-0000-4000-8000-000000000000`) } })
  t.ok(big.length > 16 * 1024, `a ${big.length}-character token`)
  t.equal(await problemType(fastify, '/me', big), 200)
  t.equal((await verifier.verify(big)).raw, big, 'in verify')

  const huge = entra.token(API_ID, { additionalClaims: { padding: 'x'.repeat(64 * 1024) } })
  t.ok(huge.length > 64 * 1024)
  t.equal(await problemType(fastify, '/me', huge), 'auth_token_invalid', 'on a route')
  t.equal(await rejection(verifier.verify(huge)), 'auth_token_invalid', 'in verify')
  t.same(await verifier.introspect(huge), { active: false }, 'in introspect')
  t.equal(await rejection(fastify.entraAuth.verify(huge)), 'auth_token_invalid', "in the plugin's verify")

  // 2 MiB of nested arrays: refused for its size, whatever it contains.
  const nested = `${b64(header())}.${b64('['.repeat(1 << 20) + ']'.repeat(1 << 20))}.${'A'.repeat(342)}`
  const refusal = await verifier.verify(nested).catch((err: unknown) => err)
  t.ok(refusal instanceof EntraAuthError)
  t.equal((refusal as EntraAuthError).type, 'auth_token_invalid')
  t.match((refusal as EntraAuthError).detail, /longer than/)
})

t.test('claims are own properties only: a polluted Object.prototype grants nothing', async t => {
  const fastify = await app(t, { allowedTenants: [entra.tenantId] })
  fastify.get('/admin', { onRequest: fastify.entraAuth(['Admin.All']) }, async () => ({ ok: true }))
  fastify.get('/me', { onRequest: fastify.entraAuth() }, async (request) => ({ appOnly: request.entraToken?.isAppOnly, tenant: request.entraToken?.tenantId ?? null }))
  const verifier = createEntraVerifier({ clientId: API_ID, allowedTenants: [entra.tenantId], ...entra.pluginOptions() })
  t.teardown(() => verifier.close())

  const proto = Object.prototype as Record<string, unknown>
  async function polluted<T> (name: string, value: unknown, run: () => Promise<T>): Promise<T> {
    proto[name] = value
    try {
      return await run()
    } finally {
      delete proto[name]
    }
  }
  t.teardown(() => { for (const name of ['roles', 'scp', 'tid', 'idtyp']) delete proto[name] })

  const plain = entra.token(API_ID, { scp: 'User.Read', roles: false })
  t.equal(await polluted('roles', ['Admin.All'], () => problemType(fastify, '/admin', plain)), 'auth_token_insufficient_scopes', 'roles')
  const noScp = entra.token(API_ID, { scp: false, roles: false })
  t.equal(await polluted('scp', 'Admin.All', () => problemType(fastify, '/admin', noScp)), 'auth_token_insufficient_scopes', 'scp')
  const noTid = entra.token(API_ID, { tid: false })
  t.equal(await polluted('tid', entra.tenantId, () => problemType(fastify, '/me', noTid)), 'auth_token_issuer_untrusted', 'tid against allowedTenants')
  t.equal(await polluted('tid', entra.tenantId, () => rejection(verifier.verify(noTid))), 'auth_token_issuer_untrusted', 'tid in verify')
  const user = entra.token(API_ID, { idtyp: false })
  const res = await polluted('idtyp', 'app', () => fastify.inject({ url: '/me', headers: { authorization: `Bearer ${user}` } }))
  t.same(res.json(), { appOnly: false, tenant: entra.tenantId }, 'idtyp')
  const other = entra.token(API_ID, { tid: OTHER_TENANT })
  t.equal(await polluted('tid', entra.tenantId, () => problemType(fastify, '/me', other)), 'auth_token_issuer_untrusted')
  t.notOk('roles' in Object.prototype, 'restored')
})

t.test('the problem registry is deeply frozen', async t => {
  t.ok(Object.isFrozen(problems))
  for (const [type, definition] of Object.entries(problems)) t.ok(Object.isFrozen(definition), type)
  t.throws(() => { (problems as Record<string, unknown>).auth_token_expired = { status: 200 } })
  t.throws(() => { (problems.auth_token_expired as { status: number }).status = 200 })
  t.equal(new EntraAuthError('auth_token_expired').status, 401)
})
