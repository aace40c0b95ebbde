/**
 * threats.md, sections "Tokens" and "The Authorization header": hostile inputs through
 * `app.inject`. Every reply must be a problem (never a 5xx) that does not echo the token, and no
 * token may make the plugin fetch anything.
 */
import { constants, createHmac, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { getGlobalDispatcher, MockAgent, setGlobalDispatcher } from 'undici'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions } from '../src/index.js'
import { FakeEntra, MockClaims, MockJwk, MockJwtClient, MOCK_ISSUER, type FakeEntraOptions } from '../src/testing/index.js'
import { CLIENT_ID, SCOPE_ROUTES } from './helpers/index.js'

/** Client ID of the Entra-shaped fixtures (a GUID, as real ones are). */
const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const CLIENT_APP = 'c0ffee00-0000-4000-8000-000000000002'
const OTHER_TENANT = '0b5e55ed-0000-4000-8000-00000000beef'

// ---------------------------------------------------------------------------------------------
// Nothing may ever leave for the network: any fetch outside the fake Entra lands here.
const outside = new MockAgent()
outside.disableNetConnect()
const evilHits: string[] = []
outside.get('https://evil.example.com').intercept({ path: () => true, method: () => true }).reply(opts => {
  evilHits.push(opts.path)
  return { statusCode: 200, data: '{"keys":[]}' }
}).persist()
const previousDispatcher = getGlobalDispatcher()
setGlobalDispatcher(outside)
t.teardown(async () => {
  setGlobalDispatcher(previousDispatcher)
  await outside.close()
})

// ---------------------------------------------------------------------------------------------
// Fixtures

interface Fixture {
  app: FastifyInstance
  entra: FakeEntra
  client: MockJwtClient
  /** Every status the app answered with. */
  statuses: number[]
  /** `request.entraToken` as seen when each response was sent, by URL. */
  seenTokens: Array<{ status: number, token: unknown }>
  /** Fetches made by the plugin at ready time. */
  baseline: { discovery: number, jwks: number }
}

/** Every log line written by any fixture, checked at the end for leaked tokens. */
const logs: string[] = []
/** Every credential sent by a probe. */
const secrets = new Set<string>()

/**
 * Fake Entras by their options, shared by the fixtures (each one generates an RSA key, which is
 * slow). Subtests run one after another and leave the fakes in their default state.
 */
const fakes = new Map<string, FakeEntra>()
t.teardown(async () => { for (const fake of fakes.values()) await fake.close() })

function fakeEntra (entraOptions: FakeEntraOptions): FakeEntra {
  const name = JSON.stringify(entraOptions)
  let fake = fakes.get(name)
  if (fake === undefined) {
    fake = new FakeEntra(entraOptions)
    fakes.set(name, fake)
  }
  return fake
}

async function build (t: Test, options: Partial<EntraAuthOptions>, entraOptions: FakeEntraOptions, clientId: string, seedClaims: boolean): Promise<Fixture> {
  const entra = fakeEntra(entraOptions)
  const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { logs.push(line) } } } })
  // The production key timings, not the test kit's (cooldown 0): an unknown kid must cost no fetch.
  const { jwks: _testTimings, ...provider } = entra.pluginOptions()
  await app.register(entraAuth, { clientId, ...provider, ...options } as EntraAuthOptions)
  const statuses: number[] = []
  const seenTokens: Fixture['seenTokens'] = []
  app.addHook('onResponse', async (request, reply) => {
    statuses.push(reply.statusCode)
    seenTokens.push({ status: reply.statusCode, token: request.entraToken })
  })
  app.get('/restricted', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  app.post('/restricted', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  SCOPE_ROUTES.forEach((requirement, i) => {
    app.get(`/scopes/${i}`, { preHandler: app.entraAuth(requirement) }, async () => ({ ok: true }))
  })
  const client = seedClaims
    ? new MockJwtClient({ key: entra.keys[0]!, claims: new MockClaims({ selfAppId: clientId }) })
    : entra.client(clientId, 'v2')
  await app.ready()
  t.teardown(() => app.close())
  return { app, entra, client, statuses, seenTokens, baseline: { ...entra.requests } }
}

/** The seed's fixture (helpers.ts `seedApp`), with a log stream and response recording. */
function seedFixture (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
  return build(t, { allowedSubjects: ['test_subject'], allowedApps: ['test_app_2'], ...options }, { issuer: MOCK_ISSUER, keyIssuer: null }, CLIENT_ID, true)
}

/** An Entra-shaped fixture: default fake (v2.0 issuer of the fake tenant, keys with `issuer`). */
function entraFixture (t: Test, options: Partial<EntraAuthOptions> = {}, entraOptions: FakeEntraOptions = {}): Promise<Fixture> {
  return build(t, options, entraOptions, API_ID, false)
}

// ---------------------------------------------------------------------------------------------
// Token crafting

const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64url')
const seg = (value: unknown): string => b64(JSON.stringify(value))

/** `segment` with 'A's appended to a length of 1 mod 4, which no byte string encodes to. */
function oneMod4 (segment: string): string {
  const missing = (((1 - segment.length) % 4) + 4) % 4
  return segment + 'A'.repeat(missing === 0 ? 4 : missing)
}

/** RS256 over the exact header and payload texts given (for JSON no serializer would write). */
function signText (key: KeyObject, headerText: string, payloadText: string): string {
  const input = `${b64(headerText)}.${b64(payloadText)}`
  return `${input}.${cryptoSign('sha256', Buffer.from(input), key).toString('base64url')}`
}

/** The claims `client` would put into a token, with `changes` (a value of `undefined` removes). */
function claimsOf (client: MockJwtClient, changes: Record<string, unknown> = {}): Record<string, unknown> {
  const claims: Record<string, unknown> = { ...client.claims.build(), ...changes }
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name]
  return claims
}

/** A token whose `name` claim is the raw JSON text `text`, signed with the client's key. */
function withRawClaim (client: MockJwtClient, name: string, text: string): string {
  const marker = '"__RAW_CLAIM__"'
  const payloadText = JSON.stringify(claimsOf(client, { [name]: '__RAW_CLAIM__' })).replace(marker, text)
  return signText(client.key.privateKey, JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: client.key.kid }), payloadText)
}

// ---------------------------------------------------------------------------------------------
// Probing

interface Expected {
  status: number
  /** One problem type, or any of several. */
  type?: string | string[]
  url?: string
  method?: 'GET' | 'POST'
}

function tokenOf (authorization: string): string {
  const space = authorization.indexOf(' ')
  return space === -1 ? authorization : authorization.slice(space + 1)
}

