/**
 * The diagnostics channels: `fastify-entra-auth:verify` (a TracingChannel around each validation),
 * `…:keys:fetch`, `…:keys:refresh` and `…:token-cache`. Subscribers see steps, verdicts and key
 * events; no message ever carries the token.
 */
import diagnostics from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import { CHANNELS, createEntraVerifier, EntraAuthError, type KeyFetchMessage, type KeyRefreshMessage, type TokenCacheMessage, type VerifyTraceContext, type EntraVerifier } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { entraApp, fakeEntra } from './helpers/index.js'

const CLIENT_ID = '6e1c9b1a-0000-4000-8000-00000000a11d'

interface Seen { event: string, context: VerifyTraceContext, snapshot: string }

/** Subscribes to every channel for the duration of `t`, recording what is published. */
function listen (t: Test): { verify: Seen[], fetches: KeyFetchMessage[], refreshes: KeyRefreshMessage[], cache: TokenCacheMessage[], all: () => string } {
  const verify: Seen[] = []
  const fetches: KeyFetchMessage[] = []
  const refreshes: KeyRefreshMessage[] = []
  const cache: TokenCacheMessage[] = []
  const record = (event: string) => (message: unknown) => {
    const context = message as VerifyTraceContext
    verify.push({ event, context, snapshot: JSON.stringify({ ...context, error: context.error === undefined ? undefined : String(context.error) }) })
  }
  const handlers = { start: record('start'), end: record('end'), asyncStart: record('asyncStart'), asyncEnd: record('asyncEnd'), error: record('error') }
  const tracing = diagnostics.tracingChannel(CHANNELS.verify)
  tracing.subscribe(handlers)
  const onFetch = (message: unknown): void => { fetches.push(message as KeyFetchMessage) }
  const onRefresh = (message: unknown): void => { refreshes.push(message as KeyRefreshMessage) }
  const onCache = (message: unknown): void => { cache.push(message as TokenCacheMessage) }
  diagnostics.subscribe(CHANNELS.keysFetch, onFetch)
  diagnostics.subscribe(CHANNELS.keysRefresh, onRefresh)
  diagnostics.subscribe(CHANNELS.tokenCache, onCache)
  t.teardown(() => {
    tracing.unsubscribe(handlers)
    diagnostics.unsubscribe(CHANNELS.keysFetch, onFetch)
    diagnostics.unsubscribe(CHANNELS.keysRefresh, onRefresh)
    diagnostics.unsubscribe(CHANNELS.tokenCache, onCache)
  })
  return { verify, fetches, refreshes, cache, all: () => JSON.stringify([verify.map(seen => seen.snapshot), fetches, refreshes, cache]) }
}

/** A fake Entra and a standalone verifier against it, both closed at the end of the test. */
function standalone (t: Test): { fake: FakeEntra, verifier: EntraVerifier } {
  const fake = fakeEntra(t)
  const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...fake.pluginOptions() })
  t.teardown(() => verifier.close())
  return { fake, verifier }
}

t.test('verify: start, end, asyncStart, asyncEnd with the steps and the verdict; key fetches and refreshes; cache miss then hit', async t => {
  const seen = listen(t)
  const { fake, verifier } = standalone(t)
  const token = fake.client(CLIENT_ID).generate()

  await verifier.verify(token)
  t.same(seen.verify.map(s => s.event), ['start', 'end', 'asyncStart', 'asyncEnd'])
  const context = seen.verify[3]?.context as VerifyTraceContext
  t.equal(seen.verify[0]?.context, context, 'one context object through the whole validation')
  t.match(context, { operation: 'verify', verdict: 'valid', cached: false, kid: fake.keys[0]?.kid, version: '2.0', tenantId: fake.tenantId })
  t.same(context.steps.map(step => step.step), ['structure', 'discovery', 'keys', 'key', 'signature', 'claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client'])
  t.equal(context.problem, undefined)

  t.same(seen.fetches.map(f => `${f.event}:${f.document}`), ['start:discovery', 'end:discovery', 'start:jwks', 'end:jwks'])
  t.match(seen.fetches[1], { url: fake.oidcEndpoint, durationMs: Number })
  t.same(seen.refreshes.map(r => r.event), ['start', 'end'])
  t.match(seen.refreshes[1], { kids: [fake.keys[0]?.kid] })

  await verifier.verify(token)
  t.same(seen.cache.map(c => c.event), ['miss', 'hit'])
  t.equal(seen.cache[1]?.kid, fake.keys[0]?.kid)
  const hit = seen.verify.at(-1)?.context as VerifyTraceContext
  t.match(hit, { cached: true, verdict: 'valid' })
  t.same(hit.steps.map(step => step.step), ['nbf', 'exp'], 'a cache hit checks the times again, nothing else')

  for (const part of token.split('.')) t.notOk(seen.all().includes(part), 'no message carries any part of the token')
})

