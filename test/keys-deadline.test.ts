/**
 * Every discovery and JWKS fetch ends within `jwks.timeout` whatever the response (issue 19.1,
 * contract §6): an undecodable `content-encoding`, a corrupt or oversized compressed body, a body
 * that never ends. The refresh fails, the last good set serves (or 503), and the next refresh
 * recovers. Served by a real loopback HTTP server, through the default agent and through an app's
 * own agent (whose timeouts are undici's 300 s defaults: only the package's deadline applies).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { deflateRawSync, gzipSync } from 'node:zlib'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { Agent } from 'undici'
import entraAuth, { type EntraAuthOptions } from '../src/index.js'
import { kKeyStoreClock } from '../src/core/internal.js'
import { FakeEntra } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const HOUR = 60 * 60 * 1000
const TIMEOUT = 1000
const MAX_BYTES = 64 * 1024
/** How long a test waits before it calls something hung: generous, for a loaded machine. */
const BOUND = 20_000
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** `promise`, or 'hung' once BOUND ms have passed; the bound's timer is cleared either way (it would hold the process open). */
async function bounded<T> (promise: Promise<T>): Promise<T | 'hung'> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>(resolve => { timer = setTimeout(() => resolve('hung'), BOUND) })
  try {
    return await Promise.race([promise, hung])
  } finally {
    clearTimeout(timer)
  }
}

type Bad = (res: ServerResponse, document: string) => void

/** Responses the fetch layer can't use, each of which must end the fetch within the deadline. */
const BODIES: Record<string, Bad> = {
  'content-encoding zstd': (res, document) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' })
    res.end(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.from(document)]))
  },
  'raw deflate as content-encoding deflate': (res, document) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'deflate' })
    res.end(deflateRawSync(document))
  },
  'corrupt gzip': (res, document) => {
    const gzip = gzipSync(document)
    gzip.fill(0x41, 12, 40)
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    res.end(gzip)
  },
  'gzip larger than jwks.maxBytes once decoded': (res, document) => {
    const padded = `${document.slice(0, -1)},"padding":"${'x'.repeat(MAX_BYTES * 4)}"}`
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    res.end(gzipSync(padded))
  },
  'a body that never ends': (res, document) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write(document.slice(0, -1))
    // One byte every 20 ms: never idle long enough for a body timeout, never complete.
    const trickle = setInterval(() => { if (!res.destroyed) res.write(' ') }, 20)
    res.on('close', () => clearInterval(trickle))
  }
}

/**
 * What state() says for each: a body that never ends is cut by the deadline; the others are
 * refused sooner, unless a loaded machine let the deadline come first (both end the fetch).
 */
const REASONS: Record<string, RegExp> = {
  'content-encoding zstd': /unsupported content-encoding 'zstd'/,
  'raw deflate as content-encoding deflate': /could not be decoded/,
  'corrupt gzip': /could not be decoded/,
  'gzip larger than jwks.maxBytes once decoded': /could not be decoded within 65536 bytes/,
  'a body that never ends': /no complete response within 1000 ms/
}

interface Server {
  entra: FakeEntra
  /** Which document (if any) is answered with `bad`. */
  failing: { document: 'discovery' | 'jwks' | null, bad: Bad | null }
}

