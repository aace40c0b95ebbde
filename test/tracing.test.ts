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