t.test('a refused token: error before asyncStart/asyncEnd, problem, step, claim, kid', async t => {
  const seen = listen(t)
  const { fake, verifier } = standalone(t)
  const token = fake.client(CLIENT_ID).generate({ aud: 'another-api' })
  await t.rejects(verifier.verify(token), EntraAuthError)
  t.same(seen.verify.map(s => s.event), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  const context = seen.verify[4]?.context as VerifyTraceContext
  t.match(context, { verdict: 'invalid', problem: 'auth_token_audience_invalid', step: 'aud', claim: 'aud', kid: fake.keys[0]?.kid, version: '2.0', tenantId: fake.tenantId })
  t.type(context.error, EntraAuthError)
  t.match(context.steps.at(-1), { step: 'aud', ok: false, problem: 'auth_token_audience_invalid' })

  await t.rejects(verifier.verify('abc.def.ghi'))
  t.match(seen.verify.at(-1)?.context, { verdict: 'invalid', problem: 'auth_token_invalid', step: 'structure' })
  for (const part of token.split('.')) t.notOk(seen.all().includes(part), 'no message carries any part of the token')
})

t.test('explain and route hooks are traced too; a provider failure shows on keys:fetch and keys:refresh', async t => {
  const seen = listen(t)
  const fake = new FakeEntra()
  t.teardown(() => fake.close())
  const app = await entraApp({ clientId: CLIENT_ID, ...fake.pluginOptions() })
  t.teardown(() => app.close())
  app.get('/x', { onRequest: app.entraAuth() }, async () => 'ok')
  const token = fake.client(CLIENT_ID).generate()
  const response = await app.inject({ url: '/x', headers: { authorization: `Bearer ${token}` } })
  t.equal(response.statusCode, 200)
  t.match(seen.verify.at(-1)?.context, { operation: 'verify', verdict: 'valid' })

  const explanation = await app.entraAuth.explain(token, ['nothing-granted'])
  const context = seen.verify.at(-1)?.context as VerifyTraceContext
  t.match(context, { operation: 'explain', verdict: 'invalid', problem: 'auth_token_insufficient_scopes', step: 'scopes' })
  t.equal(context.steps, explanation.steps, 'the context holds the explanation steps')

  const down = new FakeEntra()
  down.mode = 'jwks-404'
  t.teardown(() => down.close())
  const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...down.pluginOptions() })
  t.teardown(() => verifier.close())
  await t.rejects(verifier.verify(down.client(CLIENT_ID).generate()), new EntraAuthError('auth_oidc_error', undefined, { step: 'keys' }))
  t.match(seen.fetches.at(-1), { event: 'failure', document: 'jwks', reason: String })
  t.match(seen.refreshes.at(-1), { event: 'failure', problem: 'auth_oidc_error', servingStale: false, reason: String })
})

t.test('the package subscribes to none of its channels itself', async t => {
  const { fake, verifier } = standalone(t)
  await verifier.verify(fake.client(CLIENT_ID).generate())
  t.equal(diagnostics.tracingChannel(CHANNELS.verify).hasSubscribers, false)
  for (const name of [CHANNELS.keysFetch, CHANNELS.keysRefresh, CHANNELS.tokenCache]) t.equal(diagnostics.hasSubscribers(name), false, name)
})