/** Asserts the reply: status, problem shape, challenge, never a 5xx, never the token echoed. */
function checkReply (t: Test, res: LightMyRequestResponse, expected: Expected, secret: string | undefined, label: string): void {
  t.ok(res.statusCode < 500, `${label}: not a 5xx (${res.statusCode})`)
  t.equal(res.statusCode, expected.status, `${label}: status ${expected.status}`)
  if (secret !== undefined && secret.length >= 8) {
    t.notOk(res.body.includes(secret), `${label}: body does not contain the token`)
    for (const part of new Set(secret.split('.'))) {
      if (part.length >= 24) t.notOk(res.body.includes(part), `${label}: body does not contain a token segment`)
    }
    for (const value of Object.values(res.headers)) {
      t.notOk(String(value).includes(secret), `${label}: headers do not contain the token`)
    }
  }
  if (expected.status === 401 || expected.status === 403) {
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`)
    t.match(res.headers['www-authenticate'], /^Bearer\b/, `${label}: Bearer challenge`)
    const body = res.json() as { type: string, status: number, detail: string }
    t.equal(body.status, expected.status, `${label}: body status`)
    if (expected.type !== undefined) {
      const types = Array.isArray(expected.type) ? expected.type : [expected.type]
      t.ok(types.includes(body.type), `${label}: type ${body.type} is one of ${types.join(', ')}`)
    }
    // RFC 6750 §3.1: another scheme's credentials get a challenge without error code (exact cases: bearer.test.ts).
    if (body.type === 'auth_header_invalid') t.match(res.headers['www-authenticate'], /^Bearer(?: error="invalid_request"|$)/)
    else if (expected.status === 401 && body.type !== 'auth_header_missing') t.match(res.headers['www-authenticate'], /error="invalid_token"/)
    if (expected.status === 403) t.match(res.headers['www-authenticate'], /error="insufficient_scope"/)
  }
}

/** Sends `authorization` (undefined: no header) and checks the reply. */
async function probe (t: Test, fx: Fixture, authorization: string | undefined, expected: Expected, label = String(authorization).slice(0, 60)): Promise<LightMyRequestResponse> {
  const secret = authorization === undefined ? undefined : tokenOf(authorization)
  if (secret !== undefined && secret.length >= 8) secrets.add(secret)
  const res = await fx.app.inject({
    method: expected.method ?? 'GET',
    url: expected.url ?? '/restricted',
    headers: authorization === undefined ? {} : { authorization }
  })
  checkReply(t, res, expected, secret, label)
  return res
}

/**
 * Like {@link probe}, for header values Node's HTTP layer may itself refuse: if light-my-request
 * throws, it must be its own header validation; otherwise the plugin's reply must be a 401.
 */
async function probeRaw (t: Test, fx: Fixture, authorization: string, type: string | string[], label: string): Promise<void> {
  secrets.add(tokenOf(authorization))
  let res: LightMyRequestResponse
  try {
    res = await fx.app.inject({ method: 'GET', url: '/restricted', headers: { authorization } })
  } catch (err) {
    t.match((err as { code?: string }).code, /^ERR_(INVALID_CHAR|HTTP_INVALID_HEADER_VALUE|INVALID_HTTP_TOKEN)$/, `${label}: refused by the HTTP layer`)
    return
  }
  checkReply(t, res, { status: 401, type }, tokenOf(authorization), label)
}

/** No fetch happened after start-up, neither to the fake Entra nor anywhere else. */
function noFetch (t: Test, fx: Fixture): void {
  t.same(fx.statuses.filter(status => status >= 500), [], 'no reply was a 5xx')
  t.same(fx.entra.requests, fx.baseline, 'no discovery or JWKS fetch after start-up')
  t.same(evilHits, [], 'nothing fetched from where a token pointed')
}

// ---------------------------------------------------------------------------------------------
// Tokens: algorithm

t.test('algorithm: only RS256', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const kid = client.key.kid
  const payload = seg(claimsOf(client))
  await probe(t, fx, `Bearer ${client.generate()}`, { status: 200 }, 'control: a good RS256 token')

  const rsa = client.key.privateKey
  const pem = client.key.publicKey.export({ type: 'spki', format: 'pem' }) as string
  const der = client.key.publicKey.export({ type: 'spki', format: 'der' })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const signers: Record<string, (input: string) => string> = {
    HS256: input => createHmac('sha256', pem).update(input).digest('base64url'),
    HS256der: input => createHmac('sha256', der).update(input).digest('base64url'),
    HS384: input => createHmac('sha384', pem).update(input).digest('base64url'),
    HS512: input => createHmac('sha512', pem).update(input).digest('base64url'),
    RS512: input => cryptoSign('sha512', Buffer.from(input), rsa).toString('base64url'),
    RS384: input => cryptoSign('sha384', Buffer.from(input), rsa).toString('base64url'),
    PS256: input => cryptoSign('sha256', Buffer.from(input), { key: rsa, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64url'),
    ES256: input => cryptoSign('sha256', Buffer.from(input), { key: ec, dsaEncoding: 'ieee-p1363' }).toString('base64url'),
    RS256: input => cryptoSign('sha256', Buffer.from(input), rsa).toString('base64url')
  }
  const cases: Array<[string, unknown, string]> = [
    ['HS256 keyed with the public key PEM', 'HS256', 'HS256'],
    ['HS256 keyed with the public key DER', 'HS256', 'HS256der'],
    ['HS384 keyed with the public key', 'HS384', 'HS384'],
    ['HS512 keyed with the public key', 'HS512', 'HS512'],
    ['RS512', 'RS512', 'RS512'],
    ['RS384', 'RS384', 'RS384'],
    ['PS256', 'PS256', 'PS256'],
    ['ES256', 'ES256', 'ES256'],
    ['alg rs256 (case)', 'rs256', 'RS256'],
    ['alg "RS256 " (padded)', 'RS256 ', 'RS256'],
    ['alg as array', ['RS256'], 'RS256'],
    ['alg null', null, 'RS256'],
    ['alg number', 256, 'RS256'],
    ['alg object', { name: 'RS256' }, 'RS256']
  ]
  for (const [label, alg, signer] of cases) {
    const input = `${seg({ alg, typ: 'JWT', kid })}.${payload}`
    await probe(t, fx, `Bearer ${input}.${signers[signer]!(input)}`, { status: 401, type: 'auth_token_invalid' }, label)
  }

  for (const none of ['none', 'None', 'NONE', 'nOnE', 'none ']) {
    const input = `${seg({ alg: none, typ: 'JWT', kid })}.${payload}`
    await probe(t, fx, `Bearer ${input}.`, { status: 401, type: 'auth_token_invalid' }, `alg ${none}, empty signature`)
    await probe(t, fx, `Bearer ${input}.${signers.RS256!(input)}`, { status: 401, type: 'auth_token_invalid' }, `alg ${none}, with a signature`)
  }

  const noAlg = `${seg({ typ: 'JWT', kid })}.${payload}`
  await probe(t, fx, `Bearer ${noAlg}.${signers.RS256!(noAlg)}`, { status: 401, type: 'auth_token_invalid' }, 'missing alg')

  const good = client.generate()
  const [h, p] = good.split('.') as [string, string, string]
  await probe(t, fx, `Bearer ${h}.${p}.`, { status: 401, type: 'auth_token_invalid' }, 'RS256, empty signature')
  await probe(t, fx, `Bearer ${h}.${p}`, { status: 401, type: 'auth_token_invalid' }, 'RS256, signature segment dropped')

  // Signature-level failures: right alg and kid, wrong bytes.
  const other = new MockJwtClient({ key: new MockJwk({ kid, fresh: true }), claims: client.claims }).generate()
  await probe(t, fx, `Bearer ${other}`, { status: 401, type: 'auth_token_signature_untrusted' }, 'signed by another key with our kid')
  const forged = `${h}.${seg({ ...claimsOf(client), scp: 'SCOPE_A SCOPE_B', sub: 'test_subject', aud: 'test_app_1', exp: 4070908800 })}.${good.split('.')[2]!}`
  await probe(t, fx, `Bearer ${forged}`, { status: 401, type: 'auth_token_signature_untrusted' }, 'payload changed after signing')
  await probe(t, fx, `Bearer ${h}.${p}.${'A'.repeat(342)}`, { status: 401, type: 'auth_token_signature_untrusted' }, 'signature of zeros')
  await probe(t, fx, `Bearer ${h}.${p}.AAAA`, { status: 401, type: ['auth_token_signature_untrusted', 'auth_token_invalid'] }, 'signature too short')

  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: header keys

t.test('header keys jwk, jku, x5u, x5c are never trusted', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const attacker = new MockJwk({ fresh: true })
  const attackerWithOurKid = new MockJwk({ kid: client.key.kid, privateKey: attacker.privateKey })
  const attackerJwk = attacker.toJSON()
  const x5c = [attacker.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')]
  const pointers: Array<[string, Record<string, unknown>]> = [
    ['jwk', { jwk: attackerJwk }],
    ['jku', { jku: 'https://evil.example.com/jwks.json' }],
    ['x5u', { x5u: 'https://evil.example.com/cert.pem' }],
    ['x5c', { x5c }],
    ['all of them', { jwk: attackerJwk, jku: 'https://evil.example.com/jwks.json', x5u: 'https://evil.example.com/cert.pem', x5c }]
  ]
  const claims = claimsOf(client)
  for (const [label, extra] of pointers) {
    // Signed by the attacker's key, which the header names or embeds.
    const ownKid = new MockJwtClient({ key: attacker, claims: client.claims }).sign({ alg: 'RS256', typ: 'JWT', kid: attacker.kid, ...extra }, claims)
    await probe(t, fx, `Bearer ${ownKid}`, { status: 401, type: 'auth_token_key_error' }, `${label}: attacker key, attacker kid`)
    const ourKid = new MockJwtClient({ key: attackerWithOurKid, claims: client.claims }).sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid, ...extra, ...(extra.jwk === undefined ? {} : { jwk: attackerWithOurKid.toJSON() }) }, claims)
    await probe(t, fx, `Bearer ${ourKid}`, { status: 401, type: 'auth_token_signature_untrusted' }, `${label}: attacker key, our kid`)
    const noKid = new MockJwtClient({ key: attacker, claims: client.claims }).sign({ alg: 'RS256', typ: 'JWT', ...extra }, claims)
    await probe(t, fx, `Bearer ${noKid}`, { status: 401, type: 'auth_token_key_error' }, `${label}: attacker key, no kid`)
    // Signed by the real key: the extra header members are simply ignored.
    const genuine = client.sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid, ...extra }, claims)
    await probe(t, fx, `Bearer ${genuine}`, { status: 200 }, `${label}: genuine token, pointer ignored`)
  }
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: kid

t.test('kid: missing, unknown, odd types and values never throw', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const claims = claimsOf(client)
  const keyOrInvalid = ['auth_token_key_error', 'auth_token_invalid']
  const cases: Array<[string, Record<string, unknown>, string | string[]]> = [
    ['missing', {}, 'auth_token_key_error'],
    ['unknown', { kid: 'unknown-kid' }, 'auth_token_key_error'],
    ['our kid upper-cased', { kid: client.key.kid.toUpperCase() }, 'auth_token_key_error'],
    ['our kid with a space', { kid: `${client.key.kid} ` }, 'auth_token_key_error'],
    ['our kid as a prefix', { kid: client.key.kid.slice(0, 8) }, 'auth_token_key_error'],
    ['number', { kid: 42 }, keyOrInvalid],
    ['object', { kid: { kid: client.key.kid } }, keyOrInvalid],
    ['array', { kid: [client.key.kid] }, keyOrInvalid],
    ['boolean', { kid: true }, keyOrInvalid],
    ['null', { kid: null }, keyOrInvalid],
    ['empty string', { kid: '' }, keyOrInvalid],
    ['enormous (10 kB)', { kid: 'k'.repeat(10_000) }, keyOrInvalid],
    ['enormous (40 kB, our kid repeated)', { kid: client.key.kid.repeat(1100) }, keyOrInvalid],
    ['path-like', { kid: '../../../../etc/passwd' }, keyOrInvalid],
    ['absolute path', { kid: '/discovery/v2.0/keys' }, keyOrInvalid],
    ['windows path', { kid: 'C:\\Windows\\win.ini' }, keyOrInvalid],
    ['URL (colon)', { kid: 'https://evil.example.com/keys' }, keyOrInvalid],
    ['colon', { kid: `${client.key.kid}:1` }, keyOrInvalid],
    ['percent-encoded traversal', { kid: '%2e%2e%2f%2e%2e%2f' }, keyOrInvalid],
    ['percent-encoded NUL', { kid: `${client.key.kid}%00` }, keyOrInvalid],
    ['NUL character', { kid: `${client.key.kid}\u0000` }, keyOrInvalid],
    ['lone high surrogate', { kid: '\uD800' }, keyOrInvalid],
    ['lone low surrogate after our kid', { kid: `${client.key.kid}\uDC00` }, keyOrInvalid],
    ['__proto__', { kid: '__proto__' }, keyOrInvalid],
    ['constructor', { kid: 'constructor' }, keyOrInvalid],
    ['hasOwnProperty', { kid: 'hasOwnProperty' }, keyOrInvalid]
  ]
  for (const [label, kid, type] of cases) {
    const token = client.sign({ alg: 'RS256', typ: 'JWT', ...kid }, claims)
    await probe(t, fx, `Bearer ${token}`, { status: 401, type }, `kid ${label}`)
  }
  // The lone surrogate survives JSON.stringify as an escape, so the plugin really saw it.
  t.match(Buffer.from(client.sign({ alg: 'RS256', kid: '\uD800' }, claims).split('.')[0]!, 'base64url').toString(), /\\ud800/)
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: crit

t.test('crit header is refused', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const claims = claimsOf(client)
  for (const crit of [['exp'], ['b64'], [], 'exp', null, {}]) {
    const token = client.sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid, crit, exp: 1, b64: true }, claims)
    await probe(t, fx, `Bearer ${token}`, { status: 401, type: 'auth_token_invalid' }, `crit ${JSON.stringify(crit)}`)
  }
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: structure

t.test('structure: segments, base64url, JSON objects', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const good = client.generate()
  const [h, p, s] = good.split('.') as [string, string, string]
  const invalid = { status: 401, type: 'auth_token_invalid' }
  const segments: Array<[string, string]> = [
    ['one segment', h],
    ['one segment, no dots', 'Invalid'],
    ['two segments', `${h}.${p}`],
    ['four segments', `${good}.${s}`],
    ['five segments (JWE shape)', `${h}.${p}.${s}.${s}.${s}`],
    ['trailing dot', `${good}.`],
    ['leading dot', `.${good}`],
    ['only dots', '..'],
    ['empty header', `.${p}.${s}`],
    ['empty payload', `${h}..${s}`],
    ['doubled dot', `${h}..${p}.${s}`]
  ]
  for (const [label, token] of segments) await probe(t, fx, `Bearer ${token}`, invalid, label)

  const base64: Array<[string, string]> = [
    ['standard base64 "+" in the header', `${h.slice(0, -1)}+.${p}.${s}`],
    ['standard base64 "/" in the payload', `${h}.${p.slice(0, -1)}/.${s}`],
    ['"~" in the signature', `${h}.${p}.${s.slice(0, -1)}~`],
    ['padding on the signature', `${h}.${p}.${s}=`],
    ['padding on the signature (two)', `${h}.${p}.${s}==`],
    ['header length 1 mod 4', `${oneMod4(h)}.${p}.${s}`],
    ['payload length 1 mod 4', `${h}.${oneMod4(p)}.${s}`],
    ['signature length 1 mod 4', `${h}.${p}.${oneMod4(s)}`]
  ]
  for (const [label, token] of base64) await probe(t, fx, `Bearer ${token}`, invalid, label)
  // '=' inside the credential is not even an RFC 6750 b64token.
  await probe(t, fx, `Bearer ${h}=.${p}.${s}`, { status: 401, type: ['auth_header_invalid', 'auth_token_invalid'] }, 'padding on the header')

  const key = client.key.privateKey
  const header = JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: client.key.kid })
  const payload = JSON.stringify(claimsOf(client))
  const notObjects = ['not json', '{"alg":"RS256"', '', '[]', '["RS256"]', '"RS256"', 'null', '42', 'true', '{"alg":"RS256"}garbage', '\u0000']
  for (const text of notObjects) {
    await probe(t, fx, `Bearer ${signText(key, text, payload)}`, invalid, `header ${JSON.stringify(text)}`)
    await probe(t, fx, `Bearer ${signText(key, header, text)}`, invalid, `payload ${JSON.stringify(text)}`)
  }
  // Through the test kit's own signer too (JSON values that are not objects).
  for (const value of [[], ['a'], 'claims', null, 7]) {
    await probe(t, fx, `Bearer ${client.sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid }, value)}`, invalid, `payload ${JSON.stringify(value)}`)
  }
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: time claims

t.test('time claims must be finite numbers', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  await probe(t, fx, `Bearer ${withRawClaim(client, 'exp', String(Math.floor(Date.now() / 1000) + 600))}`, { status: 200 }, 'control: raw numeric exp')
  const hostile = ['"4070908800"', '"never"', '{}', '{"$gt":0}', 'true', 'false', '[4070908800]', '1e400', '-1e400', '""']
  for (const claim of ['exp', 'nbf']) {
    for (const text of hostile) {
      await probe(t, fx, `Bearer ${withRawClaim(client, claim, text)}`, { status: 401, type: 'auth_token_invalid' }, `${claim} ${text}`)
    }
    const res = await probe(t, fx, `Bearer ${withRawClaim(client, claim, 'null')}`, { status: 401, type: 'auth_token_claim_missing' }, `${claim} null`)
    t.match(res.json().detail, claim, 'detail names the claim')
  }
  for (const text of ['"1700000000"', '1e400', '{}']) {
    await probe(t, fx, `Bearer ${withRawClaim(client, 'iat', text)}`, { status: 401, type: 'auth_token_invalid' }, `iat ${text}`)
  }
  await probe(t, fx, `Bearer ${client.generate({ exp: Math.floor(Date.now() / 1000) - 10 })}`, { status: 401, type: 'auth_token_expired' }, 'control: past exp')
  await probe(t, fx, `Bearer ${client.generate({ nbf: 4070908800 })}`, { status: 401, type: 'auth_token_immature' }, 'control: future nbf')
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: issuer

t.test('issuer: exact match only', async t => {
  t.test('discovery issuer as published', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    await probe(t, fx, `Bearer ${client.generate({ iss: MOCK_ISSUER })}`, { status: 200 }, 'control: exact issuer')
    const variants = [
      `${MOCK_ISSUER}/`, MOCK_ISSUER.toUpperCase(), 'HTTPS://issuer.auth.example.com', 'https://Issuer.auth.example.com',
      `${MOCK_ISSUER}.evil.com`, `https://evil.com/${MOCK_ISSUER}`, `https://evil.com/?iss=${MOCK_ISSUER}`, MOCK_ISSUER.slice(0, -1),
      ` ${MOCK_ISSUER}`, `${MOCK_ISSUER} `, `${MOCK_ISSUER}\u0000`, 'https://issuer.auth.example.com:443', `${MOCK_ISSUER}/.`,
      'http://issuer.auth.example.com', 'https://issuer.auth.example.com#', '.*', '^https://issuer', 'issuer.auth.example.com', ''
    ]
    for (const iss of variants) {
      await probe(t, fx, `Bearer ${client.generate({ iss })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, `iss ${JSON.stringify(iss)}`)
    }
    for (const iss of [[MOCK_ISSUER], [MOCK_ISSUER, 'https://evil.com'], ['https://evil.com', MOCK_ISSUER], { iss: MOCK_ISSUER }, 42, true]) {
      await probe(t, fx, `Bearer ${client.generate({ iss })}`, { status: 401, type: ['auth_token_invalid', 'auth_token_issuer_untrusted'] }, `iss ${JSON.stringify(iss)}`)
    }
    noFetch(t, fx)
  })

  t.test('single-tenant Entra issuer', async t => {
    const fx = await entraFixture(t)
    const { entra, client } = fx
    const tid = entra.tenantId
    await probe(t, fx, `Bearer ${client.generate()}`, { status: 200 }, 'control: v2 token')
    const variants = [
      `https://login.microsoftonline.com/${tid}/v2.0/`, `https://login.microsoftonline.com/${tid.toUpperCase()}/v2.0`,
      `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, 'https://login.microsoftonline.com/{tenantid}/v2.0',
      'https://login.microsoftonline.com/common/v2.0', 'https://login.microsoftonline.com/organizations/v2.0',
      `https://login.microsoftonline.us/${tid}/v2.0`, `https://login.microsoftonline.com/${tid}/v2.0/evil`,
      `https://login.microsoftonline.com/${tid}`, `https://login.microsoftonline.com.evil.com/${tid}/v2.0`
    ]
    for (const iss of variants) {
      await probe(t, fx, `Bearer ${client.generate({ iss })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, `iss ${iss}`)
    }
    // A token of another tenant that names it consistently in `iss` and `tid`.
    await probe(t, fx, `Bearer ${client.generate({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, tid: OTHER_TENANT })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, 'another tenant, consistent tid')
    noFetch(t, fx)
  })

  t.test('multi-tenant issuer is bound to tid', async t => {
    const fx = await entraFixture(t, {}, { tenant: 'organizations' })
    const { entra, client } = fx
    const tid = entra.tenantId
    const issuerOf = (tenant: string): string => `https://login.microsoftonline.com/${tenant}/v2.0`
    await probe(t, fx, `Bearer ${client.generate({ iss: issuerOf(tid), tid })}`, { status: 200 }, 'control: iss bound to tid')
    await probe(t, fx, `Bearer ${client.generate({ iss: issuerOf(OTHER_TENANT), tid: OTHER_TENANT })}`, { status: 200 }, 'control: another tenant (no allow-list)')
    const cases: Array<[string, Record<string, unknown>]> = [
      ['iss of another tenant than tid', { iss: issuerOf(OTHER_TENANT), tid }],
      ['template as issuer', { iss: issuerOf('{tenantid}'), tid }],
      ['template as issuer and as tid', { iss: issuerOf('{tenantid}'), tid: '{tenantid}' }],
      ['no tid', { iss: issuerOf(tid), tid: false }],
      ['tid not a GUID', { iss: issuerOf('contoso'), tid: 'contoso' }],
      ['tid regex', { iss: issuerOf('.*'), tid: '.*' }],
      ['tid upper-case', { iss: issuerOf(tid.toUpperCase()), tid: tid.toUpperCase() }],
      ['tid an array', { iss: issuerOf(tid), tid: [tid] }],
      ['trailing slash', { iss: `${issuerOf(tid)}/`, tid }],
      ['tid with a path', { iss: issuerOf(`${tid}/x`), tid: `${tid}/x` }]
    ]
    for (const [label, overrides] of cases) {
      await probe(t, fx, `Bearer ${client.generate(overrides)}`, { status: 401, type: 'auth_token_issuer_untrusted' }, label)
    }
    noFetch(t, fx)
  })

  t.test('allowedTenants', async t => {
    const fx = await entraFixture(t, { allowedTenants: [OTHER_TENANT] }, { tenant: 'organizations' })
    const { entra, client } = fx
    const tid = entra.tenantId
    await probe(t, fx, `Bearer ${client.generate({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, tid: OTHER_TENANT })}`, { status: 200 }, 'allowed tenant')
    await probe(t, fx, `Bearer ${client.generate({ iss: `https://login.microsoftonline.com/${tid}/v2.0`, tid })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, 'tenant not allowed')
    noFetch(t, fx)
  })
})

