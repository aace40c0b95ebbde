/**
 * Plugin misuse fails when the route is defined, and `request.entraToken` is what its type says
 * (`EntraToken | null`) on every route, also outside the context that registered the plugin.
 */
import Fastify, { type FastifyInstance, type onRequestAsyncHookHandler } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'

const entra = new FakeEntra()
t.teardown(() => entra.close())

async function app (t: Test, decorator?: string): Promise<FastifyInstance> {
  const fastify = Fastify({ logger: false })
  t.teardown(() => fastify.close())
  await fastify.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...(decorator === undefined ? {} : { decorator }) })
  return fastify
}

function definitionError (define: () => unknown): (TypeError & { code?: string }) | undefined {
  try {
    define()
  } catch (err) {
    return err as TypeError
  }
  return undefined
}

t.test('onRequest: app.entraAuth (not called) is refused when the route is defined', async t => {
  const fastify = await app(t)
  const uncalled = fastify.entraAuth as unknown as onRequestAsyncHookHandler
  const cases: Record<string, () => unknown> = {
    onRequest: () => fastify.get('/a', { onRequest: uncalled }, async () => ({})),
    'preHandler array': () => fastify.get('/b', { preHandler: [fastify.entraAuth(), uncalled] }, async () => ({})),
    'preValidation via route()': () => fastify.route({ method: 'POST', url: '/c', preValidation: uncalled, handler: async () => ({}) }),
    'strategy not called': () => fastify.get('/d', { onRequest: fastify.entraAuth.strategy as unknown as onRequestAsyncHookHandler }, async () => ({}))
  }
  for (const [label, define] of Object.entries(cases)) {
    const err = definitionError(define)
    t.type(err, TypeError, label)
    t.equal(err?.code, 'FST_ENTRA_AUTH_HOOK_NOT_CALLED', `${label}: code`)
    t.match(err?.message, /without calling it/, `${label}: says what is wrong`)
    t.match(err?.message, /entraAuth(\.strategy)?\(\)/, `${label}: says to call it`)
  }
  t.match(definitionError(cases.onRequest as () => unknown)?.message, /route GET \/a/, 'names the route')
  t.equal(definitionError(() => fastify.get('/ok', { onRequest: fastify.entraAuth() }, async () => ({}))), undefined, 'a called one is fine')
  await fastify.ready()
  t.equal((await fastify.inject({ url: '/ok' })).statusCode, 401)
})

t.test('with another decorator name, and as a global hook', async t => {
  const fastify = await app(t, 'apiAuth')
  const decorator = (fastify as unknown as Record<string, onRequestAsyncHookHandler>).apiAuth as onRequestAsyncHookHandler
  t.match(definitionError(() => fastify.get('/a', { onRequest: decorator }, async () => ({})))?.message, /fastify\.apiAuth\(\)/)

  // addHook can't be seen when routes are defined: the request fails, and the log says why.
  const logged: unknown[] = []
  const global = Fastify({ logger: { level: 'error', stream: { write: (line: string) => { logged.push(JSON.parse(line)) } } } })
  t.teardown(() => global.close())
  await global.register(entraAuth, { clientId: API_ID, ...entra.pluginOptions() })
  global.addHook('onRequest', global.entraAuth as unknown as onRequestAsyncHookHandler)
  global.get('/x', async () => ({}))
  const res = await global.inject({ url: '/x' })
  t.equal(res.statusCode, 500)
  t.match(JSON.stringify(logged), /without calling it/)
})

t.test('request.entraToken is null on routes outside the registering context', async t => {
  const fastify = Fastify({ logger: false })
  t.teardown(() => fastify.close())
  const seen = (request: { entraToken: unknown }): { token: string } => ({ token: request.entraToken === null ? 'null' : typeof request.entraToken })
  fastify.get('/root', async (request) => seen(request))
  await fastify.register(async sibling => {
    sibling.get('/sibling', async (request) => seen(request))
  })
  await fastify.register(async api => {
    await api.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    api.get('/api/me', { onRequest: api.entraAuth() }, async (request) => ({ sub: request.entraToken?.claims.sub }))
    api.get('/api/open', async (request) => seen(request))
  })
  // The README's optional-auth idiom, on a route outside the context.
  fastify.get('/feed', async (request) => ({ user: request.entraToken === null ? 'anonymous' : request.entraToken.claims.sub }))
  const token = entra.token(API_ID, { sub: 'bob' })
  const headers = { authorization: `Bearer ${token}` }
  for (const url of ['/root', '/sibling', '/api/open']) {
    t.same((await fastify.inject({ url, headers })).json(), { token: 'null' }, url)
  }
  t.same((await fastify.inject({ url: '/feed' })).json(), { user: 'anonymous' })
  t.same((await fastify.inject({ url: '/api/me', headers })).json(), { sub: 'bob' })
  t.same((await fastify.inject({ url: '/root', headers })).json(), { token: 'null' }, 'an admitted request elsewhere changes nothing here')

  const other = Fastify({ logger: false })
  t.teardown(() => other.close())
  other.get('/', async (request) => ({ has: 'entraToken' in request }))
  t.same((await other.inject({ url: '/' })).json(), { has: false }, 'another app without the plugin is untouched')
})