async function loopback (t: Test): Promise<Server> {
  const failing: Server['failing'] = { document: null, bad: null }
  const ref: { entra?: FakeEntra } = {}
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const fake = ref.entra as FakeEntra
    const answer = fake.handle({ method: req.method ?? 'GET', url: req.url ?? '/', headers: {}, body: '' })
    const path = new URL(req.url ?? '/', fake.origin).href
    const document = path === fake.oidcEndpoint ? 'discovery' : path === fake.jwksUri ? 'jwks' : null
    if (document !== null && document === failing.document && failing.bad !== null) {
      failing.bad(res, answer.body)
      return
    }
    res.writeHead(answer.status, answer.headers)
    res.end(answer.body)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const entra = new FakeEntra({ origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
  ref.entra = entra
  t.teardown(() => entra.close())
  return { entra, failing }
}

interface App {
  app: FastifyInstance
  /** The key store's clock (ms): each test moves its own, so the tests can run side by side. */
  clock: { now: number }
  get: () => Promise<{ status: number, type: string | undefined }>
}

async function protectedApp (t: Test, server: Server, dispatcher: Agent | undefined): Promise<App> {
  const clock = { now: 1_000_000 }
  const app = Fastify({ logger: false })
  await app.register(entraAuth, {
    clientId: API_ID,
    oidcEndpoint: server.entra.oidcEndpoint,
    ...(dispatcher === undefined ? {} : { dispatcher }),
    rejectionLogLevel: 'silent',
    jwks: { timeout: TIMEOUT, cooldown: 0, ttl: HOUR, maxStale: HOUR, maxBytes: MAX_BYTES },
    [kKeyStoreClock]: () => clock.now
  } as unknown as EntraAuthOptions)
  app.get('/me', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  const token = server.entra.client(API_ID).generate()
  return {
    app,
    clock,
    async get () {
      // A request that never ends fails here with 'hung' (a generous bound, not a timing assertion).
      const res = await bounded(app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } }))
      if (res === 'hung') return { status: 0, type: 'hung' }
      return { status: res.statusCode, type: res.statusCode === 200 ? undefined : res.json().type }
    }
  }
}

/**
 * Polls until the background refresh ended: it counted a failure, and when discovery failed, the
 * key set fetched after it (beside the cached document) is installed (its age is 0: the clock stands still).
 */
async function refreshFailed (app: FastifyInstance, failures: number, document: 'discovery' | 'jwks'): Promise<boolean> {
  const ended = (): boolean => app.entraAuth.state().keys.failures > failures && (document === 'jwks' || app.entraAuth.state().keys.keysAge === 0)
  for (let waited = 0; waited < BOUND && !ended(); waited += 10) await sleep(10)
  return ended()
}

// Every body for both documents on the default agent; the JWKS ones again on an app's own agent.
t.jobs = 2
for (const [dispatcherLabel, makeDispatcher, documents] of [['default agent', () => undefined, ['jwks', 'discovery']], ["the app's own agent", () => new Agent(), ['jwks']]] as const) {
  t.test(dispatcherLabel, async t => {
    // The cases share nothing (each has its own server, app and clock): they run side by side, so
    // the ones that wait out the deadline wait together.
    t.jobs = 5
    for (const document of documents) {
      for (const [label, bad] of Object.entries(BODIES)) {
        t.test(`${document}: ${label}`, async t => {
          const server = await loopback(t)
          const dispatcher = makeDispatcher()
          if (dispatcher !== undefined) t.teardown(() => dispatcher.close())
          const fx = await protectedApp(t, server, dispatcher)
          server.failing.document = document
          server.failing.bad = bad

          t.same(await fx.get(), { status: 503, type: 'auth_oidc_error' }, 'cold: the fetch ends, 503')
          const reason = new RegExp(`${(REASONS[label] as RegExp).source}|no complete response within ${TIMEOUT} ms`)
          t.match(fx.app.entraAuth.state().keys, { ready: false, lastError: reason }, String(fx.app.entraAuth.state().keys.lastError))

          server.failing.bad = null
          fx.clock.now += 10_000
          t.same(await fx.get(), { status: 200, type: undefined }, 'the next refresh recovers')

          server.failing.bad = bad
          const failures = fx.app.entraAuth.state().keys.failures
          fx.clock.now += HOUR
          t.same(await fx.get(), { status: 200, type: undefined }, 'past ttl: the last good set serves while the refresh runs')
          t.ok(await refreshFailed(fx.app, failures, document), 'the background refresh ended, failed')
          t.match(fx.app.entraAuth.state().keys, { ready: true, lastError: /\S/ })
          t.same(await fx.get(), { status: 200, type: undefined }, 'and the last good set still serves')

          server.failing.bad = null
          fx.clock.now += HOUR
          // Each request past ttl starts a refresh once the one in flight (if any) has ended.
          for (let i = 0; i < BOUND / 10 && fx.app.entraAuth.state().keys.lastError !== undefined; i++) { await fx.get(); await sleep(10) }
          t.equal(fx.app.entraAuth.state().keys.lastError, undefined, 'recovered')
        })
      }
    }
  })
}