/** A token anyone can write: a real kid and alg, claims of one's choosing, a signature of nothing. */
function forged (header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part(header)}.${part(payload)}.${Buffer.alloc(256, 7).toString('base64url')}`
}

// eslint-disable-next-line no-control-regex -- the point is to find control characters
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

/** Every string in `value` (nested), with where it was found. */
function strings (value: unknown, path = '', out: Array<[string, string]> = []): Array<[string, string]> {
  if (typeof value === 'string') out.push([path, value])
  else if (Array.isArray(value)) value.forEach((item, i) => strings(item, `${path}[${i}]`, out))
  else if (value !== null && typeof value === 'object' && !(value instanceof Error)) for (const [key, item] of Object.entries(value)) strings(item, `${path}.${key}`, out)
  return out
}

t.test('a token whose signature does not verify: no identity published, every other fact cut to 128 characters and escaped, in tracing and explain()', async t => {
  const seen = listen(t)
  const { fake, verifier } = standalone(t)
  await verifier.warm()
  const long = 'A'.repeat(20_000)
  const short = 'B'.repeat(2_000)
  const logLine = '\n{"level":50,"msg":"admin logged in"}\n\u001b[2J\u001b]52;c;ZWNobyBwd25lZA==\u0007\u202e'
  const kid = fake.keys[0]?.kid as string
  const tokens = {
    // Tokens of at most 64 KiB are decoded: a 20 KB `tid` fits.
    signature: forged({ alg: 'RS256', kid, typ: `JWT${logLine}${short}` }, { tid: `${long}${logLine}`, azp: `app${logLine}`, appid: short, ver: `2.0${logLine}`, aud: CLIENT_ID }),
    // A kid of up to 256 characters is looked up.
    key: forged({ alg: 'RS256', kid: `${logLine}${'B'.repeat(150)}`, typ: logLine }, { tid: long, azp: short, ver: '2.0' }),
    structure: forged({ alg: `none${logLine}${short}`, kid: `${short}${logLine}`, typ: { nested: short } }, { tid: long, ver: '1.0', appid: short })
  }
  for (const [step, token] of Object.entries(tokens)) {
    await t.rejects(verifier.verify(token), EntraAuthError)
    const context = seen.verify.at(-1)?.context as VerifyTraceContext
    t.match(context, { verdict: 'invalid', step }, step)
    t.equal(context.tenantId, undefined, `${step}: no tenantId from an unverified token`)
    t.equal(context.clientId, undefined, `${step}: no clientId`)
    t.equal(context.version, undefined, `${step}: no version`)
    const explanation = await verifier.explain(token)
    t.equal(explanation.problem?.step, step)
    for (const [where, published] of [['tracing', { ...context, error: undefined }], ['explain', explanation]] as const) {
      const found = strings(published)
      for (const [path, text] of found) t.notOk(CONTROL.test(text), `${step}, ${where}: ${path} has no control characters`)
      // The package's own words (`detail`, titles) aside, everything read from the token is cut.
      const facts = found.filter(([path]) => /\.facts\.|^\.(kid|tenantId|clientId|version)$/.test(path))
      // A header that breaks the JOSE rules is not decoded at all: nothing to publish.
      t.equal(facts.length > 0, step !== 'structure', `${step}, ${where}: facts from the token`)
      for (const [path, text] of facts) t.ok(text.length <= 128, `${step}, ${where}: ${path} is at most 128 characters (${text.length})`)
    }
    const typ = explanation.steps.find(s => s.step === 'structure')?.facts.typ
    if (step !== 'structure') t.match(typ, /^(JWT)?\\u000a\{"level":50/, `${step}: what was cut is still recognisable, escaped`)
  }
  const verified = seen.verify.filter(s => s.event === 'asyncEnd' && s.context.operation === 'verify')
  t.equal(verified.length, 3)
  const kidSeen = verified.map(s => s.context.kid)
  t.equal(kidSeen[0], kid, 'a kid of the provider is published as it is')
  t.match(kidSeen[1], /^\\u000a\{"level":50.*…$/, 'an unknown kid is cut and escaped')
  t.equal(kidSeen[1]?.length, 128)
  t.equal(kidSeen[2], undefined, 'a header that breaks the JOSE rules publishes no kid')
})

t.test('a token whose signature verified is refused later: its identity is published', async t => {
  const seen = listen(t)
  const { fake, verifier } = standalone(t)
  const token = fake.client(CLIENT_ID).generate({ exp: 1 })
  await t.rejects(verifier.verify(token), EntraAuthError)
  t.match(seen.verify.at(-1)?.context, { verdict: 'invalid', step: 'exp', version: '2.0', tenantId: fake.tenantId, clientId: String })
})

t.test('concurrent traced validations of one token: one signature check, every context settled, no token in any message', async t => {
  const seen = listen(t)
  const { fake, verifier } = standalone(t)
  const good = fake.client(CLIENT_ID).generate()
  const refused = fake.client(CLIENT_ID).generate({ aud: 'another-api' })
  await Promise.all(Array.from({ length: 10 }, () => verifier.verify(good)))
  await Promise.allSettled(Array.from({ length: 10 }, () => verifier.verify(refused)))
  const ends = seen.verify.filter(s => s.event === 'asyncEnd').map(s => s.context)
  t.equal(ends.length, 20)
  t.equal(ends.flatMap(c => c.steps).filter(s => s.step === 'signature').length, 2, 'one signature check per token')
  t.same(ends.slice(0, 10).map(c => c.verdict), Array(10).fill('valid'))
  for (const context of ends.slice(10)) t.match(context, { verdict: 'invalid', problem: 'auth_token_audience_invalid', step: 'aud', tenantId: fake.tenantId })
  t.ok(ends.slice(10).every(c => c.steps.at(-1)?.step === 'aud' && c.steps.at(-1)?.ok === false), 'each refused context ends with the failed step')
  for (const token of [good, refused]) for (const part of token.split('.')) t.notOk(seen.all().includes(part), 'no message carries any part of the token')
})

t.test('a fact is cut between characters: never inside an escape or a surrogate pair', async t => {
  const seen = listen(t)
  const { verifier } = standalone(t)
  await verifier.warm()
  const cases: Array<[string, string, RegExp]> = [
    ['escape across the cut', `${'B'.repeat(125)}\n${'C'.repeat(40)}`, /^B{125}…$/],
    ['surrogate pair across the cut', '😀'.repeat(100), /^(😀){63}…$/],
    ['short enough', `ok\u0000${'D'.repeat(100)}`, /^ok\\u0000D{100}$/]
  ]
  for (const [label, kid, expected] of cases) {
    await t.rejects(verifier.verify(forged({ alg: 'RS256', kid }, { ver: '2.0' })), new EntraAuthError('auth_token_key_error'))
    const published = seen.verify.at(-1)?.context.kid as string
    t.match(published, expected, label)
    t.ok(published.length <= 128 && published.isWellFormed(), label)
  }
})

t.test('a token whose payload is not JSON: the published error quotes none of it', async t => {
  const seen = listen(t)
  const { fake, verifier } = standalone(t)
  await verifier.warm()
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: fake.keys[0]?.kid })).toString('base64url')
  // V8's JSON.parse error quotes a short input whole, control characters included.
  const payload = Buffer.from('{"tid":\u001b[2J\n{"level":60}').toString('base64url')
  await t.rejects(verifier.verify(`${header}.${payload}.${Buffer.alloc(256, 7).toString('base64url')}`), EntraAuthError)
  const context = seen.verify.at(-1)?.context as VerifyTraceContext
  t.match(context, { verdict: 'invalid', problem: 'auth_token_invalid' })
  const texts: string[] = []
  const walk = (value: unknown, depth = 0): void => {
    if (depth > 5 || value === null || typeof value !== 'object') return
    if (value instanceof Error) texts.push(value.message)
    for (const item of [...Object.values(value), (value as { cause?: unknown }).cause]) walk(item, depth + 1)
  }
  walk(context.error)
  t.ok(texts.length > 0)
  for (const text of texts) t.notOk(CONTROL.test(text) || text.includes('level'), `no part of the payload: ${JSON.stringify(text)}`)
})