// ---------------------------------------------------------------------------------------------
// Tokens: audience

t.test('audience: exact member of the accepted set', async t => {
  const fx = await seedFixture(t, { audiences: ['https://api.contoso.com'] })
  const { client } = fx
  for (const aud of [CLIENT_ID, `api://${CLIENT_ID}`, 'https://api.contoso.com', ['https://other.example.com', CLIENT_ID]]) {
    await probe(t, fx, `Bearer ${client.generate({ aud })}`, { status: 200 }, `accepted aud ${JSON.stringify(aud)}`)
  }
  const refused = [
    'test_app', 'test_app_10', `${CLIENT_ID} `, CLIENT_ID.toUpperCase(), `api://${CLIENT_ID}/`, `api://${CLIENT_ID}/.default`,
    `api://${CLIENT_ID.toUpperCase()}`, `api:/${CLIENT_ID}`, `${CLIENT_ID}/`, 'test_app_2', 'c0ffee00-0000-4000-8000-000000000002',
    '00000003-0000-0000-c000-000000000000', 'https://graph.microsoft.com', 'https://graph.microsoft.com/', 'https://management.azure.com/',
    'https://api.contoso.com/', 'https://api.contoso.co', 'https://API.contoso.com', '*', '', ['https://other.example.com'],
    ['00000003-0000-0000-c000-000000000000'], [`${CLIENT_ID}x`, `x${CLIENT_ID}`]
  ]
  for (const aud of refused) {
    await probe(t, fx, `Bearer ${client.generate({ aud })}`, { status: 401, type: 'auth_token_audience_invalid' }, `aud ${JSON.stringify(aud)}`)
  }
  const graph = await probe(t, fx, `Bearer ${client.generate({ aud: '00000003-0000-0000-c000-000000000000' })}`, { status: 401, type: 'auth_token_audience_invalid' }, 'Graph token')
  t.match(graph.json().detail, /Graph/, 'a Graph token is named as such')
  for (const aud of [[], [42], { aud: CLIENT_ID }, 42, [[CLIENT_ID]]]) {
    await probe(t, fx, `Bearer ${client.generate({ aud })}`, { status: 401, type: ['auth_token_invalid', 'auth_token_audience_invalid'] }, `aud ${JSON.stringify(aud)}`)
  }
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: version confusion

t.test('version confusion', async t => {
  t.test('both versions accepted', async t => {
    const fx = await entraFixture(t)
    const { entra } = fx
    const v1 = entra.client(API_ID, 'v1')
    const v2 = entra.client(API_ID, 'v2')
    const v1Issuer = entra.issuerFor(entra.tenantId, '1.0')
    const v2Issuer = entra.issuerFor(entra.tenantId, '2.0')
    await probe(t, fx, `Bearer ${v1.generate()}`, { status: 200 }, 'control: v1 preset')
    await probe(t, fx, `Bearer ${v2.generate()}`, { status: 200 }, 'control: v2 preset')
    await probe(t, fx, `Bearer ${entra.client(API_ID, 'app').generate()}`, { status: 200 }, 'control: app-only preset')
    await probe(t, fx, `Bearer ${v1.generate({ aud: API_ID })}`, { status: 200 }, 'control: v1 token with the client ID as aud')

    const untrusted = { status: 401, type: 'auth_token_issuer_untrusted' }
    // A 1.0 token under the discovery issuer is Azure AD B2C's shape, held to `azp` (not `appid`).
    await probe(t, fx, `Bearer ${v1.generate({ iss: v2Issuer })}`, { status: 401, type: 'auth_token_claim_missing' }, 'ver 1.0 with the v2 issuer, no azp')
    await probe(t, fx, `Bearer ${v2.generate({ iss: v1Issuer })}`, untrusted, 'ver 2.0 with the v1 issuer')
    await probe(t, fx, `Bearer ${v1.generate({ ver: '2.0', azp: CLIENT_APP })}`, untrusted, 'v1 token relabelled ver 2.0 (azp added)')
    // …so a v2 token relabelled 1.0 is that shape; its client is still `azp`, never the `appid` added.
    const relabelled = v2.generate({ ver: '1.0', additionalClaims: { appid: OTHER_TENANT } })
    await probe(t, fx, `Bearer ${relabelled}`, { status: 200 }, 'v2 token relabelled ver 1.0 (appid added): B2C shape')
    const { clientId } = await fx.app.entraAuth.verify(relabelled)
    t.equal(clientId, CLIENT_APP, 'the client is azp, not the appid')
    await probe(t, fx, `Bearer ${v2.generate({ ver: '1.0', azp: false, additionalClaims: { appid: CLIENT_APP } })}`, { status: 401, type: 'auth_token_claim_missing' }, 'v2 token relabelled ver 1.0 without azp: appid does not stand in')
    await probe(t, fx, `Bearer ${v1.generate({ iss: `https://sts.windows.net/${entra.tenantId}` })}`, untrusted, 'v1 issuer without its trailing slash')
    await probe(t, fx, `Bearer ${v1.generate({ iss: `https://sts.windows.net/${OTHER_TENANT}/` })}`, untrusted, 'v1 issuer of another tenant')
    await probe(t, fx, `Bearer ${v1.generate({ iss: `https://sts.windows.net/${OTHER_TENANT}/`, tid: OTHER_TENANT })}`, untrusted, 'v1 issuer of another tenant, consistent tid')

    // Each version's own client claim is required; the other one does not stand in for it.
    const v1NoAppid = await probe(t, fx, `Bearer ${v1.generate({ appid: false, azp: CLIENT_APP })}`, { status: 401, type: 'auth_token_claim_missing' }, 'ver 1.0 with azp but no appid')
    t.match(v1NoAppid.json().detail, /appid/)
    const v2NoAzp = await probe(t, fx, `Bearer ${v2.generate({ azp: false, additionalClaims: { appid: CLIENT_APP } })}`, { status: 401, type: 'auth_token_claim_missing' }, 'ver 2.0 with appid but no azp')
    t.match(v2NoAzp.json().detail, /azp/)

    for (const ver of [2, '2', 'v2.0', '2.0 ', '3.0', 1, '1', ['2.0'], '']) {
      await probe(t, fx, `Bearer ${v2.generate({ ver })}`, { status: 401, type: 'auth_token_ver_not_supported' }, `ver ${JSON.stringify(ver)}`)
    }
    noFetch(t, fx)
  })

  t.test('tokenVersions limits the accepted versions', async t => {
    const only2 = await entraFixture(t, { tokenVersions: ['2.0'] })
    await probe(t, only2, `Bearer ${only2.entra.client(API_ID, 'v2').generate()}`, { status: 200 }, 'v2 accepted')
    await probe(t, only2, `Bearer ${only2.entra.client(API_ID, 'v1').generate()}`, { status: 401, type: 'auth_token_ver_not_supported' }, 'v1 refused')
    const only1 = await entraFixture(t, { tokenVersions: ['1.0'] })
    await probe(t, only1, `Bearer ${only1.entra.client(API_ID, 'v1').generate()}`, { status: 200 }, 'v1 accepted')
    await probe(t, only1, `Bearer ${only1.entra.client(API_ID, 'v2').generate()}`, { status: 401, type: 'auth_token_ver_not_supported' }, 'v2 refused')
  })
})

// ---------------------------------------------------------------------------------------------
// Tokens: scopes and roles

t.test('scopes and roles: exact, case-sensitive words', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const insufficient = (url: string): Expected => ({ status: 403, type: 'auth_token_insufficient_scopes', url })
  const only = (claims: Record<string, unknown>): string => `Bearer ${client.generate({ scp: false, roles: false, ...claims })}`

  await probe(t, fx, only({ scp: 'SCOPE_A SCOPE_B' }), { status: 200, url: '/scopes/0' }, 'control: A B')
  await probe(t, fx, only({ scp: '  SCOPE_A   SCOPE_B ' }), { status: 200, url: '/scopes/0' }, 'control: extra spaces')
  await probe(t, fx, only({ scp: 'SCOPE_A', roles: ['SCOPE_B'] }), { status: 200, url: '/scopes/0' }, 'control: scp ∪ roles')
  await probe(t, fx, only({ roles: ['ROLE_1', 'ROLE_2'] }), { status: 200, url: '/scopes/3' }, 'control: roles 1 2')

  const res = await probe(t, fx, only({ scp: 'scope_a scope_b' }), insufficient('/scopes/0'), 'lower-case scopes')
  t.match(res.headers['www-authenticate'], `scope="api://${CLIENT_ID}/SCOPE_A api://${CLIENT_ID}/SCOPE_B"`, 'challenge names the required scopes')
  await probe(t, fx, only({ scp: 'Scope_A Scope_B' }), insufficient('/scopes/0'), 'mixed-case scopes')
  await probe(t, fx, only({ scp: 'SCOPE_ASCOPE_B' }), insufficient('/scopes/1'), 'concatenated scopes')
  await probe(t, fx, only({ scp: 'SCOPE_A_EXTRA XSCOPE_B' }), insufficient('/scopes/1'), 'scope with a suffix / prefix')
  await probe(t, fx, only({ scp: 'SCOPE_' }), insufficient('/scopes/1'), 'scope prefix')
  await probe(t, fx, only({ scp: 'SCOPE_A,SCOPE_B' }), insufficient('/scopes/0'), 'comma-separated scopes')
  await probe(t, fx, only({ scp: 'SCOPE_A\tSCOPE_B' }), insufficient('/scopes/0'), 'tab-separated scopes')
  await probe(t, fx, only({ scp: 'SCOPE_A\nSCOPE_B' }), insufficient('/scopes/0'), 'newline-separated scopes')
  await probe(t, fx, only({ scp: ['SCOPE_A', 'SCOPE_B'] }), insufficient('/scopes/0'), 'scp as an array adds nothing')
  await probe(t, fx, only({ scp: { SCOPE_A: true, SCOPE_B: true } }), insufficient('/scopes/0'), 'scp as an object adds nothing')
  await probe(t, fx, only({ scp: '*' }), insufficient('/scopes/0'), 'wildcard scope')

  await probe(t, fx, only({ roles: 'ROLE_1' }), insufficient('/scopes/4'), 'roles as a string adds nothing')
  await probe(t, fx, only({ roles: 'ROLE_1 ROLE_2' }), insufficient('/scopes/3'), 'roles string is not split')
  await probe(t, fx, only({ roles: ['ROLE_1 ROLE_2'] }), insufficient('/scopes/3'), 'a role containing a space is one role')
  await probe(t, fx, only({ roles: ['ROLE_1 ROLE_2'] }), insufficient('/scopes/4'), 'a role containing a space matches neither')
  await probe(t, fx, only({ roles: ['role_1', 'role_2'] }), insufficient('/scopes/3'), 'lower-case roles')
  await probe(t, fx, only({ roles: [['ROLE_1'], { ROLE_2: true }, 1, null] }), insufficient('/scopes/4'), 'non-string roles')
  await probe(t, fx, only({ roles: ['ROLE_', 'ROLE_12'] }), insufficient('/scopes/4'), 'role prefix / suffix')
  await probe(t, fx, only({ roles: { 0: 'ROLE_1', length: 1 } }), insufficient('/scopes/4'), 'array-like roles object')

  // Malformed scp / roles leave the token valid (authentication only).
  await probe(t, fx, only({ scp: ['SCOPE_A'], roles: 'ROLE_1' }), { status: 200 }, 'malformed scp and roles, authentication-only route')

  // A token that fails authorization never becomes request.entraToken.
  const rejected = fx.seenTokens.filter(seen => seen.status !== 200)
  t.ok(rejected.length > 0)
  t.ok(rejected.every(seen => seen.token === null), 'request.entraToken stays null on every rejected request')
  t.ok(fx.seenTokens.filter(seen => seen.status === 200).every(seen => seen.token !== null), 'and is set on admitted ones')
  noFetch(t, fx)
})

// ---------------------------------------------------------------------------------------------
// Tokens: allow-lists

t.test('allow-lists: azp for v2, appid for v1, never a fallback', async t => {
  t.test('seed fixture (v2, allowedApps test_app_2, allowedSubjects test_subject)', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    await probe(t, fx, `Bearer ${client.generate()}`, { status: 200 }, 'control: azp allowed')
    const denied = { status: 403, type: 'auth_token_azp_not_trusted' }
    await probe(t, fx, `Bearer ${client.generate({ azp: 'other_app', additionalClaims: { appid: 'test_app_2' } })}`, denied, 'v2: azp not allowed, appid allowed')
    await probe(t, fx, `Bearer ${client.generate({ azp: 'TEST_APP_2' })}`, denied, 'azp case')
    await probe(t, fx, `Bearer ${client.generate({ azp: 'test_app_2 ' })}`, denied, 'azp padded')
    await probe(t, fx, `Bearer ${client.generate({ azp: ['test_app_2'] })}`, { status: 403, type: ['auth_token_azp_not_trusted'] }, 'azp as an array')
    await probe(t, fx, `Bearer ${client.generate({ azp: false, additionalClaims: { appid: 'test_app_2' } })}`, { status: 401, type: 'auth_token_claim_missing' }, 'v2 without azp, appid allowed')
    const subject = { status: 403, type: 'auth_token_subject_not_trusted' }
    await probe(t, fx, `Bearer ${client.generate({ sub: 'TEST_SUBJECT' })}`, subject, 'sub case')
    await probe(t, fx, `Bearer ${client.generate({ sub: 'test_subject_2' })}`, subject, 'sub suffix')
    await probe(t, fx, `Bearer ${client.generate({ sub: ['test_subject'] })}`, { status: 401, type: 'auth_token_invalid' }, 'sub as an array')
    noFetch(t, fx)
  })

  t.test('Entra fixture, both versions', async t => {
    const fx = await entraFixture(t, { allowedApps: [CLIENT_APP] })
    const { entra } = fx
    const v1 = entra.client(API_ID, 'v1')
    const v2 = entra.client(API_ID, 'v2')
    await probe(t, fx, `Bearer ${v1.generate()}`, { status: 200 }, 'control: v1 appid allowed')
    await probe(t, fx, `Bearer ${v2.generate()}`, { status: 200 }, 'control: v2 azp allowed')
    const denied = { status: 403, type: 'auth_token_azp_not_trusted' }
    await probe(t, fx, `Bearer ${v1.generate({ azp: CLIENT_APP, appid: 'd0000000-0000-4000-8000-00000000dead' })}`, denied, 'v1: appid not allowed, azp allowed')
    await probe(t, fx, `Bearer ${v2.generate({ azp: 'd0000000-0000-4000-8000-00000000dead', additionalClaims: { appid: CLIENT_APP } })}`, denied, 'v2: azp not allowed, appid allowed')
    await probe(t, fx, `Bearer ${v1.generate({ appid: false, azp: CLIENT_APP })}`, { status: 401, type: 'auth_token_claim_missing' }, 'v1 without appid')
    noFetch(t, fx)
  })
})

// ---------------------------------------------------------------------------------------------
// The Authorization header

t.test('Authorization header', async t => {
  const fx = await seedFixture(t)
  const { client } = fx
  const token = client.generate()
  const invalid = { status: 401, type: 'auth_header_invalid' }

  t.test('scheme is case-insensitive', async t => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      await probe(t, fx, `${scheme} ${token}`, { status: 200 }, `scheme ${scheme}`)
    }
  })

  t.test('missing or empty', async t => {
    const res = await probe(t, fx, undefined, { status: 401, type: 'auth_header_missing' }, 'no header')
    t.equal(res.headers['www-authenticate'], 'Bearer', 'no error attribute without credentials')
    await probe(t, fx, '', { status: 401, type: 'auth_header_missing' }, 'empty header')
  })

  t.test('not exactly "Bearer <token>"', async t => {
    const cases: Array<[string, string]> = [
      ['scheme alone', 'Bearer'],
      ['scheme and a space', 'Bearer '],
      ['token alone', token],
      ['no space', `Bearer${token}`],
      ['tab', `Bearer\t${token}`],
      ['trailing word', `Bearer ${token} extra`],
      ['comma-joined credentials', `Bearer ${token}, Bearer ${token}`],
      ['comma-joined tokens', `Bearer ${token},${token}`],
      ['comma-joined with Basic', `Bearer ${token}, Basic dXNlcjpwYXNz`],
      ['Basic', 'Basic dXNlcjpwYXNz'],
      ['Basic carrying the token', `Basic ${token}`],
      ['DPoP', `DPoP ${token}`],
      ['Token', `Token ${token}`],
      ['JWT', `JWT ${token}`],
      ['Bearer with auth-params', `Bearer token="${token}"`],
      ['quoted token', `Bearer "${token}"`],
      ['whitespace only', '   '],
      ['Negotiate', 'Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCg==']
    ]
    for (const [label, header] of cases) await probe(t, fx, header, invalid, label)
  })

  t.test('control characters and non-ASCII', async t => {
    const cases: Array<[string, string]> = [
      ['NUL inside the token', `Bearer ${token.slice(0, 20)}\u0000${token.slice(20)}`],
      ['NUL after the token', `Bearer ${token}\u0000`],
      ['SOH before the token', `Bearer \u0001${token}`],
      ['DEL', `Bearer ${token}\u007f`],
      ['CR LF header injection', `Bearer ${token}\r\nX-Injected: 1`],
      ['vertical tab', `Bearer\u000b${token}`],
      ['NEL', `Bearer ${token}\u0085`],
      ['non-breaking space separator', `Bearer\u00a0${token}`],
      ['non-ASCII token', 'Bearer tökén'],
      ['non-ASCII after the token', `Bearer ${token}é`],
      ['non-ASCII scheme', `Beärer ${token}`],
      ['full-width scheme', `Ｂｅａｒｅｒ ${token}`],
      ['BOM before the token', `Bearer \ufeff${token}`],
      ['emoji', `Bearer ${token}\u{1F600}`],
      ['zero-width space in the token', `Bearer ${token.slice(0, 30)}\u200b${token.slice(30)}`],
      ['lone surrogate', `Bearer ${token}\ud800`]
    ]
    for (const [label, header] of cases) await probeRaw(t, fx, header, 'auth_header_invalid', label)
  })

  t.test('a 1 MB header', async t => {
    // A bearer credential beyond 64 KiB is refused for its size before it is looked at.
    await probeRaw(t, fx, `Bearer ${'a'.repeat(1024 * 1024)}`, ['auth_header_invalid', 'auth_token_invalid'], '1 MB of a')
    await probeRaw(t, fx, `Bearer ${token}${'A'.repeat(1024 * 1024)}`, ['auth_header_invalid', 'auth_token_invalid'], 'token + 1 MB')
    await probeRaw(t, fx, `Bearer ${(token + '.').repeat(Math.ceil(1024 * 1024 / token.length))}`, ['auth_header_invalid', 'auth_token_invalid'], '1 MB of repeated tokens')
    await probeRaw(t, fx, `${'Bearer'.repeat(200_000)} ${token}`, 'auth_header_invalid', '1 MB scheme')
  })

  t.test('only the Authorization header is read', async t => {
    secrets.add(token)
    const query = await fx.app.inject({ method: 'GET', url: `/restricted?access_token=${token}` })
    checkReply(t, query, { status: 401, type: 'auth_header_missing' }, token, 'access_token in the query string')
    const queryBearer = await fx.app.inject({ method: 'GET', url: `/restricted?authorization=Bearer%20${token}` })
    checkReply(t, queryBearer, { status: 401, type: 'auth_header_missing' }, token, 'authorization in the query string')
    const form = await fx.app.inject({ method: 'POST', url: '/restricted', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `access_token=${token}` })
    checkReply(t, form, { status: 401, type: 'auth_header_missing' }, token, 'access_token in a form body')
    const json = await fx.app.inject({ method: 'POST', url: '/restricted', payload: { access_token: token, authorization: `Bearer ${token}` } })
    checkReply(t, json, { status: 401, type: 'auth_header_missing' }, token, 'access_token in a JSON body')
    for (const [name, value] of [['x-access-token', token], ['proxy-authorization', `Bearer ${token}`], ['cookie', `access_token=${token}`], ['x-authorization', `Bearer ${token}`]] as const) {
      const res = await fx.app.inject({ method: 'GET', url: '/restricted', headers: { [name]: value } })
      checkReply(t, res, { status: 401, type: 'auth_header_missing' }, token, `token in ${name}`)
    }
  })

  t.test('tokens of at least 12 kB are accepted', async t => {
    const large = client.generate({ additionalClaims: { groups: Array.from({ length: 320 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`) } })
    t.ok(large.length >= 12 * 1024, `token is ${large.length} characters`)
    await probe(t, fx, `Bearer ${large}`, { status: 200 }, '12 kB token')
    const larger = client.generate({ additionalClaims: { padding: 'x'.repeat(24 * 1024) } })
    await probe(t, fx, `Bearer ${larger}`, { status: 200 }, '32 kB token')
  })

  t.test('no fetch was caused by any header', async t => { noFetch(t, fx) })
})

// ---------------------------------------------------------------------------------------------

t.test('on a cold verifier, tokens failing shape, alg or kid checks cost no fetch', async t => {
  const entra = new FakeEntra({ issuer: MOCK_ISSUER, keyIssuer: null })
  const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...entra.pluginOptions() })
  t.teardown(async () => {
    await verifier.close()
    await entra.close()
  })
  const client = new MockJwtClient({ key: entra.keys[0]!, claims: new MockClaims({ selfAppId: CLIENT_ID }) })
  const claims = claimsOf(client)
  const kid = client.key.kid
  const good = client.generate()
  const [h, p] = good.split('.') as [string, string, string]
  const hostile: Array<[string, string, string]> = [
    ['', '', 'auth_token_invalid'],
    ['Invalid', 'Invalid', 'auth_token_invalid'],
    ['two segments', `${h}.${p}`, 'auth_token_invalid'],
    ['empty signature', `${h}.${p}.`, 'auth_token_invalid'],
    ['alg none', `${seg({ alg: 'none', kid })}.${p}.`, 'auth_token_invalid'],
    ['alg HS256', client.sign({ alg: 'HS256', kid }, claims), 'auth_token_invalid'],
    ['no alg', client.sign({ kid }, claims), 'auth_token_invalid'],
    ['crit', client.sign({ alg: 'RS256', kid, crit: ['exp'] }, claims), 'auth_token_invalid'],
    ['payload an array', client.sign({ alg: 'RS256', kid }, []), 'auth_token_invalid'],
    ['no kid', client.generateEmpty(), 'auth_token_key_error'],
    ['kid a number', client.sign({ alg: 'RS256', kid: 1 }, claims), 'auth_token_invalid'],
    ['kid enormous', client.sign({ alg: 'RS256', kid: 'k'.repeat(5000) }, claims), 'auth_token_invalid'],
    ['kid a lone surrogate', client.sign({ alg: 'RS256', kid: '\uD800' }, claims), 'auth_token_invalid']
  ]
  for (const [label, token, type] of hostile) {
    let caught: unknown
    await verifier.verify(token).catch((err: unknown) => { caught = err })
    t.ok(caught instanceof EntraAuthError, `${label}: rejected with EntraAuthError`)
    t.equal((caught as EntraAuthError).type, type, `${label}: ${type}`)
    t.same(await verifier.introspect(token), { active: false }, `${label}: introspection inactive`)
  }
  t.same(entra.requests, { discovery: 0, jwks: 0 }, 'no discovery or JWKS fetch')
  t.same(evilHits, [])
  t.equal((await verifier.verify(good)).claims.sub, 'test_subject', 'control: a good token then loads the keys')
  t.same(entra.requests, { discovery: 1, jwks: 1 })
})

// ---------------------------------------------------------------------------------------------

t.test('replies and logs', async t => {
  t.ok(secrets.size > 100, `${secrets.size} credentials were sent`)
  // Fastify's own request log line carries the URL (and so the query-string token); ours must not.
  const joined = logs.filter(line => !line.includes('"msg":"incoming request"')).join('')
  t.ok(joined.includes('auth_token_invalid'), 'rejections are logged with their problem type')
  const leaked = [...secrets].filter(secret => secret.length >= 24 && joined.includes(secret))
  t.same(leaked.map(secret => secret.slice(0, 30)), [], 'no credential appears in the logs')
  t.notOk(/"level":50/.test(joined), 'nothing was logged as an unexpected error')
})
