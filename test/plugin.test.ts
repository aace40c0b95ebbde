/**
 * The plugin through Fastify's public API: misuse fails when the route is defined, where
 * `request.entraToken` is decorated, and registering twice in one context.
 */
import Fastify, { type FastifyInstance, type FastifyRequest, type onRequestAsyncHookHandler } from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { EntraAuthOptionsError } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { API_ID as HELPER_API_ID, OTHER_API_ID, bearer, closing, decoratorOf, fakeEntra } from './helpers/index.js'

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

/** What a route sees in `request.entraToken`: 'null', 'undefined', or the token's `sub`. */
function seen (request: FastifyRequest): { token: string } {
  const token = request.entraToken as unknown
  return { token: token === null ? 'null' : token === undefined ? 'undefined' : String(request.entraToken?.claims.sub) }
}

async function tokensSeen (app: FastifyInstance, urls: string[], headers: Record<string, string> = {}): Promise<Record<string, string>> {
  const result: Record<string, string> = {}
  for (const url of urls) result[url] = ((await app.inject({ url, headers })).json() as { token: string }).token
  return result
}

t.test('request.entraToken: null in the registering context and below, undefined elsewhere', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  app.get('/root', async (request) => seen(request))
  await app.register(async sibling => { sibling.get('/sibling', async (request) => seen(request)) })
  await app.register(async api => {
    await api.register(entraAuth, { clientId: HELPER_API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    api.get('/api/open', async (request) => seen(request))
    api.get('/api/me', { onRequest: api.entraAuth() }, async (request) => seen(request))
    api.get('/api/maybe', { onRequest: api.entraAuth(undefined, { optional: true }) }, async (request) => seen(request))
    await api.register(async nested => { nested.get('/api/nested', async (request) => seen(request)) })
  })
  // The README's optional-auth test, outside the context.
  app.get('/feed', async (request) => ({ user: request.entraToken == null ? 'anonymous' : request.entraToken.claims.sub }))
  await app.ready()

  t.notOk(app.hasRequestDecorator('entraToken'), 'the root has no request decorator')
  const headers = bearer(entra.token(HELPER_API_ID, { sub: 'bob' }))
  t.same(await tokensSeen(app, ['/root', '/sibling', '/api/open', '/api/nested', '/api/maybe']), {
    '/root': 'undefined',
    '/sibling': 'undefined',
    '/api/open': 'null',
    '/api/nested': 'null',
    '/api/maybe': 'null'
  })
  t.same(await tokensSeen(app, ['/api/me', '/api/maybe', '/root'], headers), { '/api/me': 'bob', '/api/maybe': 'bob', '/root': 'undefined' }, 'an admitted request elsewhere changes nothing outside')
  t.same((await app.inject({ url: '/feed', headers })).json(), { user: 'anonymous' })

  const other = closing(t, Fastify())
  other.get('/', async (request) => ({ has: 'entraToken' in request }))
  t.same((await other.inject('/')).json(), { has: false }, 'another app is untouched')
})

t.test('registered at the root, request.entraToken is null on every route', async t => {
  const entra = fakeEntra(t)
  const app = closing(t, Fastify())
  app.get('/before', async (request) => seen(request))
  await app.register(entraAuth, { clientId: HELPER_API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
  await app.register(async late => { late.get('/late', async (request) => seen(request)) })
  app.get('/me', { onRequest: app.entraAuth() }, async (request) => seen(request))
  await app.ready()
  t.same(await tokensSeen(app, ['/before', '/late']), { '/before': 'null', '/late': 'null' })
  t.same(await tokensSeen(app, ['/me'], bearer(entra.token(HELPER_API_ID, { sub: 'ann' }))), { '/me': 'ann' })
})

t.test('registering twice in one context needs a distinct decorator', async t => {
  const entra = fakeEntra(t)

  t.test('same context', async t => {
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: HELPER_API_ID, ...entra.pluginOptions() })
    const err = await app.register(entraAuth, { clientId: OTHER_API_ID, ...entra.pluginOptions() }).then(() => undefined, (error: unknown) => error)
    t.type(err, EntraAuthOptionsError)
    t.type(err, TypeError)
    t.match(err, {
      code: 'FST_ENTRA_AUTH_INVALID_OPTIONS',
      message: /option 'decorator': this context already has a decorator 'entraAuth'.*give each registration its own name, e.g. \{ decorator: 'filesAuth' \}/
    })
    t.notMatch((err as Error).message, /FST_ERR_DEC_ALREADY_PRESENT/)
  })

  t.test('a child of a context that has it', async t => {
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: HELPER_API_ID, decorator: 'filesAuth', ...entra.pluginOptions() })
    await t.rejects(async () => {
      await app.register(async child => {
        await child.register(entraAuth, { clientId: OTHER_API_ID, decorator: 'filesAuth', ...entra.pluginOptions() })
      })
    }, /option 'decorator': this context already has a decorator 'filesAuth'/)
  })

  t.test('with distinct decorators both work', async t => {
    const app = closing(t, Fastify())
    await app.register(entraAuth, { clientId: HELPER_API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    await app.register(entraAuth, { clientId: OTHER_API_ID, decorator: 'otherAuth', rejectionLogLevel: 'silent', ...entra.pluginOptions() })
    app.get('/a', { onRequest: app.entraAuth() }, async () => ({}))
    app.get('/b', { onRequest: decoratorOf(app, 'otherAuth')() }, async () => ({}))
    await app.ready()
    t.equal((await app.inject({ url: '/a', headers: bearer(entra.token(HELPER_API_ID)) })).statusCode, 200)
    t.equal((await app.inject({ url: '/b', headers: bearer(entra.token(OTHER_API_ID)) })).statusCode, 200)
    t.equal((await app.inject({ url: '/b', headers: bearer(entra.token(HELPER_API_ID)) })).statusCode, 401)
  })
})
